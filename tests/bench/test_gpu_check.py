"""`dpedge bench gpu-check` without a GPU: its PyTorch proxy on this CPU, and its refusals."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from dynaprune_edge.bench import gpu_check
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.masks import PruningConfig
from dynaprune_edge.models import ForecastShape, ModelConfig, build_model

SHAPE = ForecastShape(frames_in=4, frames_out=2, channels=2, height=16, width=16)


def test_the_proxy_times_the_router_and_each_branch_apart_and_adds_them_as_the_split_layout_runs():
    torch.manual_seed(0)
    config = ModelConfig("simvp", SHAPE, {}, PruningConfig(budget=0.5, slimmable=True, group_size=4))
    model = build_model(config).eval()
    frames = (
        np.random.default_rng(0)
        .random((3, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width))
        .astype(np.float32)
    )
    branches = len(config.pruning.width_levels) + 1
    emulated = {
        "orin_emulated_ms": [0.1 * (i + 1) for i in range(branches)],
        "orin_emulated_cuda_graph_ms": [0.01 * (i + 1) for i in range(branches)],
    }
    rows = gpu_check.proxy_rows(model, config, frames, "cpu", runs=5, emulated=emulated)
    assert [row["computes"] for row in rows] == ["persistence", *(f"width {w:g}" for w in config.pruning.width_levels)]
    for index, row in enumerate(rows):
        assert row["split_ms"] == pytest.approx(row["router_ms"] + row["dispatch_ms"] + row["branch_ms"])
        assert row["every_branch_ms"] == pytest.approx(rows[0]["router_ms"] + sum(r["branch_ms"] for r in rows))
        assert (row["orin_emulated_ms"], row["orin_emulated_cuda_graph_ms"]) == (
            emulated["orin_emulated_ms"][index],
            emulated["orin_emulated_cuda_graph_ms"][index],
        )
        assert "split_graph_ms" not in row, "no CUDA graphs on a CPU"


def test_a_gpu_asked_for_where_there_is_none_is_refused_in_one_line(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ConfigError, match="--device cuda: PyTorch sees no CUDA GPU here"):
        gpu_check.check(tmp_path, 1, "cuda", 1, Console())
    with pytest.raises(ConfigError, match="--device must be auto, cuda or cpu"):
        gpu_check.check(tmp_path, 1, "tpu", 1, Console())


def test_the_gpu_check_script_is_shellcheck_clean():
    script = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"
    assert os.access(script, os.X_OK), "scripts/gpu_check.sh must be executable"
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (Debian: apt install shellcheck; make system-deps installs it)")
    result = subprocess.run(["shellcheck", "--severity=style", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
