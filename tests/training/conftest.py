"""Tiny in-process training runs the trainer tests share.

Everything trains a pruned SimVP with 8/16 channels on 120 synthetic TaxiBJ frames
(77/11/11 train/val/test windows of 4→4 frames of 2×32×32; every 10th training window held
out for calibration): nine optimizer steps of batch 8 per epoch. Each test gets its own `tmp_path`; `finished_run` is trained once per session
and must be treated as read-only (copy its files before changing them).
"""

from __future__ import annotations

import contextlib
import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import Subset

from dynaprune_edge.data import DataConfig, load_dataset
from dynaprune_edge.training import TrainConfig, Trainer
from dynaprune_edge.training.run import RunSpec, model_config_for

DATA = DataConfig("taxibj", synthetic_frames=120)
ARCH = {"spatial_channels": "8", "temporal_channels": "16"}
# weight_decay differs from TrainConfig's default so a group that ignores it is visible.
TRAIN = TrainConfig(epochs=3, batch_size=8, lr=2e-3, weight_decay=0.03, seed=0)


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread: the 2 cores are shared, and two intra-op threads competing
    with another process make a tiny epoch ~30× slower (0.5 s → 18 s measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    with one_thread():
        yield


@pytest.fixture(scope="session")
def data():
    return load_dataset(DATA)


@pytest.fixture(scope="session")
def train_config() -> TrainConfig:
    """What `build_trainer` and `finished_run` train with unless told otherwise."""
    return TRAIN


def _build(out, data, *, budget=0.5, train=TRAIN, train_windows=None, **pruning):
    """A Trainer as `dpedge train` builds it (RunSpec → ModelConfig), writing into `out`.
    train_windows: keep only the first n training windows (shorter epochs)."""
    if train_windows is not None:
        data = dataclasses.replace(data, train=Subset(data.train, range(train_windows)))
    spec = RunSpec.create("simvp", data.config, budget, train, ARCH, pruning or None)
    return Trainer(model_config_for(spec, data), data, spec.train, out)


@pytest.fixture(scope="session")
def build_trainer(data):
    """build_trainer(out, budget=0.5, train=TRAIN, data=None, train_windows=None,
    **pruning_overrides) → Trainer (data: the session's by default)."""
    shared = data

    def build(out, *, data=None, **options):
        return _build(out, shared if data is None else data, **options)

    return build


@pytest.fixture(scope="session")
def finished_run(data, tmp_path_factory):
    """An uninterrupted 3-epoch (27-step) run of TRAIN: trainer, out and fit()'s metrics."""
    out = tmp_path_factory.mktemp("finished") / "run"
    with one_thread():
        trainer = _build(out, data)
        metrics = trainer.fit()
    return SimpleNamespace(trainer=trainer, out=out, metrics=metrics)
