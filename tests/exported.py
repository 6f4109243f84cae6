"""Exported graphs run on the model's normalised windows, as PyTorch's forward sees them.

A graph takes frames and returns forecasts in the data's physical units (its first and
last nodes normalise with the training statistics): a test that compares it with the
PyTorch model converts at both ends with the model's normaliser."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dynaprune_edge.data.base import Normalizer
from dynaprune_edge.runtime import load
from dynaprune_edge.runtime.base import RunResult


def run_in_model_units(path: Path, frames, normalizer: Normalizer, **load_options) -> RunResult:
    """`load(path, **load_options).run` on `frames` (normalised units, a tensor or an
    array), the forecast normalised back: comparable with the PyTorch model's prediction."""
    frames = np.asarray(frames.numpy() if hasattr(frames, "numpy") else frames, np.float32)
    result = load(path, **load_options).run(normalizer.denormalize(frames))
    result.forecast = normalizer.normalize(result.forecast)
    return result
