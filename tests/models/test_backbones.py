"""The contract every backbone of `BACKBONES` keeps: it trains (forward, backward, gradients
to the mask generator), and its closed-form FLOPs are what fvcore counts, dense (the whole
backbone) and per sample (each layer's static equivalent of the kept work)."""

from __future__ import annotations

import pytest
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from dynaprune_edge.flops.fvcore_count import dense_flops_fvcore, static_equivalent_flops
from dynaprune_edge.layers import MaskState
from dynaprune_edge.masks import MaskMode, PruningConfig
from dynaprune_edge.models import BACKBONES, ForecastShape, ModelConfig, build_model

SHAPE = ForecastShape(frames_in=3, frames_out=2, channels=2, height=32, width=32)
FLOP_CARRYING = ("conv", "linear", "matmul", "mm", "einsum", "attention")


def build(backbone: str, budget: float, shape: ForecastShape = SHAPE, **pruning):
    torch.manual_seed(0)
    return build_model(ModelConfig(backbone, shape, {}, PruningConfig(budget=budget, **pruning)))


def nudge(model, x: torch.Tensor) -> None:
    """Make the generator skip about half the regions of `x` and narrow every gate."""
    with torch.no_grad():
        model.generator.importance.weight.normal_(0.0, 1.0)
        model.generator.importance.bias.zero_()
        model.generator.importance.bias.fill_(-model.generator(x).logits.median())
        biases = torch.tensor([-1.0, 0.0, 1.0]).repeat(len(model.gates))[: len(model.gates)]
        model.model_mask.width_bias.copy_(biases)  # widths ≈ 0.25, 0.5, 0.75, ...


def inputs(batch: int, shape: ForecastShape = SHAPE) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(batch, shape.frames_in, shape.channels, shape.height, shape.width)


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


@pytest.mark.parametrize("budget", [1.0, 0.3])
@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_forward_backward_and_generator_gradients(backbone, budget):
    model = build(backbone, budget)
    x = inputs(2)
    forecast = model(x, MaskMode(hard=True))
    assert forecast.prediction.shape == (2, SHAPE.frames_out, SHAPE.channels, SHAPE.height, SHAPE.width)
    assert torch.isfinite(forecast.prediction).all()
    loss = (forecast.prediction - x[:, -1:]).square().mean() + forecast.flops_ratio.mean()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.backbone.parameters() if p.grad is not None)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    if budget < 1.0:
        assert model.generator.importance.weight.grad.abs().sum() > 0
        assert model.model_mask.width_bias.grad.abs().sum() > 0
        assert all(s.weight.grad.abs().sum() > 0 for s in model.model_mask.scorers.values())


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_dense_flops_match_fvcore(backbone):
    model = build(backbone, 1.0)
    x = inputs(1)
    assert not uncounted_flop_ops(AllKept(model.backbone, model.grid), (x,))
    forecast = model(x)
    reference = dense_flops_fvcore(model)
    assert forecast.dense_flops == pytest.approx(reference, rel=0.01)
    assert torch.allclose(forecast.flops, torch.tensor([reference]), rtol=0.01)


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_sparse_flops_match_static_equivalents(backbone):
    """Per sample: the ledger (each layer's `cost` under the masks) equals fvcore's count of
    each layer's static equivalent (kept channels, kept tiles with halo, no padding) plus
    the mask generator, per-frame layers counted once per frame."""
    model, x = build(backbone, 0.3), inputs(2)
    nudge(model, x)
    with torch.no_grad():
        forecast = model(x, MaskMode(hard=True))
    assert (forecast.flops < 0.8 * forecast.dense_flops).all()
    assert ((forecast.data_kept > 0) & (forecast.data_kept < 1)).all()
    assert 0.2 < forecast.data_kept.mean() < 0.8, "the nudged generator should skip some regions"
    for sample in range(2):
        total = model.mask_flops() + static_equivalent_flops(forecast.masks.ledger, forecast.masks, sample)
        assert forecast.flops[sample].item() == pytest.approx(total, rel=0.01)
