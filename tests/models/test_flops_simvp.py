"""Closed-form FLOPs against fvcore, for SimVP (dense and per-sample sparse)."""

import torch

from dynaprune_edge.flops import dense_flops_fvcore, fvcore_flops
from dynaprune_edge.masks import MaskMode, PruningConfig
from dynaprune_edge.models import ForecastShape, ModelConfig, build_model


def pruned_simvp(x, shape=ForecastShape(4, 4, 2, 32, 32)):
    """A model whose generator skips about half the regions of `x` and narrows layers."""
    torch.manual_seed(0)
    model = build_model(ModelConfig("simvp", shape, {}, PruningConfig(target_flops=0.3))).eval()
    with torch.no_grad():
        model.generator.importance.weight.normal_()
        model.generator.importance.bias.fill_(0.0)
        model.generator.importance.bias.fill_(-model.generator(x).logits.median())
        model.model_mask.width_bias.fill_(-0.5)
    return model


def test_dense_closed_form_equals_fvcore():
    model = build_model(ModelConfig("simvp", ForecastShape(4, 4, 2, 32, 32), {}, PruningConfig()))
    forecast = model(torch.zeros(1, 4, 2, 32, 32))
    reference = dense_flops_fvcore(model)
    assert abs(forecast.dense_flops - reference) / reference < 0.01
    assert torch.allclose(forecast.flops, torch.tensor([reference]), rtol=0.01)


def test_sparse_closed_form_equals_fvcore_of_static_subnetwork():
    x = torch.randn(3, 4, 2, 32, 32)
    model = pruned_simvp(x)
    with torch.no_grad():
        forecast = model(x, MaskMode(hard=True))
    assert 0.2 < forecast.data_kept.mean() < 0.8, "the nudged generator should skip some regions"
    shape = model.backbone.shape
    fixed = model.generator.flops(shape.height, shape.width) + model.model_mask.flops()
    for sample in range(3):
        static = fixed
        for entry in forecast.masks.ledger.entries:
            masks = forecast.masks.for_frames(entry.frames) if entry.frames > 1 else forecast.masks
            for element in range(sample * entry.frames, (sample + 1) * entry.frames):
                module, inputs = entry.layer.static_equivalent(masks, element, entry.output_size)
                static += fvcore_flops(module, inputs)
        closed_form = float(forecast.flops[sample])
        assert abs(closed_form - static) / static < 0.01, (sample, closed_form, static)
        assert closed_form < 0.8 * forecast.dense_flops
