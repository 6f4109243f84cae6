"""The budget a user asks for, held on data the model has not seen: a mean cost and a
per-sample cap, both enforced through the DataMask's keep rule (docs/design.md,
"Dyna-Pruner", "The budget").

A sample's cost is a function of one number, its count n of kept regions: every layer's
width is a function of n (ModelMask), and so is every layer's count of computed positions.
So the cost model reduces, for a trained model, to a curve cost(n), n = 0..R, and:
- the cap becomes a largest count n_max (cost(n) ≤ cap for every n ≤ n_max): a sample whose
  scores pass the threshold in more regions keeps its n_max best;
- the mean budget becomes a keep threshold τ on the importance logits, chosen on held-out
  training windows so that their mean capped cost meets the budget. Where many regions
  score exactly alike (identical dry regions), no threshold separates them, so the count
  limit may be lowered below the cap's as well (`calibrate`).
Both are numbers the exported router applies exactly as evaluation does. Everything here is
numpy: the curve comes from the model's own ledger (`DynaPruner.cost_curve`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KEEP_ALL = float(np.finfo(np.float32).min)
"""Threshold that keeps every region (a finite float32, so it survives JSON and ONNX)."""


@dataclass(frozen=True)
class CostCurve:
    """ratios[n]: a sample's cost relative to the dense model's when it keeps n regions.
    Made non-decreasing (running maximum), so that a cap on cost(n_max) bounds every
    count below it; it is non-decreasing already where widths rise with n."""

    ratios: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "ratios", np.maximum.accumulate(np.asarray(self.ratios, dtype=np.float64)))

    @property
    def regions(self) -> int:
        return len(self.ratios) - 1

    def max_regions(self, cap: float) -> int:
        """The most regions a sample may keep without costing more than `cap` (0 when even
        deciding the masks costs more: such a sample runs no backbone at all)."""
        return max(0, int(np.searchsorted(self.ratios, cap, side="right")) - 1)

    def of(self, counts: np.ndarray) -> np.ndarray:
        return self.ratios[np.asarray(counts)]


def kept_counts(logits: np.ndarray, threshold: float, max_regions: int) -> np.ndarray:
    """(N,) regions each sample keeps: those whose logit reaches `threshold`, at most
    `max_regions` of them. logits: (N, R)."""
    return np.minimum((logits >= threshold).sum(axis=1), max_regions)


def calibrate_threshold(logits: np.ndarray, curve: CostCurve, budget: float, max_regions: int) -> float:
    """The keep threshold on importance logits that spends as much of `budget` as possible
    without exceeding it, in mean capped cost over the samples whose (N, R) `logits` are
    given (held-out training windows; never validation or test ones).

    Mean cost falls as the threshold rises and changes only at the samples' logit values,
    so a bisection over those values finds the lowest threshold that fits. It is returned
    as the midpoint of the gap below that value (the widest margin for unseen samples)."""
    logits = np.asarray(logits, dtype=np.float32)
    values = np.unique(logits[np.isfinite(logits)])  # ascending; −∞: a region of padding, never kept
    fits = lambda index: curve.of(kept_counts(logits, values[index], max_regions)).mean() <= budget
    if len(values) == 0 or fits(0):
        return KEEP_ALL
    if not fits(len(values) - 1):  # even keeping only the top-scoring region is too much
        return float(np.nextafter(np.float32(values[-1]), np.float32(np.inf)))
    low, high = 0, len(values) - 1  # fits(low) is False, fits(high) is True
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if fits(middle) else (middle, high)
    middle = np.float32((values[low] + values[high]) / 2)
    return float(middle if middle > values[low] else values[high])  # adjacent floats have no midpoint


def calibrate(logits: np.ndarray, curve: CostCurve, budget: float, cap_regions: int) -> tuple[float, int]:
    """(keep threshold, most regions per sample) that spend the most of `budget` in mean
    capped cost over the samples of `logits`, the count at most `cap_regions`.

    A threshold alone cannot split regions that score exactly alike: if a block of tied
    logits straddles the budget, keeping all of them overspends and keeping none wastes
    most of it (measured: a KNMI model whose 40 identical dry regions scored near the top
    kept 1.5 % of its cost). A lower count limit keeps the best-ranked of them instead
    (ties to the earlier region). Among equal spends the larger limit wins: it leaves
    samples free to differ."""
    best = (KEEP_ALL, cap_regions, -1.0)
    for limit in range(cap_regions, -1, -1):
        threshold = calibrate_threshold(logits, curve, budget, limit)
        spent = float(curve.of(kept_counts(logits, threshold, limit)).mean())
        if spent > best[2] + 1e-12:
            best = (threshold, limit, spent)
    return best[0], best[1]
