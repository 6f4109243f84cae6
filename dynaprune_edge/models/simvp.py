"""SimVP-style CNN forecaster (Gao et al., CVPR 2022; OpenSTL): a per-frame spatial
encoder, a convolutional translator over the frames stacked as channels, a per-frame
decoder. No encoder→decoder skip, so frames_in and frames_out may differ."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dynaprune_edge.layers import GatedConv2d, GateSpec, Interpreter
from dynaprune_edge.models.base import Backbone, ForecastShape
from dynaprune_edge.models.catalog import register_backbone


@dataclass(frozen=True)
class SimVPOptions:
    spatial_channels: int = 16  # encoder/decoder width (hid_S)
    temporal_channels: int = 64  # translator width (hid_T)
    translator_blocks: int = 2  # residual blocks (N_T)


class TranslatorBlock(nn.Module):
    """x + conv1×1(conv3×3(x)): the inner width is prunable; the residual stream too under
    one gate, `stream` (None: not pruned), which the add's two sides then share."""

    def __init__(self, channels: int, gate: str, group_size: int, stream: GateSpec | None) -> None:
        super().__init__()
        self.expand = GatedConv2d(channels, channels, 3, gate=gate, input_gate=stream, group_size=group_size)
        self.project = GatedConv2d(
            channels,
            channels,
            1,
            gate=None if stream is None else stream.name,
            input_gate=self.expand.gate,
            group_size=group_size,
            activation=False,
        )

    def program(self, ops: Interpreter, x):
        return ops.add(x, ops.apply(self.project, ops.apply(self.expand, x)))


def gated_chain(layers: list[tuple[str, int, int, int, int]], group_size: int) -> nn.ModuleList:
    """3×3 gated convs, each fed by the one before it: (gate, in channels, out channels,
    stride, upsample) per layer."""
    chain, input_gate = [], None
    for gate, inputs, outputs, stride, upsample in layers:
        chain.append(
            GatedConv2d(
                inputs, outputs, 3, stride, gate=gate, input_gate=input_gate, group_size=group_size, upsample=upsample
            )
        )
        input_gate = chain[-1].gate
    return nn.ModuleList(chain)


@register_backbone
class SimVP(Backbone):
    name = "simvp"
    Options = SimVPOptions
    WIDTHS = {"spatial_channels": 4, "temporal_channels": 4}

    @classmethod
    def spatial_multiple(cls, options) -> int:
        return 4  # two stride-2 encoder layers

    def __init__(self, shape: ForecastShape, options: SimVPOptions, group_size: int, one_width: bool = False) -> None:
        """one_width (a slimmable network): the translator's residual stream is pruned too,
        so that a width level is as narrow as the static network of that width (gated
        only there, a half-width level kept the full 64-channel stream: 1.4× the FLOPs of
        the static half-width SimVP)."""
        super().__init__(shape, options, group_size, one_width)
        hs, ht, g = options.spatial_channels, options.temporal_channels, group_size
        self.encoder = gated_chain(
            [
                ("enc0", shape.channels, hs, 1, 1),
                ("enc1", hs, hs, 2, 1),
                ("enc2", hs, hs, 1, 1),
                ("enc3", hs, hs, 2, 1),
            ],
            g,
        )
        self.translator_in = GatedConv2d(
            shape.frames_in * hs,
            ht,
            3,
            gate="stream" if one_width else None,
            input_gate=self.encoder[-1].gate,
            group_size=g,
        )
        stream = self.translator_in.gate
        self.translator = nn.ModuleList(
            [TranslatorBlock(ht, f"translator{i}", g, stream) for i in range(options.translator_blocks)]
        )
        self.translator_out = GatedConv2d(ht, shape.frames_out * hs, 3, gate=None, input_gate=stream, group_size=g)
        self.decoder = gated_chain(
            [("dec0", hs, hs, 1, 2), ("dec1", hs, hs, 1, 1), ("dec2", hs, hs, 1, 2), ("dec3", hs, hs, 1, 1)], g
        )
        self.readout = GatedConv2d(
            hs,
            shape.channels,
            1,
            gate=None,
            input_gate=self.decoder[-1].gate,
            group_size=g,
            norm=False,
            activation=False,
        )

    def program(self, ops: Interpreter, x):
        z = ops.per_frame(x)
        for layer in self.encoder:
            z = ops.apply(layer, z)
        z = ops.apply(self.translator_in, ops.stack_frames(z))
        for block in self.translator:
            z = block.program(ops, z)
        z = ops.unstack_frames(ops.apply(self.translator_out, z), self.shape.frames_out)
        for layer in self.decoder:
            z = ops.apply(layer, z)
        return ops.forecast(ops.apply(self.readout, z))
