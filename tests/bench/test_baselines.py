"""The reference nowcast of the radar rows (pysteps' optical-flow extrapolation): that it
forecasts moving rain, keeps a dry sky dry, stays out of the verdict, and that the bench
goes on with one note where pysteps is not installed."""

from __future__ import annotations

import builtins

import numpy as np
import pytest
import torch

from dynaprune_edge.bench import baselines, pareto
from dynaprune_edge.bench.pareto import ParetoPoint
from dynaprune_edge.data import DataConfig, load_dataset

FRAMES_IN, FRAMES_OUT, SIZE = 6, 6, 48


def moving_blob(velocity: tuple[float, float]) -> np.ndarray:
    """(1, FRAMES_IN + FRAMES_OUT, 1, SIZE, SIZE): a Gaussian rain cell (peak 2 mm/5min)
    moving `velocity` (x, y) pixels per frame, inside the grid throughout."""
    y, x = np.mgrid[:SIZE, :SIZE]
    frames = [
        2.0 * np.exp(-((x - 10 - velocity[0] * t) ** 2 + (y - 14 - velocity[1] * t) ** 2) / (2 * 3.0**2))
        for t in range(FRAMES_IN + FRAMES_OUT)
    ]
    return np.stack(frames)[None, :, None].astype(np.float32)


@pytest.mark.slow
def test_a_moving_rain_cell_is_forecast_far_better_than_persistence():
    pytest.importorskip("pysteps")
    series = moving_blob((2.0, 1.0))
    frames, targets = series[:, :FRAMES_IN], series[:, FRAMES_IN:]
    forecast, ms = baselines.extrapolation(frames, FRAMES_OUT)
    assert forecast.shape == targets.shape and np.isfinite(forecast).all()
    assert ms.shape == (1,) and ms[0] > 0
    persistence = np.abs(frames[:, -1:] - targets).mean()
    assert np.abs(forecast - targets).mean() < 0.5 * persistence, "the cell moves on: extrapolation follows it"


def test_a_dry_sky_stays_dry():
    pytest.importorskip("pysteps")
    forecast, _ = baselines.extrapolation(
        np.zeros((2, FRAMES_IN, 1, 8, 8), np.float32), FRAMES_OUT
    )  # 8×8: pysteps' 6 levels abort here
    assert forecast.shape == (2, FRAMES_OUT, 1, 8, 8) and np.isfinite(forecast).all() and not forecast.any()


def knmi_windows():
    """The data, its validation frames and targets in physical units (mm/h)."""
    data = load_dataset(DataConfig("knmi", synthetic_frames=60, size=16))
    frames = torch.stack([data.val[i][0] for i in range(len(data.val))]).numpy()
    targets = torch.stack([data.val[i][1] for i in range(len(data.val))]).numpy()
    return data, data.normalizer.denormalize(frames), data.normalizer.denormalize(targets)


def test_the_radar_reference_is_a_row_and_a_line_but_never_shipped(tmp_path):
    pytest.importorskip("pysteps")
    data, frames, targets = knmi_windows()
    (reference,) = pareto.reference_points(data, "knmi (synthetic)", frames, targets)
    forecast, _ = baselines.extrapolation(frames, data.frames_out)
    assert reference.family == pareto.REFERENCE and reference.model == baselines.EXTRAPOLATION
    assert reference.val_mae == pytest.approx(np.abs(forecast - targets).mean(), rel=1e-5), "in physical units"
    assert reference.ms_mean > 0 and reference.flops_ratio is None and reference.speedup is None
    models = [
        ParetoPoint("knmi (synthetic)", "simvp", f"static ×{w:g}", 10 * reference.val_mae / w, w * w, None, w, w, 1 / w)
        for w in (0.5, 1.0)
    ]
    assert pareto.verdict(models + [reference]) == pareto.verdict(models), "a reference, not an artifact to ship"
    assert pareto.pareto_table(models + [reference], "t").row_count == 3
    pareto.plot(models + [reference], tmp_path / "pareto-knmi.png")  # one panel: the reference is a line on it
    assert (tmp_path / "pareto-knmi.png").is_file()


def test_without_pysteps_the_bench_goes_on_with_one_note(monkeypatch, capsys):
    real_import = builtins.__import__

    def without_pysteps(name, *args, **kwargs):
        if name.split(".")[0] == "pysteps":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    data, frames, targets = knmi_windows()
    monkeypatch.setattr(builtins, "__import__", without_pysteps)
    assert pareto.reference_points(data, "knmi (synthetic)", frames, targets) == []
    captured = capsys.readouterr()
    assert captured.out == "", "stdout stays the --json rows'"
    assert (
        captured.err.strip().splitlines() == [baselines.SKIPPED]
        and "pip install 'dynaprune-edge[baselines]'" in captured.err
    )
    taxibj = load_dataset(DataConfig("taxibj", synthetic_frames=60, size=16))
    assert pareto.reference_points(taxibj, "taxibj", frames, targets) == [] and capsys.readouterr().err == "", (
        "no radar: no note"
    )
