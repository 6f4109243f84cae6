"""ConvLSTM forecaster (Shi et al., NeurIPS 2015; OpenSTL's ConvLSTM_Model), the RNN family.

Frames are folded space-to-depth by `patch_size` (OpenSTL's reshape_patch) so the
recurrence runs at H/p × W/p: p² fewer positions for the same receptive field, which is
what makes a recurrent model trainable on a laptop. The stack reads frames_in frames, then
forecasts frames_out frames autoregressively from its own predictions (no teacher forcing:
training and inference run the same deterministic loop).

Pruning. Gate "lstm{i}" is layer i's hidden channels, in groups of `group_size`
(`GatedConvLSTMCell`). Skipped regions are zero in the gates, h and c at the recurrence's
resolution (when a region covers at least one patch), and the readout computes kept
positions only. A skipped region's forecast is the last input frame (DynaPruner's
persistence); that same frame is fed back as the next step's input there, so the
recurrence sees exactly what the user sees.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.layers import GatedConv2d, GatedConvLSTMCell, Interpreter
from dynaprune_edge.models.base import Backbone, ForecastShape
from dynaprune_edge.models.catalog import register_backbone


@dataclass(frozen=True)
class ConvLSTMOptions:
    patch_size: int = 4  # space-to-depth factor of the recurrence
    hidden_channels: int = 32  # per layer (num_hidden), a multiple of the group size
    num_layers: int = 2
    kernel_size: int = 3  # of the gates convolution (filter_size)


@register_backbone
class ConvLSTM(Backbone):
    name = "convlstm"
    Options = ConvLSTMOptions
    WIDTHS = {"hidden_channels": 4}

    @classmethod
    def spatial_multiple(cls, options) -> int:
        return options.patch_size

    def __init__(
        self, shape: ForecastShape, options: ConvLSTMOptions, group_size: int, one_width: bool = False
    ) -> None:
        super().__init__(shape, options, group_size, one_width)
        patch = options.patch_size
        self.patch_grid(patch)
        if options.num_layers < 1:
            raise ConfigError(f"convlstm needs num_layers ≥ 1, got {options.num_layers}")
        if options.kernel_size % 2 == 0:
            raise ConfigError(f"convlstm kernel_size must be odd (same padding), got {options.kernel_size}")
        frame_channels = shape.channels * patch * patch
        hidden, cells = options.hidden_channels, []
        for index in range(options.num_layers):
            below = cells[-1].gate if cells else None
            inputs = frame_channels if below is None else hidden
            cells.append(
                GatedConvLSTMCell(
                    inputs, hidden, options.kernel_size, gate=f"lstm{index}", input_gate=below, group_size=group_size
                )
            )
        self.cells = nn.ModuleList(cells)
        self.readout = GatedConv2d(
            hidden,
            frame_channels,
            1,
            gate=None,
            input_gate=cells[-1].gate,
            group_size=group_size,
            norm=False,
            activation=False,
        )

    def program(self, ops: Interpreter, x):
        patch, shape = self.options.patch_size, self.shape
        steps = ops.split_frames(ops.space_to_depth(ops.per_frame(x), patch))
        size = (shape.height // patch, shape.width // patch)
        states = [(ops.zero_state(cell.gate, size),) * 2 for cell in self.cells]
        last = ops.last_frame(x)
        outputs, feedback = [], None
        for step in range(shape.frames_in + shape.frames_out - 1):
            z = steps[step] if step < shape.frames_in else feedback
            for index, cell in enumerate(self.cells):
                states[index] = ops.apply(cell, z, states[index])
                z = states[index][0]
            if step >= shape.frames_in - 1:
                frame = ops.depth_to_space(ops.apply(self.readout, z), patch)
                outputs.append(frame)
                if len(outputs) < shape.frames_out:
                    feedback = ops.space_to_depth(ops.fill_skipped(frame, last), patch)
        return ops.forecast(ops.join_frames(outputs))
