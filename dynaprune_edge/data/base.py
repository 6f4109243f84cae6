"""The contract between data and everything downstream.

A dataset family (taxibj, weatherbench, sevir, knmi) turns a `DataConfig` into a
`SpatioTemporalData`: three time-ordered splits of (input, target) windows, normalised with
statistics of the training split only, plus what is needed to get physical units back.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from dynaprune_edge.checks import is_count
from dynaprune_edge.errors import ConfigError

SAMPLE = "sample"
"""`--data sample`: the small real sample bundled with dpedge (knmi, weatherbench, nycbike)."""
SEEDS = 2**32
"""Seeds are whole numbers in [0, 2³²): what numpy's generators and torch's both accept
(numpy refuses negative seeds, torch overflows past 2⁶⁴)."""


def check_seed(seed: object) -> None:
    if not (is_count(seed) and seed < SEEDS):
        raise ConfigError(f"--seed must be a whole number in [0, 2**32), got {seed!r}")


@dataclass(frozen=True)
class DataConfig:
    """What the user asked for; `None` fields take the family's defaults when loaded.

    path: None → synthetic data of the family's shape (labelled "synthetic" everywhere);
    "sample" → the real sample shipped inside the package; anything else → real files.
    """

    name: str
    path: str | None = None
    frames_in: int | None = None
    frames_out: int | None = None
    size: int | None = None
    synthetic_frames: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        """Types only (the family's checks of the values come when it is loaded): a config
        is also read back from files dpedge was handed (model.pt, manifests)."""
        if not isinstance(self.name, str) or (self.path is not None and not isinstance(self.path, str)):
            raise ConfigError(f"data config: the name and path must be text, got {self.name!r} and {self.path!r}")
        for option in ("frames_in", "frames_out", "size", "synthetic_frames", "seed"):
            value = getattr(self, option)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ConfigError(f"data config: {option} must be a whole number, got {value!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> DataConfig:
        return cls(**values)


class Normalizer:
    """Per-channel z-score: x_norm = (x - mean[c]) / std[c]; stats from the training split."""

    def __init__(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.mean = np.asarray(mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(std, dtype=np.float32).reshape(-1)

    @classmethod
    def fit_segments(cls, segments: list[np.ndarray]) -> Normalizer:
        """Statistics over several (T, C, H, W) arrays without concatenating them: TaxiBJ's
        ~20k pre-cut windows would otherwise need another gigabyte. Two passes in float64
        (mean, then squared deviations) keep the variance exact for data far from zero (K)."""
        count = sum(s.shape[0] * s.shape[2] * s.shape[3] for s in segments)
        mean = sum(s.sum(axis=(0, 2, 3), dtype=np.float64) for s in segments) / count
        centre = mean[:, None, None]
        squares = sum(((s - centre) ** 2).sum(axis=(0, 2, 3)) for s in segments)
        std = np.sqrt(squares / count)
        return cls(mean, np.where(std > 0, std, 1.0))

    def normalize(self, x):
        mean, std = self.mean.reshape(-1, 1, 1), self.std.reshape(-1, 1, 1)
        if isinstance(x, torch.Tensor):
            return (x - torch.as_tensor(mean, device=x.device)) / torch.as_tensor(std, device=x.device)
        return ((x - mean) / std).astype(np.float32)

    def denormalize(self, x):
        mean, std = self.mean.reshape(-1, 1, 1), self.std.reshape(-1, 1, 1)
        if isinstance(x, torch.Tensor):
            return x * torch.as_tensor(std, device=x.device) + torch.as_tensor(mean, device=x.device)
        return (x * std + mean).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, values: dict) -> Normalizer:
        """ValueError unless mean and std are equally long lists of finite numbers, std > 0
        (a checkpoint's normaliser is read from a file the user was handed)."""
        mean, std = (np.asarray(values[key], dtype=np.float64) for key in ("mean", "std"))
        if mean.ndim != 1 or mean.shape != std.shape or not mean.size:
            raise ValueError(f"normaliser mean {mean.shape} and std {std.shape} must be equally long lists")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("normaliser mean and std must be finite, std > 0")
        return cls(mean, std)


@dataclass
class SpatioTemporalData:
    """Splits yield (x, y) float32 tensors shaped (T_in, C, H, W) and (T_out, C, H, W),
    already normalised. `config` has every default filled in (it is saved in checkpoints)."""

    config: DataConfig
    train: Dataset
    val: Dataset
    test: Dataset
    normalizer: Normalizer
    channels: int
    height: int
    width: int
    source: str  # "synthetic" or the real path(s) read
    unit: str  # physical unit of de-normalised values, e.g. "K", "mm/5min"

    @property
    def frames_in(self) -> int:
        return self.config.frames_in

    @property
    def frames_out(self) -> int:
        return self.config.frames_out

    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 of every split's frames (shapes and physical values): what `--resume`
        compares, so that a file changed at the same path is not trained on as if it
        were the one the run began with. Computed once, when first asked for."""
        digest = hashlib.sha256()

        def add(split: Dataset) -> None:
            if isinstance(split, Subset):  # some windows of a split: which ones, of what
                digest.update(np.asarray(split.indices, dtype=np.int64).tobytes())
                add(split.dataset)
                return
            for segment in split.segments:
                digest.update(repr(tuple(segment.shape)).encode())
                digest.update(segment.numpy().tobytes())

        for split in (self.train, self.val, self.test):
            add(split)
        return digest.hexdigest()

    def describe(self) -> str:
        kind = "synthetic" if self.is_synthetic else f"real: {self.source}"
        return (
            f"{self.config.name} ({kind}), {self.frames_in}→{self.frames_out} frames, "
            f"{self.channels}×{self.height}×{self.width}, "
            f"{len(self.train)}/{len(self.val)}/{len(self.test)} train/val/test windows"
        )


@dataclass(frozen=True)
class FamilyDefaults:
    """What a family uses when a `DataConfig` field is None, plus the facts of its format."""

    frames_in: int
    frames_out: int
    size: int  # output frame height in pixels; the width follows the grid's aspect ratio
    synthetic_frames: int
    channels: int
    unit: str
    split: tuple[float, float, float]  # train/val/test fractions of the time-ordered data


@dataclass
class FrameSegments:
    """Physical-unit frames of each split, as lists of (T, C, H, W) float32 arrays.

    Windows are cut inside one segment and never across two: a segment is a contiguous run
    of frames (a time-split chunk, a SEVIR event, or one pre-cut TaxiBJ window), so no frame
    is shared between splits and no window bridges a gap in time.
    """

    train: list[np.ndarray]
    val: list[np.ndarray]
    test: list[np.ndarray]

    def splits(self) -> dict[str, list[np.ndarray]]:
        return {"train": self.train, "val": self.val, "test": self.test}


class DatasetFamily(ABC):
    """One dataset family: a reader of its real format and a synthetic generator of the same
    shape. Registered by name in `dynaprune_edge.data.DATASETS`; `load_dataset` does the
    rest (defaults, window checks, normalisation) identically for every family."""

    name: ClassVar[str]
    defaults: ClassVar[FamilyDefaults]
    sample: ClassVar[str | None] = None  # file or folder under dynaprune_edge/data/samples/

    @abstractmethod
    def read(self, path: str, config: DataConfig) -> FrameSegments:
        """Real files at `path` (a file, a folder or a glob) → segments; DataError if bad."""

    @abstractmethod
    def synthesize(self, config: DataConfig) -> FrameSegments:
        """Seeded synthetic frames with the family's shape and a realistic structure."""
