"""ST-Prune (`--st-prune`): the score, the unbiased reweighting, the full-data anneal, the
achieved fraction, the step-keyed schedule on shorter epochs, and resume."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.training import RESUME_FILE
from dynaprune_edge.training.sample_pruning import (
    SamplePruning,
    SampleScores,
    percentile_ranks,
    plan_epoch,
    window_complexity,
)
from dynaprune_edge.training.schedule import learning_rate_factor
from tests.training.conftest import TRAIN
from tests.training.test_trainer import Killed, assert_same_tensors, kill_after_step

ST_PRUNE = dataclasses.replace(TRAIN, epochs=4, sample_pruning=SamplePruning(ratio=0.6, anneal=0.25, score="both"))


def test_complexity_is_temporal_change_plus_spatial_gradient_energy():
    """By hand: a target that jumps from 0 to 1 and stays (one jump of 1 in two steps: 0.5),
    and a still checkerboard (every neighbour differs by 1: 1 along each axis)."""
    still_zero = torch.zeros(1, 2, 1, 2, 2)
    jump = window_complexity(still_zero, torch.ones(1, 2, 1, 2, 2))
    board = torch.tensor([[0.0, 1.0], [1.0, 0.0]]).expand(1, 2, 1, 2, 2)
    checkerboard = window_complexity(board, board)
    assert jump.tolist() == [0.5] and checkerboard.tolist() == [2.0]


def test_percentile_ranks():
    assert percentile_ranks(np.array([3.0, 1.0, 2.0])).tolist() == [1.0, 0.0, 0.5]


def scores_of(complexity, loss) -> SampleScores:
    scores = SampleScores(np.array(complexity, float))
    scores.loss = np.array(loss, float)
    return scores


def test_the_kept_easy_windows_reweighted_give_the_full_data_loss_in_expectation():
    """Enumerated over every keep/skip outcome of the easy windows, each with its
    probability (an easy window is kept with probability 1 − R): the expected weighted loss
    equals the full-data loss exactly."""
    losses = np.array([0.1, 0.2, 0.3, 0.9, 1.5, 2.0])
    scores = scores_of([1, 2, 3, 4, 5, 6], losses)
    pruning = SamplePruning(ratio=0.7, anneal=0.0, score="both")
    weight_of = plan_epoch(scores, pruning, epoch=0, epochs=10, seed=0).weight_of
    easy = np.flatnonzero(weight_of != 1)
    assert easy.tolist() == [0, 1, 2]  # the low-complexity, low-loss half
    expected = 0.0
    for kept in itertools.product([True, False], repeat=len(easy)):
        probability = math.prod(1 - pruning.ratio if k else pruning.ratio for k in kept)
        in_epoch = np.ones(len(losses), bool)
        in_epoch[easy] = kept
        expected += probability * float((weight_of * losses)[in_epoch].sum())
    assert expected == pytest.approx(losses.sum())


def test_an_easy_window_is_kept_with_probability_one_minus_r_hard_ones_always():
    scores = scores_of([1, 2, 3, 4], [0.1, 0.2, 0.8, 0.9])
    plans = [plan_epoch(scores, SamplePruning(ratio=0.7, anneal=0.0), epoch, 2000, seed=3) for epoch in range(2000)]
    kept = np.array([np.isin(np.arange(4), plan.indices) for plan in plans]).mean(axis=0)
    assert kept[2:].tolist() == [1.0, 1.0]
    assert kept[:2] == pytest.approx([0.3, 0.3], abs=0.04)  # 2000 draws: ±0.01 standard error


def test_the_easy_share_is_the_lowest_scoring_share_of_the_judged_windows():
    """10 windows, 8 of them seen: the lowest-scoring 3/4 of those 8 are easy (6), whatever
    their index; the 2 unseen ones stay hard under a loss score."""
    loss = [0.5, np.nan, 0.1, 0.9, 0.3, np.nan, 0.7, 0.2, 0.8, 0.4]
    scores = scores_of(np.zeros(10), loss)
    plan = plan_epoch(scores, SamplePruning(ratio=0.5, anneal=0.0, score="loss", easy_share=0.75), 0, 2, seed=0)
    assert np.flatnonzero(plan.weight_of == 2.0).tolist() == [0, 2, 4, 6, 7, 9]
    everything = plan_epoch(scores, SamplePruning(ratio=0.5, anneal=0.0, score="loss", easy_share=1.0), 0, 2, seed=0)
    assert np.flatnonzero(everything.weight_of == 1.0).tolist() == [1, 5]


def test_unseen_windows_are_hard_and_the_anneal_phase_uses_every_window():
    unseen = SampleScores(np.arange(6.0))
    assert plan_epoch(unseen, SamplePruning(ratio=0.9, score="loss"), 0, 8, 0).pruned_fraction == 0
    assert (
        plan_epoch(unseen, SamplePruning(ratio=0.9, score="complexity"), 0, 8, 0).pruned_fraction > 0
    )  # needs no loss
    seen = scores_of(range(6), range(6))
    pruning = SamplePruning(ratio=0.9, anneal=0.25)
    fractions = [plan_epoch(seen, pruning, epoch, 8, 0).pruned_fraction for epoch in range(8)]
    assert all(f > 0 for f in fractions[:6]) and fractions[6:] == [0.0, 0.0]


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(ratio=1.0), "--prune-ratio must be in [0, 1)"),
        (dict(ratio=-0.1), "--prune-ratio must be in [0, 1)"),
        (dict(anneal=1.5), "--anneal must be in [0, 1]"),
        (dict(score="entropy"), "--score must be one of complexity, loss, both"),
        (dict(easy_share=0.0), "--easy-share must be in (0, 1]"),
        (dict(easy_share=1.2), "--easy-share must be in (0, 1]"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        SamplePruning(**options)


@pytest.mark.slow
def test_a_pruned_run_records_what_it_achieved_and_its_schedule_ends_with_training(build_trainer, tmp_path):
    """Epoch 1 trains on every window (none has a loss yet: all count as hard), epochs 2–3
    prune, epoch 4 anneals with every window. The learning rate follows the steps actually taken: the last step
    runs at the schedule's last value, as in a full-data run, although the run is shorter."""
    trainer = build_trainer(tmp_path / "run", train=ST_PRUNE)
    windows = len(trainer.fitted)
    rates = []
    trainer.optimizer.register_step_post_hook(lambda optimizer, *_: rates.append(optimizer.param_groups[0]["lr"]))
    metrics = trainer.fit()
    seen = [epoch["samples_seen"] for epoch in trainer.history]
    assert [epoch["pruned_fraction"] for epoch in trainer.history] == pytest.approx([1 - s / windows for s in seen])
    assert seen[0] == windows and all(s < windows for s in seen[1:3]) and seen[3] == windows
    assert metrics["samples_seen"] == sum(seen) and metrics["pruned_fraction"] == pytest.approx(
        1 - sum(seen) / (4 * windows)
    )
    assert metrics["scoring_seconds"] >= 0 and "train_seconds" in metrics
    steps = sum(math.ceil(s / ST_PRUNE.batch_size) for s in seen)
    assert len(rates) == steps == trainer.step == trainer.total_steps < 4 * trainer.steps_per_epoch
    assert rates[-1] == pytest.approx(ST_PRUNE.lr * learning_rate_factor(steps - 1, steps))
    after_warmup = rates[max(1, int(0.05 * steps)) :]
    assert all(later <= earlier + 1e-12 for earlier, later in zip(after_warmup, after_warmup[1:]))


@pytest.mark.slow
def test_a_pruned_run_killed_and_resumed_prunes_what_an_uninterrupted_one_prunes(build_trainer, tmp_path):
    uninterrupted = build_trainer(tmp_path / "whole", train=ST_PRUNE)
    uninterrupted.fit()
    out = tmp_path / "killed"
    interrupted = build_trainer(out, train=ST_PRUNE)
    kill_after_step(
        interrupted, interrupted_step := uninterrupted.history[0]["samples_seen"] // ST_PRUNE.batch_size + 3
    )
    with pytest.raises(Killed):
        interrupted.fit()
    assert torch.load(out / RESUME_FILE, weights_only=True)["epoch"] == 1, (
        f"step {interrupted_step} should land in epoch 2"
    )
    resumed = build_trainer(out, train=ST_PRUNE)
    resumed.restore()
    resumed.fit()
    assert [e["samples_seen"] for e in resumed.history] == [e["samples_seen"] for e in uninterrupted.history]
    assert_same_tensors(resumed.model.state_dict(), uninterrupted.model.state_dict())
