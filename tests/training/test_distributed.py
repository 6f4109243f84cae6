"""Two CPU processes (torchrun, gloo) train what one process trains on the same data and
global batch: the same weights and the same metrics, within float tolerance (the ranks sum
their shares in another order than one process does)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from dynaprune_edge.distributed import World

TINY = ["--dataset", "taxibj", "--synthetic-frames", "120", "--batch-size", "8", "--epochs", "2",
        "--arch", "spatial_channels=8", "--arch", "temporal_channels=16"]


def dpedge(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "dynaprune_edge", *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("options", [["--budget", "0.5", "--st-prune", "--prune-ratio", "0.6", "--anneal", "0", "--score", "complexity"]],
                         ids=["pruned-st-prune"])  # complexity needs no loss seen: both epochs prune
def test_two_processes_train_what_one_trains(tmp_path, options):
    one, two = tmp_path / "one", tmp_path / "two"
    single = dpedge("train", *TINY, *options, "--out", one)
    assert single.returncode == 0, single.stderr
    double = dpedge("train", *TINY, *options, "--nproc", "2", "--out", two)
    assert double.returncode == 0, double.stderr
    expected, actual = (torch.load(run / "model.pt", weights_only=True)["state_dict"] for run in (one, two))
    assert actual.keys() == expected.keys()
    for name in expected:
        assert torch.allclose(actual[name].double(), expected[name].double(), rtol=1e-3, atol=1e-5), name
    first, second = (json.loads((run / "metrics.json").read_text()) for run in (one, two))
    assert [e["samples_seen"] for e in second["history"]] == [e["samples_seen"] for e in first["history"]]
    assert all(e["pruned_fraction"] > 0 for e in second["history"])
    for key in ("val_mae", "test_mae", "flops_ratio_mean"):
        assert second[key] == pytest.approx(first[key], rel=1e-3), key
    assert second["steps"] == first["steps"]


def test_a_rank_takes_every_nth_window_of_each_global_batch():
    batch = [10, 11, 12, 13, 14]
    assert World(0, 2).split(batch) == [10, 12, 14] and World(1, 2).split(batch) == [11, 13]
    assert World(0, 1).split(batch) == batch


def test_a_failing_rank_ends_the_run_with_one_line_and_not_a_hang(tmp_path):
    (tmp_path / "data.npz").write_bytes(b"not an npz")
    result = dpedge("train", *TINY, "--data", tmp_path / "data.npz", "--nproc", "2", "--out", tmp_path / "run", timeout=300)
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert lines[-1].startswith("error: training process ") and "failed (exit 1" in lines[-1], result.stderr
    assert all(line.startswith("error: ") for line in lines), result.stderr  # each rank's one line, then the launcher's
