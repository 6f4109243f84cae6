"""Regenerate the real data samples bundled in dynaprune_edge/data/samples/.

Provenance script: the samples must be reproducible from the published files, and smaller
than them (they ship inside every wheel). Values are never changed, only re-compressed:
- KNMI radar: all frames, same groups, datasets and attributes; `image1/image_data`
  re-compressed with gzip level 9 + shuffle, HDF5 1.10 file layout (≈ 35 KB per frame
  instead of 58 KB; the image itself ≈ 28 KB instead of 32 KB).
- ERA5 t2m UK: the first 14 days (336 hourly steps), same variables, dims and attributes,
  zlib level 9 + shuffle.
- NYCBike2 10×20: copied as it is (0.4 MB, already compressed).
Each output is read back and compared with its source; any difference is an error.

    python scripts/make_bundled_samples.py [--source ../shared/data] [--dest dynaprune_edge/data/samples]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import netCDF4
import numpy as np

REPO = Path(__file__).resolve().parents[1]
KNMI_EVENT = "knmi_radar_2010-08-26"
ERA5_FILE = "era5_t2m_uk_2019-03.nc"
ERA5_SAMPLE = "era5_t2m_uk_2019-03-01_14.nc"
ERA5_STEPS = 14 * 24
NYC_BIKE = Path("nycbike2_10x20") / "dataset.npz"


def _copy_attributes(source, target) -> None:
    """Attributes with their exact HDF5 types (fixed-length strings stay fixed-length)."""
    for name in source.attrs:
        attribute = source.attrs.get_id(name)
        target.attrs.create(name, source.attrs[name], shape=attribute.shape, dtype=attribute.dtype)


def _copy_hdf5(source: h5py.Group, target: h5py.Group) -> None:
    _copy_attributes(source, target)
    for name, item in source.items():
        if isinstance(item, h5py.Group):
            _copy_hdf5(item, target.create_group(name))
        else:
            compressed = item.ndim >= 2
            copy = target.create_dataset(
                name,
                data=item[...],
                dtype=item.dtype,
                chunks=item.chunks if compressed else None,
                compression="gzip" if compressed else None,
                compression_opts=9 if compressed else None,
                shuffle=compressed,
            )
            _copy_attributes(item, copy)


def _same_hdf5(a: h5py.Group, b: h5py.Group) -> bool:
    """Same tree, same attribute values and types, same dataset values and dtypes."""
    if set(a.keys()) != set(b.keys()) or set(a.attrs) != set(b.attrs):
        return False
    for name in a.attrs:
        if a.attrs.get_id(name).dtype != b.attrs.get_id(name).dtype:
            return False
        if not np.array_equal(np.asarray(a.attrs[name]), np.asarray(b.attrs[name])):
            return False
    for name, item in a.items():
        other = b[name]
        if isinstance(item, h5py.Group):
            if not isinstance(other, h5py.Group) or not _same_hdf5(item, other):
                return False
        elif item.dtype != other.dtype or not np.array_equal(item[...], other[...]):
            return False
    return True


def repack_knmi(source: Path, dest: Path) -> None:
    files = sorted(source.glob("*.h5"))
    if not files:
        raise SystemExit(f"{source}: no KNMI .h5 files")
    dest.mkdir(parents=True, exist_ok=True)
    for path in files:
        out = dest / path.name
        # HDF5 ≥ 1.10 object headers: ~6 KB less per file than the 1.8 layout, and every
        # h5py wheel since 2018 reads them.
        with h5py.File(path, "r") as original, h5py.File(out, "w", libver=("v110", "v110")) as copy:
            _copy_hdf5(original, copy)
        with h5py.File(path, "r") as original, h5py.File(out, "r") as copy:
            if not _same_hdf5(original, copy):
                raise SystemExit(f"{out}: differs from {path} after repacking")
    total = sum(f.stat().st_size for f in dest.glob("*.h5"))
    print(f"{dest}: {len(files)} frames, {total / 1e6:.2f} MB ({total / len(files) / 1e3:.1f} KB per frame)")


def subset_era5(source: Path, dest: Path, steps: int) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(source) as original, netCDF4.Dataset(dest, "w", format="NETCDF4") as copy:
        copy.setncatts({name: original.getncattr(name) for name in original.ncattrs()})
        for name, dimension in original.dimensions.items():
            length = min(steps, len(dimension)) if name == "time" else len(dimension)
            copy.createDimension(name, None if dimension.isunlimited() else length)
        for name, variable in original.variables.items():
            attributes = {a: variable.getncattr(a) for a in variable.ncattrs() if a != "_FillValue"}
            fill = variable.getncattr("_FillValue") if "_FillValue" in variable.ncattrs() else None
            target = copy.createVariable(
                name,
                variable.dtype,
                variable.dimensions,
                zlib=True,
                complevel=9,
                shuffle=True,
                fill_value=fill,
            )
            target.setncatts(attributes)
            selection = tuple(slice(0, steps) if d == "time" else slice(None) for d in variable.dimensions)
            target[...] = variable[selection]
    with netCDF4.Dataset(source) as original, netCDF4.Dataset(dest) as copy:
        for name, variable in original.variables.items():
            selection = tuple(slice(0, steps) if d == "time" else slice(None) for d in variable.dimensions)
            if not np.array_equal(
                np.ma.filled(variable[selection], np.nan), np.ma.filled(copy[name][...], np.nan), equal_nan=True
            ):
                raise SystemExit(f"{dest}: {name} differs from {source}")
    print(f"{dest}: {steps} steps, {dest.stat().st_size / 1e6:.2f} MB")


def copy_nyc_bike(source: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(source.read_bytes())
    with np.load(source) as original, np.load(dest) as copy:
        if set(original.files) != set(copy.files) or any(
            not np.array_equal(original[n], copy[n]) for n in original.files
        ):
            raise SystemExit(f"{dest}: differs from {source}")
    print(f"{dest}: {dest.stat().st_size / 1e6:.2f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--source",
        type=Path,
        default=REPO.parent / "shared" / "data",
        help="folder holding the published files (default: ../shared/data)",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=REPO / "dynaprune_edge" / "data" / "samples",
        help="samples folder inside the package",
    )
    args = parser.parse_args()
    repack_knmi(args.source / KNMI_EVENT, args.dest / KNMI_EVENT)
    subset_era5(args.source / ERA5_FILE, args.dest / ERA5_SAMPLE, ERA5_STEPS)
    copy_nyc_bike(args.source / NYC_BIKE, args.dest / NYC_BIKE)


if __name__ == "__main__":
    main()
