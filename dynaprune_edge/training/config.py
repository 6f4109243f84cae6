"""The options of one training run (`TrainConfig`), and the training windows they count
optimizer steps over (`split_training`). Apart from the loop, so that what a run is given
reads in one place; `split_training` lives here, not in trainer.py, because
`TrainConfig.for_steps` counts its windows and trainer.py imports this module."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from torch.utils.data import Dataset, Subset

from dynaprune_edge.data import SpatioTemporalData, check_seed
from dynaprune_edge.errors import ConfigError, DataError
from dynaprune_edge.training.sample_pruning import SamplePruning

CALIBRATION_EVERY = 10
"""Every 10th training window is held out of training; the budget is calibrated on those
after every epoch (masks/budget.py). Spread over the whole training period, they cost what
the training distribution costs (the latest windows alone did not: on the KNMI event they
were wetter than the validation windows, which then got 0.22 for a budget of 0.3). Dense
models hold them out too, so that dense and pruned runs train on the same windows."""


def split_training(train: Dataset) -> tuple[Dataset, Dataset]:
    """(windows trained on, held-out calibration windows): every CALIBRATION_EVERY-th
    window of the training split, the last of each run of CALIBRATION_EVERY (at least one)."""
    if len(train) < 2:
        raise DataError(
            f"training needs at least 2 training windows (one is held out to calibrate the budget), got {len(train)}"
        )
    held_out = set(range(min(CALIBRATION_EVERY, len(train)) - 1, len(train), CALIBRATION_EVERY))
    return Subset(train, [i for i in range(len(train)) if i not in held_out]), Subset(train, sorted(held_out))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    init: str | None = None
    distill: float = 0.0
    sample_pruning: SamplePruning | None = None  # --st-prune (training/sample_pruning.py)

    def __post_init__(self) -> None:
        for option, value in (("--epochs", self.epochs), ("--batch-size", self.batch_size)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{option} must be a whole number ≥ 1, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"--lr must be a finite number > 0, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ConfigError(f"weight decay must be a finite number ≥ 0, got {self.weight_decay}")
        check_seed(self.seed)
        if not (math.isfinite(self.distill) and self.distill >= 0):
            raise ConfigError(f"--distill must be a finite number ≥ 0, got {self.distill}")
        if self.distill > 0 and self.init is None:
            raise ConfigError("--distill needs --init: the dense model to distil from")

    def for_steps(self, steps: int, data: SpatioTemporalData) -> TrainConfig:
        """As many epochs over the windows trained on as `steps` optimizer steps take, so
        that small and large datasets get the same training budget."""
        windows = len(split_training(data.train)[0])
        return dataclasses.replace(self, epochs=max(1, math.ceil(steps / math.ceil(windows / self.batch_size))))
