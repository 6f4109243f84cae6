"""ConvLSTM and patch-transformer backbones: they train, their closed-form FLOPs are what
fvcore counts (dense: the whole backbone; sparse: each layer's static equivalent), and
a skipped token or region really costs nothing."""

from __future__ import annotations

import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.flops import dense_flops_fvcore, fvcore_flops
from dynaprune_edge.masks import MaskMode, MaskState, PruningConfig
from dynaprune_edge.models import ForecastShape, ModelConfig, build_model

SHAPE = ForecastShape(frames_in=3, frames_out=2, channels=2, height=32, width=32)
BACKBONES = ["convlstm", "vit"]
FLOP_CARRYING = ("conv", "linear", "matmul", "mm", "einsum", "attention")


def build(backbone: str, target_flops: float, **pruning):
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone, SHAPE, {}, PruningConfig(target_flops=target_flops, **pruning)))


def nudge(model, x: torch.Tensor) -> None:
    """Make the generator skip about half the regions of `x` and narrow every gate."""
    with torch.no_grad():
        model.generator.importance.weight.normal_(0.0, 1.0)
        model.generator.importance.bias.zero_()
        model.generator.importance.bias.fill_(-model.generator(x).logits.median())
        biases = torch.tensor([-1.0, 0.0, 1.0]).repeat(len(model.gates))[: len(model.gates)]
        model.model_mask.width_bias.copy_(biases)  # widths ≈ 0.25, 0.5, 0.75, ...


def inputs(batch: int) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width)


class AllKept(nn.Module):
    """The backbone under all-kept masks, as one traceable module."""

    def __init__(self, backbone, grid: tuple[int, int]) -> None:
        super().__init__()
        self.backbone = backbone
        self.grid = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        masks = MaskState.all_kept(x.shape[0], self.grid, self.backbone.gate_specs(), x)
        return self.backbone(x, masks)


def uncounted_flop_ops(module: nn.Module, example: tuple) -> list[str]:
    """Ops fvcore met but could not count that look like they carry multiply-adds."""
    analysis = FlopCountAnalysis(module, example)
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    analysis.total()  # runs the analysis
    return [op for op in analysis.unsupported_ops() if any(word in op for word in FLOP_CARRYING)]


@pytest.mark.parametrize("target_flops", [1.0, 0.3])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_forward_backward_and_generator_gradients(backbone, target_flops):
    model = build(backbone, target_flops)
    x = inputs(2)
    forecast = model(x, MaskMode(hard=True))
    assert forecast.prediction.shape == (2, SHAPE.frames_out, SHAPE.channels, SHAPE.height, SHAPE.width)
    assert torch.isfinite(forecast.prediction).all()
    loss = (forecast.prediction - x[:, -1:]).square().mean() + forecast.flops_ratio.mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.backbone.parameters() if p.grad is not None)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    if target_flops < 1.0:
        assert model.generator.importance.weight.grad.abs().sum() > 0
        assert model.model_mask.width_bias.grad.abs().sum() > 0
        assert all(s.weight.grad.abs().sum() > 0 for s in model.model_mask.scorers.values())


@pytest.mark.parametrize("backbone", BACKBONES)
def test_dense_flops_match_fvcore(backbone):
    model = build(backbone, 1.0)
    x = inputs(1)
    assert not uncounted_flop_ops(AllKept(model.backbone, model.grid), (x,))
    assert model(x).dense_flops == pytest.approx(dense_flops_fvcore(model), rel=0.01)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_sparse_flops_match_static_equivalents(backbone):
    model, x = build(backbone, 0.3), inputs(2)
    nudge(model, x)
    with torch.no_grad():
        forecast = model(x, MaskMode(hard=True))
    assert (forecast.flops < forecast.dense_flops).all()
    assert ((forecast.data_kept > 0) & (forecast.data_kept < 1)).all()
    generator = model.generator.flops(SHAPE.height, SHAPE.width) + model.model_mask.flops()
    for element in range(2):
        total = generator
        for entry in forecast.masks.ledger.entries:
            assert entry.frames == 1
            module, example = entry.layer.static_equivalent(forecast.masks, element, entry.output_size)
            total += fvcore_flops(module, example)
        assert forecast.flops[element].item() == pytest.approx(total, rel=0.01)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_hard_masks_are_binary_and_keep_a_group_per_layer(backbone):
    model, x = build(backbone, 0.3), inputs(4)
    nudge(model, x)
    masks = model.masks(x, MaskMode(hard=True))
    assert set(masks.region_mask.unique().tolist()) <= {0.0, 1.0}
    for gate in model.gates:
        mask = masks.channel(gate.name)
        assert set(mask.unique().tolist()) <= {0.0, 1.0}
        groups = mask.reshape(mask.shape[0], gate.groups, gate.group_size)
        assert (groups == groups[..., :1]).all()  # whole groups on or off
        assert (groups[..., 0].sum(dim=1) >= 1).all()
    assert any((masks.fraction(g.name) < 1).any() for g in model.gates)


def test_vit_skipped_tokens_do_not_influence_kept_ones():
    model, x = build("vit", 0.3), inputs(1)
    nudge(model, x)
    backbone = model.backbone
    with torch.no_grad():
        masks = model.masks(x, MaskMode(hard=True))
        full = backbone.patchify(backbone(x, masks))
        kept = masks.region_mask.flatten().nonzero()[:, 0]
        skipped = (masks.region_mask.flatten() == 0).nonzero()[:, 0]
        assert 0 < len(kept) < full.shape[1]
        gathered_masks = MaskState(torch.ones(1, 1, 1, len(kept)), masks.channel_masks)
        patches, position = backbone.patchify(x)[:, kept], backbone.position[:, kept]
        gathered = backbone.run_tokens(patches, position, torch.ones(1, len(kept), 1), gathered_masks)
    torch.testing.assert_close(full[:, kept], gathered, rtol=1e-4, atol=1e-5)
    assert (full[:, skipped] == 0).all()


def test_vit_with_every_token_skipped_stays_finite():
    backbone = build("vit", 1.0).backbone
    x = inputs(2).requires_grad_()
    masks = MaskState.all_kept(2, backbone.grid, backbone.gate_specs(), x)
    masks.region_mask = masks.region_mask.clone()
    masks.region_mask[0] = 0
    y = backbone(x, masks)
    y.sum().backward()
    assert torch.isfinite(y).all() and (y[0] == 0).all()
    assert torch.isfinite(x.grad).all()


def test_vit_patch_size_must_equal_region_size():
    pruning = PruningConfig(target_flops=0.3, region_size=4)
    with pytest.raises(ConfigError, match="patch_size equal to the region size"):
        build_model(ModelConfig("vit", SHAPE, {"patch_size": 8}, pruning))


def test_convlstm_state_is_zero_in_skipped_regions_and_pruned_channels():
    model, x = build("convlstm", 0.3), inputs(2)
    nudge(model, x)
    states = []
    for cell in model.backbone.cells:
        cell.register_forward_hook(lambda cell, args, output: states.append((cell.gate, output)))
    with torch.no_grad():
        masks = model.masks(x, MaskMode(hard=True))
        model.backbone(x, masks)
    assert len(states) == len(model.backbone.cells) * (SHAPE.frames_in + SHAPE.frames_out - 1)
    for gate, (hidden, cell) in states:
        region = masks.region_at(tuple(hidden.shape[-2:]))
        dropped = 1 - masks.channel(gate)[:, :, None, None] * region
        assert (hidden * dropped == 0).all() and (cell * dropped == 0).all()
