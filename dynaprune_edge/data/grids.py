"""Bringing a grid to the height asked for, whole.

Nothing is cropped: a model pads its input internally to what its regions and strides need
and crops its forecast back (models/base.py, `PaddedGrid`), so a city of 10×20 cells keeps
every cell. If the requested height `size` is below the data's, frames are area-mean
resampled to `size` × (width scaled by the same factor, rounded). Area means (each output
pixel the exact average of the input area it covers, fractional overlaps included) keep
rain totals and mean temperatures unchanged, which bilinear interpolation or striding would
not; they work for non-integer factors (KNMI 416 → 64, ERA5 UK 33×49 → 32×48).
Upsampling is refused: it would invent detail and cost the model compute for nothing.
"""

from __future__ import annotations

import numpy as np

from dynaprune_edge.errors import ConfigError


def _area_mean_along(values: np.ndarray, size_out: int, axis: int) -> np.ndarray:
    """Area means along one axis from the running sum: the integral of a piecewise-constant
    row up to a fractional position is the linear interpolation of its cumulative sum, so
    each output cell is (integral at its right edge − at its left edge) / its width.
    O(pixels), unlike a dense resampling matrix, and exact for any factor."""
    length = values.shape[axis]
    moved = np.moveaxis(values, axis, -1).astype(np.float64)
    running = np.concatenate([np.zeros(moved.shape[:-1] + (1,)), np.cumsum(moved, axis=-1)], axis=-1)
    edges = np.linspace(0.0, length, size_out + 1)
    left = np.minimum(edges.astype(np.int64), length - 1)
    integral = running[..., left] + (edges - left) * (running[..., left + 1] - running[..., left])
    return np.moveaxis(np.diff(integral, axis=-1) * (size_out / length), -1, axis)


def area_resample(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """(..., H, W) → (..., height, width) by exact area means (rows, then columns)."""
    rows_in, columns_in = frames.shape[-2:]
    if rows_in % height == 0 and columns_in % width == 0:
        # Whole blocks (SEVIR 384 → 64): a reshape-mean, ~6× faster than the running sums.
        blocks = frames.reshape(*frames.shape[:-2], height, rows_in // height, width, columns_in // width)
        return blocks.mean(axis=(-3, -1)).astype(np.float32)
    rows = _area_mean_along(frames, height, frames.ndim - 2)
    return _area_mean_along(rows, width, frames.ndim - 1).astype(np.float32)


def output_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Height `size`; width scaled by the same factor, rounded (at least 1)."""
    return size, max(1, round(width * size / height))


def fit_grid(frames: np.ndarray, size: int, source: str) -> np.ndarray:
    """The frames whole at height `size`: as they are, or area-resampled down to it."""
    height, width = frames.shape[-2:]
    if size > height:
        raise ConfigError(
            f"{source}: size {size} is larger than the data's {height}-pixel height; "
            f"dpedge does not upsample, pass size ≤ {height}"
        )
    if size == height:
        return np.ascontiguousarray(frames, dtype=np.float32)
    return area_resample(frames, *output_shape(height, width, size))
