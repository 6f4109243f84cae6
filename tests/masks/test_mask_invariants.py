"""What the Dyna-Pruner masks guarantee, on every backbone."""

import pytest
import torch

from dynaprune_edge.masks import MaskMode, PruningConfig
from dynaprune_edge.masks.generator import DataMask, ImportanceField
from dynaprune_edge.models import BACKBONES, ForecastShape, ModelConfig, build_model
from dynaprune_edge.training.schedule import mask_mode

SHAPE = ForecastShape(4, 4, 2, 32, 32)


def narrowed(backbone: str, group_order: str = "ordered") -> torch.nn.Module:
    """A pruned model pushed to skip regions and drop groups, as training to 0.3 does, on
    noise inputs (which change everywhere, so the activity prior, tested on its own, is off)."""
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(backbone, SHAPE, {}, PruningConfig(budget=0.3, activity_weight=0.0, group_order=group_order))
    )
    with torch.no_grad():
        model.generator.importance.weight.normal_()
        model.generator.importance.bias.fill_(-1.0)
        model.model_mask.width_bias.fill_(-3.0)
    return model


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_hard_masks_are_binary_and_keep_a_group_per_layer(backbone):
    model = narrowed(backbone)
    forecast = model(torch.randn(4, 4, 2, 32, 32), MaskMode(hard=True))
    masks = forecast.masks
    assert set(masks.region_mask.unique().tolist()) <= {0.0, 1.0}
    for gate in model.gates:
        channel_mask = masks.channel(gate)
        assert set(channel_mask.unique().tolist()) <= {0.0, 1.0}
        groups = channel_mask.reshape(4, gate.groups, gate.group_size)
        assert (groups == groups[:, :, :1]).all(), f"{gate.name}: a group is partly kept"
        assert (groups[:, :, 0].sum(dim=1) >= 1).all(), f"{gate.name}: no group kept"
    assert any((masks.fraction(g) < 1).any() for g in model.gates)
    assert (forecast.flops_ratio < 0.9).all()


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_straight_through_gives_the_generator_gradients(backbone):
    model = narrowed(backbone, "scored")  # the group order with scorers to train
    forecast = model(torch.randn(2, 4, 2, 32, 32), MaskMode(hard=True))
    (forecast.prediction.pow(2).mean() + forecast.flops_ratio.mean()).backward()
    for name in ("generator.importance.weight", "model_mask.width_bias"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    scorer_grads = [p.grad for n, p in model.named_parameters() if n.startswith("model_mask.scorers")]
    assert any(g is not None and g.abs().sum() > 0 for g in scorer_grads)


def test_skipped_regions_output_the_last_input_frame():
    model = narrowed("simvp").eval()
    x = torch.randn(2, 4, 2, 32, 32)
    with torch.no_grad():
        model.generator.importance.bias -= model.importance(x).logits.median()  # about half the regions kept
        forecast = model(x, MaskMode(hard=True))
    skipped = forecast.masks.region_at((32, 32))[:, 0] == 0  # (B, H, W)
    assert skipped.any() and not skipped.all()
    persistence = x[:, -1]
    for t in range(4):
        assert torch.equal(
            forecast.prediction[:, t].permute(0, 2, 3, 1)[skipped], persistence.permute(0, 2, 3, 1)[skipped]
        )


def test_dense_baseline_has_no_generator_and_full_flops():
    model = build_model(ModelConfig("simvp", SHAPE, {}, PruningConfig(budget=1.0)))
    forecast = model(torch.randn(2, 4, 2, 32, 32))
    assert model.generator is None
    assert torch.allclose(forecast.flops_ratio, torch.ones(2))
    assert torch.allclose(forecast.data_kept, torch.ones(2))


def test_masks_anneal_from_soft_to_hard():
    pruning = PruningConfig(budget=0.3, soft_fraction=0.5)
    modes = [mask_mode(step, 100, pruning) for step in range(100)]
    temperatures = [m.temperature for m in modes[:50]]
    assert not any(m.hard for m in modes[:50]) and all(m.hard for m in modes[50:])
    assert temperatures == sorted(temperatures, reverse=True)
    assert temperatures[0] == pruning.soft_temperature and temperatures[-1] < 0.1


@pytest.mark.parametrize("cap", [6, 3])
def test_no_logit_change_below_the_routing_margin_changes_the_kept_regions(cap):
    """The export's parity check leaves out samples within a small margin of another
    route (onnxruntime rounds logits differently); that is only sound if the margin bounds
    every perturbation that reroutes, with and without the cap."""
    torch.manual_seed(0)
    mask = DataMask((2, 3)).eval()
    mask.threshold.fill_(0.2)
    mask.max_regions.fill_(cap)
    logits = torch.randn(400, 2, 3)
    logits[:50, 0, 0] = 0.2 - 1e-6  # ties a converting runtime may break either way
    margin = mask.routing_margin(logits)
    assert (margin[:50] <= 1e-6 + 1e-7).all() and (margin[50:] > 1e-4).float().mean() > 0.9

    def kept(values):
        return mask(ImportanceField(torch.zeros(len(values), 1, 2, 3), values), MaskMode(hard=True))

    for _ in range(20):
        push = (torch.rand_like(logits) * 2 - 1) * 0.49 * margin[:, None, None]
        assert torch.equal(kept(logits + push), kept(logits))
    rerouted = kept(logits + 1.01 * margin[:, None, None] * torch.randn_like(logits).sign()) != kept(logits)
    assert rerouted.flatten(1).any(1).float().mean() > 0.2  # the bound is tight enough to matter
