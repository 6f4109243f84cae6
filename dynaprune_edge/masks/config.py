"""Settings of Dyna-Pruner, saved inside every checkpoint."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from dynaprune_edge.checks import is_count, is_number
from dynaprune_edge.cost import COST_TARGETS
from dynaprune_edge.errors import ConfigError

GROUP_ORDERS = ("scored", "ordered")
CAP_OVER_TARGET = 1.5
"""Default per-sample cap, as a multiple of the mean budget: room for stormy samples to
get half again the mean, and a bound a device with a deadline can plan for."""


@dataclass(frozen=True)
class PruningConfig:
    """budget: mean sparse/dense cost ratio to reach (on the `cost` target); 1.0 turns
    pruning off (the dense baseline: same backbone, no mask generator).

    region_size: pixels per side of a DataMask region (a power of 2).
    group_size: filters pruned together: tensor cores and CPU SIMD want channel counts in
        multiples of 8 or 16, and an unaligned width wastes the FLOPs it saved.
    width_levels: fractions of each layer's groups a sample may keep; few levels means few
        distinct sub-networks to compile (export's sliced mode).
    group_order: which groups fill a layer's width. "ordered" (the default): always the
        first groups, as in DS-Net, so every sub-network is a weight slice that export
        compiles with constant weights (sliced mode). "scored": the sample's top-scoring
        groups (any subset), whose weights the export must gather at run time; onnxruntime
        then loses its prepacked kernels, and such exports ran 0.39–0.52× as fast as their
        dense twins on a 2-core EPYC (docs/guides/training.md, "Which groups fill the width").
    max_cost: the per-sample cap: no sample may cost more than this ratio of the dense
        model, in training and in the exported graph alike (None: CAP_OVER_TARGET × target,
        at most 1). The mean budget is `budget` (masks/budget.py).
    cost: what `budget` and `max_cost` are ratios of (dynaprune_edge.cost): "flops";
        "ort-cpu", milliseconds of onnxruntime on the machine `cost_table` (its measured
        table, stored with the model) was measured on; or "orin-emu", Jetson AGX Orin
        milliseconds emulated for the module, power mode and precision the table names.
    slimmable: train the backbone as a slimmable network (`dpedge train --slimmable`): every
        optimizer step also trains the narrowest width level and two between (all of them,
        with four levels), distilled from the widest (the sandwich rule and in-place
        distillation of slimmable networks), and each width level keeps BatchNorm
        statistics of its own, so every width level is a network of its own that `dpedge
        export --width` compiles. With a budget below 1, a width router picks one branch
        per sample (persistence or a width level, every region computed) under a budget
        chosen at run time (masks/router.py); `region_size` is then not used.
    activity_weight: weight of the mask generator's activity prior (regions whose input
        frames do not change, where the persistence a skipped region outputs is exact,
        score lower; masks/generator.py); 0 turns it off.
    flops_weight: λ of the loss term λ·(mean cost ratio − budget)².
    soft_fraction: share of training (by optimizer steps) that uses soft masks, their
        temperature annealed from soft_temperature to hard; hard straight-through after.
    """

    budget: float = 1.0
    region_size: int = 8
    group_size: int = 8
    width_levels: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    group_order: str = "ordered"
    max_cost: float | None = None
    cost: str = "flops"
    cost_table: dict | None = None
    generator_channels: int = 16
    flops_weight: float = 4.0
    soft_fraction: float = 0.3
    soft_temperature: float = 1.0
    hard_temperature: float = 0.05
    keep_bias: float = 3.0
    activity_weight: float = 1.0
    slimmable: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "width_levels", tuple(float(w) for w in self.width_levels))
        numbers = (
            "budget",
            "max_cost",
            "activity_weight",
            "flops_weight",
            "soft_fraction",
            "soft_temperature",
            "hard_temperature",
            "keep_bias",
        )
        for name in numbers:  # NaN passes every comparison below: refuse it first
            value = getattr(self, name)
            if value is not None and not is_number(value):
                raise ConfigError(f"--{name.replace('_', '-')} must be a finite number, got {value!r}")
        for name in ("region_size", "group_size", "generator_channels"):
            value = getattr(self, name)
            if not is_count(value, 1):
                raise ConfigError(f"--{name.replace('_', '-')} must be a whole number ≥ 1, got {value!r}")
        if not 0.0 < self.budget <= 1.0:
            raise ConfigError(f"--budget must be in (0, 1], got {self.budget}")
        if self.region_size & (self.region_size - 1):
            raise ConfigError(f"region size must be a power of 2, got {self.region_size}")
        if self.activity_weight < 0:
            raise ConfigError(f"--activity-weight must be ≥ 0, got {self.activity_weight}")
        if self.group_order not in GROUP_ORDERS:
            raise ConfigError(f"group order must be one of {', '.join(GROUP_ORDERS)}, got {self.group_order!r}")
        if self.cost not in COST_TARGETS:
            raise ConfigError(f"--cost must be one of {', '.join(COST_TARGETS)}, got {self.cost!r}")
        if self.max_cost is not None and not self.budget <= self.max_cost <= 1.0:
            raise ConfigError(f"--max-cost must be in [budget ({self.budget}), 1], got {self.max_cost}")
        if not isinstance(self.slimmable, bool):
            raise ConfigError(f"slimmable must be true or false, got {self.slimmable!r}")
        levels = self.width_levels
        if (
            not levels
            or not all(map(math.isfinite, levels))
            or list(levels) != sorted(levels)
            or levels[-1] != 1.0
            or levels[0] <= 0
        ):
            raise ConfigError(f"width levels must rise to 1.0, got {levels}")

    @property
    def enabled(self) -> bool:
        return self.budget < 1.0

    @property
    def routes_widths(self) -> bool:
        """Whether a width router picks each sample's width level (masks/router.py), rather
        than the DataMask and ModelMask its regions and filters."""
        return self.enabled and self.slimmable

    @property
    def cap(self) -> float:
        """The per-sample cost cap in force."""
        if self.max_cost is not None:
            return self.max_cost
        return min(1.0, CAP_OVER_TARGET * self.budget)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["width_levels"] = list(self.width_levels)
        return values

    @classmethod
    def from_dict(cls, values: dict) -> PruningConfig:
        return cls(**values)


@dataclass(frozen=True)
class MaskMode:
    """How masks are formed in one forward pass: hard 0/1 (straight-through gradients) or
    soft with a temperature (the early, annealed phase of training)."""

    hard: bool = True
    temperature: float = 1.0
