"""A backbone of your own, written against dpedge's layers and interpreter: trained,
exported and profiled by the commands in docs/guides/own-model.md.

    dpedge train --backbone examples/residual_backbone.py:ResidualCNN --dataset nycbike --data sample --out runs/mine

The frames are stacked as channels, a stem conv widens them, two residual blocks refine
them, and a 1×1 readout gives every forecast frame at once. The residual blocks' inner
width is pruned per sample; the stream they add to stays full width (its add couples the
two sides, so both would need one gate)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dynaprune_edge import register_backbone
from dynaprune_edge.layers import GatedConv2d, Interpreter
from dynaprune_edge.models import Backbone, ForecastShape


@dataclass(frozen=True)
class ResidualOptions:
    channels: int = 32  # the residual stream (--arch channels=…)
    blocks: int = 2


class ResidualBlock(nn.Module):
    def __init__(self, channels: int, gate: str, group_size: int) -> None:
        super().__init__()
        self.expand = GatedConv2d(channels, channels, 3, gate=gate, input_gate=None, group_size=group_size)
        self.project = GatedConv2d(
            channels, channels, 1, gate=None, input_gate=self.expand.gate, group_size=group_size, activation=False
        )

    def program(self, ops: Interpreter, x):
        return ops.add(x, ops.apply(self.project, ops.apply(self.expand, x)))


@register_backbone
class ResidualCNN(Backbone):
    name = "residual-cnn"  # what model.pt records
    Options = ResidualOptions
    WIDTHS = {"channels": 4}  # the static-width baselines of `dpedge bench pareto` scale it

    def __init__(
        self, shape: ForecastShape, options: ResidualOptions, group_size: int, one_width: bool = False
    ) -> None:
        super().__init__(shape, options, group_size, one_width)
        c, g = options.channels, group_size
        self.stem = GatedConv2d(shape.frames_in * shape.channels, c, 3, gate=None, input_gate=None, group_size=g)
        self.blocks = nn.ModuleList([ResidualBlock(c, f"block{i}", g) for i in range(options.blocks)])
        self.readout = GatedConv2d(
            c,
            shape.frames_out * shape.channels,
            1,
            gate=None,
            input_gate=None,
            group_size=g,
            norm=False,
            activation=False,
        )

    def program(self, ops: Interpreter, x):
        z = ops.apply(self.stem, ops.stack_frames(ops.per_frame(x)))
        for block in self.blocks:
            z = block.program(ops, z)
        return ops.forecast(ops.unstack_frames(ops.apply(self.readout, z), self.shape.frames_out))
