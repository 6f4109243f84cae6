"""Building an exported graph into a TensorRT engine here, or saying how to build it on the Jetson."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.tensorrt.bundle import build_bundle
from dynaprune_edge.export.tensorrt.calibrator import entropy_calibrator
from dynaprune_edge.export.tensorrt.commands import WORKSPACE_MIB, trtexec_command, trtexec_profile_command
from dynaprune_edge.export.tensorrt.names import (
    JETPACK_TENSORRT,
    ORIN,
    calibration_cache_name,
    check_jetpack,
    check_precision,
    engine_name,
    timing_cache_name,
)
from dynaprune_edge.export.tensorrt.polygraphy import PARITY_SAMPLES, polygraphy_check
from dynaprune_edge.files import atomic_write_bytes, sha256_file
from dynaprune_edge.runtime.base import check_frames
from dynaprune_edge.runtime.frames import frames_path
from dynaprune_edge.runtime.manifest import LAYOUTS, Manifest, TensorSpec, manifest_path
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


@dataclass(frozen=True)
class TrtOutcome:
    engine_path: Path | None  # None: no engine was built here, `reason` says why
    command: str  # trtexec: builds and profiles the engine on the device, or profiles the one built
    reason: str | None  # one line; None when the engine was built
    polygraphy: str  # the onnxruntime-vs-TensorRT check: PASSED / FAILED / not checked, and why


def onnx_input_dynamic(onnx_path: Path, spec: TensorSpec) -> bool:
    """Whether the graph's input `spec` (the manifest's) has a symbolic or unknown
    dimension; ConfigError if the graph has no such input or fixes another shape for it
    (a graph the manifest does not describe: buffers would be sized wrong). Without the
    onnx package, False: `dpedge export` writes fixed (batch-1) shapes."""
    try:
        import onnx
    except ImportError:
        return False
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and its kin: not an ONNX file
        raise ConfigError(f"{onnx_path}: not an ONNX graph ({type(error).__name__})") from None
    for value in model.graph.input:
        if value.name == spec.name:
            dims = value.type.tensor_type.shape.dim
            fixed = [dim.dim_value if dim.HasField("dim_value") else None for dim in dims]
            if len(fixed) != len(spec.shape) or any(d is not None and d != s for d, s in zip(fixed, spec.shape)):
                shown = ["?" if d is None else d for d in fixed]
                raise ConfigError(
                    f"{onnx_path}: the graph's input {spec.name} is {shown}, its manifest's {spec.shape}: re-export the model"
                )
            return None in fixed
    raise ConfigError(f"{onnx_path}: the graph has no input {spec.name!r}")


def build_or_explain(
    onnx_path: Path,
    manifest: Manifest,
    precision: str,
    calibration: np.ndarray | None,
    timing_cache: Path | None,
    *,
    workspace_mib: int = WORKSPACE_MIB,
    jetpack: str = "5.1",
    layout: str | None = None,
) -> TrtOutcome:
    """Build `onnx_path` into a TensorRT engine for this GPU, or say why not and how to on
    the Jetson. layout: "single" (one engine of the whole graph) or "split" (a bundle: one
    engine for the router and one per branch, export/tensorrt/bundle.py); None: split for a
    pruned graph, single for a dense one.

    calibration: real validation samples (N, T, C, H, W) in physical units, as the graph
    takes them; int8 needs them unless its calibration cache
    (`calibration_cache_name`, beside the ONNX and named by its hash) exists, which is then
    reused as is: delete it to recalibrate. Other precisions use the first few as Polygraphy's inputs.
    timing_cache: loaded if present, saved after the build; default: one per device and
    TensorRT version beside the ONNX. jetpack: only names the engine in the trtexec command
    when TensorRT is not here (JetPack → TensorRT version, docs/design.md, "TensorRT and
    the Jetson AGX Orin")."""
    onnx_path = Path(onnx_path)
    check_precision(precision)
    if not onnx_path.is_file():
        raise ConfigError(f"{onnx_path}: no such ONNX file")
    if manifest.onnx != onnx_path.name:
        raise ConfigError(f"the manifest describes {manifest.onnx}, not {onnx_path.name}")
    check_jetpack(jetpack)
    if workspace_mib < 1:
        raise ConfigError(f"the TensorRT workspace must be ≥ 1 MiB, got {workspace_mib}")
    layout = ("single" if manifest.mode == "dense" else "split") if layout is None else layout
    if layout not in LAYOUTS or (layout == "split" and manifest.mode == "dense"):
        raise ConfigError(
            f"--layout must be single, or split for a pruned graph; got {layout} for a {manifest.mode} graph"
        )
    dynamic = onnx_input_dynamic(onnx_path, manifest.input)
    frames = None if calibration is None else check_frames(manifest, calibration)
    try:
        target = current_target()
    except TensorRTUnavailable as unavailable:
        if layout == "split":
            calibrated = (
                f" --frames {frames_path(onnx_path).name}" if precision == "int8" else ""
            )  # dpedge deploy copies it there
            command = f"dpedge engine {onnx_path.name} --precision {precision}{calibrated}"
            return TrtOutcome(
                None,
                command,
                f"{unavailable}; build the bundle on the Jetson, in the folder holding {onnx_path.name} and "
                f"{manifest_path(onnx_path).name}: {command}",
                "not checked: no engine was built here",
            )
        return _explain(
            onnx_path,
            manifest,
            precision,
            JETPACK_TENSORRT[jetpack],
            timing_cache,
            workspace_mib,
            str(unavailable),
            dynamic,
        )

    api = trt_api(target.trt_version)
    folder = onnx_path.parent
    engine_path = folder / engine_name(onnx_path.stem, target.device, target.trt_version, precision)
    timing_cache = Path(timing_cache) if timing_cache else folder / timing_cache_name(target.device, target.trt_version)
    if layout == "split":
        trt, cuda = import_tensorrt(), import_pycuda()

        def build_engine(graph: bytes, label: str, inputs: dict[str, list[int]], calibrator) -> bytes:
            return _build_engine(trt, api, graph, label, inputs, precision, calibrator, timing_cache, workspace_mib)

        bundle, verdict, commands = build_bundle(
            trt, cuda, api, target, onnx_path, manifest, precision, frames, build_engine
        )
        return TrtOutcome(bundle, commands, None, verdict)
    onnx_sha256 = sha256_file(onnx_path)
    calibration_cache = folder / calibration_cache_name(onnx_path.stem, onnx_sha256, target.trt_version)
    if precision == "int8" and frames is None and not calibration_cache.is_file():
        raise ConfigError(
            f"int8 needs calibration frames (real validation samples, shape (N, "
            f"{', '.join(map(str, manifest.input.shape[1:]))})) or an existing calibration cache {calibration_cache.name}"
        )
    trt, cuda = import_tensorrt(), import_pycuda()
    batches = None if frames is None else [{manifest.input.name: sample[None]} for sample in frames]
    calibrator = entropy_calibrator(trt, cuda, batches, calibration_cache) if precision == "int8" else None
    engine = _build_engine(
        trt,
        api,
        onnx_path,
        onnx_path.name,
        {manifest.input.name: manifest.input.shape},
        precision,
        calibrator,
        timing_cache,
        workspace_mib,
    )
    samples = None if frames is None else frames[:PARITY_SAMPLES]
    verdict = polygraphy_check(onnx_path, engine, engine_path.name, manifest, precision, samples)
    if verdict.startswith("FAILED"):
        raise ConfigError(f"{engine_path.name} not written: the engine's outputs differ from onnxruntime's ({verdict})")
    atomic_write_bytes(engine, engine_path)
    write_meta(  # last: the pair is complete once the metadata names the engine's hash
        engine_path,
        EngineMeta(
            device=target.device,
            compute_capability=target.compute_capability,
            trt_version=target.trt_version,
            precision=precision,
            onnx=onnx_path.name,
            onnx_sha256=onnx_sha256,
            manifest=manifest_path(onnx_path).name,
            engine_sha256=hashlib.sha256(engine).hexdigest(),
        ),
    )
    return TrtOutcome(engine_path, trtexec_profile_command(engine_path.name), None, verdict)


def _explain(
    onnx_path: Path,
    manifest: Manifest,
    precision: str,
    trt_version: str,
    timing_cache: Path | None,
    workspace_mib: int,
    unavailable: str,
    dynamic: bool,
) -> TrtOutcome:
    """The outcome where TensorRT is missing: the trtexec command for the Orin with
    TensorRT `trt_version` (`dynamic`: the graph's input has a free dimension)."""
    engine = engine_name(onnx_path.stem, ORIN, trt_version, precision)
    calibration = calibration_cache_name(onnx_path.stem, sha256_file(onnx_path), trt_version)
    has_calibration = (onnx_path.parent / calibration).is_file()
    command = trtexec_command(
        onnx_path.name,
        engine,
        precision,
        manifest.input.name,
        manifest.input.shape,
        dynamic=dynamic,
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
    graph: Path | bytes,
    label: str,
    expected: dict[str, list[int]],
    precision: str,
    calibrator,
    timing_cache: Path,
    workspace_mib: int,
) -> bytes:
    """The serialized engine of `graph` (a file, or serialized ONNX: a split bundle's graph),
    named `label` in errors, whose inputs must be `expected` (name → shape). A dynamic
    input's build profile is min = opt = max = its expected shape; like trtexec, only a
    dynamic input gets one (a static input is checked instead)."""
    logger = trt_logger(trt)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if api.explicit_batch_flag else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not (parser.parse(graph) if isinstance(graph, bytes) else parser.parse_from_file(str(graph))):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)] or ["no detail"]
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"TensorRT {trt.__version__} cannot parse {label}: {errors[0].strip()}{more}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    inputs = [network.get_input(i) for i in range(network.num_inputs)]
    if sorted(i.name for i in inputs) != sorted(expected):
        raise ConfigError(f"{label}: graph inputs are {[i.name for i in inputs]}, expected {list(expected)}")
    profile = None
    for tensor in inputs:
        shape, wanted = tuple(tensor.shape), tuple(expected[tensor.name])
        if -1 in shape:
            if profile is None:
                profile = builder.create_optimization_profile()
            profile.set_shape(tensor.name, wanted, wanted, wanted)
        elif shape != wanted:
            raise ConfigError(f"{label}: graph input {tensor.name} has shape {list(shape)}, expected {list(wanted)}")
    if profile is not None:
        config.add_optimization_profile(profile)
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        calibrator.expect({tensor.name: np.dtype(trt.nptype(tensor.dtype)) for tensor in inputs})
        config.int8_calibrator = calibrator
        if profile is not None:
            config.set_calibration_profile(profile)

    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    if cache is None or not config.set_timing_cache(cache, False):
        raise ConfigError(
            f"{timing_cache}: not a timing cache of this GPU and TensorRT {trt.__version__}; delete it or name another"
        )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ConfigError(f"TensorRT {trt.__version__} could not build an engine from {label} (its log above says why)")
    atomic_write_bytes(bytes(config.get_timing_cache().serialize()), timing_cache)
    return bytes(serialized)
