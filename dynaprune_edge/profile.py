"""`dpedge profile`: which files to run (the model, its dense twin), on which samples, and
with which meters. The measurement is dynaprune_edge.profiling.session, the report
dynaprune_edge.profiling.report; this module finds their inputs.

Samples are real windows of the data the model was trained on (the manifest records its
DataConfig; `--data` points at another copy), never random noise: the router's masks
depend on what is in the frames."""

from __future__ import annotations

import math
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynaprune_edge.checks import is_number
from dynaprune_edge.cost.calibration import scale_to_orin
from dynaprune_edge.cost.orin import Device, emulated_device
from dynaprune_edge.errors import ConfigError, DataError, DpedgeError
from dynaprune_edge.profiling.power import choose_meter, measure_power
from dynaprune_edge.profiling.session import Profile, profile
from dynaprune_edge.profiling.trtexec import TrtexecRun
from dynaprune_edge.runtime import BACKENDS, Manifest, load, read_manifest
from dynaprune_edge.runtime.frames import load_frames
from dynaprune_edge.runtime.jetson import current_power_mode
from dynaprune_edge.runtime.manifest import LAYOUTS, manifest_path
from dynaprune_edge.runtime.tensorrt import BUNDLE_SUFFIX, engine_graph, is_bundle, read_bundle, read_meta

ENGINE_SUFFIX = ".engine"


@dataclass(frozen=True)
class Settings:
    backend: str = "ort"
    module: str | None = None
    power_mode: str | None = None
    precision: str | None = None
    data: str | None = None
    samples: int = 64
    warmup: int = 1
    runs: int = 300
    repeat: int = 1
    threads: int | None = 1
    calibrate: str | None = None  # "cuda": orin-emu scales trtexec runs on this machine's NVIDIA GPU to the Orin
    frames: str | None = None  # a frames file (runtime/frames.py) instead of reading the data: a device without torch
    power: str = "auto"  # profiling.power.METERS
    power_seconds: float = 5.0  # each model's power phase
    idle_seconds: float = 3.0  # the idle recording before them; 0: none
    power_interval: int = 100  # ms between rail readings
    budget: float | None = None  # a width-routed model's run-time budget (None: the trained one)
    layout: str | None = (
        None  # ort/ort-cuda: a routed graph as one graph or split (None: what its export measured faster)
    )
    cuda_graph: bool = False  # trt: each engine as a CUDA graph captured at load, where it can be

    def __post_init__(self) -> None:
        BACKENDS.get(self.backend)
        if self.calibrate is not None and (self.calibrate != "cuda" or self.backend != "orin-emu"):
            raise ConfigError(
                f"--calibrate takes cuda, with --backend orin-emu, got --calibrate {self.calibrate} on {self.backend}"
            )
        for name, least in (("samples", 1), ("runs", 1), ("repeat", 1), ("warmup", 0)):
            if getattr(self, name) < least:
                raise ConfigError(f"--{name} must be ≥ {least}, got {getattr(self, name)}")
        if self.frames is not None and self.data is not None:
            raise ConfigError(
                "--frames holds the windows to profile on; --data reads them from data files: give one of them"
            )
        if self.budget is not None and not (is_number(self.budget) and 0 < self.budget <= 1):
            raise ConfigError(f"--budget must be in (0, 1], got {self.budget}")
        if self.layout is not None and (self.layout not in LAYOUTS or self.backend not in ("ort", "ort-cuda")):
            raise ConfigError(
                f"--layout takes {' or '.join(LAYOUTS)}, with --backend ort or ort-cuda, got --layout {self.layout} on {self.backend}"
            )
        if self.cuda_graph and self.backend != "trt":
            raise ConfigError(
                f"--cuda-graph captures TensorRT engines into CUDA graphs, with --backend trt, not {self.backend}"
            )
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be ≥ 1, got {self.threads}")
        if not 0 < self.power_seconds < math.inf:
            raise ConfigError(f"--power-seconds must be > 0 and finite, got {self.power_seconds}")
        if not 0 <= self.idle_seconds < math.inf:
            raise ConfigError(f"--idle-seconds must be ≥ 0 and finite, got {self.idle_seconds}")
        self.device()  # on trt, --power-mode is the device's own, checked there (runtime.jetson)

    def device(self) -> Device | None:
        """The Orin orin-emu emulates; None on the other backends, which refuse its options."""
        device_sets = ("--power-mode",) if self.backend == "trt" else ()
        return emulated_device(
            self.backend == "orin-emu", "--backend", self.module, self.power_mode, self.precision, device_sets
        )

    def as_dict(self) -> dict:
        settings = {k: v for k, v in self.__dict__.items() if v is not None}
        device = self.device()
        return (
            settings
            if device is None
            else {**settings, "module": device.module, "power_mode": device.power_mode, "precision": device.precision}
        )


def model_files(model: Path, backend: str) -> tuple[Path, Path]:
    """(the model's ONNX, the file the backend opens): an .onnx for onnxruntime and
    orin-emu, an .engine (and the ONNX its metadata names) for trt."""
    if not model.is_file():
        raise ConfigError(f"{model}: no such file")
    if model.suffix == ".pt":
        raise ConfigError(f"{model}: profile runs an exported model; export it first: dpedge export {model}")
    if model.suffix == ENGINE_SUFFIX or is_bundle(model):
        if backend != "trt":
            raise ConfigError(
                f"{model.name} is a TensorRT engine: profile it with --backend trt (on the device it was built on)"
            )
        return engine_graph(model, read_bundle(model) if is_bundle(model) else read_meta(model)), model
    if model.suffix != ".onnx":
        raise ConfigError(
            f"{model}: expected an exported .onnx (or a TensorRT .engine or .bundle.json), got {model.suffix or 'no suffix'}"
        )
    if backend == "trt":
        raise ConfigError(
            f"--backend trt runs a TensorRT engine, not {model.name}: build one with dpedge engine {model.name} and pass the "
            ".engine (or, for a pruned model, the .bundle.json)"
        )
    return model, model


def dense_twin(onnx_path: Path, opened: Path, manifest: Manifest, log=print) -> Path:
    """The file of the dense twin to open beside `opened`: NAME.dense.onnx (or its engine),
    exported now from model.pt beside it when missing; a dense model is its own twin."""
    if manifest.mode == "dense":
        return opened
    twin_onnx = onnx_path.with_name(onnx_path.stem + ".dense.onnx")
    if opened.suffix == ENGINE_SUFFIX or is_bundle(
        opened
    ):  # the twin is one engine beside the pruned model's engine or bundle
        twin = opened.with_name(
            opened.name.replace(onnx_path.stem, twin_onnx.stem, 1)
            .removesuffix(BUNDLE_SUFFIX)
            .removesuffix(ENGINE_SUFFIX)
            + ENGINE_SUFFIX
        )
        if not twin.is_file():
            raise ConfigError(
                f"no dense twin engine {twin.name} beside {opened.name}: build it on this device from {twin_onnx.name} with dpedge export --trt"
            )
        return twin
    if twin_onnx.is_file():
        return twin_onnx
    checkpoint = onnx_path.parent / "model.pt"
    if not checkpoint.is_file():
        raise ConfigError(
            f"no dense twin {twin_onnx.name} beside {onnx_path.name} and no model.pt to export it from: dpedge export MODEL.pt --dense -o {twin_onnx}"
        )
    from dynaprune_edge.export.exporter import Exporter, ExportOptions

    log(f"exporting the dense twin {twin_onnx} from {checkpoint}")
    Exporter(checkpoint, ExportOptions(dense=True), log=log).run(twin_onnx)
    return twin_onnx


def spread(available: int, wanted: int) -> np.ndarray:
    """Up to `wanted` indices evenly spread over `available` windows (calm and busy periods alike)."""
    return np.unique(np.linspace(0, available - 1, min(wanted, available)).round().astype(int))


def profile_frames(manifest: Manifest, onnx_path: Path, data: str | None, samples: int) -> tuple[np.ndarray, str]:
    """Up to `samples` validation windows, evenly spread over the split (calm and busy
    periods alike), in physical units as the graph takes them; and what they are."""
    from dynaprune_edge.data import DataConfig, load_dataset

    config, recorded_in = manifest.data, str(manifest_path(onnx_path))
    if not config:  # exported before manifests recorded their data
        checkpoint = onnx_path.parent / "model.pt"
        if not checkpoint.is_file():
            raise ConfigError(
                f"{onnx_path.name}'s manifest does not say what data the model was trained on: pass --data, or re-export it"
            )
        from dynaprune_edge.training import load_model

        config, recorded_in = load_model(checkpoint).data_config.to_dict(), str(checkpoint)
    try:
        config = DataConfig.from_dict({**config, **({} if data is None else {"path": data})})
    except TypeError as error:
        raise ConfigError(f"{recorded_in}: damaged record of the training data ({error})") from None
    try:
        loaded = load_dataset(config, recorded_in=None if data is not None else recorded_in)
    except DataError as error:
        raise DataError(f"{error} (the data {onnx_path.name} was trained on; --data points at another copy)") from None
    val = loaded.val
    if len(val) == 0:
        raise ConfigError(f"{loaded.describe()}: no validation windows to profile on")
    picks = spread(len(val), samples)
    windows = np.stack([val[int(i)][0].numpy() for i in picks])
    frames = loaded.normalizer.denormalize(windows)  # physical units, as the graph takes them
    kind = "synthetic" if loaded.is_synthetic else f"real: {loaded.source}"
    return frames, f"{len(picks)} of {len(val)} validation windows of {config.name} ({kind})"


ENGINE_PRECISION = re.compile(r"\.trt[0-9.]+\.(fp32|fp16|int8)\.engine$")  # names.engine_name's last fields


def trtexec_runs(onnx_path: Path, logs: dict[str, Path], settings: Settings) -> dict[str, TrtexecRun]:
    """The trtexec runs of the pruned ("sparse") and dense twin's ("dense") engines, each
    refused when its command line ran an engine of another model (or of the other twin),
    when orin-emu would emulate another precision than the engine ran at, or when a run on
    another GPU, which orin-emu scales to the Orin, lacks the files the scaling reads."""
    runs = {}
    stem = onnx_path.stem
    for role, log in logs.items():
        found = TrtexecRun.read(log)
        if not found.on_orin and settings.backend == "orin-emu":
            if found.layers is None or found.layer_info is None:
                raise ConfigError(
                    f"{log} ran on {found.gpu.name}: to scale it to the Orin, the --exportProfile and --exportLayerInfo "
                    "files its command line names must sit beside it (the line `dpedge export --trt` prints writes both)"
                )
            _ = found.gpu.rates  # a GPU without known peak rates fails here, before any work
        if found.engine is not None:
            expected = f"{stem}.dense." if role == "dense" else f"{stem}."
            other_twin = role == "sparse" and found.engine.startswith(f"{stem}.dense.")
            if not found.engine.startswith(expected) or other_twin:
                option = "--dense-trtexec-log" if role == "dense" else "--trtexec-log"
                raise ConfigError(
                    f"{log}: trtexec ran {found.engine}, not an engine of {expected.removesuffix('.')}.onnx ({option})"
                )
            precision = ENGINE_PRECISION.search(found.engine)
            device = settings.device()
            if precision and device is not None and precision.group(1) != device.precision:
                raise ConfigError(
                    f"{found.engine} ran at {precision.group(1)} but orin-emu would emulate {device.precision}: "
                    f"pass --precision {precision.group(1)}"
                )
        runs[role] = found
    return runs


def find_trtexec() -> str:
    found = shutil.which("trtexec")
    if found is None:
        raise ConfigError(
            "--calibrate cuda runs trtexec on this machine's NVIDIA GPU, and trtexec is not on PATH "
            "(TensorRT's bin folder holds it; pip's tensorrt wheels do not)"
        )
    return found


def run_trtexec_here(
    trtexec: str, onnx_paths: dict[str, Path], manifest: Manifest, precision: str, log
) -> dict[str, Path]:
    """`--calibrate cuda`: build and profile each ONNX ("sparse"/"dense") on this machine's
    GPU with the trtexec line `dpedge export --trt` prints (per-layer profile and layer
    information included), the output kept as NAME.calibrate.log beside it; the logs, as
    `--trtexec-log` would name them."""
    from dynaprune_edge.export.tensorrt.build import onnx_input_dynamic
    from dynaprune_edge.export.tensorrt.commands import trtexec_command
    from dynaprune_edge.files import atomic_write_text

    logs = {}
    for role, onnx in onnx_paths.items():
        line = trtexec_command(
            onnx.name,
            f"{onnx.stem}.calibrate.{precision}.engine",
            precision,
            manifest.input.name,
            manifest.input.shape,
            dynamic=onnx_input_dynamic(onnx, manifest.input),
            timing_cache=f"{onnx.stem}.calibrate.timing.cache",
        )
        command = [trtexec, *shlex.split(line)[1:]]
        log(f"running on this GPU, in {onnx.parent}: {shlex.join(command)}")
        done = subprocess.run(command, cwd=onnx.parent, capture_output=True, text=True)
        kept = onnx.with_name(f"{onnx.stem}.calibrate.log")
        atomic_write_text(done.stdout + done.stderr, kept)
        if done.returncode != 0:
            raise ConfigError(f"trtexec failed on {onnx.name} (exit {done.returncode}); its output is in {kept}")
        logs[role] = kept
    return logs


def run(
    model: Path,
    settings: Settings,
    trtexec_logs: dict[str, Path] | None = None,
    log=lambda line: print(line, file=sys.stderr),
) -> Profile:
    """Profile `model` against its dense twin; `trtexec_logs` ("sparse"/"dense" → log):
    trtexec runs of their engines on the device, reported beside (see trtexec_runs)."""
    from dynaprune_edge.progress import progress_bar

    if settings.backend == "trt" and settings.power_mode is not None:
        current_power_mode(settings.power_mode)  # the device must be in the mode asked for
    meter = choose_meter(settings.power, settings.backend, settings.power_interval)
    onnx_path, opened = model_files(model, settings.backend)
    if settings.calibrate and trtexec_logs:
        raise ConfigError(
            "--calibrate cuda makes the trtexec runs itself: drop --trtexec-log/--dense-trtexec-log, or --calibrate"
        )
    trtexec = find_trtexec() if settings.calibrate else None
    device_runs = trtexec_runs(onnx_path, trtexec_logs or {}, settings)
    manifest = read_manifest(onnx_path)
    twin = dense_twin(onnx_path, opened, manifest, log)
    if trtexec is not None:
        logs = run_trtexec_here(
            trtexec, {"sparse": onnx_path, "dense": twin}, manifest, settings.device().precision, log
        )
        device_runs = trtexec_runs(onnx_path, logs, settings)
    if settings.frames is not None:
        frames, described = load_frames(Path(settings.frames), manifest)
        frames = frames[spread(len(frames), settings.samples)]
    else:
        frames, described = profile_frames(manifest, onnx_path, settings.data, settings.samples)
    sparse = load(opened, settings.backend, settings.threads, settings.device(), settings.layout, settings.cuda_graph)
    sparse.set_budget(settings.budget)
    dense = load(twin, settings.backend, settings.threads, settings.device(), cuda_graph=settings.cuda_graph)
    if settings.cuda_graph:  # each engine that runs eagerly instead, and why: once (a dense model is its own twin)
        for note in dict.fromkeys(sparse.cuda_graph_notes + dense.cuda_graph_notes):
            log(note)
    runs = 1 if sparse.emulated else max(settings.runs, len(frames))
    with progress_bar(transient=True) as progress:
        task = progress.add_task(f"profiling on {settings.backend}", total=runs)
        result = profile(
            sparse,
            dense,
            frames,
            settings.runs,
            settings.warmup,
            described,
            onnx_path,
            lambda: progress.advance(task),
            settings.repeat,
        )
    result.trtexec = device_runs
    if meter is None and settings.power == "auto" and settings.backend == "trt":
        log("power not measured: neither tegrastats nor jtop (jetson-stats) found on this machine")
    if meter is not None:
        with progress_bar(transient=True) as progress:
            task = progress.add_task(
                f"power with {meter.name}: idle {settings.idle_seconds:g} s, then {settings.power_seconds:g} s a model",
                total=None,
            )
            try:
                result.power = measure_power(
                    meter,
                    {"sparse": sparse.run_one, "dense": dense.run_one},
                    frames,
                    settings.power_seconds,
                    settings.idle_seconds,
                    settings.power_interval,
                    lambda: progress.advance(task),
                )
            except DpedgeError as error:
                if settings.power != "auto":
                    raise
                log(f"power not measured: {error}")
    device = settings.device()
    if device is not None:
        result.calibrations = {
            role: scale_to_orin(run.layers, run.layer_info, run.gpu, device, run.gpu_ms["median"])
            for role, run in device_runs.items()
            if not run.on_orin
        }
    return result
