"""WeatherBench-style 2 m temperature: variable `t2m` (K) with dims (time, lat, lon), hourly,
12 frames in → 12 out, z-scored with training statistics.

Reads one netCDF file, a folder of *.nc or a glob (WeatherBench ships one file per year):
files are concatenated along time and sorted by time, and the steps must be regular (the
first step sets the spacing; a gap or a duplicate is an error naming the files). The grid
is kept as stored (no flipping of latitude order) and must be the same in every file.
Frames are brought to the height `size` (default 32, WeatherBench's 5.625° grid) by
`grids.fit_grid`: the bundled ERA5 UK grid, 33×49 at 0.25°, becomes 32×48 area means (pass
--size 33 to keep it as stored). "12 h" assumes hourly data: frames_in/frames_out count time
steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynaprune_edge.data.base import DataConfig, DatasetFamily, FamilyDefaults, FrameSegments
from dynaprune_edge.data.grids import fit_grid
from dynaprune_edge.data.sources import (
    check_regular_steps,
    open_netcdf,
    read_array,
    require_finite,
    resolve_files,
)
from dynaprune_edge.data.synthetic import global_temperature
from dynaprune_edge.data.windows import time_split
from dynaprune_edge.errors import DataError
from dynaprune_edge.progress import progress_bar

VARIABLE = "t2m"
DIMENSIONS = (("time",), ("lat", "latitude"), ("lon", "longitude"))  # accepted names per axis
EPOCH = "seconds since 1970-01-01 00:00:00"


@dataclass
class _FileContents:
    values: np.ndarray  # (time, lat, lon) in K
    seconds: np.ndarray  # (time,) seconds since 1970, any calendar mapped onto it
    grid: tuple[np.ndarray, np.ndarray]


def _read_file(path: str) -> _FileContents:
    import netCDF4

    with open_netcdf(path) as dataset:
        if VARIABLE not in dataset.variables:
            raise DataError(f"{path}: no variable {VARIABLE!r}; variables: {', '.join(dataset.variables) or 'none'}")
        variable = dataset.variables[VARIABLE]
        dims = variable.dimensions
        if len(dims) != 3 or any(d not in names for d, names in zip(dims, DIMENSIONS)):
            raise DataError(f"{path}: {VARIABLE} has dims {dims}, expected (time, lat, lon)")
        coordinates = []
        for dim in dims:
            if dim not in dataset.variables:
                raise DataError(f"{path}: no coordinate variable {dim!r} for {VARIABLE}")
            coordinates.append(dataset.variables[dim])
        if not (
            isinstance(variable.dtype, np.dtype) and np.issubdtype(variable.dtype, np.number)
        ):  # not str, VLEN or compound
            raise DataError(f"{path}: {VARIABLE} holds {variable.dtype}, not numbers")
        # NaN (the ERA5 _FillValue) and any other fill value both become NaN, then rejected.
        values = np.ma.filled(np.ma.asarray(read_array(variable, path)).astype(np.float32), np.nan)
        require_finite(values, path)
        time = coordinates[0]
        calendar = getattr(time, "calendar", "standard")
        try:
            dates = netCDF4.num2date(read_array(time, path), time.units, calendar)
            seconds = np.asarray(netCDF4.date2num(dates, EPOCH, calendar))
        except (AttributeError, ValueError, TypeError, KeyError) as error:  # KeyError: a calendar cftime does not know
            raise DataError(f"{path}: cannot decode the time coordinate ({error})") from None
        grid = (read_array(coordinates[1], path), read_array(coordinates[2], path))
    return _FileContents(values, np.round(seconds).astype(np.int64), grid)


def _read_series(files: list[str]) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """All files → (time, lat, lon) values sorted by time, their times, and labels for errors."""
    contents = []
    with progress_bar(transient=True) as bar:
        for path in bar.track(files, description="reading netCDF"):
            part = _read_file(path)
            if contents and not all(
                a.shape == b.shape and np.allclose(a, b) for a, b in zip(part.grid, contents[0][1].grid)
            ):
                raise DataError(f"{path}: lat/lon grid differs from the one in {contents[0][0]}")
            contents.append((path, part))
    values = np.concatenate([part.values for _, part in contents])
    seconds = np.concatenate([part.seconds for _, part in contents])
    labels = [f"{Path(path).name} step {i}" for path, part in contents for i in range(len(part.seconds))]
    order = np.argsort(seconds, kind="stable")
    return values[order], seconds[order], [labels[i] for i in order]


class WeatherBench(DatasetFamily):
    name = "weatherbench"
    sample = "era5_t2m_uk_2019-03-01_14.nc"
    defaults = FamilyDefaults(
        frames_in=12,
        frames_out=12,
        size=32,  # WeatherBench 5.625°: 32×64; ERA5 UK sample: 32×48
        synthetic_frames=460,  # ≈ 19 days hourly → 299/46/46 windows
        channels=1,
        unit="K",
        split=(0.7, 0.15, 0.15),
    )

    def read(self, path: str, config: DataConfig) -> FrameSegments:
        files = resolve_files(path, (".nc",))
        values, seconds, labels = _read_series(files)
        if len(seconds) > 1:
            check_regular_steps(seconds, labels, seconds[1] - seconds[0], path)
        frames = fit_grid(values[:, None], config.size, path)
        return time_split(frames, self.defaults.split)

    def synthesize(self, config: DataConfig) -> FrameSegments:
        rng = np.random.default_rng(config.seed)
        width = 2 * config.size  # a global grid: twice as many longitudes as latitudes
        frames = global_temperature(config.synthetic_frames, config.size, width, rng)
        return time_split(frames, self.defaults.split)
