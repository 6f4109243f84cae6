"""model.pt and resume.pt as a user meets them: load_model rebuilds the trained model, each
kind is refused where the other is expected, and anything else is one CheckpointError."""

from __future__ import annotations

import copy
import random
import shutil
import zipfile

import pytest
import torch
from torch.utils.data import DataLoader

from dynaprune_edge.errors import CheckpointError
from dynaprune_edge.training import METRICS_FILE, MODEL_FILE, RESUME_FILE, load_model
from dynaprune_edge.training.checkpoint import atomic_save


def saved_model_payload(finished_run) -> dict:
    return torch.load(finished_run.out / MODEL_FILE, weights_only=True)


@pytest.mark.slow
def test_load_model_rebuilds_a_model_that_forecasts_like_the_trained_one(finished_run, data):
    trained = load_model(finished_run.out / MODEL_FILE)
    original = finished_run.trainer.model.eval()
    x, _ = next(iter(DataLoader(data.val, batch_size=len(data.val))))
    with torch.no_grad():
        expected, rebuilt = original(x), trained.model(x)
    assert torch.equal(rebuilt.prediction, expected.prediction)
    assert torch.equal(rebuilt.flops, expected.flops), "the same masks, so the same per-sample FLOPs"
    assert not trained.model.training, "load_model hands back a model ready for inference"
    assert trained.model_config == finished_run.trainer.model_config
    assert trained.data_config == data.config
    assert trained.normalizer.to_dict() == data.normalizer.to_dict()
    assert trained.metrics == finished_run.metrics


def test_a_resume_state_is_not_a_model_and_a_model_is_not_a_resume_state(finished_run, build_trainer, tmp_path):
    with pytest.raises(CheckpointError, match="a dpedge resume state, not a model"):
        load_model(finished_run.out / RESUME_FILE)
    shutil.copy(finished_run.out / MODEL_FILE, tmp_path / RESUME_FILE)
    with pytest.raises(CheckpointError, match="a dpedge model, not a resume state"):
        build_trainer(tmp_path).restore()


def drop(*path):
    """A payload change: delete payload[path[0]]...[path[-1]]."""

    def change(payload):
        *parents, last = path
        for key in parents:
            payload = payload[key]
        del payload[last]

    change.__name__ = "missing_" + ".".join(path)
    return change


def drop_one_weight(payload):
    del payload["state_dict"][next(iter(payload["state_dict"]))]


def reshape_one_weight(payload):
    name = next(iter(payload["state_dict"]))
    payload["state_dict"][name] = torch.zeros(3)


@pytest.mark.parametrize(
    "change",
    [
        drop("model_config"),
        drop("data_config"),
        drop("normalizer"),
        drop("state_dict"),
        drop("model_config", "backbone"),
        drop("model_config", "shape"),
        drop("model_config", "shape", "height"),
        drop("model_config", "options"),
        drop("model_config", "pruning"),
        drop("normalizer", "std"),
        drop("data_config", "name"),
        drop_one_weight,
        reshape_one_weight,
    ],
    ids=lambda change: change.__name__,
)
def test_a_model_file_with_missing_fields_is_a_checkpoint_error(change, finished_run, tmp_path):
    payload = copy.deepcopy(saved_model_payload(finished_run))
    change(payload)
    torch.save(payload, tmp_path / MODEL_FILE)
    with pytest.raises(CheckpointError, match="damaged dpedge model") as refused:
        load_model(tmp_path / MODEL_FILE)
    assert len(str(refused.value).splitlines()) == 1, "the CLI prints it as one line"


def set_value(*path, value):
    def change(payload):
        *parents, last = path
        for key in parents:
            payload = payload[key]
        payload[last] = value

    change.__name__ = ".".join(path) + "=" + repr(value)
    return change


@pytest.mark.parametrize(
    "change",
    [
        set_value("model_config", "pruning", "width_levels", value=["x"]),
        set_value("model_config", "pruning", "budget", value=2.0),
        set_value("model_config", "backbone", value="resnet"),
    ],
    ids=lambda change: change.__name__,
)
def test_a_model_file_with_damaged_values_is_a_checkpoint_error(change, finished_run, tmp_path):
    payload = copy.deepcopy(saved_model_payload(finished_run))
    change(payload)
    torch.save(payload, tmp_path / MODEL_FILE)
    with pytest.raises(CheckpointError):
        load_model(tmp_path / MODEL_FILE)


def write_torch(value):
    def write(path, finished_run):
        torch.save(value, path)

    return write


def write_bytes(make):
    def write(path, finished_run):
        path.write_bytes(make(finished_run))

    return write


def write_zip(path, finished_run):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", b"not a pickle")


def write_future_version(path, finished_run):
    torch.save({**saved_model_payload(finished_run), "version": 99}, path)


NOT_A_MODEL = {
    "other_torch_dict": write_torch({"weights": torch.zeros(2)}),
    "tensor": write_torch(torch.zeros(2)),
    "list": write_torch([1, 2, 3]),
    "empty": write_bytes(lambda _: b""),
    "truncated_model": write_bytes(lambda run: (run.out / MODEL_FILE).read_bytes()[:5000]),
    "zip": write_zip,
    "random_bytes": write_bytes(lambda _: random.Random(0).randbytes(4096)),
    "json": write_bytes(lambda run: (run.out / METRICS_FILE).read_bytes()),
    "future_version": write_future_version,
}


@pytest.mark.parametrize("kind", NOT_A_MODEL)
def test_a_file_that_is_not_a_dpedge_model_is_one_checkpoint_error(kind, finished_run, tmp_path):
    path = tmp_path / "file.pt"
    NOT_A_MODEL[kind](path, finished_run)
    with pytest.raises(CheckpointError) as refused:
        load_model(path)
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and len(message.splitlines()) == 1, message
    if kind == "future_version":
        assert "version 99 is not supported" in message


def test_a_version_5_model_loads_unless_it_is_a_slimmable_simvp(finished_run, tmp_path):
    """Version 6 prunes a slimmable SimVP's residual stream: such a model of version 5 would
    load with levels it never trained, so it is refused with what to do; any other loads."""
    older = tmp_path / "older.pt"
    torch.save({**saved_model_payload(finished_run), "version": 5}, older)
    assert load_model(older).model_config == finished_run.trainer.model_config
    payload = saved_model_payload(finished_run)
    config = {
        **payload["model_config"],
        "pruning": {**payload["model_config"]["pruning"], "budget": 1.0, "slimmable": True},
    }
    torch.save({**payload, "version": 5, "model_config": config}, older)
    with pytest.raises(CheckpointError) as refused:
        load_model(older)
    message = str(refused.value)
    assert len(message.splitlines()) == 1 and "a slimmable SimVP of an older dpedge" in message
    assert "dpedge train --backbone simvp --slimmable" in message


@pytest.mark.parametrize(
    "kind",
    ["empty", "truncated_model", "zip", "other_torch_dict", "random_bytes", "json"],
)
def test_a_damaged_or_foreign_file_is_not_reported_as_one_that_would_run_code(kind, finished_run, tmp_path):
    path = tmp_path / "file.pt"
    NOT_A_MODEL[kind](path, finished_run)
    with pytest.raises(CheckpointError, match="not a dpedge model"):
        load_model(path)


@pytest.mark.parametrize("name", ["missing.pt", "."], ids=["missing", "directory"])
def test_load_model_of_no_file_is_a_checkpoint_error(name, tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        load_model(tmp_path / name)


@pytest.mark.parametrize(
    "failure", [OSError("No space left on device"), KeyboardInterrupt()], ids=["disk_full", "interrupt"]
)
def test_a_save_that_fails_midway_keeps_the_previous_file_and_leaves_no_temporary(
    failure, finished_run, monkeypatch, tmp_path
):
    path = tmp_path / MODEL_FILE
    atomic_save(saved_model_payload(finished_run), path)
    before = path.read_bytes()

    real_save = torch.save

    def dies_halfway(payload, target):
        real_save(payload, target)
        with open(target, "r+b") as handle:
            handle.truncate(1000)
        raise failure

    monkeypatch.setattr(torch, "save", dies_halfway)
    later = copy.deepcopy(saved_model_payload(finished_run))
    later["metrics"] = {"val_mae": -1.0}
    with pytest.raises(type(failure)):
        atomic_save(later, path)
    monkeypatch.undo()

    assert path.read_bytes() == before
    assert load_model(path).metrics == finished_run.metrics
    assert [p.name for p in tmp_path.iterdir()] == [MODEL_FILE], "no temporary file left"
