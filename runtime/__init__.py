"""Inference backends behind one interface (onnxruntime, TensorRT, Orin emulator).

Imports neither torch nor fvcore: this package goes onto the Jetson."""

# Importing the backend modules registers them: ort, ort-cuda; trt.
from dynaprune_edge.runtime import onnxruntime as _onnxruntime  # noqa: F401
from dynaprune_edge.runtime import tensorrt as _tensorrt  # noqa: F401
from dynaprune_edge.runtime.base import BACKENDS, Backend, RunResult, load
from dynaprune_edge.runtime.manifest import Manifest, read_manifest

__all__ = ["BACKENDS", "Backend", "Manifest", "RunResult", "load", "read_manifest"]
