"""Reading a trtexec run: its performance summary, the GPU it ran on, the command line that
names its engine, and the per-layer profile and layer information it exported
(`--exportProfile`, `--exportLayerInfo`)."""

from __future__ import annotations

import json
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from dynaprune_edge.cost.calibration import Gpu
from dynaprune_edge.errors import ConfigError

_SUMMARY = "=== Performance summary ==="
_LOG_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s*)+")  # "[02/26/2024-10:43:06] [I] "
_NUMBER = r"(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=?\s*" + _NUMBER + r"\s*ms")
_COMMAND = re.compile(
    r"^&&&& (?:RUNNING|PASSED|FAILED) TensorRT\.trtexec \[TensorRT v\d+\](?: \[b\d+\])? # (trtexec.*)$", re.MULTILINE
)
_TIMINGS = {
    "Latency": "latency_ms",
    "Enqueue Time": "enqueue_ms",
    "H2D Latency": "h2d_ms",
    "GPU Compute Time": "gpu_compute_ms",
    "D2H Latency": "d2h_ms",
}


def trtexec_version(text: str) -> str | None:
    """The TensorRT version a trtexec log names: "[TensorRT v8502]" → "8.5.2",
    "[TensorRT v100300]" → "10.3.0" (8.x packs it as major·1000, 10.x as major·10000)."""
    line = re.search(r"TensorRT version: (\d+\.\d+\.\d+)", text)
    if line:
        return line.group(1)
    packed = re.search(r"\[TensorRT v(\d+)\]", text)
    if not packed:
        return None
    number = int(packed.group(1))
    major, rest = divmod(number, 10000 if number >= 10000 else 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def parse_trtexec_summary(text: str) -> dict:
    """The last "=== Performance summary ===" of a trtexec log, so that a run on the device
    can be ingested: {"throughput_qps": float, "latency_ms": {...}, "gpu_compute_ms": {...},
    and, when the log has them, "enqueue_ms", "h2d_ms", "d2h_ms" and "tensorrt"}. Each timing
    is {"min", "max", "mean", "median", "p90", "p95", "p99"} in milliseconds, as far as the
    log gives them (older trtexec prints only p99). "Latency" is host latency: H2D + GPU
    compute + D2H."""
    start = text.rfind(_SUMMARY)
    if start < 0:
        raise ConfigError(
            "no '=== Performance summary ===' in this trtexec output (did the run finish? "
            "--skipInference and --buildOnly print none)"
        )
    summary: dict = {}
    version = trtexec_version(text)
    if version is not None:
        summary["tensorrt"] = version
    for raw in text[start + len(_SUMMARY) :].splitlines():
        line = _LOG_PREFIX.sub("", raw.strip())
        if line.startswith("==="):
            break
        name, colon, rest = line.partition(":")
        if not colon:
            continue
        if name == "Throughput":
            throughput = re.match(r"\s*" + _NUMBER + r"\s*qps", rest)
            if throughput:
                summary["throughput_qps"] = float(throughput.group(1))
        elif name in _TIMINGS:
            stats = {
                (f"p{match.group(2)}" if match.group(2) else match.group(1)): float(match.group(3))
                for match in _STAT.finditer(rest)
            }
            if stats:
                summary[_TIMINGS[name]] = stats
    if "throughput_qps" not in summary and "latency_ms" not in summary:
        raise ConfigError("the trtexec performance summary holds neither Throughput nor Latency (truncated log?)")
    figures = [
        summary.get("throughput_qps", 0.0),
        *(v for stats in summary.values() if isinstance(stats, dict) for v in stats.values()),
    ]
    if not all(math.isfinite(figure) for figure in figures):
        raise ConfigError("the trtexec performance summary holds a figure that is not a finite number (a damaged log?)")
    return summary


def trtexec_arguments(text: str) -> dict[str, str]:
    """The `--name=value` options of the trtexec command line the log records
    ("&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # trtexec --loadEngine=…"); empty
    when the log was trimmed of it."""
    line = _COMMAND.search(text)
    if not line:
        return {}
    try:
        words = shlex.split(line.group(1))
    except ValueError:  # an unbalanced quote in a hand-edited log
        words = line.group(1).split()
    return dict(word[2:].partition("=")[::2] for word in words[1:] if word.startswith("--"))


def parse_layer_profile(text: str) -> list[dict]:
    """The per-layer times of `trtexec --exportProfile=FILE`: a JSON list whose first entry
    is {"count": runs} and each other one a layer (fused: "conv + bias + PWN(relu)") with its
    total, average and (TensorRT ≥ 8.5) median ms over the profiled runs. Returns
    [{"name", "average_ms", "median_ms" (when present), "percentage"}], as TensorRT ordered
    them (execution order)."""
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"not a trtexec --exportProfile JSON: {error}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError("not a trtexec --exportProfile JSON: expected a list of objects")
    layers = []
    for entry in entries:
        if "name" not in entry:
            continue  # the {"count": N} header
        if "averageMs" not in entry:
            raise ConfigError(f"trtexec profile entry {entry['name']!r} has no averageMs")
        try:
            layer = {
                "name": str(entry["name"]),
                "average_ms": float(entry["averageMs"]),
                "percentage": float(entry.get("percentage", 0.0)),
            }
            if "medianMs" in entry:
                layer["median_ms"] = float(entry["medianMs"])
        except (TypeError, ValueError):
            raise ConfigError(f"trtexec profile entry {entry['name']!r} has a time that is not a number") from None
        layers.append(layer)
    if not layers:
        raise ConfigError("the trtexec profile lists no layers")
    return layers


def _beside(log: Path, exported: str | None, parse):
    """A file the trtexec command line exported, read from beside the log (None if absent)."""
    if not exported:
        return None
    path = log.parent / Path(exported).name
    if not path.is_file():
        return None
    try:
        return parse(path.read_text(errors="replace"))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def parse_layer_info(text: str) -> dict:
    """`trtexec --exportLayerInfo=FILE` JSON ({"Layers": [...], "Bindings": [...]});
    dynaprune_edge.cost.calibration reads the layers."""
    try:
        info = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"not a trtexec --exportLayerInfo JSON: {error}") from None
    if not isinstance(info, dict) or not isinstance(info.get("Layers"), list):
        raise ConfigError("not a trtexec --exportLayerInfo JSON (expected {'Layers': [...]})")
    return info


@dataclass(frozen=True)
class TrtexecRun:
    """One trtexec run, as its log records it: the performance summary, the GPU it ran on
    (its "=== Device Information ==="), the engine the command line built or loaded, and the
    per-layer profile and layer information it exported when those files sit beside the
    log. Every figure in it is a measurement on that GPU."""

    log: Path
    summary: dict
    engine: str | None
    layers: list[dict] | None
    gpu: Gpu | None = None  # None: the log was trimmed of its device section
    layer_info: dict | None = None

    @property
    def on_orin(self) -> bool:
        """Ran on an Orin, or on a device the log does not name (taken as the Orin it was meant for)."""
        return self.gpu is None or self.gpu.is_orin

    @property
    def device_name(self) -> str:
        return "the device (not named in the log)" if self.gpu is None else self.gpu.name

    @classmethod
    def read(cls, log: Path) -> TrtexecRun:
        try:
            text = log.read_text(errors="replace")
        except OSError as error:
            raise ConfigError(f"cannot read trtexec log {log}: {error.strerror or error}") from None
        try:
            summary = parse_trtexec_summary(text)
        except ConfigError as error:
            raise ConfigError(f"{log}: {error}") from None
        if "latency_ms" not in summary and "gpu_compute_ms" not in summary:
            raise ConfigError(f"{log}: the trtexec summary gives a throughput but no latency")
        arguments = trtexec_arguments(text)
        engine = arguments.get("loadEngine") or arguments.get("saveEngine")
        try:
            gpu = Gpu.from_trtexec_log(text)
        except ConfigError as error:
            raise ConfigError(f"{log}: {error}") from None
        return cls(
            log,
            summary,
            None if engine is None else Path(engine).name,
            _beside(log, arguments.get("exportProfile"), parse_layer_profile),
            gpu,
            _beside(log, arguments.get("exportLayerInfo"), parse_layer_info),
        )

    @property
    def gpu_ms(self) -> dict:
        """GPU compute time per inference (what the emulator predicts); host latency when
        an old or trimmed log has no GPU line."""
        return self.summary.get("gpu_compute_ms") or self.summary["latency_ms"]

    def as_dict(self) -> dict:
        return {
            "log": str(self.log),
            "engine": self.engine,
            "tensorrt": self.summary.get("tensorrt"),
            "summary": self.summary,
            "layers": self.layers,
            "gpu": None if self.gpu is None else self.gpu.as_dict(),
            "label": f"measured on {self.device_name} by trtexec",
        }
