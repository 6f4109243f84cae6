"""Synthetic families: the shapes others code against, seeds, and the structure that makes
them a fair stand-in (dry radar backgrounds, daily rhythm, temperatures in K)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dynaprune_edge.data import DATASETS, DataConfig, SpatioTemporalData, load_dataset
from dynaprune_edge.errors import ConfigError

# family → (frames_in, frames_out, channels, height, width, unit, windows per split)
EXPECTED = {
    "taxibj": (4, 4, 2, 32, 32, "flow, OpenSTL [0,1] scale", (609, 125, 125)),
    "nycbike": (4, 4, 2, 10, 20, "flow, OpenSTL [0,1] scale (0.01 = 3.07 bikes per cell and hour)", (573, 117, 117)),
    "weatherbench": (12, 12, 1, 32, 64, "K", (299, 46, 46)),
    "sevir": (13, 12, 1, 64, 64, "VIL (0-255)", (300, 50, 50)),
    "knmi": (6, 6, 1, 64, 64, "mm/5min", (289, 89, 89)),
}


@pytest.fixture(scope="module")
def synthetic() -> dict[str, SpatioTemporalData]:
    return {name: load_dataset(DataConfig(name=name)) for name in EXPECTED}


def _physical_frames(data: SpatioTemporalData) -> np.ndarray:
    """Every training frame once, in physical units, (T, C, H, W)."""
    return np.concatenate([s.numpy() for s in data.train.segments])


def test_registry_lists_the_five_families():
    assert DATASETS.names() == ["knmi", "nycbike", "sevir", "taxibj", "weatherbench"]
    with pytest.raises(ConfigError, match="known: knmi, nycbike, sevir, taxibj, weatherbench"):
        load_dataset(DataConfig(name="moving_mnist"))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shapes_units_and_defaults(synthetic, name):
    frames_in, frames_out, channels, height, width, unit, windows = EXPECTED[name]
    data = synthetic[name]
    assert data.is_synthetic and data.source == "synthetic" and data.unit == unit
    assert (data.channels, data.height, data.width) == (channels, height, width)
    assert (len(data.train), len(data.val), len(data.test)) == windows
    assert None not in (data.config.frames_in, data.config.frames_out, data.config.size, data.config.synthetic_frames)
    for split in (data.train, data.val, data.test):
        x, y = split[len(split) - 1]
        assert x.dtype == y.dtype == torch.float32
        assert x.shape == (frames_in, channels, height, width)
        assert y.shape == (frames_out, channels, height, width)
        assert torch.isfinite(x).all() and torch.isfinite(y).all()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_seed_fixes_the_data(name):
    frames = 2 * 49 * 3 if name == "sevir" else 120
    config = DataConfig(name=name, synthetic_frames=frames, frames_in=2, frames_out=2, size=16)
    first, again = load_dataset(config), load_dataset(config)
    other = load_dataset(DataConfig(name=name, synthetic_frames=frames, frames_in=2, frames_out=2, size=16, seed=1))
    assert torch.equal(first.train[5][0], again.train[5][0])
    assert not torch.equal(first.train[5][0], other.train[5][0])
    assert first.height == 16


@pytest.mark.parametrize("name", ["sevir", "knmi"])
def test_radar_is_mostly_dry_with_real_rain(synthetic, name):
    rain = _physical_frames(synthetic[name])
    assert rain.min() >= 0
    assert (rain <= 1e-3).mean() > 0.5, "most of a radar frame is dry"
    wet = (rain > 1e-3).mean(axis=(1, 2, 3))
    assert wet.max() > 0.05, "some frames hold rain"
    top = 255 if name == "sevir" else 5.0
    assert rain.max() <= top and rain.max() > 0.1 * top


def test_radar_rain_moves_between_frames(synthetic):
    """Cells are advected: the best match of frame t+1 in frame t is a shifted copy, not in place."""
    rain = _physical_frames(synthetic["knmi"])[:, 0]
    t = int(np.argmax((rain > 0).mean(axis=(1, 2))))
    a, b = rain[t], rain[t + 3]
    shifts = [(dy, dx) for dy in range(-6, 7) for dx in range(-6, 7)]
    errors = [np.abs(np.roll(a, (dy, dx), axis=(0, 1)) - b).mean() for dy, dx in shifts]
    assert shifts[int(np.argmin(errors))] != (0, 0)


def test_taxibj_follows_a_daily_rhythm(synthetic):
    series = _physical_frames(synthetic["taxibj"]).mean(axis=(1, 2, 3))
    series = series - series.mean()

    def autocorrelation(lag):
        return float((series[:-lag] * series[lag:]).mean() / (series * series).mean())

    assert autocorrelation(48) > 0.8
    assert autocorrelation(48) > autocorrelation(24) + 0.5
    flows = _physical_frames(synthetic["taxibj"])
    assert flows.min() >= 0 and flows.max() <= 1
    inflow, outflow = flows[:, 0].ravel(), flows[:, 1].ravel()
    assert 0.5 < np.corrcoef(inflow, outflow)[0, 1] < 0.999, "correlated, not identical"


def test_taxibj_has_hotspots(synthetic):
    morning_rush = _physical_frames(synthetic["taxibj"])[16::48].mean(axis=(0, 1))  # 08:00 each day
    assert morning_rush.max() > 3 * np.median(morning_rush), "a few places are much busier than most"


def test_weatherbench_is_temperature_like(synthetic):
    kelvin = _physical_frames(synthetic["weatherbench"])[:, 0]
    assert 270 < kelvin.mean() < 290
    zonal = kelvin.mean(axis=(0, 2))
    equator = zonal[len(zonal) // 2 - 2 : len(zonal) // 2 + 2].mean()
    assert equator - zonal[0] > 20 and equator - zonal[-1] > 20, "poles are colder"
    daily = kelvin[:, 16, 0]
    assert np.ptp(daily[:24]) > 3, "a diurnal cycle at the equator"


def test_too_short_synthetic_series_is_a_config_error():
    with pytest.raises(ConfigError, match="synthetic_frames"):
        load_dataset(DataConfig(name="weatherbench", synthetic_frames=40))


def test_nycbike_has_a_bike_network_and_empty_cells_outside_it(synthetic):
    frames = _physical_frames(synthetic["nycbike"])
    never_used = (frames == 0).all(axis=(0, 1))
    assert 0.68 <= never_used.mean() <= 0.74, "about 71 % of the cells lie outside the network"
    assert frames[:, :, ~never_used].mean() > 0.05
