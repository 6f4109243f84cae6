"""A width-routed slimmable model (`dpedge train --slimmable --budget B`): the router's
price calibration, its training, and the budget chosen at run time."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from dynaprune_edge.masks import MaskMode
from dynaprune_edge.masks.router import BUDGET_GRID, WidthRouter
from dynaprune_edge.training.config import CALIBRATION_EVERY
from tests.training.test_trainer import Recorded

COSTS = torch.tensor([0.02, 0.18, 0.37, 0.65, 1.02])


def made_up_predictions(seed: int, samples: int = 300) -> torch.Tensor:
    """Predicted errors that mostly fall with the width, by how much varying per sample, a
    fifth of the samples calm (persistence best)."""
    generator = torch.Generator().manual_seed(seed)
    difficulty = torch.rand(samples, 1, generator=generator)
    predicted = difficulty * torch.tensor([2.0, 1.6, 1.2, 1.05, 1.0]) + 0.1 * torch.rand(
        samples, 5, generator=generator
    )
    predicted[: samples // 5, 0] = 0.0  # calm: persistence is exact
    return predicted


def calibrated_router(seed: int = 0) -> tuple[WidthRouter, torch.Tensor, torch.Tensor]:
    """A router calibrated on the made-up predictions of 300 samples."""
    predicted = made_up_predictions(seed)
    router = WidthRouter(feature_channels=4, levels=4, max_cost=None)
    router.calibrate(predicted, COSTS)
    return router, predicted, COSTS


@pytest.mark.slow
def test_the_budget_bounds_the_mean_cost_of_windows_the_calibration_did_not_see():
    """Routers calibrated on 40 different draws of 300 windows, each run on 20,000 unseen
    windows like them (about the population's mean): a budget is a bound there too, in all
    but a few of the draws (one-sided 95 %; without the margin, about half exceed it)."""
    unseen = made_up_predictions(seed=1000, samples=20000)
    for budget in (0.3, 0.5, 0.7):
        spent = [float(COSTS[calibrated_router(seed)[0].choose(unseen, budget)].mean()) for seed in range(40)]
        assert sum(s > budget for s in spent) <= 5, (budget, spent)
        assert np.mean(spent) > budget - 0.08, "a bound, not a budget left unspent"


def test_the_price_of_each_budget_spends_at_most_that_budget_and_a_higher_budget_never_costs_a_sample_less():
    router, predicted, costs = calibrated_router()
    branches = torch.stack([router.choose(predicted, float(budget)) for budget in BUDGET_GRID])  # (budgets, samples)
    spent = costs[branches].mean(dim=1)
    reachable = torch.as_tensor((float(costs[0]) <= BUDGET_GRID) & (BUDGET_GRID < 1.0))  # the router alone costs 0.02
    assert (spent[reachable] <= torch.as_tensor(BUDGET_GRID, dtype=torch.float32)[reachable] + 1e-6).all()
    assert spent[-20:].min() > 0.5, "high budgets are spent, not hoarded"
    assert (costs[branches[1:]] >= costs[branches[:-1]]).all(), "a sample's branch cost less at a higher budget"
    assert (branches[-1] == 4).all(), "budget 1 runs the widest level for every sample"
    assert (branches[:-1, :60] == 0).all(), "a calm sample runs persistence below budget 1"
    middle = branches[BUDGET_GRID.tolist().index(0.5)]
    assert len(torch.unique(middle[60:])) > 1, "every busy sample takes the same branch: nothing is per sample"
    hard = middle[60:][predicted[60:, 0].argsort()]
    assert costs[hard[-30:]].mean() > costs[hard[:30]].mean(), "harder samples get the wider levels"


def test_a_run_time_budget_between_grid_points_uses_the_lower_ones_price():
    router, predicted, costs = calibrated_router()
    assert torch.equal(router.choose(predicted, 0.437), router.choose(predicted, 0.43))
    assert costs[router.choose(predicted, 0.437)].mean() <= 0.437


@pytest.fixture(scope="module")
def routed_run(build_trainer, train_config, tmp_path_factory):
    """One epoch of a width-routed SimVP at budget 0.5 (its router's head recorded before);
    groups of 4 filters, so that the 8- and 16-filter layers have levels of their own."""
    trainer = build_trainer(
        tmp_path_factory.mktemp("routed") / "run",
        budget=0.5,
        slimmable=True,
        group_size=4,
        train=dataclasses.replace(train_config, epochs=1),
    )
    initial = [p.detach().clone() for p in trainer.model.width_router.parameters()]
    metrics = trainer.fit()
    return trainer, metrics, initial


@pytest.mark.slow
def test_the_router_learns_from_the_sandwich_steps_errors(routed_run):
    trainer, metrics, initial = routed_run
    router = trainer.model.width_router
    assert any(not torch.equal(before, after) for before, after in zip(initial, router.parameters())), (
        "the head did not train"
    )
    assert float(router.loss_unit) > 0 and router.loss_unit != 1.0, "the head's scale is the data's typical error"
    costs = router.costs
    assert (costs[1:] > costs[:-1]).all() and costs[0] < 0.1, "persistence is the router alone; wider levels cost more"
    assert [row["budget"] for row in metrics["budgets"]] == [0.3, 0.5, 0.7, 1.0]
    full = metrics["budgets"][-1]
    assert full["branch_share"][-1] == 1.0 and full["val_mae"] == pytest.approx(metrics["widths"][-1]["val_mae"])
    assert metrics["val_mae"] == pytest.approx(metrics["budgets"][1]["val_mae"]), (
        "the plain forward routes at the trained budget"
    )


def test_budget_one_is_the_widest_level_and_every_samples_cost_rises_with_the_budget(routed_run):
    trainer, _, _ = routed_run
    model = trainer.model.eval()
    x = torch.stack([trainer.data.val[i][0] for i in range(len(trainer.data.val))])
    with torch.no_grad():
        full = model(x, MaskMode(), budget=1.0)
        widest = model(x, MaskMode(), width=len(model.pruning.width_levels) - 1)
        assert torch.equal(full.prediction, widest.prediction)
        costs = torch.stack([model(x, MaskMode(), budget=budget).cost_ratio for budget in (0.1, 0.3, 0.5, 0.7, 1.0)])
    assert (costs[1:] >= costs[:-1]).all()
    assert not torch.equal(costs[0], costs[-1])


def test_the_router_is_calibrated_on_held_out_training_windows_only(data, build_trainer, tmp_path):
    reads: list = []
    recorded = dataclasses.replace(
        data, **{split: Recorded(getattr(data, split), split, reads) for split in ("train", "val", "test")}
    )
    trainer = build_trainer(tmp_path, data=recorded, budget=0.5, slimmable=True)
    reads.clear()
    trainer.calibrate()
    assert {name for name, _ in reads} == {"train"}, "calibration read a validation or test window"
    assert {item for _, item in reads} == set(range(CALIBRATION_EVERY - 1, len(data.train), CALIBRATION_EVERY))
    assert np.isfinite(trainer.model.width_router.prices.numpy()).all()
