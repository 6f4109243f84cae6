"""Dyna-Pruner: per-sample data and model masks from one shared importance field."""

from dynaprune_edge.masks.config import MaskMode, PruningConfig
from dynaprune_edge.masks.generator import DataMask, ImportanceField, MaskGenerator, ModelMask, straight_through

__all__ = ["DataMask", "ImportanceField", "MaskGenerator", "MaskMode", "ModelMask", "PruningConfig", "straight_through"]
