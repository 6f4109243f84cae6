"""SimVP-style CNN forecaster (Gao et al., CVPR 2022; OpenSTL): a per-frame spatial
encoder, a convolutional translator over the frames stacked as channels, a per-frame
decoder. No encoder→decoder skip, so frames_in and frames_out may differ."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from dynaprune_edge.masks import GatedConv2d, MaskState
from dynaprune_edge.models.base import Backbone, ForecastShape
from dynaprune_edge.models.registry import BACKBONES


@dataclass(frozen=True)
class SimVPOptions:
    spatial_channels: int = 16  # encoder/decoder width (hid_S)
    temporal_channels: int = 64  # translator width (hid_T)
    translator_blocks: int = 2  # residual blocks (N_T)


class TranslatorBlock(nn.Module):
    """x + conv1×1(conv3×3(x)): the inner width is prunable, the residual stream is not."""

    def __init__(self, channels: int, gate: str, group_size: int) -> None:
        super().__init__()
        self.expand = GatedConv2d(channels, channels, 3, gate=gate, input_gate=None, group_size=group_size)
        self.project = GatedConv2d(
            channels, channels, 1, gate=None, input_gate=gate, group_size=group_size, activation=False
        )

    def forward(self, x: Tensor, masks: MaskState) -> Tensor:
        return x + self.project(self.expand(x, masks), masks)


@BACKBONES.register("simvp")
class SimVP(Backbone):
    Options = SimVPOptions

    def __init__(self, shape: ForecastShape, options: SimVPOptions, group_size: int) -> None:
        super().__init__(shape, options, group_size)
        hs, ht, g = options.spatial_channels, options.temporal_channels, group_size
        self.encoder = nn.ModuleList(
            [
                GatedConv2d(shape.channels, hs, 3, 1, gate="enc0", input_gate=None, group_size=g),
                GatedConv2d(hs, hs, 3, 2, gate="enc1", input_gate="enc0", group_size=g),
                GatedConv2d(hs, hs, 3, 1, gate="enc2", input_gate="enc1", group_size=g),
                GatedConv2d(hs, hs, 3, 2, gate="enc3", input_gate="enc2", group_size=g),
            ]
        )
        self.translator_in = GatedConv2d(shape.frames_in * hs, ht, 3, gate=None, input_gate="enc3", group_size=g)
        self.translator = nn.ModuleList(
            [TranslatorBlock(ht, f"translator{i}", g) for i in range(options.translator_blocks)]
        )
        self.translator_out = GatedConv2d(ht, shape.frames_out * hs, 3, gate=None, input_gate=None, group_size=g)
        self.decoder = nn.ModuleList(
            [
                GatedConv2d(hs, hs, 3, upsample=2, gate="dec0", input_gate=None, group_size=g),
                GatedConv2d(hs, hs, 3, gate="dec1", input_gate="dec0", group_size=g),
                GatedConv2d(hs, hs, 3, upsample=2, gate="dec2", input_gate="dec1", group_size=g),
                GatedConv2d(hs, hs, 3, gate="dec3", input_gate="dec2", group_size=g),
            ]
        )
        self.readout = GatedConv2d(
            hs, shape.channels, 1, gate=None, input_gate="dec3", group_size=g, norm=False, activation=False
        )

    def forward(self, x: Tensor, masks: MaskState) -> Tensor:
        batch, frames_in, channels, height, width = x.shape
        frame_masks = masks.for_frames(frames_in)
        z = x.reshape(batch * frames_in, channels, height, width)
        for layer in self.encoder:
            z = layer(z, frame_masks)
        z = z.reshape(batch, -1, *z.shape[-2:])  # frames stacked as channels
        z = self.translator_in(z, masks)
        for block in self.translator:
            z = block(z, masks)
        z = self.translator_out(z, masks)
        frames_out = self.shape.frames_out
        z = z.reshape(batch * frames_out, -1, *z.shape[-2:])
        frame_masks = masks.for_frames(frames_out)
        for layer in self.decoder:
            z = layer(z, frame_masks)
        y = self.readout(z, frame_masks)
        return y.reshape(batch, frames_out, channels, height, width)
