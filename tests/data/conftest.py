"""Writers of small files in each real format, so tests control exactly what is on disk."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from tests import data_files


@pytest.fixture
def write_t2m():
    """write_t2m(path, values (time, lat, lon), variable="t2m", dims=(...), hours=None) → path."""

    def write(path, values, variable="t2m", dims=("time", "lat", "lon"), hours=None):
        values = np.asarray(values, dtype=np.float32)
        data_files.write_t2m(
            Path(path),
            values,
            None if hours is None else np.asarray(hours),
            dims=dims,
            coordinates=dims,
            variable=variable,
        )
        return Path(path)

    return write


@pytest.fixture
def write_knmi():
    """write_knmi(folder, raw frames (T, H, W) uint16, formula=..., start=...) → file paths,
    one file per 5-minute frame named like KNMI's RAD_NL25_RAP_5min_YYYYmmddHHMM.h5."""

    def write(folder, frames, formula="GEO=0.01*PV+0.0", start=datetime(2010, 8, 26), step_minutes=5):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for index, raw in enumerate(np.asarray(frames, dtype=np.uint16)):
            moment = start + timedelta(minutes=step_minutes * index)
            path = folder / f"RAD_NL25_RAP_5min_{moment:%Y%m%d%H%M}.h5"
            data_files.write_knmi_frame(path, raw, formula=np.bytes_(formula))
            paths.append(path)
        return paths

    return write


@pytest.fixture
def write_taxibj():
    """write_taxibj(path, series (T, 2, H, W) in [-1, 1]) → OpenSTL-layout npz of stride-1
    windows: the first 80 % of the windows as train, the rest as test."""

    def write(path, series):
        starts = range(len(series) - 8 + 1)
        x = np.stack([series[s : s + 4] for s in starts]).astype(np.float32)
        y = np.stack([series[s + 4 : s + 8] for s in starts]).astype(np.float32)
        cut = int(0.8 * len(x))
        np.savez(path, X_train=x[:cut], Y_train=y[:cut], X_test=x[cut:], Y_test=y[cut:])
        return Path(path)

    return write
