"""The loss terms of a training step: per-sample losses and errors, the width router's fit
and the budget's penalty. Apart from the loop, so that what a step minimises reads in one
place (evaluation.py measures with `per_sample_error` too)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from dynaprune_edge.distributed import World
from dynaprune_edge.models import DynaPruner, Forecast


def per_sample_loss(forecast: Forecast, target: torch.Tensor) -> torch.Tensor:
    """(B,) mean squared error of each sample (reduction='none'): sample-pruning trainers
    weight these individually."""
    return F.mse_loss(forecast.prediction, target, reduction="none").flatten(1).mean(dim=1)


def per_sample_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(B,) mean absolute error of each sample, in the data's normalised units, detached:
    what a width router predicts per branch (the metric users compare models by)."""
    return (prediction.detach() - target).abs().flatten(1).mean(dim=1)


def router_loss(predicted: torch.Tensor, observed: torch.Tensor, seen: torch.Tensor, world: World) -> torch.Tensor:
    """The width router's fit to the per-sample errors of the branches a step ran
    (`seen`, (B, branches) bool): squared error relative to the errors' own mean square
    over the global batch, so that its scale does not depend on the data's. Each process
    returns its share × the process count, which DistributedDataParallel's mean of the
    gradients turns back into the global batch's loss: what one process computes."""
    scale = world.sum((observed.pow(2) * seen).sum()).clamp_min(1e-12)
    return world.size * ((predicted - observed).pow(2) * seen).sum() / scale


def budget_penalty(mean_cost: torch.Tensor, model: DynaPruner) -> torch.Tensor:
    """λ·(mean cost ratio − budget)², the batch's mean cost on the model's cost target
    (FLOPs or the measured table), differentiable through the straight-through masks."""
    pruning = model.pruning
    if not pruning.enabled or pruning.routes_widths:  # a width router meets the budget by its price
        return torch.zeros(())
    return pruning.flops_weight * (mean_cost - pruning.budget) ** 2
