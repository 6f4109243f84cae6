"""Inference backends behind one interface (load, run, describe): onnxruntime on CPU or
CUDA, and TensorRT engines.

Imports neither torch nor fvcore: this package goes onto the Jetson."""

from dynaprune_edge.runtime.backends import BACKENDS, load
from dynaprune_edge.runtime.base import Backend, RunResult
from dynaprune_edge.runtime.manifest import Manifest, read_manifest

__all__ = ["BACKENDS", "Backend", "Manifest", "RunResult", "load", "read_manifest"]
