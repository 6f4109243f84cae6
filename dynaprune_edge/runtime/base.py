"""One small interface for every inference backend: load, run, describe.

A backend runs the exported graph one sample at a time (each sample routes to its own
sub-network); `run` takes a batch of frames in the data's physical units, checks it, and
returns the forecasts, in the same units, together with the FLOPs and sub-network each
sample used."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from dynaprune_edge.checks import is_number
from dynaprune_edge.errors import ConfigError, DataError
from dynaprune_edge.runtime.manifest import BUDGET, Manifest


@dataclass
class RunResult:
    """What `Backend.run` returns for a batch of B samples: the forecasts, the FLOPs each
    sample's sub-network executed, and the branch each sample took (an index into
    `Manifest.branches`)."""

    forecast: np.ndarray  # (B, frames_out, C, H, W) float32, the data's physical units
    flops: np.ndarray  # (B,) FLOPs each sample's sub-network executed
    branch: np.ndarray  # (B,) int64 index into Manifest.branches


def check_frames(manifest: Manifest, frames: np.ndarray) -> np.ndarray:
    """The batch (B, frames_in, C, H, W) as contiguous float32, or a DataError saying what
    is wrong with it (type, dtype, shape, non-finite values)."""
    if not isinstance(frames, np.ndarray):
        raise DataError(f"frames must be a numpy array, got {type(frames).__name__}")
    if frames.dtype not in (np.float32, np.float64, np.float16):
        raise DataError(f"frames must be floating point (float32), got {frames.dtype}")
    expected = manifest.input.shape[1:]
    if frames.ndim != 5 or list(frames.shape[1:]) != list(expected):
        shape = "×".join(map(str, frames.shape))
        raise DataError(f"frames must have shape (batch, {', '.join(map(str, expected))}), got {shape}")
    if frames.shape[0] == 0:
        raise DataError("frames: empty batch")
    bad = int(np.count_nonzero(~np.isfinite(frames)))
    if bad:
        raise DataError(f"frames hold {bad} non-finite values (NaN or inf)")
    return np.ascontiguousarray(frames, dtype=np.float32)


class Backend(ABC):
    name: ClassVar[str]
    emulated: ClassVar[bool] = False  # True: its latency is predicted (emulated_ms), not the wall-clock of run_one

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest
        self.budget: float | None = None  # a width-routed graph's run-time budget; None: the trained one

    def set_budget(self, budget: float | None) -> None:
        """Run a width-routed graph (manifest mode "widths") under `budget`, the mean cost
        ratio on its cost target, in (0, 1] (1: the widest level for every sample); None:
        the budget it was trained for. A device under load or throttling turns this knob:
        no re-export."""
        if budget is None:
            self.budget = None
            return
        if not (is_number(budget) and 0 < budget <= 1):
            raise ConfigError(f"--budget must be in (0, 1], got {budget}")
        if self.manifest.mode != "widths":
            raise ConfigError(
                f"--budget is the run-time budget of a width-routed model (dpedge train --slimmable --budget B); "
                f"this export ({self.manifest.mode}) fixed its budget when it was trained"
            )
        self.budget = float(budget)

    def inputs(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """The graph's inputs for one checked sample: the frames, and the budget if one was set."""
        feeds = {self.manifest.input.name: frames}
        if self.budget is not None:
            feeds[BUDGET] = np.array(self.budget, np.float32)
        return feeds

    @classmethod
    @abstractmethod
    def load(cls, path: Path, threads: int | None = None) -> Backend:
        """Open a model (an .onnx with its manifest, or a backend-specific artifact)."""

    @abstractmethod
    def run_one(self, frames: np.ndarray) -> tuple[np.ndarray, float, int]:
        """One checked sample (1, frames_in, C, H, W) → (forecast, flops, branch)."""

    @abstractmethod
    def describe(self) -> dict:
        """Backend, device, library versions, threads: what a benchmark row must say."""

    def run(self, frames: np.ndarray) -> RunResult:
        frames = check_frames(self.manifest, frames)
        forecasts, flops, branches = [], [], []
        for sample in frames:
            forecast, sample_flops, branch = self.run_one(sample[None])
            if not 0 <= branch < len(self.manifest.branches):
                raise DataError(
                    f"the graph chose sub-network {branch}, which its manifest does not list (it lists "
                    f"{len(self.manifest.branches)}): this graph and manifest were not exported together"
                )
            forecasts.append(forecast)
            flops.append(sample_flops)
            branches.append(branch)
        return RunResult(np.concatenate(forecasts), np.asarray(flops, np.float64), np.asarray(branches, np.int64))
