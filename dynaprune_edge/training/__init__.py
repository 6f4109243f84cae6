"""Training Dyna-Pruner models and the checkpoints they leave."""

from dynaprune_edge.training.checkpoint import TrainedModel, load_model
from dynaprune_edge.training.trainer import METRICS_FILE, MODEL_FILE, RESUME_FILE, TrainConfig, Trainer, evaluate

__all__ = [
    "METRICS_FILE",
    "MODEL_FILE",
    "RESUME_FILE",
    "TrainConfig",
    "TrainedModel",
    "Trainer",
    "evaluate",
    "load_model",
]
