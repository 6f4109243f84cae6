"""The trainer in-process: resume, refusals, parameter groups, metrics.json."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import Subset

from dynaprune_edge.data import load_dataset
from dynaprune_edge.errors import CheckpointError, ConfigError, DataError
from dynaprune_edge.training import METRICS_FILE, MODEL_FILE, RESUME_FILE, evaluate, load_model
from dynaprune_edge.training.config import CALIBRATION_EVERY
from dynaprune_edge.training.trainer import MASK_LR_SCALE
from tests.conftest import METRICS_KEYS


class Killed(Exception):
    """Stands for SIGKILL: the process dies wherever it is."""


def kill_after_step(trainer, step: int) -> None:
    """Make `trainer` die right after its `step`-th optimizer step (1-based)."""

    def hook(optimizer, args, kwargs):
        if trainer.step + 1 == step:  # the trainer counts the step after optimizer.step()
            raise Killed

    trainer.optimizer.register_step_post_hook(hook)


def untimed(history: list[dict]) -> list[dict]:
    """A history without its wall-clock (`train_seconds` so far), which no rerun repeats."""
    return [{k: v for k, v in epoch.items() if k != "train_seconds"} for epoch in history]


def copy_run(run_dir, tmp_path):
    target = tmp_path / "run"
    shutil.copytree(run_dir, target)
    return target


def assert_same_tensors(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key in expected:
        assert torch.equal(actual[key], expected[key]), f"{key} differs"


def assert_same_optimizer_state(actual: torch.optim.Optimizer, expected: torch.optim.Optimizer) -> None:
    a, e = actual.state_dict(), expected.state_dict()
    assert [g["lr"] for g in a["param_groups"]] == [g["lr"] for g in e["param_groups"]]
    assert a["state"].keys() == e["state"].keys()
    for index in e["state"]:
        assert_same_tensors(a["state"][index], e["state"][index])


# --- resume ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_killed_mid_epoch_and_resumed_ends_bit_identical_to_an_uninterrupted_one(
    finished_run, build_trainer, tmp_path
):
    """Killed during epoch 2 of 3 (after step 15 of 27), resumed from epoch 1's checkpoint:
    the same weights, BatchNorm statistics, Adam moments, history and metrics, exactly.
    Exact because training is deterministic on CPU (seeded init, per-epoch seeded shuffle,
    no random op in training) and resume.pt holds the whole state the next steps read."""
    out = tmp_path / "run"
    interrupted = build_trainer(out)
    kill_after_step(interrupted, 15)
    with pytest.raises(Killed):
        interrupted.fit()
    on_disk = torch.load(out / RESUME_FILE, weights_only=True)
    assert (on_disk["epoch"], on_disk["step"]) == (1, 9), "the kill should land mid-way through epoch 2"

    resumed = build_trainer(out)
    resumed.restore()
    assert (resumed.epoch, resumed.step) == (1, 9)
    metrics = resumed.fit()

    expected = finished_run.trainer
    assert_same_tensors(resumed.model.state_dict(), expected.model.state_dict())
    assert_same_optimizer_state(resumed.optimizer, expected.optimizer)
    assert untimed(resumed.history) == untimed(expected.history)
    assert {k: v for k, v in metrics.items() if k not in ("train_seconds", "history")} == {
        k: v for k, v in finished_run.metrics.items() if k not in ("train_seconds", "history")
    }
    assert_same_tensors(load_model(out / MODEL_FILE).model.state_dict(), expected.model.state_dict())


def test_resuming_a_finished_run_trains_nothing_and_keeps_its_results(finished_run, build_trainer, tmp_path):
    out = copy_run(finished_run.out, tmp_path)
    trainer = build_trainer(out)
    trainer.restore()
    steps = []
    trainer.optimizer.register_step_post_hook(lambda *_: steps.append(1))
    metrics = trainer.fit()
    assert steps == []
    assert metrics == finished_run.metrics
    assert json.loads((out / METRICS_FILE).read_text()) == finished_run.metrics
    assert_same_tensors(trainer.model.state_dict(), finished_run.trainer.model.state_dict())


@pytest.mark.parametrize(
    "different, change",
    [
        ("model_config", dict(budget=0.4)),
        ("model_config", dict(soft_fraction=0.5)),
        ("data_config", dict(data=dict(seed=1))),
        ("data content (the files at the same path changed)", dict(content=True)),
        ("train_config", dict(train=dict(epochs=5))),  # extending a finished or killed run
        ("train_config", dict(train=dict(lr=1e-3))),
    ],
    ids=["budget", "pruning_option", "data_seed", "data_content", "epochs", "lr"],
)
def test_restore_with_different_options_is_refused_naming_what_differs(
    different, change, finished_run, build_trainer, data, train_config, tmp_path
):
    shutil.copy(finished_run.out / RESUME_FILE, tmp_path / RESUME_FILE)
    options = dict(change)
    if "data" in change:
        options["data"] = load_dataset(dataclasses.replace(data.config, **change["data"]))
    if options.pop("content", False):  # the same options, a file that changed since
        options["data"] = load_dataset(data.config)
        options["data"].val.segments[0][0, 0, 0, 0] += 1.0
    if "train" in change:
        options["train"] = dataclasses.replace(train_config, **change["train"])
    trainer = build_trainer(tmp_path, **options)
    with pytest.raises(CheckpointError) as refused:
        trainer.restore()
    message = str(refused.value)
    assert f"different {different};" in message, message  # that one, and only that one
    assert str(tmp_path / RESUME_FILE) in message
    assert (trainer.epoch, trainer.step, trainer.history) == (0, 0, [])


def test_restore_without_resume_state_is_a_checkpoint_error(build_trainer, tmp_path):
    trainer = build_trainer(tmp_path)
    with pytest.raises(CheckpointError, match="no such file") as refused:
        trainer.restore()
    assert str(tmp_path / RESUME_FILE) in str(refused.value)


def test_training_needs_a_validation_window(data, build_trainer, tmp_path):
    without_val = dataclasses.replace(data, val=Subset(data.val, []))
    with pytest.raises(DataError, match="at least one training and one validation window"):
        build_trainer(tmp_path, data=without_val)
    assert not (tmp_path / MODEL_FILE).exists()


class Recorded(torch.utils.data.Dataset):
    """A dataset that notes which of its windows were read."""

    def __init__(self, windows, name: str, reads: list) -> None:
        self.windows, self.name, self.reads = windows, name, reads

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, item):
        self.reads.append((self.name, item))
        return self.windows[item]


def test_the_budget_is_calibrated_on_held_out_training_windows_only(data, build_trainer, tmp_path):
    """After an epoch the keep threshold and the cap are set from every 10th training
    window, which training never steps on, and from no validation or test window."""
    reads: list = []
    recorded = dataclasses.replace(
        data, **{split: Recorded(getattr(data, split), split, reads) for split in ("train", "val", "test")}
    )
    trainer = build_trainer(tmp_path, data=recorded)
    held_out = set(range(CALIBRATION_EVERY - 1, len(data.train), CALIBRATION_EVERY))
    reads.clear()
    trainer.calibrate()
    assert {name for name, _ in reads} == {"train"}, "calibration read a validation or test window"
    assert {item for _, item in reads} == held_out
    assert float(trainer.model.data_mask.threshold) != 0.0, "calibration set the threshold"

    reads.clear()
    trainer.train_epoch(trainer.plan(), SimpleNamespace(update=lambda *args, **kwargs: None), None)
    trained_on = {item for name, item in reads if name == "train"}
    assert trained_on == set(range(len(data.train))) - held_out, "an epoch steps on every other training window"


# --- parameter groups ----------------------------------------------------------------


def one_step_trainer(build_trainer, train_config, out, budget):
    """One optimizer step (8 windows, batch 8, 1 epoch); one step is all warm-up, so the
    learning rate of that step is the configured peak."""
    train = dataclasses.replace(train_config, epochs=1)
    trainer = build_trainer(out, budget=budget, train=train, train_windows=8)
    trainer.fit()
    assert trainer.step == 1
    return trainer


def group_of_each_parameter(trainer) -> dict[str, int]:
    """parameter name → index of the optimizer group holding it; fails on a parameter in
    two groups or in none, or on a group holding something that is not a model parameter."""
    group_by_id: dict[int, int] = {}
    for index, group in enumerate(trainer.optimizer.param_groups):
        for parameter in group["params"]:
            assert id(parameter) not in group_by_id, "a parameter is in two groups"
            group_by_id[id(parameter)] = index
    named = dict(trainer.model.named_parameters())
    assert set(group_by_id) == {id(p) for p in named.values()}, "groups and model parameters differ"
    return {name: group_by_id[id(p)] for name, p in named.items()}


def test_dense_model_trains_one_group_at_the_base_rate_with_weight_decay(build_trainer, train_config, tmp_path):
    trainer = one_step_trainer(build_trainer, train_config, tmp_path, budget=1.0)
    assert len(set(group_of_each_parameter(trainer).values())) == 1
    (group,) = trainer.optimizer.param_groups
    assert group["lr"] == pytest.approx(train_config.lr)
    assert group["weight_decay"] == train_config.weight_decay


def test_mask_generator_trains_at_mask_lr_scale_without_weight_decay(build_trainer, train_config, tmp_path):
    """The mask machinery is what a pruned model has beyond the dense model of the same
    backbone: those parameters get MASK_LR_SCALE × lr and no decay, the backbone the base
    rate and the configured decay."""
    pruned = one_step_trainer(build_trainer, train_config, tmp_path / "pruned", budget=0.5)
    dense = one_step_trainer(build_trainer, train_config, tmp_path / "dense", budget=1.0)
    group_of = group_of_each_parameter(pruned)
    backbone_names = set(dict(dense.model.named_parameters()))
    mask_names = set(group_of) - backbone_names
    assert backbone_names < set(group_of) and mask_names

    backbone_groups = {group_of[name] for name in backbone_names}
    mask_groups = {group_of[name] for name in mask_names}
    assert len(backbone_groups) == len(mask_groups) == 1 and backbone_groups != mask_groups
    backbone = pruned.optimizer.param_groups[backbone_groups.pop()]
    masks = pruned.optimizer.param_groups[mask_groups.pop()]
    assert backbone["lr"] == pytest.approx(train_config.lr)
    assert backbone["weight_decay"] == train_config.weight_decay
    assert masks["lr"] == pytest.approx(MASK_LR_SCALE * train_config.lr)
    assert masks["weight_decay"] == 0.0


# --- metrics.json ----------------------------------------------------------------------


def test_fit_writes_metrics_json_with_every_figure_and_one_history_entry_per_epoch(finished_run, data, train_config):
    out, metrics = finished_run.out, finished_run.metrics
    assert json.loads((out / METRICS_FILE).read_text()) == metrics, "metrics.json is what fit() returned"
    for key in METRICS_KEYS:
        assert key in metrics, key
    trained_on = len(data.train) - len(data.train) // CALIBRATION_EVERY
    steps_per_epoch = math.ceil(trained_on / train_config.batch_size)
    assert (metrics["epochs"], metrics["steps"]) == (train_config.epochs, train_config.epochs * steps_per_epoch)
    history = metrics["history"]
    assert [entry["epoch"] for entry in history] == [1, 2, 3]
    assert all(math.isfinite(entry["train_loss"]) and entry["train_loss"] > 0 for entry in history)
    assert all(entry.keys() == history[0].keys() and "val_mae" in entry for entry in history)
    assert len({entry["val_mae"] for entry in history}) == 3, "each epoch is evaluated anew"
    per_epoch = ("epoch", "train_loss", "cost", "above_cap", "samples_seen", "pruned_fraction", "train_seconds")
    latest = {k: v for k, v in history[-1].items() if k not in per_epoch}
    assert latest.items() <= metrics.items()
    assert [entry["samples_seen"] for entry in history] == [trained_on] * 3 and metrics[
        "samples_seen"
    ] == 3 * trained_on
    assert metrics["pruned_fraction"] == 0 and metrics["scoring_seconds"] == 0  # no --st-prune
    assert (
        0
        < history[0]["train_seconds"]
        < history[1]["train_seconds"]
        < history[2]["train_seconds"]
        == pytest.approx(metrics["train_seconds"], abs=0.01)
    )
    assert (
        metrics["cost"]["val"] == history[-1]["cost"] and metrics["cost"]["val"]["mean"] == metrics["flops_ratio_mean"]
    )
    for split in ("train", "val", "test"):
        spread = metrics["cost"][split]
        assert 0 < spread["p10"] <= spread["p50"] <= spread["p90"] <= spread["max"] <= metrics["max_cost"] + 1e-6, split
        assert metrics["above_cap"][split] == 0
    assert metrics["test_mae"] > 0 and 0 <= metrics["max_regions"] <= metrics["regions"]
    assert metrics["flops_ratio_mean"] == pytest.approx(metrics["flops_sparse_mean"] / metrics["flops_dense"], rel=1e-6)
    assert 0 < metrics["flops_ratio_mean"] <= 1.1 and 0 <= metrics["data_kept_mean"] <= 1
    assert metrics["val_mae"] > 0 and metrics["val_mae"] ** 2 <= metrics["val_mse"] * (1 + 1e-9)
    assert metrics["train_seconds"] > 0 and "flop" in metrics["flops_convention"]
    assert sorted(p.name for p in out.iterdir()) == sorted([METRICS_FILE, MODEL_FILE, RESUME_FILE]), (
        "fit leaves exactly its three files (no temporary file)"
    )


def test_metrics_describe_the_saved_model(finished_run, data):
    """Evaluating model.pt again reproduces the validation figures of metrics.json."""
    again = evaluate(load_model(finished_run.out / MODEL_FILE).model, data)
    metrics = finished_run.metrics
    assert again.pop("cost") == metrics["cost"]["val"] and again.pop("above_cap") == metrics["above_cap"]["val"]
    assert again == {key: metrics[key] for key in again}


# --- starting from a dense model ------------------------------------------------------


@pytest.fixture(scope="module")
def dense_model_file(build_trainer, train_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("dense")
    one_step_trainer(build_trainer, train_config, out, budget=1.0)
    return out / MODEL_FILE


@pytest.mark.slow
def test_init_starts_the_backbone_from_the_dense_model_and_distill_adds_its_forecast_to_the_loss(
    dense_model_file, build_trainer, train_config, data, tmp_path
):
    train = dataclasses.replace(train_config, init=str(dense_model_file), distill=0.5)
    trainer = build_trainer(tmp_path, train=train)
    dense = load_model(dense_model_file).model
    assert_same_tensors(trainer.model.backbone.state_dict(), dense.backbone.state_dict())
    assert trainer.model.generator is not None, "the masks are new"

    x, y = (torch.stack(t) for t in zip(*(data.train[i] for i in range(4))))
    forecast = trainer.model(x)
    with torch.no_grad():
        taught = dense(x).prediction
    expected = (forecast.prediction - y).square().flatten(1).mean(1) + 0.5 * (
        forecast.prediction - taught
    ).square().flatten(1).mean(1)
    assert torch.allclose(trainer.sample_losses(forecast, x, y), expected)
    assert not any(p.requires_grad for p in trainer.teacher.parameters()), "the teacher is frozen"


def test_init_refuses_a_model_that_cannot_teach_this_run(
    finished_run, dense_model_file, build_trainer, train_config, data, tmp_path
):
    pruned = dataclasses.replace(train_config, init=str(finished_run.out / MODEL_FILE))
    with pytest.raises(ConfigError, match="a pruned model"):
        build_trainer(tmp_path, train=pruned)
    other_data = load_dataset(dataclasses.replace(data.config, seed=1))
    with pytest.raises(ConfigError, match="different data"):
        build_trainer(tmp_path, data=other_data, train=dataclasses.replace(train_config, init=str(dense_model_file)))
    with pytest.raises(ConfigError, match="--distill needs --init"):
        dataclasses.replace(train_config, distill=1.0)
