"""The gated ConvLSTM cell: one convolution over [input, h] gives the four gates (OpenSTL's
conv_x + conv_h, summed, in one op). A pruned hidden channel has all four of its gate
outputs (i, f, g, o) skipped and h, c zero, so the recurrent input and the next layer's
input shrink with it; skipped regions are zero in the gates, h and c."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from dynaprune_edge.flops import conv_flops
from dynaprune_edge.layers.base import Layer
from dynaprune_edge.layers.conv import kept_count, kept_tiles
from dynaprune_edge.layers.state import GateSpec, MaskState


class GatedConvLSTMCell(Layer):
    """gate: names the hidden channels as a prunable unit; input_gate: the gate of the layer
    below (None: the input frame, dense)."""

    skips_regions_when_tiled = False  # the recurrence runs on whole maps (see `lower`)

    def __init__(
        self,
        input_channels: int,
        hidden_channels: int,
        kernel_size: int,
        *,
        gate: str,
        input_gate: GateSpec | None,
        group_size: int,
    ) -> None:
        super().__init__()
        self.input_channels = input_channels
        self.hidden_channels = hidden_channels
        self.conv = nn.Conv2d(
            input_channels + hidden_channels, 4 * hidden_channels, kernel_size, padding=kernel_size // 2
        )
        self.gate = GateSpec(gate, hidden_channels, group_size)
        self.input_gate = input_gate

    def cost(self, input_channels, hidden_channels, positions):
        """The gate convolution; at the first step h is zero but still convolved."""
        kernel_h, kernel_w = self.conv.kernel_size
        return conv_flops(input_channels + hidden_channels, 4 * hidden_channels, kernel_h * kernel_w, positions)

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

        sparse = self.cost(
            self.input_channels * masks.fraction(self.input_gate),
            self.hidden_channels * masks.fraction(self.gate),
            masks.computed_positions(size, self.tile_limit),
        )
        dense = self.cost(self.input_channels, self.hidden_channels, size[0] * size[1])
        # kept [x, h] input channels × kept gate filters
        kept_inputs = self.input_channels * masks.fraction(self.input_gate) + self.hidden_channels * masks.fraction(
            self.gate
        )
        width = kept_inputs / (self.input_channels + self.hidden_channels) * masks.fraction(self.gate)
        masks.ledger.add(self, sparse, dense, masks.frames, size, width)
        return masks.apply(hidden, self.gate, region), masks.apply(cell, self.gate, region)

    def lower(self, net, z, state):
        """One step over the kept hidden channels, on whole maps (tiles of a few pixels at
        the recurrence's resolution do not pay): the skipped regions are computed and then
        zeroed, so their work is not saved, and so is counted."""
        b, scope, filters = net.b, net.scope_of(self), net.filters
        weight, bias = self.conv.weight.detach().numpy(), self.conv.bias.detach().numpy()
        w_input, b_input = filters.select_weights(weight[:, : self.input_channels], bias, self.gate, self.input_gate)
        w_hidden, _ = filters.select_weights(weight[:, self.input_channels :], None, self.gate, self.gate)
        kept = filters.kept_channels(self.gate, self.hidden_channels)
        inputs = b.op("Concat", z.name, state[0].name, scope=scope, axis=1)
        gates = b.conv(inputs, b.op("Concat", w_input, w_hidden, scope=scope, axis=1), b_input, self.conv, scope)
        net.count(self.cost(z.channels, kept, z.positions))
        in_gate, forget, candidate, out_gate = b.op("Split", gates, b.const([kept] * 4), scope=scope, outputs=4, axis=1)
        memory = b.op(
            "Add",
            b.op("Mul", b.op("Sigmoid", forget, scope=scope), state[1].name, scope=scope),
            b.op("Mul", b.op("Sigmoid", in_gate, scope=scope), b.op("Tanh", candidate, scope=scope), scope=scope),
            scope=scope,
        )
        output = b.op("Mul", b.op("Sigmoid", out_gate, scope=scope), b.op("Tanh", memory, scope=scope), scope=scope)
        hidden, memory = (net.mask_channels(net.like(z, t, kept), self.gate, scope) for t in (output, memory))
        return net.regions.mask_regions(hidden, scope), net.regions.mask_regions(memory, scope)

    def static_equivalent(self, masks: MaskState, element: int, output_size: tuple[int, int]):
        """Dense conv over the kept input and hidden channels → the kept hidden channels'
        four gates, on the whole map (its `tile_limit` is 0) unless every region is
        skipped. Returns (module, example inputs)."""
        hidden = kept_count(masks.fraction(self.gate)[element], self.hidden_channels)
        inputs = kept_count(masks.fraction(self.input_gate)[element], self.input_channels) + hidden
        kernel = self.conv.kernel_size[0]
        tiles, tile = kept_tiles(masks, element, output_size, kernel, tile_limit=self.tile_limit)
        module = nn.Conv2d(inputs, 4 * hidden, kernel, padding=0, bias=False)
        return module, (torch.zeros(tiles, inputs, *tile),)
