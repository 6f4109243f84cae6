"""The backend table and `load`, the one way to open an exported model."""

from __future__ import annotations

from pathlib import Path

from dynaprune_edge.cost.orin import Device
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.registry import Registry
from dynaprune_edge.runtime.base import Backend
from dynaprune_edge.runtime.onnxruntime import OrtBackend, OrtCudaBackend
from dynaprune_edge.runtime.orin_emu import OrinEmuBackend
from dynaprune_edge.runtime.tensorrt import TensorRTBackend

BACKENDS: Registry[type[Backend]] = Registry("backend", [OrtBackend, OrtCudaBackend, TensorRTBackend, OrinEmuBackend])


def load(
    path: Path,
    backend: str = "ort",
    threads: int | None = None,
    device: Device | None = None,
    layout: str | None = None,
    cuda_graph: bool = False,
) -> Backend:
    """Open `path` with a backend of `BACKENDS` ('ort', 'ort-cuda', 'trt', 'orin-emu');
    `device`: the emulated Orin (orin-emu only; default 64 GB, MAXN, fp16); `layout`: how
    onnxruntime runs a routed graph, "single" or "split" (ort and ort-cuda only; default:
    what the export measured faster); `cuda_graph`: run each TensorRT engine as a CUDA
    graph captured at load, where it can be (trt only; its describe() says which ran so)."""
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be ≥ 1, got {threads}")
    kind = BACKENDS.get(backend)
    if cuda_graph and kind is not TensorRTBackend:
        raise ConfigError(f"--cuda-graph captures TensorRT engines into CUDA graphs (--backend trt), not {backend}")
    if layout is not None:
        if not issubclass(kind, OrtBackend) or kind.emulated:
            raise ConfigError(f"--layout chooses how onnxruntime runs a routed graph (ort, ort-cuda), not {backend}")
        return kind.load(Path(path), threads, layout)
    if not kind.emulated:
        if device is not None:
            raise ConfigError(f"a module, power mode and precision to emulate apply to orin-emu, not to {backend}")
        return kind.load(Path(path), threads, cuda_graph=True) if cuda_graph else kind.load(Path(path), threads)
    return kind.load(Path(path), threads, device)
