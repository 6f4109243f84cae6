"""ST-Prune: train on fewer windows per epoch by skipping easy ones, without biasing the
gradient (`dpedge train --st-prune`).

Score of training window i (higher = harder), over the windows trained on:
- complexity c_i = mean (Δ_t y)² + mean (∂_h y)² + mean (∂_w y)² on the window's target
  frames y in normalised units, Δ_t running from the last input frame through the targets:
  how much the future changes and how much spatial structure it has. Computed once, before
  training (ST-Prune's spatio-temporal complexity).
- learning state ℓ_i = the window's per-sample loss in the last batch it was in (the
  model's current view of it); a window not seen yet has none and counts as hard.
- `--score complexity`: s_i = rank(c_i); `loss`: s_i = rank(ℓ_i) (InfoBatch's score);
  `both`: s_i = (rank(c_i) + rank(ℓ_i)) / 2. Ranks are percentiles in [0, 1] (c over all
  windows, ℓ over those seen), so neither term's scale drowns the other.

Each epoch the lowest-scoring Q share of the windows that can be judged are easy
(`--easy-share Q`; Q = 0.5, the default, is about InfoBatch's below-the-mean rule on
ranks); every hard window is kept, each easy one with probability 1 − R (`--prune-ratio
R`), so about Q × R of the windows are skipped, and a kept easy window's
loss is weighted 1 / (1 − R). So E[Σ kept weight × loss] = Σ loss: the expected gradient is
the full-data one. The last DELTA share of the epochs (`--anneal DELTA`) trains on every
window with weight 1, to undo the leftover bias of the estimate. The draw is seeded by
(seed, epoch), so a resumed run prunes the windows an uninterrupted one would, given the
scores that resume.pt restores.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dynaprune_edge.errors import ConfigError

SCORES = ("complexity", "loss", "both")


@dataclass(frozen=True)
class SamplePruning:
    """`--prune-ratio`, `--anneal`, `--score`, `--easy-share` (see the module doc)."""

    ratio: float = 0.5
    anneal: float = 0.125
    score: str = "both"
    easy_share: float = 0.5

    def __post_init__(self) -> None:
        if not 0 <= self.ratio < 1:
            raise ConfigError(f"--prune-ratio must be in [0, 1), got {self.ratio}")
        if not 0 < self.easy_share <= 1:
            raise ConfigError(f"--easy-share must be in (0, 1], got {self.easy_share}")
        if not 0 <= self.anneal <= 1:
            raise ConfigError(f"--anneal must be in [0, 1], got {self.anneal}")
        if self.score not in SCORES:
            raise ConfigError(f"--score must be one of {', '.join(SCORES)}, got {self.score!r}")

    def annealing(self, epoch: int, epochs: int) -> bool:
        """Whether `epoch` (0-based) is in the last `anneal` share of the epochs."""
        return epoch >= (1 - self.anneal) * epochs


def window_complexity(inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(B,) spatio-temporal complexity of windows (B, T, C, H, W): the module doc's c_i."""
    frames = torch.cat((inputs[:, -1:], targets), dim=1)
    temporal = (frames[:, 1:] - frames[:, :-1]).pow(2).flatten(1).mean(1)
    height = (targets[..., 1:, :] - targets[..., :-1, :]).pow(2).flatten(1).mean(1)
    width = (targets[..., :, 1:] - targets[..., :, :-1]).pow(2).flatten(1).mean(1)
    return temporal + height + width


def percentile_ranks(values: np.ndarray) -> np.ndarray:
    """Each value's rank among `values`, as a share in [0, 1] (ties in index order)."""
    ranks = np.empty(len(values))
    ranks[np.argsort(values, kind="stable")] = np.arange(len(values))
    return ranks / max(len(values) - 1, 1)


class SampleScores:
    """Per training window: its complexity (fixed) and its latest loss (NaN: not seen)."""

    def __init__(self, complexity: np.ndarray) -> None:
        self.complexity = np.asarray(complexity, dtype=np.float64)
        self.loss = np.full(len(self.complexity), np.nan)

    @classmethod
    def of(cls, windows: Dataset, batch_size: int = 64) -> SampleScores:
        with torch.no_grad():
            found = [window_complexity(x, y) for x, y in DataLoader(windows, batch_size=batch_size)]
        return cls(torch.cat(found).double().numpy())

    def __len__(self) -> int:
        return len(self.complexity)

    def observe(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        self.loss[indices.numpy()] = losses.detach().double().numpy()

    def hardness(self, score: str) -> tuple[np.ndarray, np.ndarray]:
        """(s, judged): the score of each window and whether it may be judged easy (a
        window whose score needs a loss it has not had yet is always hard)."""
        complexity_rank = percentile_ranks(self.complexity)
        if score == "complexity":
            return complexity_rank, np.ones(len(self), bool)
        judged = ~np.isnan(self.loss)
        loss_rank = np.zeros(len(self))
        if judged.any():
            loss_rank[judged] = percentile_ranks(self.loss[judged])
        return (loss_rank if score == "loss" else (complexity_rank + loss_rank) / 2), judged

    def state_dict(self) -> dict:
        return {"complexity": torch.from_numpy(self.complexity), "loss": torch.from_numpy(self.loss)}

    def load_state_dict(self, state: dict) -> None:
        complexity, loss = state["complexity"].numpy(), state["loss"].numpy()
        if complexity.shape != self.complexity.shape or not np.allclose(complexity, self.complexity):
            raise ConfigError("the resume state's sample scores are of other training windows")
        self.loss = loss.astype(np.float64).copy()


@dataclass(frozen=True)
class EpochPlan:
    """The windows one epoch trains on (indices into the windows trained on) and the loss
    weight of each window (1, or 1 / (1 − R) for a kept easy one)."""

    indices: np.ndarray
    weight_of: np.ndarray  # (all windows,): the weight a window's loss gets when it is in the epoch
    windows: int

    @classmethod
    def full(cls, windows: int) -> EpochPlan:
        return cls(np.arange(windows), np.ones(windows), windows)

    @property
    def pruned_fraction(self) -> float:
        return 1 - len(self.indices) / self.windows

    def steps(self, batch_size: int, processes: int) -> int:
        return batch_count(len(self.indices), batch_size, processes)


def batch_count(windows: int, batch_size: int, processes: int) -> int:
    """The global batches of an epoch of `windows`: cut into `batch_size`, a last batch with
    fewer windows than there are processes joined to the one before (every rank needs a
    window to take part in a step)."""
    count = math.ceil(windows / batch_size)
    return count - 1 if count > 1 and 0 < windows % batch_size < processes else count


def plan_epoch(scores: SampleScores, pruning: SamplePruning, epoch: int, epochs: int, seed: int) -> EpochPlan:
    """The module doc's rule for one epoch."""
    windows = len(scores)
    if pruning.annealing(epoch, epochs) or pruning.ratio == 0:
        return EpochPlan.full(windows)
    s, judged = scores.hardness(pruning.score)
    candidates = np.flatnonzero(judged)
    easy = np.zeros(windows, bool)
    easy[candidates[np.argsort(s[candidates], kind="stable")[: round(pruning.easy_share * len(candidates))]]] = True
    draw = np.random.default_rng([seed, epoch]).random(windows)
    kept = ~easy | (draw >= pruning.ratio)
    return EpochPlan(np.flatnonzero(kept), np.where(easy, 1 / (1 - pruning.ratio), 1.0), windows)


class Stopwatch:
    """Seconds spent scoring and planning (`scoring_seconds` in metrics.json)."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> Stopwatch:
        self._started = time.perf_counter()
        return self

    def __exit__(self, *_) -> None:
        self.seconds += time.perf_counter() - self._started
