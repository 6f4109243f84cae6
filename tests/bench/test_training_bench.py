"""`dpedge bench training`'s arithmetic (the benchmark itself is a command, not a test)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dynaprune_edge.bench.training import seconds_to, seconds_to_stay


def test_time_to_target_is_the_end_of_the_first_epoch_that_meets_it():
    history = [
        {"val_mae": 0.30, "train_seconds": 10.0},
        {"val_mae": 0.20, "train_seconds": 18.0},
        {"val_mae": 0.25, "train_seconds": 26.0},
        {"val_mae": 0.19, "train_seconds": 35.0},
    ]
    assert seconds_to(history, 0.2) == 18.0  # reached at epoch 2, even though epoch 3 fell back
    assert seconds_to(history, 0.195) == 35.0
    assert seconds_to(history, 0.1) is None


def test_time_to_stay_is_the_end_of_the_epoch_from_which_every_epoch_meets_the_target():
    history = [
        {"val_mae": 0.30, "train_seconds": 10.0},
        {"val_mae": 0.20, "train_seconds": 18.0},
        {"val_mae": 0.25, "train_seconds": 26.0},
        {"val_mae": 0.19, "train_seconds": 35.0},
        {"val_mae": 0.18, "train_seconds": 44.0},
    ]
    assert seconds_to_stay(history, 0.2) == 35.0  # epoch 2 met it, epoch 3 left it
    assert seconds_to_stay(history, 0.185) == 44.0
    assert seconds_to_stay(history, 0.1) is None


@pytest.mark.slow
def test_bad_options_fail_before_any_training(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dynaprune_edge",
            "bench",
            "training",
            "--out",
            str(tmp_path / "b"),
            "--prune-ratio",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stderr.strip() == "error: --prune-ratio must be in [0, 1), got 1.0"
    assert not (tmp_path / "b").exists()
