"""Time splits and sliding windows, shared by every family.

Splits are made on *frames* (or whole events) before any window is cut, and windows are cut
inside one segment only: a window that straddled train and validation would let the model
see validation frames during training, and a window across a gap in time would pair
frames that do not follow each other.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dynaprune_edge.data.base import DataConfig, FrameSegments, Normalizer
from dynaprune_edge.errors import ConfigError, DataError

SPLIT_NAMES = ("train", "val", "test")


def split_counts(total: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    """How many frames (or events) each split gets, in time order. Validation and test get at
    least one each so a short series fails with a clear "too few frames" message instead of
    an empty split; train takes the rest."""
    val = max(1, round(total * fractions[1]))
    test = max(1, round(total * fractions[2]))
    return total - val - test, val, test


def split_in_time(items: Sequence, fractions: tuple[float, float, float]) -> list[Sequence]:
    """Contiguous train/val/test chunks of a time-ordered sequence (frames or events)."""
    train, val, _ = split_counts(len(items), fractions)
    train = max(train, 0)
    return [items[:train], items[train : train + val], items[train + val :]]


def time_split(frames: np.ndarray, fractions: tuple[float, float, float]) -> FrameSegments:
    """One long (T, C, H, W) series → one contiguous chunk per split (windowed later)."""
    return FrameSegments(*[[chunk] for chunk in split_in_time(frames, fractions)])


def event_split(events: Sequence[np.ndarray], fractions: tuple[float, float, float]) -> FrameSegments:
    """Independent events (e.g. SEVIR's 49-frame storms) → whole events per split, by order."""
    return FrameSegments(*[list(chunk) for chunk in split_in_time(events, fractions)])


def window_starts(segment_lengths: Sequence[int], window: int) -> np.ndarray:
    """(segment, start) of every stride-1 window that fits inside one segment."""
    pairs = [(index, start) for index, length in enumerate(segment_lengths) for start in range(length - window + 1)]
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def check_windows_fit(segments: FrameSegments, config: DataConfig, source: str) -> None:
    """Every split must hold at least one window; say how far off it is and what to change."""
    window = config.frames_in + config.frames_out
    total = sum(len(s) for split in segments.splits().values() for s in split)
    for name, split in segments.splits().items():
        if len(window_starts([len(s) for s in split], window)) > 0:
            continue
        longest = max((len(s) for s in split), default=0)
        remedy = "pass smaller frames_in/frames_out"
        if source == "synthetic":
            raise ConfigError(
                f"{config.name} synthetic: the {name} split has {longest} frames of {total}, "
                f"a window needs {window} (frames_in {config.frames_in} + frames_out "
                f"{config.frames_out}); {remedy} or a larger synthetic_frames"
            )
        raise DataError(
            f"{source}: the {name} split has no window: its longest run has {longest} frames "
            f"({total} frames in all splits), a window needs {window} (frames_in "
            f"{config.frames_in} + frames_out {config.frames_out}); {remedy} or more data"
        )


class WindowDataset(Dataset):
    """(x, y) pairs from stride-1 windows: x = frames [s, s+T_in), y = [s+T_in, s+T_in+T_out).

    Segments stay in physical units, shared with the caller (no copy), and each window is
    normalised when it is read: pre-cut TaxiBJ windows repeat every frame eight times, so a
    normalised copy would double a gigabyte-sized dataset for a few microseconds per item.
    """

    def __init__(
        self,
        segments: Sequence[np.ndarray],
        frames_in: int,
        frames_out: int,
        normalizer: Normalizer,
    ) -> None:
        self.frames_in = frames_in
        self.frames_out = frames_out
        self.normalizer = normalizer
        self.segments = [torch.from_numpy(np.ascontiguousarray(s, dtype=np.float32)) for s in segments]
        self.index = window_starts([len(s) for s in segments], frames_in + frames_out)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= item < len(self):
            raise IndexError(f"window {item} out of range for {len(self)} windows")
        segment, start = self.index[item]
        frames = self.segments[segment]
        middle = start + self.frames_in
        x = self.normalizer.normalize(frames[start:middle])
        y = self.normalizer.normalize(frames[middle : middle + self.frames_out])
        return x, y
