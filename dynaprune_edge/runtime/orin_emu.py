"""`orin-emu`: onnxruntime on this CPU computes the outputs (forecast, FLOPs, the branch a
sample takes); the Jetson AGX Orin's latency for that sample is *emulated*, the roofline of
the sub-network it took (dynaprune_edge.cost.roofline) on the chosen module, power mode and
precision: for a pruned graph, as the split bundle dpedge builds for TensorRT runs it
(router engine, host dispatch, branch engine). Nothing this backend reports as latency is a
measurement."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from dynaprune_edge.cost.orin import Device
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.runtime.onnxruntime import OrtBackend

LATENCY_LABEL = "emulated (orin-emu roofline, not measured on a device)"


def import_onnx():
    try:
        import onnx
    except ImportError:
        raise ConfigError(
            "the orin-emu backend reads the graph with onnx: pip install 'dynaprune-edge[export]'"
        ) from None
    return onnx


class OrinEmuBackend(OrtBackend):
    name: ClassVar[str] = "orin-emu"
    emulated: ClassVar[bool] = True

    @classmethod
    def load(cls, path: Path, threads: int | None = None, device: Device | None = None) -> OrinEmuBackend:
        from dynaprune_edge.cost.roofline import BundleRoofline, GraphRoofline
        from dynaprune_edge.runtime.split import split_routed_graph

        backend = super().load(path, threads)
        backend.device_model = device or Device.chosen()
        graph = import_onnx().load(str(backend.path))
        backend.roofline = GraphRoofline(graph, backend.device_model)
        routes = len(backend.roofline.routes)
        if routes != len(backend.manifest.branches):
            raise ConfigError(
                f"{backend.path}: the graph has {routes} routes but its manifest {len(backend.manifest.branches)} branches: re-export it"
            )
        backend.layouts_ms = {"single If, lazy": backend.roofline.route_ms()}
        if backend.manifest.mode == "dense":
            backend.route_ms = np.asarray(backend.layouts_ms["single If, lazy"])
            return backend
        cut = split_routed_graph(graph)
        backend.roofline = BundleRoofline(
            cut.router, cut.branches, backend.device_model
        )  # what the trt backend runs: the report's kernels
        backend.layouts_ms |= {
            "split bundle": backend.roofline.route_ms(),
            "split bundle, CUDA graphs": backend.roofline.route_ms(cuda_graph=True),
            "single If, eager (every branch runs)": [backend.roofline.eager_ms()] * routes,
        }
        backend.route_ms = np.asarray(backend.layouts_ms["split bundle"])
        return backend

    def emulated_ms(self, branch: int) -> float:
        """The emulated Orin latency of branch number `branch` (GPU compute time, batch 1)."""
        return float(self.route_ms[branch])

    def device(self) -> str:
        return f"Jetson AGX Orin ({self.device_model.module}, {self.device_model.power_mode}, {self.device_model.precision}): emulated on {super().device()}"

    def describe(self) -> dict:
        """…, and each layout's emulated ms per branch: what dpedge's split bundle runs (the
        latency reported), with CUDA graphs, and the single-If engine run lazily (each
        sample its branch) or eagerly (every branch, as measured by others on TensorRT)."""
        layouts = {name: [round(ms, 4) for ms in per_branch] for name, per_branch in self.layouts_ms.items()}
        return {
            **super().describe(),
            "emulator": self.device_model.describe(),
            "latency": LATENCY_LABEL,
            "emulated_layouts_ms": layouts,
        }
