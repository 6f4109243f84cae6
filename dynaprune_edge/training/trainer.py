"""The training loop of Dyna-Pruner models: step-keyed schedules, an atomic checkpoint every
epoch, and `--resume` that loses at most the epoch in progress. What it is set up with is in
config.py, what a step minimises in losses.py, what it measures after each epoch in
evaluation.py, and the files it writes in checkpoint.py."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict
from pathlib import Path

import torch
from torch.utils.data import DataLoader, default_collate

from dynaprune_edge.data import SpatioTemporalData
from dynaprune_edge.distributed import current_world, data_parallel
from dynaprune_edge.errors import CheckpointError, ConfigError, DataError
from dynaprune_edge.files import atomic_write_text
from dynaprune_edge.flops import FLOPS_CONVENTION
from dynaprune_edge.flops.fvcore_count import dense_flops_fvcore
from dynaprune_edge.masks import MaskMode
from dynaprune_edge.models import DynaPruner, Forecast, ModelConfig, build_model
from dynaprune_edge.models.traced import TracedBackbone
from dynaprune_edge.progress import progress_bar
from dynaprune_edge.training.checkpoint import (
    DAMAGED,
    MODEL_FILE,
    RESUME_FILE,
    atomic_save,
    damaged,
    is_checkpoint,
    load_model,
    model_payload,
    read_resume,
    read_tensors,
    resume_payload,
    resume_problem,
)
from dynaprune_edge.training.config import TrainConfig, split_training
from dynaprune_edge.training.evaluation import budget_metrics, evaluate, persistence_mae, typical_error, width_metrics
from dynaprune_edge.training.losses import budget_penalty, per_sample_error, per_sample_loss, router_loss
from dynaprune_edge.training.sample_pruning import (
    EpochPlan,
    SampleScores,
    Stopwatch,
    batch_count,
    plan_epoch,
)
from dynaprune_edge.training.schedule import learning_rate_factor, mask_mode

METRICS_FILE = "metrics.json"
MASK_LR_SCALE = 10.0
SANDWICH_SIZE = 4
"""Width levels one optimizer step of a slimmable network trains: the widest, the narrowest
and two drawn between (universally slimmable networks' n = 4), so with the default four
levels every level every step. On NYC bike (330 steps, seeds 0–2) one level drawn between
instead left the middle levels' validation MAE 5.3 and 2.7 % higher (8.8 and 5.3 % above
their independently trained static models, against 3.0 and 2.5 %), for three passes a
step instead of four."""
INPLACE_DISTILLATION = 0.5
"""A slimmable network's narrower width levels learn (1 − this) × the MSE to the target
plus this × the MSE to the widest level's forecast of the same step, detached (in-place
distillation): a smoother target than the observation, from the network whose slices
they are."""


def build_optimizer(model: DynaPruner, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the model's parameters. The mask generator's few parameters (biases,
    width calibration) must travel far (from keep-everything to the budget) in a short run,
    and Adam moves a parameter by about lr per step: they get MASK_LR_SCALE × lr and no
    weight decay."""
    named = model.parameter_groups()
    groups = [{"params": named["backbone"], "lr_scale": 1.0}]
    if named["masks"]:
        groups.append({"params": named["masks"], "lr_scale": MASK_LR_SCALE, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


class Trainer:
    """One training run into `out`: `fit()` trains epoch by epoch (a sandwich of width levels
    per step for a slimmable network, the masked forward otherwise); after every epoch it
    calibrates the budget on the held-out windows, evaluates, and writes model.pt and
    resume.pt atomically; at the end it writes metrics.json and returns those metrics. The
    constructor refuses what cannot train: no windows, a batch smaller than the processes, a
    budget the router or the cap cannot meet."""

    def __init__(self, model_config: ModelConfig, data: SpatioTemporalData, config: TrainConfig, out: Path) -> None:
        if len(data.val) == 0 or len(data.train) == 0:
            raise DataError(f"{data.describe()}: training needs at least one training and one validation window")
        torch.manual_seed(config.seed)
        self.model_config, self.data, self.config, self.out = model_config, data, config, Path(out)
        self.world = current_world()
        if config.batch_size < self.world.size:
            raise ConfigError(
                f"--batch-size {config.batch_size} is the global batch: at least one window per process ({self.world.size})"
            )
        self.model = build_model(model_config)
        # the module the training steps run: DDP over several processes (dynaprune_edge.distributed)
        self.stepped = self.model if self.world.size == 1 else data_parallel(self.model)
        self.teacher = self.start_from(config.init) if config.init else None
        self.fitted, self.calibration = split_training(data.train)
        if self.model.pruning.routes_widths:
            self.model.width_router.loss_unit.fill_(typical_error(self.fitted))
            router = float(self.model.branch_costs()[0])
            if router >= self.model.pruning.budget:
                raise ConfigError(
                    f"a width router cannot meet a budget of {self.model.pruning.budget:g} on {self.model.cost_model.name}: deciding the "
                    f"branch alone costs {router:.3f} of the dense model; a higher --budget, or a static width (--arch), pays here"
                )
        elif self.model.pruning.enabled and not self.model.narrow_to_cap():
            curve = self.model.cost_curve()  # at the narrowest widths now
            raise ConfigError(
                f"a per-sample cap of {self.model.pruning.cap:.3g} leaves no region to compute: deciding the masks alone costs "
                f"{curve.ratios[0]:.3f} of the dense model on {self.model.cost_model.name}, one region at the narrowest widths "
                f"{curve.ratios[1]:.3f} (of {self.model.regions}); smaller regions (--region-size) or a higher --max-cost leave room"
            )
        self.optimizer = build_optimizer(self.model, config)
        self.steps_per_epoch = batch_count(len(self.fitted), config.batch_size, self.world.size)
        self.total_steps = self.steps_per_epoch * config.epochs
        self.step = 0
        self.epoch = 0
        self.train_seconds = 0.0
        self.scoring = Stopwatch()
        self.scores = None
        if config.sample_pruning is not None:
            with self.scoring:
                self.scores = SampleScores.of(self.fitted)
        self.history: list[dict] = []
        self.flops_dense_fvcore = dense_flops_fvcore(self.model)
        self.val_mae_persistence = persistence_mae(data)

    def start_from(self, path: str) -> DynaPruner:
        """Copy the backbone weights of a dense model trained on the same data (`--init`);
        return it, frozen, as the teacher that `--distill` compares forecasts with. The
        dynamic-network literature (DS-Net, DynamicViT) trains gated models this way: the
        masks then learn what can be skipped from a network that already forecasts well.
        A plain module's backbone (--backbone PATH.py:Class) also starts from its own
        state dict, as that module saves it: no teacher then."""
        payload = read_tensors(Path(path), "model")
        if not is_checkpoint(payload) and isinstance(self.model.backbone, TracedBackbone):
            if self.config.distill > 0:
                raise ConfigError(
                    f"--init {path}: --distill compares with the forecasts of a dpedge model.pt; from your module's own "
                    "state dict, leave --distill out"
                )
            self.model.backbone.load_user_state(payload, path)
            for norm in self.model.width_norms:  # every level starts from the module's statistics
                norm.track_widths(len(self.model.pruning.width_levels))
            return None
        dense = load_model(Path(path))
        mine = self.model_config
        if dense.model_config.pruning.enabled:
            raise ConfigError(
                f"--init {path}: a pruned model (target {dense.model_config.pruning.budget}); start from a dense one (--target-flops 1.0)"
            )
        different = [
            name
            for name, theirs, ours in [
                ("backbone", dense.model_config.backbone, mine.backbone),
                ("frame shape", dense.model_config.shape, mine.shape),
                ("backbone sizes", dense.model_config.options, mine.options),
                ("data", dense.data_config, self.data.config),
            ]
            if theirs != ours
        ]
        if different:
            raise ConfigError(f"--init {path}: trained with a different {', '.join(different)} than this run")
        missing, unexpected = self.model.backbone.load_state_dict(dense.model.backbone.state_dict(), strict=False)
        per_level = ("width_mean", "width_var")  # a slimmable network's statistics per width level
        if any(not name.endswith(per_level) for name in [*missing, *unexpected]):
            raise ConfigError(
                f"--init {path}: its backbone's weights are not this run's ({', '.join([*missing, *unexpected][:3])} …)"
            )
        for norm in self.model.width_norms:  # every level starts from the dense model's statistics
            norm.track_widths(len(self.model.pruning.width_levels))
        return dense.model.eval().requires_grad_(False)

    def sample_losses(self, forecast: Forecast, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B,) per-sample training loss: MSE to the target, plus `distill` × MSE to the
        dense teacher's forecast (a smoother target than the observation: it says where
        the full network does better than what the sample skipped)."""
        losses = per_sample_loss(forecast, y)
        if self.config.distill > 0:
            with torch.no_grad():
                taught = self.teacher(x, MaskMode(hard=True)).prediction
            losses = losses + self.config.distill * per_sample_loss(forecast, taught)
        return losses

    # --- checkpoints -------------------------------------------------------------
    def _identity(self) -> dict:
        """What a resumed run must share with the interrupted one (the data by content)."""
        return {
            "model_config": self.model_config.to_dict(),
            "data_config": self.data.config.to_dict(),
            "data_fingerprint": self.data.fingerprint,
            "train_config": asdict(self.config),
        }

    def save(self, metrics: dict) -> None:
        """Rank 0 writes; the others wait until it has (so that all of them see the files)."""
        if self.world.main:
            self._write(metrics)
        self.world.barrier()

    def _write(self, metrics: dict) -> None:
        atomic_save(
            model_payload(
                self.model, self.model_config, self.data.config, self.data.normalizer, metrics, self.data.fingerprint
            ),
            self.out / MODEL_FILE,
        )
        atomic_save(
            resume_payload(
                self._identity(),
                self.model,
                self.optimizer,
                self.step,
                self.epoch,
                self.train_seconds,
                self.scoring.seconds,
                self.history,
                self.scores,
            ),
            self.out / RESUME_FILE,
        )

    def restore(self) -> None:
        """Continue after the last completed epoch of an interrupted run in `out`."""
        payload = read_resume(self.out / RESUME_FILE, self._identity())
        try:
            self.model.load_state_dict(payload["state_dict"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.step, self.epoch = payload["step"], payload["epoch"]
            self.train_seconds = payload["train_seconds"]
            self.history = json.loads(payload["history"])
        except DAMAGED as error:
            raise damaged(self.out / RESUME_FILE, "resume state", error) from None
        problem = resume_problem(payload) or (
            f"epoch {self.epoch} of {self.config.epochs}" if self.epoch > self.config.epochs else None
        )
        if problem:
            raise CheckpointError(f"{self.out / RESUME_FILE}: damaged dpedge resume state ({problem})")
        if self.scores is not None:
            try:
                self.scoring.seconds = payload["scoring_seconds"]
                self.scores.load_state_dict(payload["sample_scores"])
            except DAMAGED as error:
                raise CheckpointError(
                    f"{self.out / RESUME_FILE}: no usable sample scores for --st-prune ({error})"
                ) from None

    # --- training ----------------------------------------------------------------
    def _set_learning_rate(self) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = group["lr_scale"] * self.config.lr * learning_rate_factor(self.step, self.total_steps)

    def plan(self) -> EpochPlan:
        """The windows this epoch trains on, and the total optimizer steps of the run
        re-estimated from it (later pruned epochs taken as this one's length, annealing ones
        at full length), so that the step-keyed schedules end where training does."""
        pruning = self.config.sample_pruning
        if pruning is None:
            return EpochPlan.full(len(self.fitted))
        with self.scoring:
            plan = plan_epoch(self.scores, pruning, self.epoch, self.config.epochs, self.config.seed)
        later = range(self.epoch + 1, self.config.epochs)
        steps = plan.steps(self.config.batch_size, self.world.size)
        self.total_steps = (
            self.step
            + steps
            + sum(self.steps_per_epoch if pruning.annealing(e, self.config.epochs) else steps for e in later)
        )
        return plan

    def batches(self, plan: EpochPlan) -> list[list[int]]:
        """The epoch's global batches of window indices: a permutation of the plan's windows
        seeded by (seed, epoch), cut into --batch-size. (Not the order a shuffling DataLoader
        with that generator deals, which draws a base seed from it first: runs before 24c1310
        trained in another order.) A last batch
        with fewer windows than there are processes joins the one before it: every rank
        needs a window to take part in the step."""
        order = torch.Generator().manual_seed(self.config.seed * 100_003 + self.epoch)
        shuffled = plan.indices[torch.randperm(len(plan.indices), generator=order).numpy()].tolist()
        size = self.config.batch_size
        batches = [shuffled[start : start + size] for start in range(0, len(shuffled), size)]
        if len(batches) > batch_count(len(shuffled), size, self.world.size):
            batches[-2:] = [batches[-2] + batches[-1]]
        return batches

    def masked_step(
        self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of one batch under the sample's masks: the weighted losses
        plus the budget's penalty. Returns (per-sample losses, the global batch's mean cost)."""
        forecast = self.stepped(x, mask_mode(self.step, self.total_steps, self.model.pruning))
        losses = self.sample_losses(forecast, x, y)
        scale = self.world.size / batch  # DDP averages over ranks: the step is the global batch's mean
        mean_cost = self.world.sum(forecast.cost_ratio.sum()) / batch
        (scale * (weights * losses).sum() + budget_penalty(mean_cost, self.model)).backward()
        return losses, mean_cost

    def sandwich_levels(self) -> list[int]:
        """Width level indices one step of a slimmable network trains: the widest, the
        narrowest and SANDWICH_SIZE − 2 drawn from those between (seeded by the step: the
        same on every process and after --resume); with four levels, every one."""
        count = len(self.model.pruning.width_levels)
        levels = list(dict.fromkeys([count - 1, 0]))
        between = count - 2
        if between > SANDWICH_SIZE - 2:
            draw = torch.Generator().manual_seed(self.config.seed * 100_003 + self.step)
            return levels + sorted(1 + int(i) for i in torch.randperm(between, generator=draw)[: SANDWICH_SIZE - 2])
        return levels + list(range(1, count - 1))

    def sandwich_step(
        self, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward and backward of one batch of a slimmable network by the sandwich rule
        with in-place distillation (Yu & Huang, ICCV 2019): the widest level learns the
        target, the narrowest and those between (SANDWICH_SIZE) learn it and the widest's
        forecast (INPLACE_DISTILLATION). One backward per level, their gradients summed
        (synchronised across processes at the last), so a step holds one graph at a time.
        A width router learns, at the last, each sample's error at the levels the step
        ran and at persistence (`router_loss`).
        Returns (the widest level's per-sample losses, its mean cost)."""
        scale = self.world.size / batch
        levels = self.sandwich_levels()
        routed = self.model.pruning.routes_widths
        if routed:  # per sample and branch (0: persistence, then each level): its error, and whether this step saw it
            observed = torch.zeros(len(x), self.model.width_router.branches)
            seen = torch.zeros_like(observed, dtype=torch.bool)
            observed[:, 0], seen[:, 0] = per_sample_error(x[:, -1:].expand_as(y), y), True
        for position, level in enumerate(levels):
            last = position == len(levels) - 1
            with contextlib.nullcontext() if last or self.stepped is self.model else self.stepped.no_sync():
                forecast = self.stepped(x, MaskMode(hard=True), level)
                losses = self.sample_losses(forecast, x, y)
                if position == 0:
                    widest, widest_losses = forecast.prediction.detach(), losses.detach()
                    mean_cost = self.world.sum(forecast.cost_ratio.sum()) / batch
                else:
                    losses = (1 - INPLACE_DISTILLATION) * losses + INPLACE_DISTILLATION * per_sample_loss(
                        forecast, widest
                    )
                loss = scale * (weights * losses).sum()
                if routed:
                    observed[:, level + 1], seen[:, level + 1] = per_sample_error(forecast.prediction, y), True
                    if last:
                        loss = loss + router_loss(
                            forecast.predicted_losses, observed / self.model.width_router.loss_unit, seen, self.world
                        )
                loss.backward()
        return widest_losses, mean_cost

    def train_epoch(self, plan: EpochPlan, progress, task) -> float:
        """One pass over the plan's windows; the mean loss per global batch, averaged."""
        self.model.train()
        weight_of = torch.from_numpy(plan.weight_of).float()
        batches = self.batches(plan)
        step = self.sandwich_step if self.model.pruning.slimmable else self.masked_step
        total = 0.0
        for number, batch in enumerate(batches):
            mine = self.world.split(batch)
            x, y = default_collate([self.fitted[i] for i in mine])
            index = torch.tensor(mine)
            self._set_learning_rate()
            self.optimizer.zero_grad(set_to_none=True)
            losses, mean_cost = step(x, y, weight_of[index], len(batch))
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            self.optimizer.step()
            self.step += 1
            batch_losses = self.world.share(losses, len(batch))
            if self.scores is not None:
                with self.scoring:
                    self.scores.observe(torch.tensor(batch), batch_losses)
            total += float(batch_losses.mean())
            progress.update(
                task,
                advance=1,
                description=f"epoch {self.epoch + 1}/{self.config.epochs} loss {total / (number + 1):.4f} "
                f"cost {float(mean_cost.detach()):.2f}",
            )
        return total / len(batches)

    def fit(self) -> dict:
        """Train the remaining epochs; returns (and writes) the last epoch's metrics."""
        remaining = self.config.epochs - self.epoch
        with progress_bar(disable=not self.world.main) as progress:
            task = progress.add_task("training", total=remaining * self.steps_per_epoch)
            first_step = self.step
            while self.epoch < self.config.epochs:
                started = time.perf_counter()
                plan = self.plan()
                progress.update(task, total=self.total_steps - first_step)
                train_loss = self.train_epoch(plan, progress, task)
                self.train_seconds += time.perf_counter() - started
                self.epoch += 1
                self.calibrate()
                seen = {
                    "samples_seen": len(plan.indices),
                    "pruned_fraction": plan.pruned_fraction,
                    "train_seconds": round(self.train_seconds, 3),
                }  # so far: when each epoch's MAE was reached
                validation = evaluate(self.model, self.data)
                widths = (
                    {"widths": width_metrics(self.model, self.data, "val", validation)}
                    if self.model.pruning.slimmable
                    else {}
                )
                self.history.append({"epoch": self.epoch, "train_loss": train_loss, **seen, **validation, **widths})
                self.save(self.metrics())
        metrics = self.metrics() | self.final_metrics()
        self.save(metrics)
        if self.world.main:
            atomic_write_text(json.dumps(metrics, indent=2) + "\n", self.out / METRICS_FILE)
        return metrics

    def calibrate(self) -> None:
        """The budget's keep threshold and per-sample cap (masks/budget.py), or a width
        router's prices (masks/router.py), from the held-out training windows only."""
        held_out = (x for x, _ in DataLoader(self.calibration, batch_size=64))
        if self.model.pruning.routes_widths:
            self.model.calibrate_router(held_out)
        elif self.model.pruning.enabled:
            self.model.calibrate(held_out)

    def final_metrics(self) -> dict:
        """What the finished model costs on every split, its spread over samples and the
        samples above the cap (none, by construction), and its test error."""
        splits = {split: evaluate(self.model, self.data, split) for split in ("train", "test")}
        splits["val"] = self.history[-1]
        budget = {}
        if self.model.pruning.routes_widths:
            budget = {
                "max_cost": self.model.width_router.cap,
                "branch_costs": self.model.width_router.costs.tolist(),
                "budgets": budget_metrics(self.model, self.data, "val"),
            }
        elif self.model.pruning.enabled:
            mask = self.model.data_mask
            budget = {
                "max_cost": self.model.pruning.cap,
                "keep_threshold": float(mask.threshold),
                "max_regions": int(mask.max_regions),
                "regions": self.model.regions,
            }
        widths = {}
        if self.model.pruning.slimmable:  # each level's test error beside its validation error
            tested = width_metrics(self.model, self.data, "test", splits["test"])
            widths = {
                "widths": [
                    {**val, "test_mae": test["test_mae"]} for val, test in zip(self.history[-1]["widths"], tested)
                ]
            }
        return {
            "test_mae": splits["test"]["test_mae"],
            "test_mse": splits["test"]["test_mse"],
            "cost": {split: splits[split]["cost"] for split in ("train", "val", "test")},
            "above_cap": {split: splits[split]["above_cap"] for split in ("train", "val", "test")},
            **budget,
            **widths,
        }

    def metrics(self) -> dict:
        """The newest epoch's validation figures and how they were obtained."""
        per_epoch = (
            "epoch",
            "train_loss",
            "cost",
            "above_cap",
            "samples_seen",
            "pruned_fraction",
            "train_seconds",
        )  # in the history
        latest = {key: value for key, value in self.history[-1].items() if key not in per_epoch}
        return {
            **latest,
            "val_mae_persistence": self.val_mae_persistence,
            "flops_dense_fvcore": self.flops_dense_fvcore,
            "flops_convention": FLOPS_CONVENTION,
            "backbone": self.model_config.backbone,
            "budget": self.model_config.pruning.budget,
            "cost_target": self.model.cost_model.describe(),
            "dataset": self.data.describe(),
            "unit": self.data.unit,
            "epochs": self.epoch,
            "steps": self.step,
            "train_seconds": round(self.train_seconds, 2),
            "samples_seen": sum(epoch["samples_seen"] for epoch in self.history),
            "pruned_fraction": 1
            - sum(epoch["samples_seen"] for epoch in self.history) / (len(self.fitted) * len(self.history)),
            "scoring_seconds": round(self.scoring.seconds, 3),
            "history": self.history,
        }
