"""Layer types and the primitives backbones are written in: each layer type's masked
training forward, cost and export lowering in one class (`base.Layer`), the mask state
they read, and the two interpreters of a backbone's one forward (`interpreter`)."""

from dynaprune_edge.layers.base import Layer
from dynaprune_edge.layers.conv import GatedConv2d, MaskedBatchNorm2d, fold_batch_norm
from dynaprune_edge.layers.interpreter import Interpreter, TrainingInterpreter
from dynaprune_edge.layers.recurrent import GatedConvLSTMCell
from dynaprune_edge.layers.state import FlopsLedger, GateSpec, LedgerEntry, MaskState
from dynaprune_edge.layers.tokens import MaskedAttention, TokenLinear, TokenNorm

__all__ = [
    "FlopsLedger",
    "GateSpec",
    "GatedConv2d",
    "GatedConvLSTMCell",
    "Interpreter",
    "Layer",
    "LedgerEntry",
    "MaskState",
    "MaskedAttention",
    "MaskedBatchNorm2d",
    "TokenLinear",
    "TokenNorm",
    "TrainingInterpreter",
    "fold_batch_norm",
]
