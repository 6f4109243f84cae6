"""One training run from user-level options: what `dpedge train`, the demo and the
accuracy benchmark share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dynaprune_edge.cost.orin import Device
from dynaprune_edge.data import DataConfig, SpatioTemporalData, load_dataset
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.masks import PruningConfig
from dynaprune_edge.models import ForecastShape, ModelConfig, backbone_options
from dynaprune_edge.training.trainer import TrainConfig, Trainer


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
        device: dict | None = None,
    ) -> "RunSpec":
        pruning = PruningConfig(budget=budget, **(pruning_overrides or {}))
        if cost_table is not None and pruning.cost == "flops":
            raise ConfigError("--cost-table prices a measured cost target: add --cost ort-cpu")
        return cls(backbone, data, train, pruning, backbone_options(backbone, backbone_overrides or {}), cost_table,
                   emulated_orin(pruning.cost, device))


def emulated_orin(cost: str, device: dict | None) -> dict | None:
    """The Orin `--cost orin-emu` prices on, as RunSpec stores it (defaults filled in,
    checked); None when no option chose one. Other cost targets refuse the options."""
    if device is None:
        return None
    if cost != "orin-emu":
        raise ConfigError("--module, --power-mode and --precision choose the Orin that --cost orin-emu emulates: add --cost orin-emu")
    checked = Device.chosen(**device)
    return {"module": checked.module, "power_mode": checked.power_mode, "precision": checked.precision}


def model_config_for(spec: RunSpec, data: SpatioTemporalData) -> ModelConfig:
    """The model to train (a measured cost target's table is added by
    dynaprune_edge.export.cost_table.priced_config)."""
    shape = ForecastShape(data.frames_in, data.frames_out, data.channels, data.height, data.width)
    return ModelConfig(spec.backbone, shape, spec.options, spec.pruning)


def train_run(spec: RunSpec, out: Path, resume: bool = False, data: SpatioTemporalData | None = None, config: ModelConfig | None = None) -> dict:
    """Train into `out` (model.pt, resume.pt, metrics.json) and return the metrics.
    config: the model to train, if not `model_config_for(spec, data)`."""
    data = data or load_dataset(spec.data)
    trainer = Trainer(config or model_config_for(spec, data), data, spec.train, out)
    if resume:
        trainer.restore()
    return trainer.fit()
