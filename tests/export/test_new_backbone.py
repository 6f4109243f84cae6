"""A backbone made of existing layer types, defined here and nowhere else, trains and
exports with parity: adding one needs its class and `register_backbone`, no change to the
exporter. And a forward the export cannot compile says why in one line."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dynaprune_edge.data import DataConfig, load_dataset
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.exporter import Exporter, ExportOptions
from dynaprune_edge.flops.fvcore_count import fvcore_flops
from dynaprune_edge.layers import GatedConv2d, Interpreter, MaskState
from dynaprune_edge.masks import MaskMode, PruningConfig
from dynaprune_edge.models import BACKBONES, ForecastShape, ModelConfig, build_model, register_backbone
from dynaprune_edge.models.base import Backbone
from dynaprune_edge.models.traced import converted
from dynaprune_edge.training.checkpoint import atomic_save, model_payload
from tests.exported import run_in_model_units

DATA = DataConfig("taxibj", synthetic_frames=160)


@dataclass(frozen=True)
class ResidualOptions:
    channels: int = 16
    coupled: bool = False  # sum two differently pruned features (not compilable)


class ResidualCNN(Backbone):
    """Frames stacked as channels → conv → x + project(expand(x)) → readout per frame."""

    name = "residual-test"
    Options = ResidualOptions

    def __init__(
        self, shape: ForecastShape, options: ResidualOptions, group_size: int, one_width: bool = False
    ) -> None:
        super().__init__(shape, options, group_size, one_width)
        c, g = options.channels, group_size
        self.stem = GatedConv2d(
            shape.frames_in * shape.channels,
            c,
            3,
            gate="stem" if options.coupled else None,
            input_gate=None,
            group_size=g,
        )
        self.expand = GatedConv2d(c, c, 3, gate="expand", input_gate=self.stem.gate, group_size=g)
        self.project = GatedConv2d(c, c, 1, gate=None, input_gate=self.expand.gate, group_size=g)
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
        z = ops.add(z, ops.apply(self.project, ops.apply(self.expand, z)))
        return ops.forecast(ops.unstack_frames(ops.apply(self.readout, z), self.shape.frames_out))


class DilatedNowcaster(nn.Module):
    """A plain module with the convolutions of context aggregation and learned downsampling:
    dilated (padding 2 at dilation 2; padding="same" at dilation 3) and a 4×4 kernel at
    stride 2, padding 1 (DCGAN's), and a bilinear upsampling."""

    def __init__(self, frames_in, frames_out, channels, hidden=16):
        super().__init__()
        self.frames_out, self.channels = frames_out, channels
        self.stem = nn.Conv2d(frames_in * channels, hidden, 3, padding=1)
        self.context = nn.Conv2d(hidden, hidden, 3, padding=2, dilation=2)
        self.down = nn.Conv2d(hidden, hidden, 4, stride=2, padding=1)
        self.wide = nn.Conv2d(hidden, hidden, 3, padding="same", dilation=3)
        self.fuse = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.head = nn.Conv2d(hidden, frames_out * channels, 1)

    def forward(self, x):
        b, t, c, h, w = x.shape
        z = F.relu(self.context(F.relu(self.stem(x.reshape(b, t * c, h, w)))))
        z = F.relu(self.wide(F.relu(self.down(z))))
        z = F.relu(self.fuse(F.interpolate(z, scale_factor=2, mode="bilinear")))
        return self.head(z).reshape(b, self.frames_out, self.channels, h, w)


class NormalisedNowcaster(nn.Module):
    """OpenSTL's normalisations: SimVP's GroupNorm blocks (here of 4 channels per group, which
    groups of 4 filters prune whole, and of 8, which they would split), and a recurrent
    cell's LayerNorm over a map's (C, H, W)."""

    def __init__(self, frames_in, frames_out, channels, height, width, hidden=16):
        super().__init__()
        self.frames_out, self.channels = frames_out, channels
        self.stem = nn.Conv2d(frames_in * channels, hidden, 3, padding=1)
        self.stem_norm = nn.GroupNorm(hidden // 4, hidden)
        self.mix = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.mix_norm = nn.GroupNorm(2, hidden)
        self.down = nn.Conv2d(hidden, hidden, 3, stride=2, padding=1)
        self.down_norm = nn.LayerNorm([hidden, height // 2, width // 2])
        self.fuse = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.fuse_norm = nn.GroupNorm(4, hidden)
        self.head = nn.Conv2d(hidden, frames_out * channels, 1)
        for norm in (self.stem_norm, self.mix_norm, self.down_norm, self.fuse_norm):  # as if trained
            nn.init.normal_(norm.weight)
            nn.init.normal_(norm.bias)

    def forward(self, x):
        b, t, c, h, w = x.shape
        z = F.leaky_relu(self.stem_norm(self.stem(x.reshape(b, t * c, h, w))), 0.2)
        z = F.leaky_relu(self.mix_norm(self.mix(z)), 0.2)
        z = torch.tanh(self.down_norm(self.down(z)))
        z = F.silu(self.fuse_norm(self.fuse(F.interpolate(z, scale_factor=2))))
        return self.head(z).reshape(b, self.frames_out, self.channels, h, w)


@pytest.fixture
def registered():
    with BACKBONES.scope():
        register_backbone(ResidualCNN)
        register_backbone(converted(DilatedNowcaster))
        register_backbone(converted(NormalisedNowcaster))
        yield


def saved_model(tmp_path, options: dict, backbone: str = ResidualCNN.name):
    torch.manual_seed(0)
    data = load_dataset(DATA)
    shape = ForecastShape(data.frames_in, data.frames_out, data.channels, data.height, data.width)
    config = ModelConfig(backbone, shape, options, PruningConfig(budget=0.3))
    model = build_model(config).eval()
    with torch.no_grad():
        model.generator.importance.weight.normal_()
        model.model_mask.width_bias.uniform_(-1.0, 1.0)
        frames = torch.stack([data.train[i][0] for i in range(0, len(data.train), 4)])
        model.generator.importance.bias -= model.generator(frames).logits.median()  # about half kept
    atomic_save(model_payload(model, config, data.config, data.normalizer, {}), tmp_path / "model.pt")
    return tmp_path / "model.pt", model, data


def assert_exports_on_tiles_with_parity(path, model, data, tmp_path) -> None:
    """The saved model exported on gathered tiles with a branch per kept-region count: every
    branch within 1e-4 of PyTorch, and the FLOPs each sample executes those of the ledger."""
    out = tmp_path / "model.onnx"
    regions = model.grid[0] * model.grid[1]
    chosen, _, _ = Exporter(
        path, ExportOptions(mode="gather", tiles="all", levels=regions), log=lambda _: None, data=data
    ).run(out)
    assert len(chosen.parity) >= 3 and max(chosen.parity.values()) <= 1e-4
    frames = torch.stack([data.val[i][0] for i in range(16)])
    with torch.no_grad():
        ledger = model(frames, MaskMode(hard=True)).flops.numpy()
    np.testing.assert_allclose(run_in_model_units(out, frames, data.normalizer).flops, ledger, rtol=1e-5)


def test_a_backbone_defined_outside_the_package_exports_with_parity(registered, tmp_path):
    assert_exports_on_tiles_with_parity(*saved_model(tmp_path, {}), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "user, gates",
    [
        (DilatedNowcaster, {"stem", "context", "down", "wide", "fuse"}),
        # mix: its GroupNorm's groups of 8 would be split; down: its LayerNorm spans all channels
        (NormalisedNowcaster, {"stem", "fuse"}),
    ],
)
def test_a_plain_models_dilated_even_kernel_and_normalised_convolutions_compute_its_forward_and_export_on_tiles_with_parity(
    registered, tmp_path, user, gates
):
    """Halos (a dilated kernel's extent; an even kernel's one-sided padding) are what the
    tiles gather; a GroupNorm or LayerNorm normalises each sample's whole map (the skipped
    regions zero), over whole groups of kept filters; the ledger counts what fvcore counts
    of the user's module."""
    backbone = converted(user)
    shape = ForecastShape(4, 2, 2, 16, 16)
    torch.manual_seed(0)
    ours = backbone(shape, backbone.Options(), 4).eval()
    grid = {"height": 16, "width": 16} if user is NormalisedNowcaster else {}  # its LayerNorm's (C, H, W)
    torch.manual_seed(0)
    theirs = user(4, 2, 2, **grid).eval()
    x = torch.randn(2, 4, 2, 16, 16)
    masks = MaskState.all_kept(2, (2, 2), ours.gate_specs(), x)
    with torch.no_grad():
        assert (ours(x, masks) - theirs(x)).abs().max() <= 1e-5
    torch.manual_seed(1)
    retrained = user(4, 2, 2, **grid).eval()
    ours.load_user_state(retrained.state_dict(), "their.pt")  # --init their.pt: their weights, norms' included
    with torch.no_grad():
        assert (ours(x, MaskState.all_kept(2, (2, 2), ours.gate_specs(), x)) - retrained(x)).abs().max() <= 1e-5
    if user is DilatedNowcaster:  # the same conv: fvcore skips aten::conv2d's padding="same" overload
        theirs.wide = nn.Conv2d(16, 16, 3, padding=3, dilation=3)
    assert masks.ledger.dense == pytest.approx(fvcore_flops(theirs, (x[:1],)), rel=1e-6)
    assert {layer.gate.name for layer in ours.converted.values() if layer.gate is not None} == gates

    assert_exports_on_tiles_with_parity(*saved_model(tmp_path, {}, backbone.name), tmp_path)


def test_a_sum_of_differently_pruned_features_is_refused_in_one_line(registered, tmp_path):
    path, _, data = saved_model(tmp_path, {"coupled": True})
    with pytest.raises(ConfigError, match="residual sum .* same gate or by none"):
        Exporter(path, ExportOptions(mode="gather", tiles="none"), log=lambda _: None, data=data).run(
            tmp_path / "model.onnx"
        )
    assert not (tmp_path / "model.onnx").exists()
