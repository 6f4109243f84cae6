"""Training Dyna-Pruner models: per-sample losses, step-keyed schedules, an atomic
checkpoint every epoch, and `--resume` that loses at most the epoch in progress."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from dynaprune_edge.data import SpatioTemporalData
from dynaprune_edge.errors import CheckpointError, DataError
from dynaprune_edge.flops import FLOPS_CONVENTION
from dynaprune_edge.flops.fvcore_count import dense_flops_fvcore
from dynaprune_edge.masks import MaskMode
from dynaprune_edge.models import DynaPruner, Forecast, ModelConfig, build_model
from dynaprune_edge.progress import progress_bar
from dynaprune_edge.files import atomic_write_text
from dynaprune_edge.training.checkpoint import atomic_save, header, model_payload, safe_load
from dynaprune_edge.training.schedule import learning_rate_factor, mask_mode

MODEL_FILE = "model.pt"
RESUME_FILE = "resume.pt"
METRICS_FILE = "metrics.json"
MASK_LR_SCALE = 10.0


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0

    def for_steps(self, steps: int, windows: int) -> "TrainConfig":
        """As many epochs over `windows` training windows as `steps` optimizer steps take,
        so that small and large datasets get the same training budget."""
        return dataclasses.replace(self, epochs=max(1, math.ceil(steps / math.ceil(windows / self.batch_size))))


def per_sample_loss(forecast: Forecast, target: torch.Tensor) -> torch.Tensor:
    """(B,) mean squared error of each sample (reduction='none'): sample-pruning trainers
    weight these individually."""
    return F.mse_loss(forecast.prediction, target, reduction="none").flatten(1).mean(dim=1)


def flops_penalty(forecast: Forecast, model: DynaPruner) -> torch.Tensor:
    pruning = model.pruning
    if not pruning.enabled:
        return torch.zeros(())
    return pruning.flops_weight * (forecast.flops_ratio.mean() - pruning.target_flops) ** 2


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


@torch.no_grad()
def evaluate(model: DynaPruner, data: SpatioTemporalData, split: str = "val", batch_size: int = 32) -> dict:
    """Hard-mask metrics on de-normalised values; FLOPs per sample from the masks."""
    model.eval()
    totals = ErrorTotals(data)
    flops, kept = [], []
    for x, y in DataLoader(getattr(data, split), batch_size=batch_size):
        forecast = model(x, MaskMode(hard=True))
        totals.add(forecast.prediction, y)
        flops.append(forecast.flops)
        kept.append(forecast.data_kept)
    flops_per_sample = torch.cat(flops)
    return {
        f"{split}_mae": totals.mae,
        f"{split}_mse": totals.mse,
        "flops_dense": forecast.dense_flops,
        "flops_sparse_mean": float(flops_per_sample.mean()),
        "flops_ratio_mean": float((flops_per_sample / forecast.dense_flops).mean()),
        "data_kept_mean": float(torch.cat(kept).mean()),
    }


@torch.no_grad()
def persistence_mae(data: SpatioTemporalData, split: str = "val") -> float:
    """MAE of repeating the last input frame: the baseline a forecaster must beat, and
    what a fully skipped sample outputs."""
    totals = ErrorTotals(data)
    for x, y in DataLoader(getattr(data, split), batch_size=64):
        totals.add(x[:, -1:].expand_as(y), y)
    return totals.mae


class Trainer:
    def __init__(self, model_config: ModelConfig, data: SpatioTemporalData, config: TrainConfig, out: Path) -> None:
        if len(data.val) == 0 or len(data.train) == 0:
            raise DataError(f"{data.describe()}: training needs at least one training and one validation window")
        torch.manual_seed(config.seed)
        self.model_config, self.data, self.config, self.out = model_config, data, config, Path(out)
        self.model = build_model(model_config)
        self.optimizer = torch.optim.AdamW(self.parameter_groups(), lr=config.lr, weight_decay=config.weight_decay)
        self.steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.step = 0
        self.epoch = 0
        self.train_seconds = 0.0
        self.history: list[dict] = []
        self.flops_dense_fvcore = dense_flops_fvcore(self.model)
        self.val_mae_persistence = persistence_mae(data)

    def parameter_groups(self) -> list[dict]:
        """The mask generator's few parameters (biases, width calibration) must travel far
        (from keep-everything to the budget) in a short run, and Adam moves a parameter by
        about lr per step: they get MASK_LR_SCALE × lr and no weight decay."""
        named = self.model.parameter_groups()
        groups = [{"params": named["backbone"], "lr_scale": 1.0}]
        if named["masks"]:
            groups.append({"params": named["masks"], "lr_scale": MASK_LR_SCALE, "weight_decay": 0.0})
        return groups

    # --- checkpoints -------------------------------------------------------------
    def _identity(self) -> dict:
        return {
            "model_config": self.model_config.to_dict(),
            "data_config": self.data.config.to_dict(),
            "train_config": asdict(self.config),
        }

    def save(self, metrics: dict) -> None:
        atomic_save(model_payload(self.model, self.model_config, self.data.config, self.data.normalizer, metrics), self.out / MODEL_FILE)
        atomic_save(
            {
                **header("resume state"),
                **self._identity(),
                "state_dict": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": self.step,
                "epoch": self.epoch,
                "train_seconds": self.train_seconds,
                "history": json.dumps(self.history),
            },
            self.out / RESUME_FILE,
        )

    def restore(self) -> None:
        """Continue after the last completed epoch of an interrupted run in `out`."""
        payload = safe_load(self.out / RESUME_FILE, "resume state")
        mismatched = [key for key, value in self._identity().items() if payload.get(key) != value]
        if mismatched:
            raise CheckpointError(
                f"{self.out / RESUME_FILE}: was written with different {', '.join(mismatched)}; "
                "resume with the same options, or train into a new --out directory"
            )
        self.model.load_state_dict(payload["state_dict"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.step, self.epoch = payload["step"], payload["epoch"]
        self.train_seconds = payload["train_seconds"]
        self.history = json.loads(payload["history"])

    # --- training ----------------------------------------------------------------
    def _set_learning_rate(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr_scale"] * self.config.lr * learning_rate_factor(self.step, self.total_steps)

    def train_epoch(self, progress, task) -> float:
        self.model.train()
        order = torch.Generator().manual_seed(self.config.seed * 100_003 + self.epoch)
        loader = DataLoader(self.data.train, batch_size=self.config.batch_size, shuffle=True, generator=order)
        total = 0.0
        for batch, (x, y) in enumerate(loader):
            self._set_learning_rate()
            forecast = self.model(x, mask_mode(self.step, self.total_steps, self.model.pruning))
            losses = per_sample_loss(forecast, y)
            loss = losses.mean() + flops_penalty(forecast, self.model)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.step += 1
            total += float(losses.mean().detach())
            progress.update(
                task,
                advance=1,
                description=f"epoch {self.epoch + 1}/{self.config.epochs} loss {total / (batch + 1):.4f} "
                f"flops {float(forecast.flops_ratio.mean().detach()):.2f}",
            )
        return total / len(loader)

    def fit(self) -> dict:
        """Train the remaining epochs; returns (and writes) the last epoch's metrics."""
        remaining = self.config.epochs - self.epoch
        with progress_bar() as progress:
            task = progress.add_task("training", total=remaining * self.steps_per_epoch)
            while self.epoch < self.config.epochs:
                started = time.perf_counter()
                train_loss = self.train_epoch(progress, task)
                self.train_seconds += time.perf_counter() - started
                self.epoch += 1
                self.history.append({"epoch": self.epoch, "train_loss": train_loss, **evaluate(self.model, self.data)})
                self.save(self.metrics())
        metrics = self.metrics()
        atomic_write_text(json.dumps(metrics, indent=2) + "\n", self.out / METRICS_FILE)
        return metrics

    def metrics(self) -> dict:
        """The newest epoch's validation figures and how they were obtained."""
        latest = {key: value for key, value in self.history[-1].items() if key not in ("epoch", "train_loss")}
        return {
            **latest,
            "val_mae_persistence": self.val_mae_persistence,
            "flops_dense_fvcore": self.flops_dense_fvcore,
            "flops_convention": FLOPS_CONVENTION,
            "backbone": self.model_config.backbone,
            "target_flops": self.model_config.pruning.target_flops,
            "dataset": self.data.describe(),
            "unit": self.data.unit,
            "epochs": self.epoch,
            "steps": self.step,
            "train_seconds": round(self.train_seconds, 2),
            "history": self.history,
        }
