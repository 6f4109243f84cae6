"""Schedules keyed on optimizer steps, not epochs: a later sample-pruning trainer changes
how many steps an epoch has, and these must not care."""

from __future__ import annotations

import math

from dynaprune_edge.masks import MaskMode, PruningConfig

WARMUP_SHARE = 0.05


def learning_rate_factor(step: int, total_steps: int) -> float:
    """Linear warm-up, then cosine decay to 1 % of the peak."""
    warmup = max(1, int(WARMUP_SHARE * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))


def mask_mode(step: int, total_steps: int, pruning: PruningConfig) -> MaskMode:
    """Soft masks whose temperature falls geometrically over the first `soft_fraction` of
    training, then hard straight-through masks (docs/design.md, "Dyna-Pruner")."""
    soft_steps = int(pruning.soft_fraction * total_steps)
    if step >= soft_steps:
        return MaskMode(hard=True)
    ratio = pruning.hard_temperature / pruning.soft_temperature
    return MaskMode(hard=False, temperature=pruning.soft_temperature * ratio ** (step / soft_steps))
