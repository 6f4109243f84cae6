"""One training run from user-level options: what `dpedge train`, the demo and the
accuracy benchmark share."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch

from dynaprune_edge.cost.orin import Device
from dynaprune_edge.data import DATASETS, DataConfig, SpatioTemporalData, load_dataset
from dynaprune_edge.errors import CheckpointError, ConfigError
from dynaprune_edge.files import check_writable
from dynaprune_edge.masks import PruningConfig
from dynaprune_edge.models import BACKBONES, ForecastShape, ModelConfig, backbone_options, build_model, check_model_size
from dynaprune_edge.training.checkpoint import (
    DAMAGED,
    MODEL_FILE,
    RESUME_FILE,
    damaged,
    require_backbone,
    resume_problem,
    resumed_differently,
    safe_load,
)
from dynaprune_edge.training.config import TrainConfig
from dynaprune_edge.training.trainer import METRICS_FILE, Trainer, build_optimizer

SLIMMABLE_GROUP_SIZE = 4
"""A slimmable network's default filter group: the four width levels stay four distinct
widths on a 16-channel layer (SimVP's encoder), where groups of 8 gave ×0.25 and ×0.5
the same width and ×0.75 the full one."""


def pruning_defaults(budget: float, slimmable: bool | None, group_size: int | None) -> dict:
    """The PruningConfig fields `slimmable` and `group_size` as `dpedge train` and `dpedge
    calibrate` resolve them when left out (None). Below budget 1 a slimmable network with a
    width router, whose every branch is a static sub-network and so never slower than
    dense; region and filter masks (`--no-slimmable`) ran slower than dense on most targets.
    At budget 1 the plain dense baseline, which the sandwich rule would make worse."""
    slimmable = budget < 1.0 if slimmable is None else slimmable
    if group_size is None:
        group_size = SLIMMABLE_GROUP_SIZE if slimmable else PruningConfig.group_size
    return {"slimmable": slimmable, "group_size": group_size}


@dataclass(frozen=True)
class RunSpec:
    """A run's options, validated on construction (before any data is read)."""

    backbone: str
    data: DataConfig
    train: TrainConfig
    pruning: PruningConfig
    options: dict = field(default_factory=dict)
    cost_table: str | None = None  # a measured table file (`--cost-table`) instead of the cached one
    device: dict | None = None  # orin-emu: the emulated Orin (Device's module, power_mode, precision)

    @classmethod
    def create(
        cls,
        backbone: str,
        data: DataConfig,
        budget: float,
        train: TrainConfig,
        backbone_overrides: dict[str, str] | None = None,
        pruning_overrides: dict | None = None,
        cost_table: str | None = None,
        device: Device | None = None,
    ) -> RunSpec:
        """device: the Orin --cost orin-emu emulates (`cost.orin.emulated_device`), else None."""
        pruning = PruningConfig(budget=budget, **(pruning_overrides or {}))
        if cost_table is not None and pruning.cost == "flops":
            raise ConfigError("--cost-table prices a measured cost target: add --cost ort-cpu")
        options = backbone_options(backbone, backbone_overrides or {})
        family, backbone_type = DATASETS.get(data.name).defaults, BACKBONES.get(backbone)
        backbone_type.check_before_data(
            backbone_type.Options(**options),
            data.frames_in or family.frames_in,
            data.frames_out or family.frames_out,
            family.channels,
        )
        return cls(
            backbone, data, train, pruning, options, cost_table, None if device is None else dataclasses.asdict(device)
        )


def check_run_folder(out: Path, resume: bool, overwrite: bool, train: TrainConfig) -> None:
    """Before any work: `out` must be a folder (or nothing yet); a run already in it is
    continued (`resume`) or replaced (`overwrite`, which drops its metrics.json at once:
    they describe the run being replaced), never overwritten silently."""
    check_writable(out, "--out", folder=True)
    if resume and overwrite:
        raise ConfigError("--resume continues the run in --out, --overwrite replaces it: choose one")
    if resume:
        if not (out / RESUME_FILE).is_file():
            raise ConfigError(f"--resume: {out} holds no {RESUME_FILE} to continue from")
        check_resume_state(out, train)
        return
    found = [name for name in (MODEL_FILE, RESUME_FILE) if (out / name).exists()]
    if found and not overwrite:
        how = (
            "continue it with --resume, or replace it"
            if RESUME_FILE in found
            else f"it has no {RESUME_FILE} to continue from: replace it"
        )
        raise ConfigError(f"--out {out} holds a run ({', '.join(found)}): {how} with --overwrite")
    if overwrite:
        (out / METRICS_FILE).unlink(missing_ok=True)


def check_resume_state(out: Path, train: TrainConfig) -> None:
    """A damaged resume.pt is refused before the data are read: its header and fields; the
    network and optimizer it describes, built and stepped once from its state; and its
    configuration, data fingerprint and weights against those of the model.pt beside it
    (the same network, written just before it)."""
    state = safe_load(out / RESUME_FILE, "resume state")
    problem = resume_problem(state)
    if problem:
        raise CheckpointError(f"{out / RESUME_FILE}: damaged dpedge resume state ({problem})")
    if state.get("train_config") != dataclasses.asdict(
        train
    ):  # the model's and the data's need the data: Trainer.restore
        raise resumed_differently(out / RESUME_FILE, ["train_config"])
    if isinstance(state.get("model_config"), dict):
        require_backbone(out / RESUME_FILE, str(state["model_config"].get("backbone")))
    try:  # the network and optimizer it describes, and the optimizer's first step from that state
        network = build_model(ModelConfig.from_dict(state["model_config"]))
        network.load_state_dict(state["state_dict"])
        optimizer = build_optimizer(network, train)
        optimizer.load_state_dict(state["optimizer"])
        for parameter in network.parameters():
            parameter.grad = torch.zeros_like(parameter)
        optimizer.step()
    except DAMAGED as error:
        raise damaged(out / RESUME_FILE, "resume state", error) from None
    if not (out / MODEL_FILE).is_file():
        return
    model = safe_load(out / MODEL_FILE, "model")
    compared = ("model_config", "data_config") + (
        ("data_fingerprint",) if "data_fingerprint" in model else ()
    )  # older model.pt: none
    differ = [name for name in compared if state.get(name) != model.get(name)]
    if differ:
        raise CheckpointError(
            f"{out / RESUME_FILE}: its {' and '.join(differ)} are not those of the {MODEL_FILE} beside it: "
            "damaged; train into a new --out directory, or replace the run with --overwrite"
        )
    shapes = {}
    for path, payload in ((out / RESUME_FILE, state), (out / MODEL_FILE, model)):
        weights = payload.get("state_dict")
        if not isinstance(weights, dict) or not all(isinstance(w, torch.Tensor) for w in weights.values()):
            raise CheckpointError(f"{path}: damaged dpedge checkpoint (its weights are not a dict of tensors)")
        shapes[path] = {name: tuple(w.shape) for name, w in weights.items()}
    resumed, modelled = shapes.values()
    if resumed != modelled:
        raise CheckpointError(
            f"{out / RESUME_FILE}: its weights are not those of the {MODEL_FILE} beside it (names or shapes differ): "
            "damaged; train into a new --out directory, or replace the run with --overwrite"
        )


def model_config_for(spec: RunSpec, data: SpatioTemporalData) -> ModelConfig:
    """The model to train (a measured cost target's table is added by
    dynaprune_edge.export.cost_table.priced_config)."""
    shape = ForecastShape(data.frames_in, data.frames_out, data.channels, data.height, data.width)
    config = ModelConfig(spec.backbone, shape, spec.options, spec.pruning)
    check_model_size(config)
    return config


def train_run(
    spec: RunSpec,
    out: Path,
    resume: bool = False,
    data: SpatioTemporalData | None = None,
    config: ModelConfig | None = None,
) -> dict:
    """Train into `out` (model.pt, resume.pt, metrics.json) and return the metrics.
    config: the model to train, if not `model_config_for(spec, data)`."""
    data = data or load_dataset(spec.data)
    trainer = Trainer(config or model_config_for(spec, data), data, spec.train, out)
    if resume:
        trainer.restore()
    return trainer.fit()
