"""Convolution layers whose filters (in groups) and output regions a `MaskState` switches
off per sample, each reporting its closed-form cost to the ledger."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dynaprune_edge.masks.state import GateSpec, MaskState


def conv2d_flops(conv: nn.Conv2d, output_size: tuple[int, int]) -> float:
    """Multiply-adds of one sample of a Conv2d, as fvcore counts them (bias not counted)."""
    kernel = conv.kernel_size[0] * conv.kernel_size[1]
    return float(output_size[0] * output_size[1] * conv.out_channels * conv.in_channels // conv.groups * kernel)


def kept_count(fraction: Tensor, total: int) -> int:
    """Channels (or units) a kept fraction stands for; the input of a frame-stacked layer
    keeps the same share of every frame's channels."""
    return int((fraction * total).round())


class GatedConv2d(nn.Module):
    """[nearest upsample] → conv → BatchNorm → activation → × masks.

    gate: names this layer's output filters as a prunable unit (None: never pruned).
    input_gate: the gate that pruned this layer's input channels (None: input is dense).
    spatial: whether skipped regions are skipped here; a skipped region outputs zero,
        exactly what a tile-gathered execution that never computes it would leave.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        gate: str | None,
        input_gate: str | None,
        group_size: int,
        upsample: int = 1,
        norm: bool = True,
        activation: bool = True,
        spatial: bool = True,
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, kernel_size // 2, bias=not norm)
        self.norm = nn.BatchNorm2d(out_channels) if norm else nn.Identity()
        self.activation = nn.SiLU() if activation else nn.Identity()
        self.gate = gate
        self.input_gate = input_gate
        self.spatial = spatial
        self.gate_spec = None if gate is None else GateSpec(gate, out_channels, group_size)

    def forward(self, x: Tensor, masks: MaskState) -> Tensor:
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        y = self.activation(self.norm(self.conv(x)))
        size = tuple(y.shape[-2:])
        region = masks.region_at(size) if self.spatial else None
        fraction = masks.fraction(self.input_gate) * masks.fraction(self.gate)
        if region is not None:
            fraction = fraction * region.mean(dim=(1, 2, 3))
        masks.ledger.add(self, conv2d_flops(self.conv, size), fraction, masks.frames, size)
        return masks.apply(y, self.gate, region)

    def static_equivalent(self, masks: MaskState, element: int, output_size: tuple[int, int]):
        """The dense layer that computes exactly what element `element` keeps: kept input
        and output channels, kept regions gathered as tiles into the batch (SBNet), with
        the halo the kernel needs and no padding. Returns (module, example input)."""
        in_kept = kept_count(masks.fraction(self.input_gate)[element], self.conv.in_channels)
        out_kept = kept_count(masks.fraction(self.gate)[element], self.conv.out_channels)
        region = masks.region_at(output_size) if self.spatial else None
        if region is None:
            tiles, tile = 1, output_size
        else:
            grid = masks.region_mask.shape[-2:]
            tiles = int(masks.region_mask[element].sum().round())
            tile = (output_size[0] // grid[0], output_size[1] // grid[1])
        stride, kernel = self.conv.stride[0], self.conv.kernel_size[0]
        tile_in = tuple((t - 1) * stride + kernel for t in tile)
        module = nn.Conv2d(in_kept, out_kept, kernel, stride, padding=0, bias=False)
        return module, (torch.zeros(tiles, in_kept, *tile_in),)
