"""Any grid is used whole: the backbone runs on it padded to what its regions and strides
need, forecasts come back at the user's grid, and regions made only of padding are never
computed (so they cost nothing and no budget is spent on them)."""

from __future__ import annotations

import pytest
import torch

from dynaprune_edge.masks import MaskMode, PruningConfig
from dynaprune_edge.models import BACKBONES, ForecastShape, ModelConfig, build_model

GRIDS = [(10, 20), (13, 7)]


def build(backbone: str, height: int, width: int, **pruning):
    torch.manual_seed(0)
    shape = ForecastShape(frames_in=3, frames_out=2, channels=2, height=height, width=width)
    return build_model(ModelConfig(backbone, shape, {}, PruningConfig(**{"budget": 0.3, **pruning})))


@pytest.mark.parametrize("height, width", GRIDS)
@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_an_odd_grid_trains_whole_and_forecasts_at_its_own_shape(backbone, height, width):
    model = build(backbone, height, width)
    padded = model.backbone.shape
    assert (padded.height, padded.width) == (-(-height // 8) * 8, -(-width // 8) * 8)
    assert model.padding == (padded.height - height, padded.width - width)
    x = torch.randn(2, 3, 2, height, width)
    forecast = model(x, MaskMode(hard=True))
    assert forecast.prediction.shape == (2, 2, 2, height, width)
    forecast.prediction.square().mean().backward()
    assert model.generator.importance.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_a_dense_model_is_padded_only_for_its_strides(backbone):
    """A dense model skips nothing, so it must not pay for a region grid: on NYC bike's
    10×20 a dense SimVP or ConvLSTM (strides and patches of 4) runs on 12×20, where
    regions of 8 would make it compute 16×24, 1.6× the cells; a ViT's token is its
    region either way (patches of 8: 16×24). The default region size must not matter."""
    multiple = BACKBONES.get(backbone).spatial_multiple(BACKBONES.get(backbone).Options())
    for region_size in (4, 8, 16):
        model = build(backbone, 10, 20, budget=1.0, region_size=region_size)
        padded = model.backbone.shape
        assert (padded.height, padded.width) == (-(-10 // multiple) * multiple, -(-20 // multiple) * multiple)
        x = torch.randn(2, 3, 2, 10, 20)
        assert model(x).prediction.shape == (2, 2, 2, 10, 20)
    pruned = build(backbone, 10, 20, region_size=8)
    assert (pruned.backbone.shape.height, pruned.backbone.shape.width) == (16, 24)
    if multiple < 8:  # the work a dense model no longer does
        assert model(x).dense_flops < pruned(x).dense_flops


def test_regions_made_only_of_padding_are_never_kept_or_budgeted():
    """SimVP with 2-pixel regions on a 10×20 city pads to 12×20: the sixth row of regions
    is all padding. However eager the generator, it keeps only the 50 real regions, and
    the calibration counts only those."""
    model = build("simvp", 10, 20, region_size=2)
    assert model.grid == (6, 10) and int(model.real_regions.sum()) == 50
    with torch.no_grad():
        model.generator.importance.bias.fill_(100.0)  # keep everything it may
    x = torch.randn(4, 3, 2, 10, 20)
    kept = model(x, MaskMode(hard=True)).masks.region_mask.reshape(4, 6, 10)
    assert (kept[:, 5] == 0).all() and (kept[:, :5] == 1).all()
    model.calibrate([x])
    assert float(model.data_mask.threshold) > float("-inf")
    with torch.no_grad():
        again = model.eval()(x, MaskMode(hard=True))
    assert (again.masks.region_mask.reshape(4, 6, 10)[:, 5] == 0).all()
    assert again.flops_ratio.mean() <= 0.3 + 1e-6
