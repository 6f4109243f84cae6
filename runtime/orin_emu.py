"""`orin-emu`: onnxruntime on this CPU computes the outputs (forecast, FLOPs, the branch a
sample takes); the Jetson AGX Orin's latency for that sample is *emulated*, the roofline of
the sub-network it took (dynaprune_edge.cost.roofline) on the chosen module, power mode and
precision. Nothing this backend reports as latency is a measurement."""

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
        raise ConfigError("the orin-emu backend reads the graph with onnx: pip install 'dynaprune-edge[export]'") from None
    return onnx


class OrinEmuBackend(OrtBackend):
    name: ClassVar[str] = "orin-emu"
    emulated: ClassVar[bool] = True

    @classmethod
    def load(cls, path: Path, threads: int | None = None, device: Device | None = None) -> "OrinEmuBackend":
        from dynaprune_edge.cost.roofline import GraphRoofline

        backend = super().load(path, threads)
        backend.device_model = device or Device.chosen()
        backend.roofline = GraphRoofline(import_onnx().load(str(backend.path)), backend.device_model)
        routes = len(backend.roofline.routes)
        if routes != len(backend.manifest.buckets):
            raise ConfigError(f"{backend.path}: the graph has {routes} routes but its manifest {len(backend.manifest.buckets)} branches: re-export it")
        backend.route_ms = np.asarray(backend.roofline.route_ms())
        return backend

    def emulated_ms(self, bucket: int) -> float:
        """The emulated Orin latency of branch `bucket` (GPU compute time, batch 1)."""
        return float(self.route_ms[bucket])

    def device(self) -> str:
        return f"Jetson AGX Orin ({self.device_model.module}, {self.device_model.power_mode}, {self.device_model.precision}): emulated on {super().device()}"

    def describe(self) -> dict:
        return {**super().describe(), "emulator": self.device_model.describe(), "latency": LATENCY_LABEL}
