"""One training run from user-level options: what `dpedge train`, the demo and the
accuracy benchmark share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dynaprune_edge.data import DataConfig, SpatioTemporalData, load_dataset
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

    @classmethod
    def create(
        cls,
        backbone: str,
        data: DataConfig,
        target_flops: float,
        train: TrainConfig,
        backbone_overrides: dict[str, str] | None = None,
        pruning_overrides: dict | None = None,
    ) -> "RunSpec":
        pruning = PruningConfig(target_flops=target_flops, **(pruning_overrides or {}))
        return cls(backbone, data, train, pruning, backbone_options(backbone, backbone_overrides or {}))


def model_config_for(spec: RunSpec, data: SpatioTemporalData) -> ModelConfig:
    shape = ForecastShape(data.frames_in, data.frames_out, data.channels, data.height, data.width)
    return ModelConfig(spec.backbone, shape, spec.options, spec.pruning)


def train_run(spec: RunSpec, out: Path, resume: bool = False, data: SpatioTemporalData | None = None) -> dict:
    """Train into `out` (model.pt, resume.pt, metrics.json) and return the metrics."""
    data = data or load_dataset(spec.data)
    trainer = Trainer(model_config_for(spec, data), data, spec.train, out)
    if resume:
        trainer.restore()
    return trainer.fit()
