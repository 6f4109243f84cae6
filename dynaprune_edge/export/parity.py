"""What every exported graph is checked against before anything is written: onnx.checker,
and the PyTorch hard-mask forward on real samples, branch by branch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from dynaprune_edge.data.base import Normalizer
from dynaprune_edge.errors import DpedgeError
from dynaprune_edge.masks import MaskMode
from dynaprune_edge.runtime.manifest import BRANCH, FLOPS, FORECAST, INPUT
from dynaprune_edge.training.checkpoint import TrainedModel

PARITY_TOLERANCE = 1e-4
"""Max abs error in the model's normalised units (the graph's physical forecast normalised
with the training data's statistics), fp32, for outputs within ±1; relative
beyond (fp32 rounding grows with magnitude: the dense twin of a model trained to compute
an eighth of the regions forecasts values in the hundreds where it never learned to)."""


class ExportError(DpedgeError):
    """The exported graph is wrong (parity) or cannot be produced for this model."""


def reference(
    trained: TrainedModel, x: torch.Tensor, dense: bool, width: int | None = None, budget: float | None = None
) -> torch.Tensor:
    """The PyTorch hard-mask forward the exported graph must reproduce (width: that width
    level's static slice of a slimmable network; budget: a width-routed model's run-time
    budget)."""
    model = trained.model
    with torch.no_grad():
        if width is not None or budget is not None:
            return model(x, MaskMode(hard=True), width, budget).prediction
        if dense:
            return model.dense_forecast(x)
        return model(x, MaskMode(hard=True)).prediction


def check_graph(path: Path, label: str) -> None:
    """onnx.checker's full check (types and shapes inferred through every branch)."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        raise ExportError(f"onnx.checker rejected the {label} graph: {str(error).splitlines()[0]}") from None


def check_parity(
    session, x: np.ndarray, expected: np.ndarray, label: str, normalizer: Normalizer, feeds: dict | None = None
) -> dict[str, float]:
    """Max abs error per branch (keyed by the branch index the graph reports) of the
    onnxruntime `session` against PyTorch's `expected` outputs (normalised units) on the
    samples `x` (physical units, as the graph takes them; with the other inputs `feeds`: a
    run-time budget); an ExportError if any exceeds PARITY_TOLERANCE × max(1, the largest
    |expected| value). The graph's forecast is normalised with `normalizer` before the
    comparison, so the tolerance means the same on every dataset, whatever its units."""
    errors: dict[int, float] = {}
    for sample, want in zip(x, expected):
        forecast, _, branch = session.run([FORECAST, FLOPS, BRANCH], {INPUT: sample[None], **(feeds or {})})
        error = float(np.abs(normalizer.normalize(forecast[0]) - want).max())
        errors[int(branch)] = max(errors.get(int(branch), 0.0), error)
    parity = {str(k): v for k, v in sorted(errors.items())}
    worst, tolerance = max(errors.values()), PARITY_TOLERANCE * max(1.0, float(np.abs(expected).max()))
    if not worst <= tolerance:
        raise ExportError(
            f"{label} export disagrees with PyTorch: max abs error {worst:.3g} > {tolerance:.3g} "
            f"(per branch: {parity}); nothing written"
        )
    return parity
