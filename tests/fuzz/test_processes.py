"""A few refusals in a real `python -m dynaprune_edge` process, for what running in the
test's process cannot show: what a library prints the first time a process uses it (HDF5's
error stack, onnxruntime's logger), typer's usage errors as a terminal gets them, and the
stderr that the processes of `train --nproc 2` share. Each costs a torch import (~2 s),
so they are few; tests/fuzz/test_bad_options.py and test_damaged_files.py hold the many."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.data_files import identity_nodes, knmi_name, taxibj_arrays, write_npz
from tests.fuzz.dpedge_fuzz import BASES, EXPORTED, TINY, Outcome, assert_refused, sandbox, snapshot

pytestmark = pytest.mark.fuzz


def random_h5(folder: Path, write_toy_graph) -> None:
    (folder / "knmi" / knmi_name(25)).write_bytes(np.random.default_rng(0).bytes(3000))


def truncated_model(folder: Path, write_toy_graph) -> None:
    model = folder / "model.pt"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])


def another_graph(folder: Path, write_toy_graph) -> None:
    """A graph of 16×16 frames rebound to the 32×32 model's manifest by its hash."""
    from dynaprune_edge.runtime.manifest import read_manifest

    write_toy_graph(folder, identity_nodes(), [], [1, 4, 2, 16, 16], read_manifest(folder / "model.onnx"))


def taxibj_without_y_test(folder: Path, write_toy_graph) -> None:
    write_npz(folder / "taxibj.npz", {k: v for k, v in taxibj_arrays().items() if k != "Y_test"})


def nothing(folder: Path, write_toy_graph) -> None:
    pass


CASES: dict[str, tuple[list[str], tuple[str, ...], Callable]] = {
    "a typer usage error (--epochs abc)": (["train", "--out", "$S/run", "--epochs", "abc"], (), nothing),
    "a random-bytes HDF5 frame (HDF5's first use)": (list(BASES["train knmi/"].words), ("knmi",), random_h5),
    "a truncated model.pt (torch.load's first use)": (["info", "$S/model.pt"], ("model.pt",), truncated_model),
    "an ONNX graph of another grid (onnxruntime's first session)": (
        ["profile", "$S/model.onnx", "--runs", "3", "--samples", "2", "--power", "off"],
        EXPORTED,
        another_graph,
    ),
    "a TaxiBJ file without Y_test, read by each process of --nproc 2": (
        ["train", "--dataset", "taxibj", "--data", "$S/taxibj.npz", *TINY, "--nproc", "2", "--out", "$S/run"],
        ("taxibj.npz",),
        taxibj_without_y_test,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_real_process_refuses_in_one_line(case, artifacts, fuzz_root, write_toy_graph):
    words, files, damage = CASES[case]
    with sandbox(fuzz_root, artifacts, files) as folder:
        damage(folder, write_toy_graph)
        args = [word.replace("$S", str(folder)) for word in words]
        before = snapshot(folder)
        done = subprocess.run(
            [sys.executable, "-m", "dynaprune_edge", *args],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=folder,
            env={**os.environ, "DPEDGE_CACHE_DIR": str(folder / "cache"), "COLUMNS": "80"},
        )
        outcome = Outcome(args, folder, status=done.returncode, stderr=done.stderr)
        assert_refused(outcome, before, snapshot(folder))
