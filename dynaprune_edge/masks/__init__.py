"""Dyna-Pruner: per-sample data and model masks from one shared importance field."""

from dynaprune_edge.masks.config import MaskMode, PruningConfig
from dynaprune_edge.masks.gated import GatedConv2d, conv2d_flops
from dynaprune_edge.masks.generator import DataMask, ImportanceField, MaskGenerator, ModelMask
from dynaprune_edge.masks.state import FlopsLedger, GateSpec, LedgerEntry, MaskState, straight_through

__all__ = [
    "DataMask",
    "FlopsLedger",
    "GateSpec",
    "GatedConv2d",
    "ImportanceField",
    "LedgerEntry",
    "MaskGenerator",
    "MaskMode",
    "MaskState",
    "ModelMask",
    "PruningConfig",
    "conv2d_flops",
    "straight_through",
]
