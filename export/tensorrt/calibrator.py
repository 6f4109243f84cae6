"""The int8 entropy calibrator: real samples in, scales kept in a calibration cache."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np

from dynaprune_edge.files import atomic_write_bytes


def entropy_calibrator(trt: ModuleType, cuda: ModuleType, frames: np.ndarray | None, cache: Path):
    """An IInt8EntropyCalibrator2 over `frames`, one sample per batch (the engine's batch is
    1), that reuses and writes `cache`."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.frames = frames
            self.index = 0
            self.device = None if frames is None else cuda.mem_alloc(frames[:1].nbytes)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            if self.frames is None or self.index >= len(self.frames):
                return None
            cuda.memcpy_htod(self.device, np.ascontiguousarray(self.frames[self.index : self.index + 1]))
            self.index += 1
            return [int(self.device)]

        def read_calibration_cache(self) -> bytes | None:
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            atomic_write_bytes(bytes(data), cache)

    return EntropyCalibrator()
