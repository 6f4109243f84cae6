"""Metrics of a model on one data split: errors in physical units, cost ratios and their
spread, each width level and run-time budget, and the persistence baseline. Apart from the
loop, since they judge any trained model, not only the one being trained."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from dynaprune_edge.data import SpatioTemporalData
from dynaprune_edge.masks import MaskMode
from dynaprune_edge.models import DynaPruner
from dynaprune_edge.training.losses import per_sample_error

COST_QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}


class ErrorTotals:
    """Running MAE and MSE over de-normalised (physical-unit) values."""

    def __init__(self, data: SpatioTemporalData) -> None:
        self.normalizer = data.normalizer
        self.absolute = self.squared = self.elements = 0.0

    def add(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        error = self.normalizer.denormalize(prediction) - self.normalizer.denormalize(target)
        self.absolute += float(error.abs().sum())
        self.squared += float(error.pow(2).sum())
        self.elements += error.numel()

    @property
    def mae(self) -> float:
        return self.absolute / self.elements

    @property
    def mse(self) -> float:
        return self.squared / self.elements


def cost_spread(ratios: torch.Tensor) -> dict:
    """Mean, p10/p50/p90 and max over samples of their cost ratio (sparse/dense)."""
    quantiles = torch.quantile(ratios.double(), torch.tensor(list(COST_QUANTILES.values()), dtype=torch.float64))
    return {
        "mean": float(ratios.mean()),
        **dict(zip(COST_QUANTILES, map(float, quantiles))),
        "max": float(ratios.max()),
    }


@torch.no_grad()
def evaluate(
    model: DynaPruner,
    data: SpatioTemporalData,
    split: str = "val",
    batch_size: int = 32,
    width: int | None = None,
    budget: float | None = None,
) -> dict:
    """Hard-mask metrics of one split on de-normalised values, and the cost ratio of its
    samples on the model's cost target (FLOPs or milliseconds from the masks) with its
    spread and the samples above the cap; the FLOPs ratio too. width: a width level's
    index, to evaluate that static slice of a slimmable network instead. budget: a
    width-routed model's run-time budget (default: the trained one); its results add the
    share of samples each branch took."""
    model.eval()
    totals = ErrorTotals(data)
    flops, costs, kept, branches = [], [], [], []
    for x, y in DataLoader(getattr(data, split), batch_size=batch_size):
        forecast = model(x, MaskMode(hard=True), width, budget)
        totals.add(forecast.prediction, y)
        flops.append(forecast.flops)
        costs.append(forecast.cost_ratio)
        kept.append(forecast.data_kept)
        if forecast.branch is not None:
            branches.append(forecast.branch)
    flops_per_sample, ratios = torch.cat(flops), torch.cat(costs)
    cap = model.width_router.cap if model.pruning.routes_widths else model.pruning.cap
    shares = {}
    if branches:
        counts = torch.bincount(torch.cat(branches), minlength=model.width_router.branches)
        shares = {"branch_share": (counts / counts.sum()).tolist()}
    return {
        f"{split}_mae": totals.mae,
        f"{split}_mse": totals.mse,
        "flops_dense": forecast.dense_flops,
        "flops_sparse_mean": float(flops_per_sample.mean()),
        "flops_ratio_mean": float((flops_per_sample / forecast.dense_flops).mean()),
        "cost": cost_spread(ratios),
        "above_cap": int((ratios > cap + 1e-6).sum()) if model.pruning.enabled else 0,
        "data_kept_mean": float(torch.cat(kept).mean()),
        **shares,
    }


def width_metrics(model: DynaPruner, data: SpatioTemporalData, split: str, widest: dict) -> list[dict]:
    """Each width level of a slimmable network alone, as a static network: its MAE on
    `split` and its cost ratio (FLOPs and the cost target's) to the widest level.
    widest: `evaluate`'s result on the split, which is the widest level's when the model
    routes nothing (its plain forward is then its widest level: every region, every
    filter, its statistics); a width-routed model's widest level is evaluated again."""
    levels = model.pruning.width_levels
    reused = not model.pruning.routes_widths  # a width-routed model's plain forward is routed, not its widest level
    results = [evaluate(model, data, split, width=index) for index in range(len(levels) - reused)] + [widest] * reused
    return [
        {
            "width": level,
            f"{split}_mae": result[f"{split}_mae"],
            "flops_ratio": result["flops_ratio_mean"],
            "cost": result["cost"]["mean"],
        }
        for level, result in zip(levels, results)
    ]


SWEPT_BUDGETS = (0.3, 0.5, 0.7, 1.0)
"""Run-time budgets a width-routed model is evaluated at after training (and its own)."""


def budget_metrics(model: DynaPruner, data: SpatioTemporalData, split: str) -> list[dict]:
    """A width-routed model, one network, at several run-time budgets: per budget, its MAE
    on `split`, its mean cost and FLOPs ratios and the share of samples each branch took."""
    rows = []
    for budget in sorted({*SWEPT_BUDGETS, model.pruning.budget}):
        result = evaluate(model, data, split, budget=budget)
        rows.append(
            {
                "budget": budget,
                f"{split}_mae": result[f"{split}_mae"],
                "cost": result["cost"]["mean"],
                "flops_ratio": result["flops_ratio_mean"],
                "branch_share": result["branch_share"],
            }
        )
    return rows


@torch.no_grad()
def typical_error(windows: Dataset) -> float:
    """Mean per-sample MAE of persistence over `windows`, normalised units: the scale of a
    width router's predictions (its head then starts near the right magnitude)."""
    errors = [per_sample_error(x[:, -1:].expand_as(y), y) for x, y in DataLoader(windows, batch_size=64)]
    return max(float(torch.cat(errors).mean()), 1e-6)


@torch.no_grad()
def persistence_mae(data: SpatioTemporalData, split: str = "val") -> float:
    """MAE of repeating the last input frame: the baseline a forecaster must beat, and
    what a fully skipped sample outputs."""
    totals = ErrorTotals(data)
    for x, y in DataLoader(getattr(data, split), batch_size=64):
        totals.add(x[:, -1:].expand_as(y), y)
    return totals.mae
