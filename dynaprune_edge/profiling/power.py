"""Power and energy per inference on a Jetson, read from its INA3221 rail monitors through
`tegrastats` or jtop (jetson-stats).

What the rails are (Jetson Linux developer guide, power and performance chapter):
- Orin NX / Orin Nano: VDD_IN (the module's input: its total), VDD_CPU_GPU_CV, VDD_SOC.
- AGX Orin: VDD_GPU_SOC, VDD_CPU_CV, VIN_SYS_5V0 (and VDDQ_VDD2_1V8AO where the second
  monitor is read); no input rail, so the total is the sum of the rails, as jtop sums them.
- AGX Thor: VDD_GPU, VDD_CPU_SOC_MSS, VIN_SYS_5V0 and VIN (its input).
tegrastats prints each as `NAME <instant>mW/<average>mW` (the average since tegrastats
started); JetPack 7 adds a third figure, which dpedge does not read. AGX Orin prints its
rails only to root.

A measurement is one phase per model, each its own recording: the model runs alone, back to
back on the samples, for a fixed time while the meter samples the rails. Mean power × mean
latency of that phase is the energy per inference; with the idle power (a recording with
nothing running, before) subtracted, the energy the inference itself adds. Everything here
is MEASURED on the device the meter reads; nothing is predicted.

Only the standard library and numpy: this runs on the device, where torch is absent."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from dynaprune_edge.errors import ConfigError, DataError

METERS = ("auto", "tegrastats", "jtop", "off")
INPUT_RAILS = ("VDD_IN", "VIN", "POM_5V_IN")  # a module's own input rail is its total, where it has one
UNCONNECTED = "NC"  # AGX Orin lists its monitors' unused channels as NC 0mW/0mW
RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)mW/(\d+)mW(?:/\d+mW)?\b")
FIRST_LINE_SECONDS = 5.0  # tegrastats prints its first line one interval after it starts; this is its slack


@dataclass(frozen=True)
class PowerSample:
    """One reading of every rail (mW, instant and running average) and the module total."""

    rails: dict[str, tuple[int, int]]
    total_mw: float
    total_of: str  # what the total is: an input rail's name, or "sum of A+B+…"


def total_of_rails(rails: dict[str, tuple[int, int]]) -> tuple[float, str]:
    for name in INPUT_RAILS:
        if name in rails:
            return float(rails[name][0]), name
    return float(sum(instant for instant, _ in rails.values())), "sum of " + "+".join(rails)


def parse_tegrastats(line: str) -> PowerSample:
    """The power rails of one tegrastats line; a DataError if it holds none."""
    rails = {name: (int(instant), int(average)) for name, instant, average in RAIL.findall(line) if name != UNCONNECTED}
    if not rails:
        raise DataError(
            "tegrastats printed no power rails (NAME <n>mW/<n>mW): an AGX Orin reports them only to root, so run dpedge "
            "profile with sudo, or install jetson-stats, whose service reads them for any user (--power jtop)"
        )
    total, of = total_of_rails(rails)
    return PowerSample(rails, total, of)


def sample_from_jtop(power: dict) -> PowerSample:
    """jtop's `power` attribute ({"rail": {NAME: {"power": mW, "avg": mW, …}}, "tot": {"power", "avg"}},
    as jetson-stats 4 documents it) as a PowerSample; its total is jtop's own (the input rail
    where the module has one, otherwise the sum of the rails)."""
    try:
        rails = {
            name: (int(rail["power"]), int(rail["avg"]))
            for name, rail in power["rail"].items()
            if rail.get("online", True)
        }
        total = float(power["tot"]["power"])
    except (KeyError, TypeError, ValueError, AttributeError):
        raise DataError(
            f"jtop returned power readings dpedge cannot read (jetson-stats 4 expected): {str(power)[:200]}"
        ) from None
    return PowerSample(rails, total, power["tot"].get("name") or "jtop's total (sum of the rails)")


class Meter(ABC):
    """Samples the rails while the body of `recording()` runs (the list it yields is filled
    when the body ends); `name` says which tool."""

    name: ClassVar[str]

    @abstractmethod
    def recording(self) -> AbstractContextManager[list[PowerSample]]:
        """A context whose body is the work to measure."""


class TegrastatsMeter(Meter):
    """One `tegrastats --interval MS` process per recording. Its lines are taken as they
    arrive (stdout line-buffered through stdbuf where present) and kept when they arrive
    while the body runs, so a line sampled before the model started is never counted."""

    name = "tegrastats"

    def __init__(self, executable: str, interval_ms: int) -> None:
        self.executable = executable
        self.interval_ms = interval_ms

    def command(self) -> list[str]:
        line_buffered = shutil.which("stdbuf")
        return ([line_buffered, "-oL"] if line_buffered else []) + [
            self.executable,
            "--interval",
            str(self.interval_ms),
        ]

    @contextmanager
    def recording(self) -> Iterator[list[PowerSample]]:
        process = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
        )
        arrived: list[tuple[float, str]] = []
        first = threading.Event()

        def read() -> None:
            for line in process.stdout:
                arrived.append((time.monotonic(), line))
                first.set()
            first.set()  # ended without a line: stop waiting

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        samples: list[PowerSample] = []
        try:
            if not first.wait(FIRST_LINE_SECONDS + 3 * self.interval_ms / 1000) or not arrived:
                self.stop(process)
                reason = process.stderr.read().strip().splitlines()
                raise ConfigError(
                    f"tegrastats printed nothing (exit {process.returncode}"
                    f"{': ' + reason[-1] if reason else ''}); run `tegrastats --interval {self.interval_ms}` to see why"
                )
            start = time.monotonic()
            yield samples
            end = time.monotonic()
        finally:
            self.stop(process)
            reader.join(timeout=5)
        window = [line for at, line in arrived if start <= at <= end]
        if not window:
            raise ConfigError(
                f"tegrastats printed no line during the {end - start:.1f} s measured: its output may be block-buffered "
                "(install coreutils' stdbuf), or raise --power-seconds"
            )
        samples.extend(parse_tegrastats(line) for line in window)

    @staticmethod
    def stop(process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class JtopMeter(Meter):
    """A jtop client (the jetson-stats service reads the rails; no root needed) polled in a
    thread while the body runs: each `ok()` is one fresh reading from the service."""

    name = "jtop"

    def __init__(self, interval_ms: int) -> None:
        self.interval_ms = interval_ms

    @contextmanager
    def recording(self) -> Iterator[list[PowerSample]]:
        from jtop import JtopException, jtop

        samples: list[PowerSample] = []
        readings: list[dict] = []
        stop = threading.Event()
        try:
            with jtop(interval=self.interval_ms / 1000) as client:

                def poll() -> None:
                    while not stop.is_set() and client.ok():
                        if not stop.is_set():
                            readings.append(client.power)

                poller = threading.Thread(target=poll, daemon=True)
                poller.start()
                try:
                    yield samples
                finally:
                    stop.set()
                    poller.join(timeout=5 + 3 * self.interval_ms / 1000)
        except JtopException as error:
            raise ConfigError(f"jtop: {str(error).splitlines()[0]}") from None
        if not readings:
            raise ConfigError("jtop gave no power reading during the measurement: raise --power-seconds")
        samples.extend(sample_from_jtop(reading) for reading in readings)


def check_meter(asked: str) -> str:
    """`--power`'s value, or the one-line error (dpedge profile and dpedge deploy)."""
    if asked not in METERS:
        raise ConfigError(f"--power takes {', '.join(METERS)}, got {asked!r}")
    return asked


def choose_meter(asked: str, backend: str, interval_ms: int) -> Meter | None:
    """The meter `--power` asks for. auto: tegrastats where it is on PATH, else jtop where
    jetson-stats is installed, else none; asking for one by name that is missing is an
    error. Never on orin-emu, whose latency is predicted."""
    check_meter(asked)
    if interval_ms < 10:
        raise ConfigError(f"--power-interval must be ≥ 10 ms, got {interval_ms}")
    if asked == "off":
        return None
    if backend == "orin-emu":
        if asked == "auto":
            return None
        raise ConfigError(
            "--power measures the device the models run on; orin-emu predicts latency on a CPU, so there is no power to read"
        )
    tegrastats = shutil.which("tegrastats")
    if asked in ("auto", "tegrastats") and tegrastats:
        return TegrastatsMeter(tegrastats, interval_ms)
    if asked == "tegrastats":
        raise ConfigError(
            "--power tegrastats: no tegrastats on PATH (it ships with Jetson Linux, in /usr/bin; this is not a Jetson?)"
        )
    try:
        import jtop  # noqa: F401
    except ImportError:
        if asked == "jtop":
            raise ConfigError(
                "--power jtop needs jetson-stats: sudo pip3 install -U jetson-stats (its jtop service must be running)"
            ) from None
        return None
    return JtopMeter(interval_ms)


@dataclass
class PowerPhase:
    """One recording: the rails sampled while `runs` inferences (or nothing) ran."""

    samples: list[PowerSample]
    run_ms: np.ndarray = field(default_factory=lambda: np.empty(0))  # each timed inference; empty while idle
    seconds: float = 0.0

    @property
    def mean_mw(self) -> float:
        return float(np.mean([s.total_mw for s in self.samples]))

    def rails_mean_mw(self) -> dict[str, float]:
        return {
            name: float(np.mean([s.rails[name][0] for s in self.samples if name in s.rails]))
            for name in self.samples[0].rails
        }

    def as_dict(self, idle_mw: float | None) -> dict:
        found = {
            "samples": len(self.samples),
            "seconds": self.seconds,
            "mean_mw": self.mean_mw,
            "total_of": self.samples[0].total_of,
            "rails_mean_mw": self.rails_mean_mw(),
            "trace_mw": [s.total_mw for s in self.samples],
        }
        if self.run_ms.size:
            latency = float(self.run_ms.mean())
            found.update(
                runs=int(self.run_ms.size),
                latency_ms_mean=latency,
                energy_mj=self.mean_mw * latency / 1000,  # mW × ms = µJ; /1000: mJ
                dynamic_energy_mj=None if idle_mw is None else (self.mean_mw - idle_mw) * latency / 1000,
            )
        return found


@dataclass
class PowerProfile:
    meter: str
    interval_ms: int
    idle: PowerPhase | None
    phases: dict[str, PowerPhase]  # "sparse" / "dense"

    def summary(self) -> dict:
        idle_mw = None if self.idle is None else self.idle.mean_mw
        roles = {role: phase.as_dict(idle_mw) for role, phase in self.phases.items()}
        found = {
            "label": f"MEASURED by {self.meter} on this device: module power sampled every {self.interval_ms} ms while each model ran "
            "alone, back to back on the samples; energy per inference = mean power × mean latency of that phase"
            + ("; dynamic = with the idle power subtracted" if idle_mw is not None else ""),
            "meter": self.meter,
            "interval_ms": self.interval_ms,
            "unit": "mW, mJ per inference",
            "idle": None if self.idle is None else self.idle.as_dict(None),
            **roles,
        }
        if {"sparse", "dense"} <= roles.keys():
            found["energy_ratio"] = roles["dense"]["energy_mj"] / roles["sparse"]["energy_mj"]
            if idle_mw is not None and roles["sparse"]["dynamic_energy_mj"] > 0:
                found["dynamic_energy_ratio"] = (
                    roles["dense"]["dynamic_energy_mj"] / roles["sparse"]["dynamic_energy_mj"]
                )
        return found


def run_for(
    runner: Callable[[np.ndarray], object],
    frames: np.ndarray,
    seconds: float,
    advance: Callable[[], object] | None = None,
) -> np.ndarray:
    """Run `runner` back to back on the samples (cycling) for at least `seconds` and at least
    once per sample; milliseconds of each run."""
    samples = [sample[None] for sample in frames]
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < len(samples) or time.perf_counter() - began < seconds:
        sample = samples[len(times) % len(samples)]
        start = time.perf_counter()
        runner(sample)
        times.append((time.perf_counter() - start) * 1000)
        if advance is not None:
            advance()
    return np.asarray(times)


def measure_power(
    meter: Meter,
    runners: dict[str, Callable[[np.ndarray], object]],
    frames: np.ndarray,
    seconds: float,
    idle_seconds: float,
    interval_ms: int,
    advance: Callable[[], object] | None = None,
) -> PowerProfile:
    """Idle first (when idle_seconds > 0: nothing runs), then each model in turn, each
    warmed by one untimed pass over the samples outside the recording."""
    idle = None
    if idle_seconds > 0:
        with meter.recording() as samples:
            time.sleep(idle_seconds)
        idle = PowerPhase(samples, seconds=idle_seconds)
    phases = {}
    for role, runner in runners.items():
        for sample in frames:
            runner(sample[None])
        began = time.perf_counter()
        with meter.recording() as samples:
            run_ms = run_for(runner, frames, seconds, advance)
        phases[role] = PowerPhase(samples, run_ms, time.perf_counter() - began)
    return PowerProfile(meter.name, interval_ms, idle, phases)
