"""Which sub-networks to compile: the branches of the exported graph.

Every layer's width is a function of one number, the sample's count n of kept regions
(ModelMask: width = σ(a·4(n/R − ½) + c_gate), quantised; `ModelMask.width_table`), so a
branch serving a range of n needs only the tiles and widths of its largest n. The ranges are chosen by dynamic
programming to minimise the FLOPs executed over the calibration samples' histogram of n.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dynaprune_edge.masks import MaskMode
from dynaprune_edge.models import DynaPruner


@dataclass(frozen=True)
class BranchPlan:
    """A sub-network: kept-region counts `lo..hi` route here; it computes `hi` tiles and,
    per gate, the filters kept at `hi` regions (the most of its range)."""

    lo: int
    hi: int
    groups: dict[str, int]  # gate → kept groups computed
    masked_gates: frozenset[str]  # gates whose kept groups vary within lo..hi


@torch.no_grad()
def kept_region_counts(model: DynaPruner, dataset: Dataset, batch_size: int = 32) -> np.ndarray:
    """n for every sample of `dataset` under the hard masks."""
    counts = []
    for x, _ in DataLoader(dataset, batch_size=batch_size):
        region_mask = model.masks(x, MaskMode(hard=True)).region_mask
        counts.append(region_mask.sum(dim=(1, 2, 3)).round().to(torch.int64))
    return torch.cat(counts).numpy()


def branch_plan(table: np.ndarray, gates: list[str], lo: int, hi: int) -> BranchPlan:
    varying = frozenset(g for i, g in enumerate(gates) if table[lo, i] != table[hi, i])
    return BranchPlan(lo, hi, {g: int(table[hi, i]) for i, g in enumerate(gates)}, varying)


def partition(histogram: np.ndarray, cost: Callable[[int], float], branches: int) -> list[tuple[int, int]]:
    """Split n = 1..N (N = len(histogram) − 1) into at most `branches` ranges minimising
    Σ_n histogram[n]·cost(hi of n's range). cost(hi): FLOPs of the branch computing hi
    regions. Returns (lo, hi) pairs; the last range always ends at N so that every sample
    has a branch."""
    regions = len(histogram) - 1
    costs = np.array([0.0] + [cost(hi) for hi in range(1, regions + 1)])
    mass = np.concatenate([[0.0], np.cumsum(histogram[1:])])  # mass[k] = samples with 1 ≤ n ≤ k
    best = np.full((branches + 1, regions + 1), np.inf)
    choice = np.zeros((branches + 1, regions + 1), dtype=int)
    best[0, 0] = 0.0
    for used in range(1, branches + 1):
        for hi in range(1, regions + 1):
            for lo in range(1, hi + 1):  # the range lo..hi closes this branch
                total = best[used - 1, lo - 1] + (mass[hi] - mass[lo - 1]) * costs[hi]
                if total < best[used, hi]:
                    best[used, hi], choice[used, hi] = total, lo
    used = int(np.argmin(best[:, regions]))
    ranges, hi = [], regions
    while hi > 0:
        lo = choice[used, hi]
        ranges.append((int(lo), int(hi)))
        hi, used = lo - 1, used - 1
    return ranges[::-1]
