"""The Polygraphy check of a built engine against onnxruntime on the same inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dynaprune_edge.export.tensorrt.commands import polygraphy_command
from dynaprune_edge.export.tensorrt.names import parity_tolerances
from dynaprune_edge.runtime.manifest import Manifest

PARITY_SAMPLES = 4


def polygraphy_check(
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
