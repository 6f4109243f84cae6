"""The backend table and `load`, the one way to open an exported model."""

from __future__ import annotations

from pathlib import Path

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.registry import Registry
from dynaprune_edge.runtime.base import Backend
from dynaprune_edge.runtime.onnxruntime import OrtBackend, OrtCudaBackend
from dynaprune_edge.runtime.tensorrt import TensorRTBackend

BACKENDS: Registry[type[Backend]] = Registry("backend", [OrtBackend, OrtCudaBackend, TensorRTBackend])


def load(path: Path, backend: str = "ort", threads: int | None = None) -> Backend:
    """Open `path` with a backend of `BACKENDS` ('ort', 'ort-cuda', 'trt')."""
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be ≥ 1, got {threads}")
    return BACKENDS.get(backend).load(Path(path), threads)
