"""The budget inside the model, for every backbone: the cost curve is what the ledger
charges, the cap keeps each sample's best regions (ties to the earlier region), and a
calibrated model meets its budget on the windows it was calibrated on."""

from __future__ import annotations

import pytest
import torch

from dynaprune_edge.masks import MaskMode
from dynaprune_edge.masks.budget import KEEP_ALL
from dynaprune_edge.models import BACKBONES
from tests.models.test_backbones import SHAPE, build, inputs, nudge


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_the_cost_curve_is_what_the_ledger_charges_a_sample_keeping_n_regions(backbone):
    model, x = build(backbone, 0.3), inputs(8)
    nudge(model, x)
    with torch.no_grad():
        forecast = model(x, MaskMode(hard=True))
    counts = forecast.masks.region_mask.sum(dim=(1, 2, 3)).round().long()
    assert len(set(counts.tolist())) > 2, "the nudged generator should keep different counts"
    curve = model.cost_curve()
    assert curve.regions == model.regions
    assert curve.of(counts.numpy()) == pytest.approx(forecast.flops_ratio.numpy(), rel=1e-5)
    assert curve.ratios[0] >= model.mask_flops() / forecast.dense_flops * (1 - 1e-6), (
        "deciding the masks is always paid"
    )
    assert curve.ratios[0] < curve.ratios[-1]


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_the_cap_keeps_each_sample_s_best_regions_and_ties_go_to_the_earlier_region(backbone):
    model = build(backbone, 0.3)
    x = inputs(2)
    x[1] = 0.0  # a featureless sample: every interior region scores exactly alike
    nudge(model, x[:1])
    cap = model.regions // 3
    model.data_mask.threshold.fill_(KEEP_ALL)
    model.data_mask.max_regions.fill_(cap)
    model.eval()  # the calibrated threshold applies at evaluation and export
    with torch.no_grad():
        logits = model.generator(x).logits.flatten(1)
        kept = model(x, MaskMode(hard=True)).masks.region_mask.flatten(1)
    assert kept.sum(dim=1).tolist() == [cap, cap]
    for sample in range(2):  # a stable descending sort puts the earlier of equal regions first
        order = sorted(range(model.regions), key=lambda region: -logits[sample, region].item())
        assert set(kept[sample].nonzero().flatten().tolist()) == set(order[:cap])
    assert torch.unique(logits[1]).numel() < model.regions, "the featureless sample should have ties"


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_a_calibrated_model_meets_its_budget_and_cap_on_the_windows_it_saw(backbone):
    model, x = build(backbone, 0.3, max_cost=0.45), inputs(12)
    nudge(model, x)
    model.calibrate([x[:6], x[6:]])
    with torch.no_grad():  # evaluated first: a training-mode pass moves the generator's BatchNorm statistics
        ratios = model.eval()(x, MaskMode(hard=True)).flops_ratio
        trained_rule = model.train()(x, MaskMode(hard=True)).masks.region_mask
    assert ratios.mean() <= 0.3 + 1e-6 and ratios.max() <= 0.45 + 1e-6
    assert int(model.data_mask.max_regions) <= model.cost_curve().max_regions(0.45) < model.regions
    assert ratios.min() < ratios.max(), "samples still differ"
    with torch.no_grad():
        logits = model.generator(x).logits
    own = (logits >= 0).flatten(1).sum(1) <= int(model.data_mask.max_regions)
    assert torch.equal(trained_rule.flatten(1)[own], (logits >= 0).flatten(1)[own].float()), (
        "training keeps S ≥ ½ (the threshold is for evaluation), within the cap"
    )


@pytest.mark.parametrize("backbone", ["simvp", "convlstm"])
def test_widths_start_narrow_enough_for_the_cap_where_the_narrowest_fit(backbone):
    """One region covering the whole frame: at the near-full starting widths it costs more
    than the cap, so the model would compute nothing; the narrowest widths fit, and
    training starts from widths that do (every region kept, narrow)."""
    model = build(backbone, 0.3, max_cost=0.45, region_size=SHAPE.height)
    assert model.regions == 1 and model.cost_curve().max_regions(0.45) == 0
    assert model.narrow_to_cap()
    curve = model.cost_curve()
    assert curve.max_regions(0.45) == 1 and 0.3 <= curve.ratios[1] <= 0.45, "lowered only as far as the cap needs"
    assert not build(backbone, 0.02, max_cost=0.03, region_size=SHAPE.height).narrow_to_cap(), (
        "the narrowest widths cost more"
    )
