"""A plain torch.nn.Module forecaster, written as users write them, converted into a dpedge
backbone by tracing: the user's weights and forward unchanged at full width, the right
convolutions pruned (what a sum or the forecast reads stays full width), its FLOPs what
fvcore counts of the user's own module, and every construct it cannot convert refused in
one line naming the module path and the operation."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.flops.fvcore_count import fvcore_flops
from dynaprune_edge.layers import MaskState
from dynaprune_edge.masks import PruningConfig
from dynaprune_edge.models import BACKBONES, ForecastShape, ModelConfig, build_model, register_backbone
from dynaprune_edge.models.traced import converted

SHAPE = ForecastShape(frames_in=4, frames_out=2, channels=2, height=16, width=16)
EXAMPLES = Path(__file__).parents[2] / "examples"


class Block(nn.Module):
    def __init__(self, hidden: int, activation: nn.Module) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(hidden, hidden, 3, padding=1)  # a bias before BatchNorm: folded into its mean
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act = activation
        self.conv2 = nn.Conv2d(hidden, hidden, 1)

    def forward(self, x):
        return x + self.conv2(self.act(self.bn1(self.conv1(x))))


class Nowcaster(nn.Module):
    """Frames stacked as channels, a stem, residual blocks, a head: no dpedge in sight."""

    def __init__(self, frames_in, frames_out, channels, hidden=16, depth=2):
        super().__init__()
        self.frames_out, self.channels = frames_out, channels
        self.stem = nn.Conv2d(frames_in * channels, hidden, 5, padding=2, bias=False)
        self.stem_bn = nn.BatchNorm2d(hidden)
        activations = [nn.ReLU(), nn.SiLU(), nn.GELU(), nn.LeakyReLU(0.2), nn.Tanh()]
        self.blocks = nn.Sequential(*[Block(hidden, activations[i % len(activations)]) for i in range(depth)])
        self.head = nn.Conv2d(hidden, frames_out * channels, 1)

    def forward(self, x):
        b, t, c, h, w = x.shape
        z = F.silu(self.stem_bn(self.stem(x.reshape(b, t * c, h, w))))
        z = self.blocks(z)
        return self.head(z).reshape(b, self.frames_out, self.channels, h, w)


def backbone_of(user: type, one_width: bool = False, **options):
    cls = converted(user)
    torch.manual_seed(0)
    return cls(SHAPE, cls.Options(**options), 4, one_width).eval()


def user_module(user: type, **options) -> nn.Module:
    torch.manual_seed(0)  # the conversion instantiates the user's class first: the same weights
    return user(frames_in=SHAPE.frames_in, frames_out=SHAPE.frames_out, channels=SHAPE.channels, **options).eval()


class Trained(Nowcaster):
    """As if trained: BatchNorm statistics and scales other than (0, 1), drawn from torch's
    generator, so that a conversion seeded alike sees the same ones."""

    def __init__(self, frames_in, frames_out, channels, hidden=16, depth=2):
        super().__init__(frames_in, frames_out, channels, hidden, depth)
        for norm in (m for m in self.modules() if isinstance(m, nn.BatchNorm2d)):
            norm.running_mean.copy_(torch.randn(norm.num_features))
            norm.running_var.copy_(torch.rand(norm.num_features) + 0.5)
            norm.weight.data.copy_(torch.randn(norm.num_features))


@pytest.mark.parametrize("depth", [1, 5])
def test_the_converted_backbone_computes_the_users_forward_with_the_users_weights(depth):
    """Every activation, a conv bias before BatchNorm, BatchNorm statistics: the backbone
    with pruning off is the user's module, within float rounding."""
    user, backbone = user_module(Trained, depth=depth), backbone_of(Trained, depth=depth)
    assert torch.equal(backbone.converted["stem"].conv.weight, user.stem.weight), "the user's weights, unchanged"
    x = torch.randn(3, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width)
    masks = MaskState.all_kept(3, (2, 2), backbone.gate_specs(), x)
    with torch.no_grad():
        assert (backbone(x, masks) - user(x)).abs().max() <= 1e-5


def example_module(stem: str = "plain_nowcaster"):
    """examples/STEM.py, imported once."""
    import importlib.util
    import sys

    if f"{stem}_example" not in sys.modules:
        spec = importlib.util.spec_from_file_location(f"{stem}_example", EXAMPLES / f"{stem}.py")
        sys.modules[spec.name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[f"{stem}_example"]


def test_an_encoder_decoder_converts_with_its_strides_and_upsamplings_and_the_grid_multiple_they_need():
    example = example_module()
    cls = converted(example.Nowcaster)
    assert cls.spatial_multiple(cls.Options()) == 4, "two stride-2 convolutions"
    user, backbone = user_module(example.Nowcaster), backbone_of(example.Nowcaster)
    layers = {key: (layer.conv.stride[0], layer.upsample) for key, layer in backbone.converted.items()}
    assert layers["encoder_1_0"] == (2, 1) and layers["decoder_1_0"] == (1, 2), "a stride kept, an upsampling absorbed"
    x = torch.randn(2, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width)
    with torch.no_grad():
        assert (backbone(x, MaskState.all_kept(2, (2, 2), backbone.gate_specs(), x)) - user(x)).abs().max() <= 1e-5


class UNet(nn.Module):
    """Two levels, a skip by concatenation."""

    def __init__(self, frames_in, frames_out, channels, hidden=8):
        super().__init__()
        self.frames_out, self.channels = frames_out, channels
        self.inc = nn.Conv2d(frames_in * channels, hidden, 3, padding=1)
        self.down = nn.Conv2d(hidden, 2 * hidden, 3, stride=2, padding=1)
        self.bottom = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1)
        self.up = nn.Upsample(scale_factor=2)
        self.up_conv = nn.Conv2d(2 * hidden, hidden, 3, padding=1)
        self.merge = nn.Conv2d(2 * hidden, hidden, 3, padding=1)
        self.head = nn.Conv2d(hidden, frames_out * channels, 1)

    def forward(self, x):
        b, t, c, h, w = x.shape
        skip = F.relu(self.inc(x.reshape(b, t * c, h, w)))
        z = F.relu(self.bottom(F.relu(self.down(skip))))
        z = F.relu(self.up_conv(self.up(z)))
        z = F.relu(self.merge(torch.cat([skip, z], dim=1)))
        return self.head(z).reshape(b, self.frames_out, self.channels, h, w)


def test_a_u_net_skip_converts_with_what_it_concatenates_at_full_width():
    user, backbone = user_module(UNet), backbone_of(UNet, one_width=True)
    reasons = {row["layer"]: row.get("why not") for row in backbone.prunable_layers()}
    assert reasons["inc"].startswith("a concatenation reads it") and reasons["up_conv"].startswith(
        "a concatenation reads it"
    )
    assert reasons["down"] is None and reasons["bottom"] is None and reasons["merge"] is None, "the rest is pruned"
    x = torch.randn(2, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width)
    with torch.no_grad():
        assert (backbone(x, MaskState.all_kept(2, (2, 2), backbone.gate_specs(), x)) - user(x)).abs().max() <= 1e-5


class DownsamplingResidual(nn.Module):
    """A ResNet downsampling block (a strided 1×1 shortcut around a stride-2 block) and a
    concatenation of 8 and 16 channels."""

    def __init__(self, frames_in, frames_out, channels, hidden=8):
        super().__init__()
        self.frames_out, self.channels = frames_out, channels
        self.stem = nn.Conv2d(frames_in * channels, hidden, 3, padding=1)
        self.shortcut = nn.Conv2d(hidden, 2 * hidden, 1, stride=2)
        self.conv1 = nn.Conv2d(hidden, 2 * hidden, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1)
        self.side = nn.Conv2d(2 * hidden, hidden, 3, padding=1)
        self.up = nn.ConvTranspose2d(3 * hidden, hidden, 2, stride=2)
        self.head = nn.Conv2d(hidden, frames_out * channels, 1)

    def forward(self, x):
        b, t, c, h, w = x.shape
        z = F.relu(self.stem(x.reshape(b, t * c, h, w)))
        z = F.relu(self.shortcut(z) + self.conv2(F.relu(self.conv1(z))))
        z = torch.cat([F.relu(self.side(z)), z], dim=1)
        return self.head(F.relu(self.up(z))).reshape(b, self.frames_out, self.channels, h, w)


def test_a_residual_around_a_stride_2_block_couples_its_sides_and_a_concatenation_of_unequal_widths_shifts_its_consumer():
    user, backbone = user_module(DownsamplingResidual), backbone_of(DownsamplingResidual)
    reasons = {row["layer"]: row.get("why not", "") for row in backbone.prunable_layers()}
    assert reasons["shortcut"].startswith("a residual sum") and reasons["conv2"].startswith("a residual sum")
    assert reasons["conv1"] == "" and reasons["stem"] == "", (
        "inside the block, and what only convolutions read, is pruned"
    )
    assert reasons["side"].startswith("a concatenation reads it")
    assert backbone.converted["up"].conv.in_channels == 24, "the consumer reads 8 + 16 channels"
    x = torch.randn(2, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width)
    with torch.no_grad():
        assert (backbone(x, MaskState.all_kept(2, (2, 2), backbone.gate_specs(), x)) - user(x)).abs().max() <= 1e-5


def test_the_users_own_trained_state_dict_becomes_the_converted_weights():
    """`dpedge train --init their.pt`: the state dict their module saves, loaded into a
    fresh build of it and converted again: the backbone then computes their trained module."""
    torch.manual_seed(5)
    theirs = Trained(
        SHAPE.frames_in, SHAPE.frames_out, SHAPE.channels, depth=2
    ).eval()  # other weights and statistics than the seed-0 build
    backbone = backbone_of(Trained, depth=2)
    backbone.load_user_state(theirs.state_dict(), "their.pt")
    x = torch.randn(2, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width)
    with torch.no_grad():
        assert (backbone(x, MaskState.all_kept(2, (2, 2), backbone.gate_specs(), x)) - theirs(x)).abs().max() <= 1e-5
    with pytest.raises(
        ConfigError, match=r"^--init their.pt: not a state dict of Trained as built here \(.*size mismatch"
    ):
        backbone.load_user_state(
            Trained(SHAPE.frames_in, SHAPE.frames_out, SHAPE.channels, hidden=8).state_dict(), "their.pt"
        )


def conv_bn_silu(inputs, outputs, stride=1, upsample=False):
    layers = [nn.Upsample(scale_factor=2)] if upsample else []
    return nn.Sequential(
        *layers, nn.Conv2d(inputs, outputs, 3, stride, 1, bias=False), nn.BatchNorm2d(outputs), nn.SiLU()
    )


class PlainBlock(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.expand = conv_bn_silu(width, width)
        self.project = nn.Conv2d(width, width, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(width)

    def forward(self, x):
        return x + self.project_bn(self.project(self.expand(x)))


class PlainSimVP(nn.Module):
    """dpedge's SimVP (models/simvp.py) as an OpenSTL user writes it: a per-frame encoder,
    a translator over the frames stacked as channels, a per-frame decoder."""

    def __init__(self, frames_in, frames_out, channels, spatial=8, temporal=16, blocks=2):
        super().__init__()
        self.frames_out, self.channels, self.spatial = frames_out, channels, spatial
        self.encoder = nn.Sequential(
            conv_bn_silu(channels, spatial),
            conv_bn_silu(spatial, spatial, 2),
            conv_bn_silu(spatial, spatial),
            conv_bn_silu(spatial, spatial, 2),
        )
        self.translator_in = conv_bn_silu(frames_in * spatial, temporal)
        self.translator = nn.Sequential(*[PlainBlock(temporal) for _ in range(blocks)])
        self.translator_out = conv_bn_silu(temporal, frames_out * spatial)
        self.decoder = nn.Sequential(
            conv_bn_silu(spatial, spatial, upsample=True),
            conv_bn_silu(spatial, spatial),
            conv_bn_silu(spatial, spatial, upsample=True),
            conv_bn_silu(spatial, spatial),
        )
        self.readout = nn.Conv2d(spatial, channels, 1)

    def forward(self, x):
        b, t, c, h, w = x.shape
        z = self.encoder(x.reshape(b * t, c, h, w))
        z = self.translator_out(self.translator(self.translator_in(z.reshape(b, t * self.spatial, h // 4, w // 4))))
        z = self.decoder(z.reshape(b * self.frames_out, self.spatial, h // 4, w // 4))
        return self.readout(z).reshape(b, self.frames_out, self.channels, h, w)


def test_a_traced_simvp_is_dpedges_own_simvp_same_forward_same_flops_same_gates():
    """The issue's target: an architecture written plainly and traced computes what dpedge's
    native backbone computes with the same weights, and counts the same FLOPs."""
    torch.manual_seed(0)
    native = build_model(
        ModelConfig(
            "simvp",
            SHAPE,
            {"spatial_channels": 8, "temporal_channels": 16},
            PruningConfig(budget=0.5, slimmable=False, group_size=4),
        )
    ).eval()
    with torch.no_grad():
        for norm in (m for m in native.backbone.modules() if isinstance(m, nn.BatchNorm2d)):
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 1.5)
    plain = PlainSimVP(SHAPE.frames_in, SHAPE.frames_out, SHAPE.channels)
    convs = [m for m in plain.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in plain.modules() if isinstance(m, nn.BatchNorm2d)]
    gated = native.backbone.layers()
    assert len(convs) == len(gated)
    with torch.no_grad():  # the native weights, layer by layer in program order, into the plain module
        for conv, layer in zip(convs, gated):
            conv.weight.copy_(layer.conv.weight)
            if conv.bias is not None:
                conv.bias.copy_(layer.conv.bias)
        for norm, theirs in zip(norms, [layer.norm for layer in gated if layer.norm is not None]):
            norm.load_state_dict(theirs.state_dict())
    with BACKBONES.scope():
        register_backbone(converted(PlainSimVP))
        traced = build_model(
            ModelConfig("plainsimvp", SHAPE, {}, PruningConfig(budget=0.5, slimmable=False, group_size=4))
        ).eval()
    traced.backbone.load_user_state(plain.state_dict(), "plain.pt")
    assert len(traced.backbone.gate_specs()) == len(native.backbone.gate_specs()) == 10
    x = torch.randn(2, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width)
    with torch.no_grad():
        assert (traced.dense_forecast(x) - native.dense_forecast(x)).abs().max() <= 1e-5
        assert (traced.dense_forecast(x) - plain.eval()(x)).abs().max() <= 1e-5
        assert traced(x).dense_flops == pytest.approx(native(x).dense_flops, rel=1e-9)


class PoolShuffleNet(nn.Module):
    """A max-pooled encoder, a PixelShuffle decoder (OpenSTL's upsampling)."""

    def __init__(self, frames_in, frames_out, channels, hidden=8):
        super().__init__()
        self.frames_out, self.channels = frames_out, channels
        self.inc = nn.Conv2d(frames_in * channels, hidden, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.mid = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.avg = nn.AvgPool2d(2)
        self.expand = nn.Conv2d(hidden, 16 * hidden, 3, padding=1)
        self.shuffle = nn.PixelShuffle(4)
        self.head = nn.Conv2d(hidden, frames_out * channels, 1)

    def forward(self, x):
        b, t, c, h, w = x.shape
        z = self.avg(F.relu(self.mid(self.pool(F.relu(self.inc(x.reshape(b, t * c, h, w)))))))
        z = self.shuffle(self.expand(z))
        return self.head(z).reshape(b, self.frames_out, self.channels, h, w)


class TransposedUNet(UNet):
    """The U-Net with a transposed convolution for its upsampling, as many write it."""

    def __init__(self, frames_in, frames_out, channels, hidden=8):
        super().__init__(frames_in, frames_out, channels, hidden)
        self.up = nn.ConvTranspose2d(2 * hidden, 2 * hidden, 2, stride=2)

    def forward(self, x):
        b, t, c, h, w = x.shape
        skip = F.relu(self.inc(x.reshape(b, t * c, h, w)))
        z = F.relu(self.bottom(F.relu(self.down(skip))))
        z = F.relu(self.up_conv(F.relu(self.up(z))))
        z = F.relu(self.merge(torch.cat([skip, z], dim=1)))
        return self.head(z).reshape(b, self.frames_out, self.channels, h, w)


def test_a_transposed_convolution_converts_into_its_taps_then_a_pixel_shuffle():
    cls = converted(TransposedUNet)
    assert cls.spatial_multiple(cls.Options()) == 2
    user, backbone = user_module(TransposedUNet), backbone_of(TransposedUNet, one_width=True)
    reasons = {row["layer"]: row.get("why not", "") for row in backbone.prunable_layers()}
    assert reasons["up"].startswith("a transposed convolution") and reasons["bottom"] == "", (
        "what it reads is still pruned"
    )
    assert backbone.converted["up"].input_gate.name == "bottom"
    x = torch.randn(2, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width)
    with torch.no_grad():
        assert (backbone(x, MaskState.all_kept(2, (2, 2), backbone.gate_specs(), x)) - user(x)).abs().max() <= 1e-5


class InvertedResidual(nn.Module):
    """MobileNetV2's block: expand, depthwise, project, added to its input."""

    def __init__(self, channels, expansion=4):
        super().__init__()
        wide = channels * expansion
        self.expand = nn.Sequential(nn.Conv2d(channels, wide, 1, bias=False), nn.BatchNorm2d(wide), nn.ReLU())
        self.depthwise = nn.Sequential(
            nn.Conv2d(wide, wide, 3, padding=1, groups=wide, bias=False), nn.BatchNorm2d(wide), nn.ReLU()
        )
        self.project = nn.Sequential(nn.Conv2d(wide, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.project(self.depthwise(self.expand(x)))


class MobileNowcaster(nn.Module):
    def __init__(self, frames_in, frames_out, channels, hidden=8):
        super().__init__()
        self.frames_out, self.channels = frames_out, channels
        self.stem = nn.Conv2d(frames_in * channels, hidden, 3, padding=1)
        self.blocks = nn.Sequential(InvertedResidual(hidden), InvertedResidual(hidden))
        self.smooth = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)  # depthwise straight into the head
        self.head = nn.Conv2d(hidden, frames_out * channels, 1)

    def forward(self, x):
        b, t, c, h, w = x.shape
        z = self.blocks(F.relu(self.stem(x.reshape(b, t * c, h, w))))
        return self.head(self.smooth(z)).reshape(b, self.frames_out, self.channels, h, w)


def test_a_depthwise_convolution_follows_its_inputs_gate():
    user, backbone = user_module(MobileNowcaster), backbone_of(MobileNowcaster, one_width=True)
    layers = {row["layer"]: row for row in backbone.prunable_layers()}
    assert layers["blocks.0.expand.0"]["gate"] == "blocks_0_expand_0" == layers["blocks.0.depthwise.0"]["gate"], (
        "pruned by its input's gate"
    )
    assert layers["blocks.0.project.0"]["why not"].startswith("a residual sum reads it")
    assert layers["smooth"]["why not"] == "a depthwise convolution of a full-width input"
    x = torch.randn(2, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width)
    with torch.no_grad():
        assert (backbone(x, MaskState.all_kept(2, (2, 2), backbone.gate_specs(), x)) - user(x)).abs().max() <= 1e-5


def test_pooling_and_pixel_shuffles_convert_the_gate_going_through_a_pooling_and_stopping_at_a_shuffle():
    cls = converted(PoolShuffleNet)
    assert cls.spatial_multiple(cls.Options()) == 4, "two poolings of 2, undone by a shuffle of 4"
    user, backbone = user_module(PoolShuffleNet), backbone_of(PoolShuffleNet, one_width=True)
    layers = {row["layer"]: (row["gate"], row.get("why not", "")) for row in backbone.prunable_layers()}
    assert layers["inc"][0] == "inc" and backbone.converted["mid"].input_gate.name == "inc", (
        "a pooling keeps its input's gate"
    )
    assert layers["expand"][1].startswith("a pixel shuffle reads it")
    x = torch.randn(2, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width)
    with torch.no_grad():
        assert (backbone(x, MaskState.all_kept(2, (2, 2), backbone.gate_specs(), x)) - user(x)).abs().max() <= 1e-5


def test_what_a_sum_or_the_forecast_reads_stays_full_width_and_the_rest_is_pruned():
    backbone = backbone_of(Nowcaster, one_width=True, depth=2)
    gates = {
        key: (layer.gate and layer.gate.name, layer.input_gate and layer.input_gate.name)
        for key, layer in backbone.converted.items()
    }
    assert gates == {
        "stem": (None, None),  # read by the first sum
        "blocks_0_conv1": ("blocks_0_conv1", None),
        "blocks_0_conv2": (None, "blocks_0_conv1"),  # conv2 reaches a sum
        "blocks_1_conv1": ("blocks_1_conv1", None),
        "blocks_1_conv2": (None, "blocks_1_conv1"),
        "head": (None, None),  # the forecast's channels
    }


class ConvLSTMCell(nn.Module):
    """A ConvLSTM cell as the common implementations write it: one convolution of [x, h]
    split into the four gates."""

    def __init__(self, inputs, hidden):
        super().__init__()
        self.hidden = hidden
        self.conv = nn.Conv2d(inputs + hidden, 4 * hidden, 3, padding=1)

    def forward(self, x, state):
        h, c = state
        i, f, o, g = torch.split(self.conv(torch.cat([x, h], dim=1)), self.hidden, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * c.tanh(), c


class ConvLSTMNowcaster(nn.Module):
    """Reads the frames, then forecasts every frame from the last state at once."""

    def __init__(self, frames_in, frames_out, channels, hidden=8):
        super().__init__()
        self.frames_in, self.frames_out, self.channels, self.hidden = frames_in, frames_out, channels, hidden
        self.embed = nn.Conv2d(channels, hidden, 3, padding=1)
        self.project = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.cell = ConvLSTMCell(hidden, hidden)
        self.head = nn.Conv2d(hidden, frames_out * channels, 1)

    def forward(self, x):
        b, t, c, height, width = x.shape
        h = x.new_zeros(b, self.hidden, height, width)
        state = (h, torch.zeros_like(h))
        for step in range(self.frames_in):
            state = self.cell(self.project(F.relu(self.embed(x[:, step]))), state)
        return self.head(state[0]).reshape(b, self.frames_out, self.channels, height, width)


@pytest.mark.parametrize(
    "user, gates",
    [
        (
            "recurrent_nowcaster",
            {"encoder_0", "decoder_1"},
        ),  # the example: a ConvGRU, autoregressive, torch.stack into the forecast
        (ConvLSTMNowcaster, {"embed"}),  # project feeds the concatenation with h
    ],
)
def test_a_recurrent_model_unrolls_into_one_layer_per_module_applied_at_every_step(user, gates):
    """The loops over frames unroll; each module is one converted layer applied at every step
    with the user's weights; what its gates split and multiply keeps its width; the forward
    is the user's."""
    user = example_module(user).RecurrentNowcaster if isinstance(user, str) else user
    module, backbone = user_module(user), backbone_of(user)
    assert {layer.gate.name for layer in backbone.converted.values() if layer.gate is not None} == gates
    cell_layer = next(key for key in backbone.converted if key.startswith("cell"))
    applied = sum(step.layer == cell_layer for step in backbone.steps)
    assert applied == SHAPE.frames_in + (SHAPE.frames_out - 1 if user.__name__ == "RecurrentNowcaster" else 0), (
        "no step's result unread"
    )
    cell_rows = [row["why not"] for row in backbone.prunable_layers() if row["layer"].startswith("cell")]
    assert cell_rows and all(why.startswith(("an elementwise", "its channels are split")) for why in cell_rows), (
        cell_rows
    )
    x = torch.randn(2, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width)
    with torch.no_grad():
        assert (backbone(x, MaskState.all_kept(2, (2, 2), backbone.gate_specs(), x)) - module(x)).abs().max() <= 1e-5


@pytest.mark.parametrize("which", ["residual", "encoder-decoder", "transposed u-net", "depthwise", "recurrent"])
def test_the_ledger_counts_what_fvcore_counts_of_the_users_own_module(which):
    user = {
        "residual": Nowcaster,
        "encoder-decoder": example_module().Nowcaster,
        "transposed u-net": TransposedUNet,
        "depthwise": MobileNowcaster,
        "recurrent": example_module("recurrent_nowcaster").RecurrentNowcaster,
    }[which]
    with BACKBONES.scope():
        register_backbone(converted(user))
        model = build_model(ModelConfig(converted(user).name, SHAPE, {}, PruningConfig(budget=1.0)))
    x = torch.zeros(1, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width)
    assert model(x).dense_flops == pytest.approx(fvcore_flops(user_module(user), (x,)), rel=1e-6)


@pytest.mark.parametrize("which", ["encoder-decoder", "transposed u-net", "depthwise", "recurrent"])
def test_each_width_levels_ledger_is_what_fvcore_counts_of_its_static_sub_network(which):
    """The issue's target on the static sub-networks: at every width level of a slimmable
    converted model, the FLOPs the ledger charges are fvcore's count of each layer's static
    equivalent (the kept channels only; a depthwise conv grouped)."""
    from dynaprune_edge.flops.fvcore_count import static_equivalent_flops
    from dynaprune_edge.masks import MaskMode

    user = {
        "encoder-decoder": example_module().Nowcaster,
        "transposed u-net": TransposedUNet,
        "depthwise": MobileNowcaster,
        "recurrent": example_module("recurrent_nowcaster").RecurrentNowcaster,
    }[which]
    with BACKBONES.scope():
        register_backbone(converted(user))
        torch.manual_seed(0)
        model = build_model(
            ModelConfig(converted(user).name, SHAPE, {}, PruningConfig(budget=0.5, slimmable=True, group_size=4))
        ).eval()
    x = torch.randn(1, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width)
    charged = []
    for level in range(len(model.pruning.width_levels)):
        with torch.no_grad():
            forecast = model(x, MaskMode(hard=True), width=level)
        charged.append(float(forecast.flops[0]))
        expected = static_equivalent_flops(forecast.masks.ledger, forecast.masks, 0)  # a width level alone: no router
        assert charged[-1] == pytest.approx(expected, rel=1e-6), (level, charged[-1], expected)
    assert charged == sorted(charged) and charged[0] < charged[-1], "narrower levels compute less"


def test_a_twenty_layer_model_converts_in_well_under_five_seconds():
    start = time.perf_counter()
    backbone_of(Nowcaster, depth=9)  # 2 + 2 × 9 convolutions
    assert time.perf_counter() - start < 5


def plain(forward, **modules) -> type:
    """A plain module class with `modules` (built from the shape) and `forward`."""

    def __init__(self, frames_in, frames_out, channels):
        nn.Module.__init__(self)
        self.frames_out, self.channels = frames_out, channels
        self.stem = nn.Conv2d(frames_in * channels, 8, 3, padding=1)
        self.head = nn.Conv2d(8, frames_out * channels, 1)
        for name, make in modules.items():
            setattr(self, name, make())

    return type("Odd", (nn.Module,), {"__init__": __init__, "forward": forward})


def stacked(self, x):
    b, t, c, h, w = x.shape
    return self.stem(x.reshape(b, t * c, h, w))


def out(self, z, x):
    b, t, c, h, w = x.shape
    return self.head(z).reshape(b, self.frames_out, self.channels, h, w)


class Attend(nn.Module):
    def forward(self, x):
        return F.scaled_dot_product_attention(x, x, x)


UNSUPPORTED = [
    (
        "Odd.valid: Conv2d(kernel (3, 3), stride (1, 1), padding (0, 0)",
        lambda self, x: out(self, F.pad(self.valid(stacked(self, x)), (1, 1, 1, 1)), x),
        {"valid": lambda: nn.Conv2d(8, 8, 3)},
    ),
    (
        "Odd.strip: Conv2d(kernel (1, 3), stride (1, 1), padding (0, 1)",
        lambda self, x: out(self, self.strip(stacked(self, x)), x),
        {"strip": lambda: nn.Conv2d(8, 8, (1, 3), padding=(0, 1))},
    ),
    (
        "groups 2",
        lambda self, x: out(self, self.grouped(stacked(self, x)), x),
        {"grouped": lambda: nn.Conv2d(8, 8, 3, padding=1, groups=2)},
    ),
    (
        "Odd.up: ConvTranspose2d(kernel (3, 3), stride (1, 1), padding (1, 1)",
        lambda self, x: out(self, self.up(stacked(self, x)), x),
        {"up": lambda: nn.ConvTranspose2d(8, 8, 3, padding=1)},
    ),
    (
        "Odd.pool: max pooling other than over size×size windows at stride size",
        lambda self, x: out(self, self.pool(stacked(self, x)), x),
        {"pool": lambda: nn.MaxPool2d(3, 1, 1)},
    ),
    (
        "Odd: interpolate (only nearest or bilinear, by a whole scale_factor)",
        lambda self, x: out(self, F.interpolate(stacked(self, x), scale_factor=1.0, mode="bicubic"), x),
        {},
    ),
    (
        "Odd.up: Upsample (only nearest or bilinear, by a whole scale_factor)",
        lambda self, x: out(self, self.pool(F.relu(self.up(stacked(self, x)))), x),
        {"up": lambda: nn.Upsample(size=(32, 32)), "pool": lambda: nn.AvgPool2d(2)},
    ),
    (
        "Odd: a concatenation along dimension 2",
        lambda self, x: out(self, torch.cat([stacked(self, x), stacked(self, x)], 2)[:, :, :16], x),
        {},
    ),
    ("Odd: softmax", lambda self, x: out(self, F.softmax(stacked(self, x), dim=1), x), {}),
    (
        "Odd.tanh_gelu: GELU(approximate='tanh')",
        lambda self, x: out(self, self.tanh_gelu(stacked(self, x)), x),
        {"tanh_gelu": lambda: nn.GELU(approximate="tanh")},
    ),
    ("Odd.drop: Dropout", lambda self, x: out(self, self.drop(stacked(self, x)), x), {"drop": lambda: nn.Dropout(0.1)}),
    ("Odd: truediv", lambda self, x: out(self, stacked(self, x) / 2, x), {}),
    ("Odd: the in-place relu_", lambda self, x: out(self, stacked(self, x).relu_(), x), {}),
    (
        "Odd: indexing the input frames by (slice(None, None, None), slice(1, 3, None))",
        lambda self, x: out(self, self.stem(torch.cat([x[:, 1:3], x[:, 1:3]], 1).flatten(1, 2)), x),
        {},
    ),
    (
        "Odd: mul of values shaped [(2, 8, 16, 16), (2, 8, 1, 1)]",  # broadcast: a squeeze-and-excitation scale
        lambda self, x: out(self, stacked(self, x) * F.max_pool2d(stacked(self, x), 16), x),
        {},
    ),
    (
        "Odd.stem: a module called again with another input width, or another BatchNorm, activation",
        lambda self, x: out(self, F.relu(self.stem(x.flatten(1, 2))) + self.stem(x.flatten(1, 2)), x),
        {},
    ),
    (
        "Odd.norm: a LayerNorm over (16,) (over a map's (channels, height, width) only)",
        lambda self, x: out(self, self.norm(self.stem(x.flatten(1, 2))), x),
        {"norm": lambda: nn.LayerNorm(16)},
    ),
    (
        "Odd.norm: GroupNorm not right after a convolution",
        lambda self, x: out(self, self.norm(F.relu(stacked(self, x))), x),
        {"norm": lambda: nn.GroupNorm(2, 8)},
    ),
    (
        "BatchNorm2d not right after a convolution",
        lambda self, x: out(self, self.bn(F.relu(stacked(self, x))), x),
        {"bn": lambda: nn.BatchNorm2d(8)},
    ),
    (
        "Odd: scaled_dot_product_attention",
        lambda self, x: out(
            self, F.scaled_dot_product_attention(stacked(self, x), stacked(self, x), stacked(self, x)), x
        ),
        {},
    ),
    (
        "Odd.attend: scaled_dot_product_attention",
        lambda self, x: out(self, self.attend(stacked(self, x)), x),
        {"attend": Attend},
    ),
    (
        "Odd.reflect: Conv2d(kernel (3, 3), stride (1, 1), padding (1, 1), dilation (1, 1), groups 1, padding_mode reflect)",
        lambda self, x: out(self, self.reflect(stacked(self, x)), x),
        {"reflect": lambda: nn.Conv2d(8, 8, 3, padding=1, padding_mode="reflect")},
    ),
    ("cannot be traced", lambda self, x: out(self, stacked(self, x) if x.sum() > 0 else stacked(self, -x), x), {}),
    ("its forward returns (2, 4, 2, 16, 16)", lambda self, x: x, {}),
    (
        "Odd: a reshape from (2, 4, 2, 16, 16) to (2, 8, 32, 8)",
        lambda self, x: out(self, self.stem(x.reshape(2, 8, 32, 8)), x),
        {},
    ),
]


@pytest.mark.parametrize(
    "message, forward, modules", UNSUPPORTED, ids=[case[0].split(":")[0][:40] for case in UNSUPPORTED]
)
def test_a_construct_the_conversion_does_not_handle_is_one_line_naming_it(message, forward, modules):
    with pytest.raises(ConfigError) as refused:
        backbone_of(plain(forward, **modules))
    assert message in str(refused.value) and "\n" not in str(refused.value), str(refused.value)


def test_the_widths_a_user_names_scale_the_static_baselines_and_a_wrong_name_is_refused():
    example = example_module()
    assert converted(example.Nowcaster).scaled_options({"hidden": 32}, 0.5)["hidden"] == 16

    class Misnamed(nn.Module):
        WIDTHS = {"width_typo": 4}

        def __init__(self, frames_in, frames_out, channels, hidden=8):
            super().__init__()

    with pytest.raises(ConfigError, match=r"Misnamed.WIDTHS must map arguments of its __init__ \(hidden\)"):
        converted(Misnamed)


def test_a_constructor_argument_without_a_whole_number_default_is_refused():
    class NoDefault(nn.Module):
        def __init__(self, frames_in, frames_out, channels, hidden):
            super().__init__()

    with pytest.raises(
        ConfigError,
        match=r"NoDefault.__init__: argument 'hidden' needs a whole-number default \(what --arch hidden=N sets\)",
    ):
        converted(NoDefault)
