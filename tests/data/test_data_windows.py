"""Windows, time splits, normalisation and grid fitting: the rules every family relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynaprune_edge.data import DataConfig, Normalizer, load_dataset
from dynaprune_edge.data.grids import area_resample, fit_grid
from dynaprune_edge.data.windows import WindowDataset, event_split, split_counts, time_split
from dynaprune_edge.errors import ConfigError

IDENTITY = Normalizer(np.zeros(1), np.ones(1))


def _clock(frames: int) -> np.ndarray:
    """(frames, 1, 8, 8) where every pixel of frame t holds t: windows reveal their times."""
    return np.broadcast_to(np.arange(frames, dtype=np.float32)[:, None, None, None], (frames, 1, 8, 8)).copy()


def _times(tensor: torch.Tensor) -> list[int]:
    return tensor[:, 0, 0, 0].round().int().tolist()


def test_target_starts_right_after_input():
    windows = WindowDataset([_clock(20)], frames_in=3, frames_out=2, normalizer=IDENTITY)
    assert len(windows) == 20 - 5 + 1
    for index in (0, 7, len(windows) - 1):
        x, y = windows[index]
        assert x.shape == (3, 1, 8, 8) and y.shape == (2, 1, 8, 8)
        assert _times(x) == list(range(index, index + 3))
        assert _times(y) == list(range(index + 3, index + 5))
    with pytest.raises(IndexError):
        windows[len(windows)]


def test_windows_never_cross_segments():
    first, second = _clock(6), _clock(6) + 100
    windows = WindowDataset([first, second], frames_in=2, frames_out=2, normalizer=IDENTITY)
    assert len(windows) == 2 * 3
    for index in range(len(windows)):
        x, y = windows[index]
        times = _times(x) + _times(y)
        assert times == list(range(times[0], times[0] + 4)), "a window mixes two segments"


def test_time_split_shares_no_frame_and_keeps_order():
    segments = time_split(_clock(100), (0.7, 0.15, 0.15))
    seen = {}
    for name, split in segments.splits().items():
        windows = WindowDataset(split, 4, 4, IDENTITY)
        seen[name] = {t for i in range(len(windows)) for part in windows[i] for t in _times(part)}
    assert not seen["train"] & seen["val"] and not seen["val"] & seen["test"] and not seen["train"] & seen["test"]
    assert max(seen["train"]) < min(seen["val"]) and max(seen["val"]) < min(seen["test"])
    assert sum(len(s[0]) for s in segments.splits().values()) == 100


def test_split_counts_give_every_split_something():
    assert split_counts(92, (0.6, 0.2, 0.2)) == (56, 18, 18)
    assert split_counts(3, (0.7, 0.15, 0.15)) == (1, 1, 1)
    events = event_split([_clock(5) + 100 * e for e in range(10)], (0.7, 0.15, 0.15))
    assert [len(s) for s in events.splits().values()] == [6, 2, 2]
    assert [int(e[0, 0, 0, 0]) // 100 for e in events.val] == [6, 7], "whole events, in order"


def test_normalizer_is_fitted_on_training_frames_only(tmp_path, write_t2m):
    """Train period cold (250 K), later periods warm (300 K): the statistics must be 250 K."""
    values = np.full((100, 16, 16), 300.0, dtype=np.float32)
    values[:70] = 250.0 + np.random.default_rng(0).normal(0, 1, (70, 16, 16))
    data = load_dataset(
        DataConfig(
            name="weatherbench", path=str(write_t2m(tmp_path / "t.nc", values)), size=16, frames_in=3, frames_out=3
        )
    )
    assert data.normalizer.mean[0] == pytest.approx(250.0, abs=0.5)
    assert data.normalizer.std[0] == pytest.approx(1.0, abs=0.2)
    x, _ = data.val[0]
    assert float(x.mean()) > 10, "validation frames are 50 K above the training mean"
    assert torch.allclose(data.normalizer.denormalize(x), torch.full_like(x, 300.0), atol=1e-3)


def test_normalizer_statistics_match_numpy():
    frames = np.random.default_rng(1).normal(280, 5, (30, 2, 8, 8)).astype(np.float32)
    fitted = Normalizer.fit_segments([frames[:10], frames[10:]])
    assert np.allclose(fitted.mean, frames.mean(axis=(0, 2, 3)), atol=1e-3)
    assert np.allclose(fitted.std, frames.std(axis=(0, 2, 3)), atol=1e-3)
    assert np.allclose(fitted.denormalize(fitted.normalize(frames)), frames, atol=1e-3)


def test_area_resample_keeps_the_mean_for_any_factor():
    image = np.random.default_rng(2).gamma(0.3, 1.0, (2, 419, 419)).astype(np.float32)
    for size in (64, 48, 8):
        small = area_resample(image, size, size)
        assert small.shape == (2, size, size)
        assert np.allclose(small.mean(axis=(1, 2)), image.mean(axis=(1, 2)), rtol=1e-4)
    blocks = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert np.allclose(area_resample(blocks, 2, 2), [[2.5, 4.5], [10.5, 12.5]])


def test_fit_grid_keeps_the_grid_whole_and_resamples_it_keeping_the_aspect():
    grid = np.random.default_rng(3).normal(size=(5, 1, 33, 49)).astype(np.float32)
    assert np.array_equal(fit_grid(grid, 33, "g"), grid), "no crop: the model pads"
    resampled = fit_grid(grid, 32, "g")
    assert resampled.shape == (5, 1, 32, 48)
    assert np.allclose(resampled.mean(axis=(-2, -1)), grid.mean(axis=(-2, -1)), atol=1e-5), "area means keep the total"
    assert fit_grid(grid, 16, "g").shape == (5, 1, 16, 24)
    with pytest.raises(ConfigError, match="does not upsample"):
        fit_grid(grid, 40, "g")
