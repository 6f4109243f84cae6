"""TensorRT engines from an exported graph (DESIGN.md §5–6).

Where `tensorrt` imports, `build_or_explain` builds the engine with the TensorRT Python API
(ONNX parser, explicit batch, fp32/fp16/int8, timing cache, workspace limit), writes it
atomically as `<model>.<device>.trt<version>.<precision>.engine` with its metadata file,
and checks it against onnxruntime with Polygraphy. Where it does not, nothing fails
silently: the outcome carries the reason and the exact `trtexec` command to run on the
Jetson instead.

The pure parts (names, command lines, tolerances, parsing trtexec's performance summary)
need no TensorRT; the TensorRT parts import it lazily and stay thin. No torch here.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.files import atomic_write_bytes
from dynaprune_edge.runtime.base import check_frames
from dynaprune_edge.runtime.manifest import Manifest, manifest_path
from dynaprune_edge.runtime.tensorrt import (
    EngineMeta,
    TensorRTUnavailable,
    TrtApi,
    current_target,
    import_pycuda,
    import_tensorrt,
    trt_api,
    trt_logger,
    write_meta,
)

PRECISIONS = ("fp32", "fp16", "int8")
WORKSPACE_MIB = 1024
# DESIGN.md §6. Names the engine in the trtexec command when TensorRT is not here to ask.
JETPACK_TENSORRT = {"5.1": "8.5.2", "6.0": "8.6.2", "6.1": "10.3.0", "6.2": "10.3.0"}
# The CUDA name of the Jetson AGX Orin's GPU (trtexec prints "Selected Device: Orin").
ORIN = "Orin"
# onnxruntime (fp32, CPU) vs the engine: (atol, rtol) per precision. `bucket` is an integer,
# so a sample routed differently fails at any of these.
PARITY_TOLERANCES = {"fp32": (1e-4, 1e-3), "fp16": (1e-2, 1e-2), "int8": (5e-2, 5e-2)}
PARITY_SAMPLES = 4


@dataclass(frozen=True)
class TrtOutcome:
    engine_path: Path | None  # None: no engine was built here, `reason` says why
    command: str  # trtexec: builds and profiles the engine on the device, or profiles the one built
    reason: str | None  # one line; None when the engine was built
    polygraphy: str  # the onnxruntime-vs-TensorRT check: PASSED / FAILED / not checked, and why


def device_slug(device: str) -> str:
    """"Orin" → "orin", "NVIDIA GeForce RTX 3090" → "nvidia-geforce-rtx-3090"."""
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    if not slug:
        raise ConfigError(f"cannot name an engine after the device {device!r}")
    return slug


def short_version(trt_version: str) -> str:
    """major.minor.patch: "8.5.2.2" → "8.5.2" (the build number does not go into file names)."""
    return ".".join(trt_version.split(".")[:3])


def engine_name(onnx_stem: str, device: str, trt_version: str, precision: str) -> str:
    return f"{onnx_stem}.{device_slug(device)}.trt{short_version(trt_version)}.{precision}.engine"


def timing_cache_name(device: str, trt_version: str) -> str:
    """Timing caches hold per-kernel timings of one GPU and TensorRT, for any model: one
    file per device and version, shared by the models in a folder."""
    return f"{device_slug(device)}.trt{short_version(trt_version)}.timing.cache"


def calibration_cache_name(onnx_stem: str, trt_version: str) -> str:
    """INT8 scales of one graph; portable across GPUs, not across TensorRT versions."""
    return f"{onnx_stem}.trt{short_version(trt_version)}.int8.calib"


def parity_tolerances(precision: str) -> tuple[float, float]:
    return PARITY_TOLERANCES[check_precision(precision)]


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    return precision


def _profiling_args(engine: str) -> list[str]:
    """DESIGN.md §6: warm-up, many timed runs, per-run times exported; the per-layer
    profile in a separate run so that profiling does not inflate the timed runs."""
    stem = engine.removesuffix(".engine")
    return [
        "--warmUp=500",
        "--iterations=500",
        "--duration=0",
        "--useSpinWait",
        f"--exportTimes={stem}.times.json",
        "--separateProfileRun",
        "--dumpProfile",
        f"--exportProfile={stem}.profile.json",
    ]


def trtexec_command(
    onnx: str,
    engine: str,
    precision: str,
    input_name: str,
    input_shape: Sequence[int],
    *,
    dynamic: bool,
    timing_cache: str,
    calibration_cache: str | None = None,
    workspace_mib: int = WORKSPACE_MIB,
) -> str:
    """The trtexec line that builds `engine` from `onnx` and profiles it (file names as given,
    to run in the folder holding them).

    `--shapes` only for a graph with dynamic input dimensions: trtexec turns it into a build
    profile and refuses one for a static graph ("Static model does not take explicit shapes").
    int8 without `calibration_cache` calibrates with placeholder scales: speed only."""
    args = ["trtexec", f"--onnx={onnx}", f"--saveEngine={engine}"]
    if check_precision(precision) == "fp16":
        args.append("--fp16")
    elif precision == "int8":
        args.append("--int8")
        if calibration_cache is not None:
            args.append(f"--calib={calibration_cache}")
    args.append(f"--timingCacheFile={timing_cache}")
    if dynamic:
        args.append(f"--shapes={input_name}:{'x'.join(str(d) for d in input_shape)}")
    args.append(f"--memPoolSize=workspace:{workspace_mib}")
    return shlex.join(args + _profiling_args(engine))


def trtexec_profile_command(engine: str) -> str:
    """Profiles an engine that is already built, with the same options as `trtexec_command`."""
    return shlex.join(["trtexec", f"--loadEngine={engine}"] + _profiling_args(engine))


def polygraphy_command(onnx: str, engine: str, precision: str) -> str:
    """Polygraphy's CLI check of a built engine against onnxruntime, in two runs over the
    same inputs: `polygraphy run model.onnx --trt` would build an engine of its own."""
    atol, rtol = parity_tolerances(precision)
    stem = onnx.removesuffix(".onnx")
    inputs, outputs = f"{stem}.parity-inputs.json", f"{stem}.ort-outputs.json"
    first = ["polygraphy", "run", onnx, "--onnxrt", "--save-inputs", inputs, "--save-outputs", outputs]
    second = ["polygraphy", "run", engine, "--model-type", "engine", "--trt", "--load-inputs", inputs,
              "--load-outputs", outputs, "--atol", str(atol), "--rtol", str(rtol)]
    return f"{shlex.join(first)} && {shlex.join(second)}"


_SUMMARY = "=== Performance summary ==="
_LOG_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s*)+")  # "[02/26/2024-10:43:06] [I] "
_NUMBER = r"(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=?\s*" + _NUMBER + r"\s*ms")
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
    for raw in text[start + len(_SUMMARY):].splitlines():
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
    return summary


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def onnx_input_dynamic(onnx_path: Path, input_name: str) -> bool:
    """Whether the graph's input has a symbolic or unknown dimension. Without the onnx
    package, False: `dpedge export` writes fixed (batch-1) shapes."""
    try:
        import onnx
    except ImportError:
        return False
    model = onnx.load(str(onnx_path), load_external_data=False)
    for value in model.graph.input:
        if value.name == input_name:
            return any(not dim.HasField("dim_value") for dim in value.type.tensor_type.shape.dim)
    raise ConfigError(f"{onnx_path}: the graph has no input {input_name!r}")


def build_or_explain(
    onnx_path: Path,
    manifest: Manifest,
    precision: str,
    calibration: np.ndarray | None,
    timing_cache: Path | None,
    *,
    workspace_mib: int = WORKSPACE_MIB,
    jetpack: str = "5.1",
) -> TrtOutcome:
    """Build `onnx_path` into a TensorRT engine for this GPU, or say why not and how to on
    the Jetson.

    calibration: real validation samples (N, T, C, H, W) in the graph's units
    (`Manifest.normalize` applied); int8 needs them unless its calibration cache
    (`calibration_cache_name`, beside the ONNX) exists, which is then reused as is: delete
    it to recalibrate. Other precisions use the first few as Polygraphy's inputs.
    timing_cache: loaded if present, saved after the build; default: one per device and
    TensorRT version beside the ONNX. jetpack: only names the engine in the trtexec command
    when TensorRT is not here (JetPack → TensorRT version, DESIGN.md §6)."""
    onnx_path = Path(onnx_path)
    check_precision(precision)
    if not onnx_path.is_file():
        raise ConfigError(f"{onnx_path}: no such ONNX file")
    if manifest.onnx != onnx_path.name:
        raise ConfigError(f"the manifest describes {manifest.onnx}, not {onnx_path.name}")
    if jetpack not in JETPACK_TENSORRT:
        raise ConfigError(f"unknown JetPack {jetpack!r}; known: {', '.join(JETPACK_TENSORRT)}")
    if workspace_mib < 1:
        raise ConfigError(f"the TensorRT workspace must be ≥ 1 MiB, got {workspace_mib}")
    frames = None if calibration is None else check_frames(manifest, calibration)
    try:
        target = current_target()
    except TensorRTUnavailable as unavailable:
        return _explain(onnx_path, manifest, precision, JETPACK_TENSORRT[jetpack], timing_cache, workspace_mib, str(unavailable))

    api = trt_api(target.trt_version)
    folder = onnx_path.parent
    engine_path = folder / engine_name(onnx_path.stem, target.device, target.trt_version, precision)
    timing_cache = Path(timing_cache) if timing_cache else folder / timing_cache_name(target.device, target.trt_version)
    calibration_cache = folder / calibration_cache_name(onnx_path.stem, target.trt_version)
    if precision == "int8" and frames is None and not calibration_cache.is_file():
        raise ConfigError(
            f"int8 needs calibration frames (real validation samples, shape (N, "
            f"{', '.join(map(str, manifest.input.shape[1:]))})) or an existing calibration cache {calibration_cache.name}"
        )
    trt, cuda = import_tensorrt(), import_pycuda()
    calibrator = _entropy_calibrator(trt, cuda, frames, calibration_cache) if precision == "int8" else None
    engine = _build_engine(trt, api, onnx_path, manifest, precision, calibrator, timing_cache, workspace_mib)
    atomic_write_bytes(engine, engine_path)
    write_meta(
        engine_path,
        EngineMeta(
            device=target.device,
            compute_capability=target.compute_capability,
            trt_version=target.trt_version,
            precision=precision,
            onnx=onnx_path.name,
            onnx_sha256=sha256_file(onnx_path),
            manifest=manifest_path(onnx_path).name,
        ),
    )
    samples = None if frames is None else frames[:PARITY_SAMPLES]
    return TrtOutcome(
        engine_path,
        trtexec_profile_command(engine_path.name),
        None,
        _polygraphy_check(onnx_path, engine, engine_path.name, manifest, precision, samples),
    )


def _explain(
    onnx_path: Path,
    manifest: Manifest,
    precision: str,
    trt_version: str,
    timing_cache: Path | None,
    workspace_mib: int,
    unavailable: str,
) -> TrtOutcome:
    """The outcome where TensorRT is missing: the trtexec command for the Orin with
    TensorRT `trt_version`."""
    engine = engine_name(onnx_path.stem, ORIN, trt_version, precision)
    calibration = calibration_cache_name(onnx_path.stem, trt_version)
    has_calibration = (onnx_path.parent / calibration).is_file()
    command = trtexec_command(
        onnx_path.name,
        engine,
        precision,
        manifest.input.name,
        manifest.input.shape,
        dynamic=onnx_input_dynamic(onnx_path, manifest.input.name),
        timing_cache=Path(timing_cache).name if timing_cache else timing_cache_name(ORIN, trt_version),
        calibration_cache=calibration if has_calibration else None,
        workspace_mib=workspace_mib,
    )
    where = f"in the folder holding {onnx_path.name} and {manifest_path(onnx_path).name}"
    if precision == "int8" and not has_calibration:
        where += f" (without {calibration}, which a --trt build with calibration frames writes, int8 scales are placeholders: speed only)"
    return TrtOutcome(
        None,
        command,
        f"{unavailable}; build the engine on the Jetson, {where}: {command}",
        "not checked: no engine was built here",
    )


def _build_engine(
    trt: ModuleType,
    api: TrtApi,
    onnx_path: Path,
    manifest: Manifest,
    precision: str,
    calibrator,
    timing_cache: Path,
    workspace_mib: int,
) -> bytes:
    """The serialized engine. The input's build profile is min = opt = max = the manifest's
    shape; like trtexec, only a dynamic input gets one (a static input is checked instead)."""
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if api.explicit_batch_flag else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or ["no detail"]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"TensorRT {trt.__version__} cannot parse {onnx_path.name}: {errors[0].strip()}{more}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    expected = tuple(manifest.input.shape)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if [i.name for i in inputs] != [manifest.input.name]:
        raise ConfigError(f"{onnx_path.name}: graph inputs are {[i.name for i in inputs]}, its manifest expects [{manifest.input.name}]")
    shape = tuple(inputs[0].shape)
    profile = None
    if -1 in shape:
        profile = builder.create_optimization_profile()
        profile.set_shape(manifest.input.name, expected, expected, expected)
        config.add_optimization_profile(profile)
    elif shape != expected:
        raise ConfigError(f"{onnx_path.name}: graph input {manifest.input.name} has shape {list(shape)}, its manifest says {list(expected)}")
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        if profile is not None:
            config.set_calibration_profile(profile)

    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    if cache is None or not config.set_timing_cache(cache, False):
        raise ConfigError(f"{timing_cache}: not a timing cache of this GPU and TensorRT {trt.__version__}; delete it or name another")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConfigError(f"TensorRT {trt.__version__} could not build an engine from {onnx_path.name} (its log above says why)")
    atomic_write_bytes(bytes(config.get_timing_cache().serialize()), timing_cache)
    return bytes(serialized)


def _entropy_calibrator(trt: ModuleType, cuda: ModuleType, frames: np.ndarray | None, cache: Path):
    """An IInt8EntropyCalibrator2 over `frames`, one sample per batch (the engine's batch is
    1), that reuses and writes `cache`."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.frames = frames
            self.index = 0
            self.device = None if frames is None else cuda.mem_alloc(frames[:1].nbytes)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.frames is None or self.index >= len(self.frames):
                return None
            cuda.memcpy_htod(self.device, np.ascontiguousarray(self.frames[self.index : self.index + 1]))
            self.index += 1
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            atomic_write_bytes(bytes(data), cache)

    return EntropyCalibrator()


def _polygraphy_check(
    onnx_path: Path, engine: bytes, engine_file: str, manifest: Manifest, precision: str, samples: np.ndarray | None
) -> str:
    """Polygraphy runs the graph on onnxruntime (CPU) and the built engine on the same
    inputs (`samples`, or Polygraphy's seeded random ones) and compares every output."""
    atol, rtol = parity_tolerances(precision)
    fallback = polygraphy_command(onnx_path.name, engine_file, precision)
    try:
        from polygraphy.backend.onnxrt import OnnxrtRunner, SessionFromOnnx
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner
        from polygraphy.comparator import Comparator, CompareFunc
    except ImportError as error:
        return f"not checked: polygraphy is not installed here ({error}); check with: {fallback}"
    inputs = "random" if samples is None else f"{len(samples)} real"
    try:
        runners = [
            OnnxrtRunner(SessionFromOnnx(str(onnx_path), providers=["CPUExecutionProvider"])),
            TrtRunner(EngineFromBytes(engine)),
        ]
        feeds = None if samples is None else [{manifest.input.name: sample[None]} for sample in samples]
        results = Comparator.run(runners, data_loader=feeds)
        passed = bool(Comparator.compare_accuracy(results, compare_func=CompareFunc.simple(atol=atol, rtol=rtol)))
    # Polygraphy reports its own failures (missing onnxruntime, runner errors) as plain
    # exceptions; the engine is built either way and the user needs the one line.
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"not checked: polygraphy failed ({first}); check with: {fallback}"
    verdict = "PASSED" if passed else "FAILED (polygraphy's log above lists the outputs that differ)"
    return f"{verdict}: onnxruntime vs {engine_file} on {inputs} inputs, atol {atol}, rtol {rtol}"
