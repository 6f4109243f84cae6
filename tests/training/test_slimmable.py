"""Training a slimmable network (`dpedge train --slimmable`): the sandwich step, BatchNorm
statistics per width level, and each level's metrics."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from dynaprune_edge.masks import MaskMode
from dynaprune_edge.training import METRICS_FILE, MODEL_FILE, load_model
from dynaprune_edge.training.losses import per_sample_loss
from tests.training.test_trainer import one_step_trainer


def test_the_sandwich_step_trains_the_narrowest_and_the_widest_level(build_trainer, tmp_path):
    """The step's gradient is the widest level's plus the narrower levels': the filters
    the narrowest level computes get more than the widest level's forward gives them, and
    those only wider levels compute get the widest level's."""
    trainer = build_trainer(tmp_path / "run", budget=1.0, slimmable=True)
    model = trainer.model.train()
    widest = len(model.pruning.width_levels) - 1
    assert trainer.sandwich_levels() == [widest, 0, 1, 2], "four levels: every one, every step"
    expand = model.backbone.translator[0].expand.conv  # gate translator0: 16 filters, 2 groups of 8
    narrow = model.level_groups(model.pruning.width_levels[0])["translator0"] * 8
    assert narrow == 8
    x, y = (torch.stack(tensors) for tensors in zip(*(trainer.fitted[i] for i in range(8))))

    def gradient(step) -> torch.Tensor:
        trainer.optimizer.zero_grad()
        step()
        return expand.weight.grad.flatten(1).abs().sum(dim=1)

    sandwich = gradient(lambda: trainer.sandwich_step(x, y, torch.ones(8), 8))
    alone = gradient(lambda: per_sample_loss(model(x, MaskMode(hard=True), widest), y).mean().backward())
    assert (alone > 0).all(), "the widest level trains every filter"
    assert not torch.allclose(sandwich[:narrow], alone[:narrow]), "the narrower levels add nothing to their filters"


def test_with_more_levels_a_step_trains_both_ends_and_two_drawn_between(build_trainer, tmp_path):
    """Six levels: the widest, the narrowest and two distinct levels between, drawn by the
    step (the same draw on every process and after --resume), so every level is trained."""
    trainer = build_trainer(
        tmp_path / "run", budget=1.0, slimmable=True, width_levels=(0.25, 0.375, 0.5, 0.625, 0.75, 1.0)
    )
    draws = []
    for step in range(40):
        trainer.step = step
        levels = trainer.sandwich_levels()
        assert levels[:2] == [5, 0] and len(set(levels[2:])) == 2 and set(levels[2:]) <= {1, 2, 3, 4}
        assert trainer.sandwich_levels() == levels, "the draw depends on the step alone"
        draws.append(tuple(levels[2:]))
    assert {level for draw in draws for level in draw} == {1, 2, 3, 4} and len(set(draws)) > 1


@pytest.mark.slow
def test_each_width_level_keeps_batch_norm_statistics_of_its_own(build_trainer, train_config, tmp_path):
    trainer = build_trainer(
        tmp_path / "run", budget=1.0, slimmable=True, train=dataclasses.replace(train_config, epochs=1)
    )
    metrics = trainer.fit()
    norm = trainer.model.backbone.translator[0].project.norm  # its input: 8 of 16 channels at the narrowest level
    narrow, wide = norm.width_mean[0], norm.width_mean[-1]
    assert not torch.allclose(narrow, wide, atol=1e-3), "the narrowest and widest levels share statistics"
    assert torch.equal(norm.running_mean, norm.width_mean[-1]), "outside a level, the widest level's are in use"
    widths = metrics["widths"]
    assert [row["width"] for row in widths] == list(trainer.model.pruning.width_levels)
    assert [row["flops_ratio"] for row in widths] == sorted(row["flops_ratio"] for row in widths)
    assert widths[-1]["flops_ratio"] == pytest.approx(1.0) and widths[0]["flops_ratio"] < 0.99
    assert widths[-1]["val_mae"] == pytest.approx(metrics["val_mae"])
    written = json.loads((tmp_path / "run" / METRICS_FILE).read_text())
    assert {"width", "val_mae", "test_mae", "flops_ratio", "cost"} <= set(written["widths"][0])
    reloaded = load_model(tmp_path / "run" / "model.pt").model
    assert torch.equal(reloaded.backbone.translator[0].project.norm.width_mean, norm.width_mean)


def test_a_slimmable_network_starts_from_a_dense_model(build_trainer, train_config, tmp_path):
    """--init a dense model.pt: its weights, and every width level's BatchNorm statistics
    start from the dense model's (a dense model has one set; a level has its own after)."""
    dense = one_step_trainer(build_trainer, train_config, tmp_path / "dense", budget=1.0)
    train = dataclasses.replace(train_config, init=str(tmp_path / "dense" / MODEL_FILE))
    trainer = build_trainer(tmp_path / "run", budget=1.0, slimmable=True, train=train)
    ours, theirs = trainer.model.backbone, dense.model.backbone
    assert torch.equal(ours.translator[0].expand.conv.weight, theirs.translator[0].expand.conv.weight)
    norm, dense_norm = ours.translator[0].project.norm, theirs.translator[0].project.norm
    for level in range(len(trainer.model.pruning.width_levels)):
        assert torch.equal(norm.width_mean[level], dense_norm.running_mean)
        assert torch.equal(norm.width_var[level], dense_norm.running_var)
