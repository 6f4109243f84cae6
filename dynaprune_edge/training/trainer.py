"""Training Dyna-Pruner models: per-sample losses, step-keyed schedules, an atomic
checkpoint every epoch, and `--resume` that loses at most the epoch in progress."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Subset, default_collate

from dynaprune_edge.checks import is_count, is_number
from dynaprune_edge.data import SpatioTemporalData, check_seed
from dynaprune_edge.distributed import World, current_world, data_parallel
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
    atomic_save,
    damaged,
    header,
    is_checkpoint,
    load_model,
    model_payload,
    read_tensors,
    safe_load,
)
from dynaprune_edge.training.sample_pruning import (
    EpochPlan,
    SamplePruning,
    SampleScores,
    Stopwatch,
    batch_count,
    plan_epoch,
)
from dynaprune_edge.training.schedule import learning_rate_factor, mask_mode

MODEL_FILE = "model.pt"
RESUME_FILE = "resume.pt"
METRICS_FILE = "metrics.json"
RESUME_FIELDS = ("state_dict", "optimizer", "step", "epoch", "train_seconds", "history")
"""What `Trainer.restore` reads from resume.pt in any run (--st-prune adds its scores)."""
MASK_LR_SCALE = 10.0
CALIBRATION_EVERY = 10
"""Every 10th training window is held out of training; the budget is calibrated on those
after every epoch (masks/budget.py). Spread over the whole training period, they cost what
the training distribution costs (the latest windows alone did not: on the KNMI event they
were wetter than the validation windows, which then got 0.22 for a budget of 0.3). Dense
models hold them out too, so that dense and pruned runs train on the same windows."""
COST_QUANTILES = {"p10": 0.1, "p50": 0.5, "p90": 0.9}
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


def resume_problem(payload: dict) -> str | None:
    """What is wrong with the fields of a resume state that `safe_load` read (None: nothing):
    checked before the data are read (training/run.py) and again when restoring."""
    missing = [name for name in RESUME_FIELDS if name not in payload]
    if missing:
        return f"no {', '.join(missing)}"
    step, epoch, seconds = payload["step"], payload["epoch"], payload["train_seconds"]
    if not (is_count(step) and is_count(epoch)):
        return f"step {step!r}, epoch {epoch!r}"
    if not (is_number(seconds) and seconds >= 0):
        return f"train_seconds {seconds!r}"
    optimizer = payload["optimizer"]
    if not (
        isinstance(optimizer, dict)
        and isinstance(optimizer.get("state"), dict)
        and isinstance(optimizer.get("param_groups"), list)
    ):
        return "its optimizer state has no state and param_groups"
    try:
        history = json.loads(payload["history"])
    except (TypeError, ValueError):
        return "its history is not JSON text"
    if not isinstance(history, list) or len(history) != epoch:
        return "its history is not one entry per epoch"
    return None


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


def resumed_differently(path: Path, mismatched: list[str]) -> CheckpointError:
    """The refusal of a --resume whose options or data are not the interrupted run's."""
    named = {"data_fingerprint": "data content (the files at the same path changed)"}
    return CheckpointError(
        f"{path}: was written with different {', '.join(named.get(key, key) for key in mismatched)}; "
        "resume with the same options and data, or train into a new --out directory"
    )


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


class Trainer:
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
            {
                **header("resume state"),
                **self._identity(),
                "state_dict": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "step": self.step,
                "epoch": self.epoch,
                "train_seconds": self.train_seconds,
                "scoring_seconds": self.scoring.seconds,
                "history": json.dumps(self.history),
                **({"sample_scores": self.scores.state_dict()} if self.scores is not None else {}),
            },
            self.out / RESUME_FILE,
        )

    def restore(self) -> None:
        """Continue after the last completed epoch of an interrupted run in `out`."""
        payload = safe_load(self.out / RESUME_FILE, "resume state")
        mismatched = [key for key, value in self._identity().items() if payload.get(key) != value]
        if "data_config" in mismatched:  # other data options: of course other content
            mismatched.remove("data_fingerprint")
        if mismatched:
            raise resumed_differently(self.out / RESUME_FILE, mismatched)
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
