"""The int8 entropy calibrator: real samples in, scales kept in a calibration cache."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from dynaprune_edge.files import atomic_write_bytes


def entropy_calibrator(trt: ModuleType, cuda: ModuleType, batches: list[dict[str, np.ndarray]] | None, cache: Path):
    """An IInt8EntropyCalibrator2 over `batches`, each one sample's inputs by name (the
    engine's batch is 1: the frames, and for a split bundle's engines the budget and what
    the router hands on), that reuses and writes `cache`; None: the cache alone."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches = batches or []
            self.index = 0
            self.device = (
                {name: cuda.mem_alloc(max(value.nbytes, 1)) for name, value in self.batches[0].items()}
                if self.batches
                else {}
            )
            self.dtypes: dict[
                str, np.dtype
            ] = {}  # the network's input types (`expect`), which may differ from the batches'

        def expect(self, dtypes: dict[str, np.dtype]) -> None:
            """The network's inputs by name and type: TensorRT 8 reads an int64 ONNX input (a
            handoff of the router's indices) as int32, and its batches must be copied so."""
            self.dtypes = dict(dtypes)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.index >= len(self.batches):
                return None
            batch = self.batches[self.index]
            for name in names:
                cuda.memcpy_htod(self.device[name], np.ascontiguousarray(batch[name], self.dtypes.get(name)))
            self.index += 1
            return [int(self.device[name]) for name in names]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            atomic_write_bytes(bytes(data), cache)

    return EntropyCalibrator()
