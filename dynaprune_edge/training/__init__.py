"""Training Dyna-Pruner models and the checkpoints they leave."""

from dynaprune_edge.training.checkpoint import MODEL_FILE, RESUME_FILE, TrainedModel, load_model
from dynaprune_edge.training.config import TrainConfig
from dynaprune_edge.training.evaluation import evaluate
from dynaprune_edge.training.trainer import METRICS_FILE, Trainer

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
