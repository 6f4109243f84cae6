"""Small valid data files of each format dpedge reads, written from scratch so that a test
can write the same file with one thing wrong: TaxiBJ's npz (data/taxibj.py), KNMI radar
frames in HDF5 (data/radar.py) and WeatherBench t2m in netCDF (data/weatherbench.py),
each by default just large enough to train on with the fuzz tests' tiny settings; and the
nodes of an ONNX graph that is not a model. Shared by tests/data/ (its fixtures) and
tests/fuzz/."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

ARRAYS = ("X_train", "Y_train", "X_test", "Y_test")
KNMI_START = datetime(2010, 8, 26, 0, 0)
KNMI_FRAMES = 20
KNMI_SIDE = 32
OUT_OF_IMAGE = 65535


def taxibj_arrays(train: int = 16, test: int = 4, size: int = 32, seed: int = 0) -> dict[str, np.ndarray]:
    """OpenSTL's layout: X (N, 4, 2, H, W) and Y the same, flows in [-1, 1]."""
    rng = np.random.default_rng(seed)
    shape = lambda n: (n, 4, 2, size, size)
    return {name: rng.uniform(-1, 1, shape(train if "train" in name else test)).astype(np.float32) for name in ARRAYS}


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as file:  # a file object: np.savez would add .npz to a name
        np.savez(file, **arrays)


def knmi_name(minutes: int) -> str:
    """The file name of the frame `minutes` after KNMI_START (its time is in the name)."""
    return f"RAD_NL25_RAP_5min_{(KNMI_START + timedelta(minutes=minutes)):%Y%m%d%H%M}.h5"


def knmi_image(index: int, side: int = KNMI_SIDE) -> np.ndarray:
    """Rain in 0.01 mm steps, the corners out of the radar's range."""
    rows, columns = np.mgrid[:side, :side]
    rain = (200 + 150 * np.sin((rows + 2 * index) / 5.0) * np.cos(columns / 7.0)).clip(0).astype(np.uint16)
    rain[(rows - side / 2) ** 2 + (columns - side / 2) ** 2 > (side / 2) ** 2] = OUT_OF_IMAGE
    return rain


def write_knmi_frame(
    path: Path,
    image: np.ndarray,
    formula: str | bytes = b"GEO=0.01*PV+0.0",
    codes=(OUT_OF_IMAGE,),
    start: str | None = None,
    image_path: str = "image1/image_data",
    calibration: bool = True,
) -> None:
    """One KNMI radar frame as the archive holds it (the sample's layout, trimmed)."""
    import h5py

    with h5py.File(path, "w") as handle:
        handle.create_dataset(image_path, data=image)
        if calibration:
            group = handle.require_group("image1/calibration")
            if formula is not None:
                group.attrs["calibration_formulas"] = formula
            group.attrs["calibration_missing_data"] = np.asarray(codes)
            group.attrs["calibration_out_of_image"] = np.asarray(codes)
        overview = handle.require_group("overview")
        if start is not None:
            overview.attrs["product_datetime_start"] = np.bytes_(start)


def write_knmi_folder(folder: Path, frames: int = KNMI_FRAMES) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(frames):
        write_knmi_frame(folder / knmi_name(5 * index), knmi_image(index))


NETCDF_STEPS = 40
NETCDF_SIDE = 8


def write_t2m(
    path: Path,
    values: np.ndarray | None = None,
    hours: np.ndarray | None = None,
    dims=("time", "lat", "lon"),
    units: str | None = "hours since 2019-03-01 00:00:00",
    calendar: str | None = "proleptic_gregorian",
    coordinates: tuple[str, ...] = ("time", "lat", "lon"),
    variable: str = "t2m",
    dtype=None,
) -> None:
    """WeatherBench's t2m (time, lat, lon) in K, hourly, on a small grid."""
    import netCDF4

    if hours is None:
        hours = np.arange(NETCDF_STEPS if values is None else len(values))
    if values is None:
        lat, lon = np.mgrid[:NETCDF_SIDE, :NETCDF_SIDE]
        values = np.stack([280 + 5 * np.sin(lat / 3.0 + h / 6.0) + np.cos(lon / 4.0) for h in hours]).astype(np.float32)
    with netCDF4.Dataset(path, "w") as dataset:
        for name, size in zip(dims, values.shape):
            dataset.createDimension(name, size)
        for name in dims:
            if name not in coordinates:
                continue
            coordinate = dataset.createVariable(name, "f8", (name,))
            coordinate[:] = hours if name == dims[0] else np.arange(dataset.dimensions[name].size, dtype=float)
            if name == dims[0]:
                if units is not None:
                    coordinate.units = units
                if calendar is not None:
                    coordinate.calendar = calendar
        if dtype is str:
            variable_ = dataset.createVariable(variable, str, dims)
            variable_[...] = np.full(values.shape, "warm", dtype=object)
        else:
            variable_ = dataset.createVariable(variable, dtype or values.dtype, dims[: values.ndim])
            variable_[...] = values


def identity_nodes() -> list:
    """The nodes of a graph that is not a model (forecast = its frames, flops 1, sub-network
    1), for tests/conftest.py's write_toy_graph: "an ONNX graph of another model"."""
    from onnx import helper, numpy_helper

    return [
        helper.make_node("Identity", ["frames"], ["forecast"]),
        helper.make_node("Constant", [], ["flops"], value=numpy_helper.from_array(np.array(1.0, np.float32))),
        helper.make_node("Constant", [], ["branch"], value=numpy_helper.from_array(np.array(1, np.int64))),
    ]
