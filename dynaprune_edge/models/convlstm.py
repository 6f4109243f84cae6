"""ConvLSTM forecaster (Shi et al., NeurIPS 2015; OpenSTL's ConvLSTM_Model), the RNN family.

Frames are folded space-to-depth by `patch_size` (OpenSTL's reshape_patch) so the
recurrence runs at H/p × W/p: p² fewer positions for the same receptive field, which is
what makes a recurrent model trainable on a laptop. The stack reads frames_in frames, then
forecasts frames_out frames autoregressively from its own predictions (no teacher forcing:
training and inference run the same deterministic loop).

Pruning. Gate "lstm{i}" is layer i's hidden channels, in groups of `group_size`. A pruned
hidden channel has all four of its gate-convolution outputs (i, f, g, o) skipped and h, c
zero, so the recurrent input and the next layer's input shrink with it. Skipped regions
are zero in the gates, h and c at the recurrence's resolution (when a region covers at
least one patch), and the readout computes kept positions only. A skipped region's
forecast is the last input frame (DynaPruner's persistence); that same frame is fed back
as the next step's input there, so the recurrence sees exactly what the user sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.masks import GatedConv2d, GateSpec, MaskState, conv2d_flops
from dynaprune_edge.masks.gated import kept_count, kept_tiles
from dynaprune_edge.models.base import Backbone, ForecastShape
from dynaprune_edge.models.registry import BACKBONES


@dataclass(frozen=True)
class ConvLSTMOptions:
    patch_size: int = 4  # space-to-depth factor of the recurrence
    hidden_channels: int = 32  # per layer (num_hidden), a multiple of the group size
    num_layers: int = 2
    kernel_size: int = 3  # of the gates convolution (filter_size)


class GatedConvLSTMCell(nn.Module):
    """One ConvLSTM layer: a single conv over [input, h] gives the four gates (OpenSTL's
    conv_x + conv_h, summed, in one op).

    input_gate: the gate that pruned the input's channels (None: the input frame, dense).
    """

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        kernel_size: int,
        *,
        gate: str,
        input_gate: str | None,
        group_size: int,
    ) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.hidden_channels = hidden_channels
        self.conv = nn.Conv2d(
            input_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2
        )
        self.gate = gate
        self.input_gate = input_gate
        self.gate_spec = GateSpec(gate, hidden_channels, group_size)

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor], masks: MaskState) -> tuple[Tensor, Tensor]:
        """x: this step's input; state: (h, c) of the previous step → the new (h, c)."""
        hidden, cell = state
        gates = self.conv(torch.cat([x, hidden], dim=1))
        size = tuple(gates.shape[-2:])
        region = masks.region_at(size)
        gates = gates * masks.channel(self.gate).repeat(1, 4)[:, :, None, None]  # [i f g o] share the mask
        if region is not None:
            gates = gates * region
        in_gate, forget_gate, candidate, out_gate = gates.chunk(4, dim=1)
        cell = torch.sigmoid(forget_gate) * cell + torch.sigmoid(in_gate) * torch.tanh(candidate)
        hidden = torch.sigmoid(out_gate) * torch.tanh(cell)

        kept_hidden = masks.fraction(self.gate)
        kept_inputs = self.input_channels * masks.fraction(self.input_gate) + self.hidden_channels * kept_hidden
        fraction = kept_inputs / self.conv.in_channels * kept_hidden
        if region is not None:
            fraction = fraction * region.mean(dim=(1, 2, 3))
        masks.ledger.add(self, conv2d_flops(self.conv, size), fraction, masks.frames, size)
        return masks.apply(hidden, self.gate, region), masks.apply(cell, self.gate, region)

    def static_equivalent(self, masks: MaskState, element: int, output_size: tuple[int, int]):
        """Dense conv over the kept input and hidden channels → the kept hidden channels'
        four gates, on the kept tiles with halo. Returns (module, example inputs)."""
        hidden = kept_count(masks.fraction(self.gate)[element], self.hidden_channels)
        inputs = kept_count(masks.fraction(self.input_gate)[element], self.input_channels) + hidden
        kernel = self.conv.kernel_size[0]
        tiles, tile = kept_tiles(masks, element, output_size, kernel)
        module = nn.Conv2d(inputs, 4 * hidden, kernel, padding=0, bias=False)
        return module, (torch.zeros(tiles, inputs, *tile),)


@BACKBONES.register("convlstm")
class ConvLSTM(Backbone):
    Options = ConvLSTMOptions

    def __init__(self, shape: ForecastShape, options: ConvLSTMOptions, group_size: int) -> None:
        super().__init__(shape, options, group_size)
        patch = options.patch_size
        self.patch_grid(patch)
        if options.num_layers < 1:
            raise ConfigError(f"convlstm needs num_layers ≥ 1, got {options.num_layers}")
        if options.kernel_size % 2 == 0:
            raise ConfigError(f"convlstm kernel_size must be odd (same padding), got {options.kernel_size}")
        frame_channels = shape.channels * patch * patch
        hidden = options.hidden_channels
        self.cells = nn.ModuleList(
            [
                GatedConvLSTMCell(
                    frame_channels if i == 0 else hidden,
                    hidden,
                    options.kernel_size,
                    gate=f"lstm{i}",
                    input_gate=None if i == 0 else f"lstm{i - 1}",
                    group_size=group_size,
                )
                for i in range(options.num_layers)
            ]
        )
        self.readout = GatedConv2d(
            hidden,
            frame_channels,
            1,
            gate=None,
            input_gate=f"lstm{options.num_layers - 1}",
            group_size=group_size,
            norm=False,
            activation=False,
        )

    def forward(self, x: Tensor, masks: MaskState) -> Tensor:
        batch, frames_in, _, height, width = x.shape
        patch = self.options.patch_size
        frames = F.pixel_unshuffle(x.flatten(0, 1), patch).unflatten(0, (batch, frames_in))
        hidden = self.options.hidden_channels
        zeros = x.new_zeros(batch, hidden, height // patch, width // patch)
        states = [(zeros, zeros) for _ in self.cells]
        region = masks.region_at((height, width))
        last = x[:, -1]
        outputs = []
        for step in range(frames_in + self.shape.frames_out - 1):
            z = frames[:, step] if step < frames_in else feedback
            for index, cell in enumerate(self.cells):
                states[index] = cell(z, states[index], masks)
                z = states[index][0]
            if step >= frames_in - 1:
                frame = F.pixel_shuffle(self.readout(z, masks), patch)
                outputs.append(frame)
                feedback = F.pixel_unshuffle(region * frame + (1 - region) * last, patch)
        return torch.stack(outputs, dim=1)
