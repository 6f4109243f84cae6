"""Real formats: the bundled samples, the shared files when present, and small files written
here in each family's layout (TaxiBJ npz, SEVIR HDF5, KNMI HDF5)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from dynaprune_edge.data import SAMPLE, DataConfig, load_dataset
from dynaprune_edge.data.sources import SAMPLES_DIR
from dynaprune_edge.errors import ConfigError

KNMI_SAMPLE = SAMPLES_DIR / "knmi_radar_2010-08-26"
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"  # absent in a user's clone
MISSING = 65535


@pytest.fixture(scope="module")
def knmi_sample():
    return load_dataset(DataConfig(name="knmi", path=SAMPLE))


def test_knmi_sample_loads_in_mm_per_5_minutes(knmi_sample):
    data = knmi_sample
    assert not data.is_synthetic and data.unit == "mm/5min"
    assert (len(data.train), len(data.val), len(data.test)) == (45, 7, 7)
    x, y = data.train[0]
    assert x.shape == (6, 1, 64, 64) and y.shape == (6, 1, 64, 64)
    rain = torch.cat([data.normalizer.denormalize(s) for s in data.train[10]])
    assert rain.min() >= -1e-5 and rain.max() < 5, "rain accumulations, not raw counts"
    assert (rain <= 0.005).float().mean() > 0.3, "dry or outside radar range is 0 mm"


def test_knmi_calibration_is_applied():
    """At size 419 (the side of the square around the radar's range) nothing is resampled:
    the wettest pixel of the first input frames must be 0.01 × the largest raw count in
    those files (read here with h5py)."""
    data = load_dataset(DataConfig(name="knmi", path=SAMPLE, size=419, frames_in=2, frames_out=1))
    raw = [h5py.File(path, "r")["image1/image_data"][...] for path in sorted(KNMI_SAMPLE.glob("*.h5"))[:2]]
    largest = max(int(frame[frame != MISSING].max()) for frame in raw)
    x, _ = data.train[0]
    assert float(data.normalizer.denormalize(x).max()) == pytest.approx(0.01 * largest, abs=1e-4)


def test_knmi_formula_missing_codes_and_crop(tmp_path, write_knmi):
    """A parsed (not hard-coded) formula, missing → 0 mm, cropped to the valid square."""
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 300, (14, 40, 48)).astype(np.uint16)
    raw[:, :4], raw[:, 36:], raw[:, :, :8], raw[:, :, 40:] = MISSING, MISSING, MISSING, MISSING
    raw[0, 20:36] = MISSING  # missing inside the valid area in one frame only
    write_knmi(tmp_path / "event", raw, formula="GEO=0.02*PV+0.5")
    data = load_dataset(DataConfig(name="knmi", path=str(tmp_path / "event"), size=32, frames_in=1, frames_out=1))
    assert (len(data.train), len(data.val), len(data.test)) == (7, 2, 2)
    box = raw[:, 4:36, 8:40]
    expected = np.where(box == MISSING, 0.0, 0.02 * box.astype(np.float32) + 0.5)
    x, y = data.train[0]
    assert np.allclose(data.normalizer.denormalize(x)[0, 0].numpy(), expected[0], atol=1e-4)
    assert np.allclose(data.normalizer.denormalize(y)[0, 0].numpy(), expected[1], atol=1e-4)


def test_era5_sample_is_a_32_by_48_kelvin_grid():
    data = load_dataset(DataConfig(name="weatherbench", path=SAMPLE))
    assert (data.height, data.width, data.channels, data.unit) == (32, 48, 1, "K")
    assert (len(data.train), len(data.val), len(data.test)) == (213, 27, 27)
    x, y = data.train[0]
    assert x.shape == y.shape == (12, 1, 32, 48)
    assert 270 < float(data.normalizer.denormalize(x).mean()) < 290


def test_nyc_bike_sample_is_the_whole_10_by_20_city():
    """The bundled NYCBike2 series loads whole (no crop to a multiple of 8), in bikes on
    OpenSTL's [0, 1] scale, with most cells empty; the sample is the shared file, bit for bit."""
    data = load_dataset(DataConfig(name="nycbike", path=SAMPLE))
    assert (data.height, data.width, data.channels) == (10, 20, 2)
    assert (len(data.train), len(data.val), len(data.test)) == (582, 66, 159)
    physical = data.normalizer.denormalize(data.test[0][0]).numpy()
    assert 0.6 < (np.abs(physical) < 1e-6).mean() < 0.8 and physical.min() >= -1e-6 and physical.max() <= 1
    if SHARED_DATA.is_dir():
        shared = load_dataset(DataConfig(name="nycbike", path=str(SHARED_DATA / "nycbike2_10x20" / "dataset.npz")))
        assert torch.equal(shared.train[0][0], data.train[0][0]) and torch.equal(shared.test[158][1], data.test[158][1])


@pytest.mark.parametrize("name", ["taxibj", "sevir"])
def test_no_sample_for_taxibj_and_sevir(name):
    with pytest.raises(ConfigError, match=f"no sample is bundled for {name}"):
        load_dataset(DataConfig(name=name, path=SAMPLE))


def test_shared_files_load_and_match_the_samples(knmi_sample):
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} absent (only in the development workspace)")
    knmi = load_dataset(DataConfig(name="knmi", path=str(SHARED_DATA / "knmi_radar_2010-08-26")))
    assert torch.equal(knmi.train[0][0], knmi_sample.train[0][0]), "the sample is the published data"
    assert torch.equal(knmi.test[6][1], knmi_sample.test[6][1])
    era5 = load_dataset(DataConfig(name="weatherbench", path=str(SHARED_DATA / "era5_t2m_uk_2019-03.nc")))
    assert (era5.height, era5.width) == (32, 48)
    assert (len(era5.train), len(era5.val), len(era5.test)) == (497, 89, 89)
    assert 270 < float(era5.normalizer.mean[0]) < 290


def test_taxibj_npz_maps_to_unit_scale_and_validation_does_not_overlap(tmp_path, write_taxibj):
    """Frame t holds -1 + 2t/100 everywhere, so (x + 1) / 2 × 100 recovers its time."""
    times = np.arange(60, dtype=np.float32)
    series = np.broadcast_to((-1 + 2 * times / 100)[:, None, None, None], (60, 2, 32, 32))
    data = load_dataset(DataConfig(name="taxibj", path=str(write_taxibj(tmp_path / "dataset.npz", series))))
    assert data.unit == "flow, OpenSTL [0,1] scale" and (data.height, data.width, data.channels) == (32, 32, 2)
    assert (len(data.train), len(data.val), len(data.test)) == (31, 4, 11)

    def frame_times(split):
        found = set()
        for index in range(len(split)):
            for part in split[index]:
                physical = data.normalizer.denormalize(part)
                assert float(physical.min()) >= 0 and float(physical.max()) <= 1
                found |= set((physical[:, 0, 0, 0] * 100).round().int().tolist())
        return found

    train, val = frame_times(data.train), frame_times(data.val)
    assert max(train) < min(val), "no training frame inside a validation window"
    x, y = data.train[3]
    assert (data.normalizer.denormalize(y)[0, 0, 0, 0] * 100).round() == 7


def test_sevir_events_are_downsampled_and_windowed_separately(tmp_path):
    vil = np.zeros((3, 384, 384, 49), dtype=np.uint8)
    vil += (np.arange(3) * 60)[:, None, None, None].astype(np.uint8)  # event e holds 60 e
    vil[0, :6, :6, 0] = 255  # one 6×6 block → exactly one output pixel at size 64
    with h5py.File(tmp_path / "SEVIR_VIL_STORMEVENTS.h5", "w") as handle:
        handle["vil"] = vil
    data = load_dataset(DataConfig(name="sevir", path=str(tmp_path)))
    assert (data.height, data.width, data.unit) == (64, 64, "VIL (0-255)")
    assert (len(data.train), len(data.val), len(data.test)) == (25, 25, 25), "49 - 25 + 1 per event"
    first = data.normalizer.denormalize(data.train[0][0])
    assert first.shape == (13, 1, 64, 64)
    assert float(first[0, 0, 0, 0]) == pytest.approx(255, abs=1e-3)
    assert float(first[0, 0, 0, 1]) == pytest.approx(0, abs=1e-3)
    assert float(data.normalizer.denormalize(data.val[0][1]).mean()) == pytest.approx(60, abs=1e-3)
    assert float(data.normalizer.denormalize(data.test[24][1]).mean()) == pytest.approx(120, abs=1e-3)


@pytest.mark.parametrize(
    "config", [DataConfig(name="knmi", synthetic_frames=60), DataConfig(name="weatherbench", path=SAMPLE)]
)
def test_config_round_trip_gives_the_same_data(config):
    data = load_dataset(config)
    again = load_dataset(DataConfig.from_dict(data.config.to_dict()))
    assert again.config == data.config
    assert torch.equal(again.train[0][0], data.train[0][0]) and torch.equal(again.test[0][1], data.test[0][1])


def test_relative_paths_are_saved_absolute(tmp_path, monkeypatch, write_t2m):
    write_t2m(tmp_path / "t.nc", np.full((40, 16, 16), 280.0))
    monkeypatch.chdir(tmp_path)
    data = load_dataset(DataConfig(name="weatherbench", path="t.nc", size=16, frames_in=2, frames_out=2))
    assert data.config.path == str(tmp_path / "t.nc")
