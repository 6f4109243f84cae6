"""The trtexec and polygraphy command lines that build, profile and check an engine."""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from dynaprune_edge.export.tensorrt.names import check_precision, parity_tolerances

WORKSPACE_MIB = 1024


def _profiling_args(engine: str) -> list[str]:
    """docs/design.md, "TensorRT and the Jetson AGX Orin": warm-up, many timed runs,
    per-run times exported; the per-layer profile in a separate run so that profiling does
    not inflate the timed runs, and each layer's tensors and parameters (what
    `dpedge profile --backend orin-emu --trtexec-log` reads to scale a run on another GPU
    to the Orin)."""
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
        "--profilingVerbosity=detailed",
        f"--exportLayerInfo={stem}.layers.json",
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
    second = [
        "polygraphy",
        "run",
        engine,
        "--model-type",
        "engine",
        "--trt",
        "--load-inputs",
        inputs,
        "--load-outputs",
        outputs,
        "--atol",
        str(atol),
        "--rtol",
        str(rtol),
    ]
    return f"{shlex.join(first)} && {shlex.join(second)}"
