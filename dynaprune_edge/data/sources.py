"""Finding and opening real data files, with every failure turned into a one-line DataError.

A user pointing dpedge at the wrong folder, a half-downloaded file or an unexpected variable
should read what is wrong and with which file, never an h5py or netCDF traceback.

Non-finite values policy: NaN or ±inf anywhere in the frames → DataError naming the file and
the count. Filling them silently (with zeros, the mean, or interpolation) would train and
evaluate the model on invented values; the user decides how to repair the file. Sentinels
that a format defines as "no data" (KNMI's 65535) are not NaN: their family handles them.
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np

from dynaprune_edge.errors import ConfigError, DataError

SAMPLES_DIR = Path(__file__).resolve().parent / "samples"


def sample_path(family: str, sample: str | None) -> str:
    """Where the family's bundled real sample lives inside the installed package."""
    if sample is None:
        raise ConfigError(
            f"no sample is bundled for {family}: use synthetic data (no path) or pass the real data with --data PATH"
        )
    path = SAMPLES_DIR / sample
    if not path.exists():
        raise DataError(f"{path}: the bundled {family} sample is missing from this install")
    return str(path)


def resolve_files(path: str, suffixes: Sequence[str]) -> list[str]:
    """A file, a folder (its files ending in `suffixes`) or a glob pattern (`**` recurses,
    e.g. pysteps' radar/KNMI/2010/08/*/*.h5 layout) → sorted files."""
    if glob.has_magic(path):
        files = sorted(f for f in glob.glob(path, recursive=True) if os.path.isfile(f))
        if not files:
            raise DataError(f"{path}: no file matches this pattern")
        return files
    if os.path.isdir(path):
        files = sorted(
            os.path.join(path, name)
            for name in os.listdir(path)
            if name.lower().endswith(tuple(suffixes)) and os.path.isfile(os.path.join(path, name))
        )
        if not files:
            raise DataError(f"{path}: no {' or '.join(suffixes)} files in this folder")
        return files
    if os.path.isfile(path):
        return [path]
    raise DataError(f"{path}: no such file or folder")


@contextlib.contextmanager
def _opened(open_file: Callable[[str], object], path: str, kind: str) -> Iterator:
    """`open_file(path)` as a context, an unreadable or corrupt file reported as DataError."""
    try:
        handle = open_file(path)
    except OSError as error:
        raise DataError(f"{path}: not a readable {kind} file ({error})") from None
    with handle:
        yield handle


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"  # netCDF-4 files are HDF5 files


def check_self_contained(handle, path: str) -> None:
    """DataError if an object of the open HDF5 file takes its bytes from elsewhere: external
    storage (the raw bytes of any other file), a virtual dataset (other files' datasets) or
    an external link. HDF5 follows them all when a dataset is read, so a crafted radar file
    could otherwise pull any file this user can read into the training frames."""
    import h5py

    def problem(name: str, link) -> str | None:  # a value other than None stops the visit (raising inside breaks h5py)
        if isinstance(link, h5py.ExternalLink):
            return f"{name} links to another file ({link.filename}); dpedge reads self-contained files only"
        try:
            node = handle.get(name) if isinstance(link, h5py.HardLink) else None
            elsewhere = isinstance(node, h5py.Dataset) and (node.external or node.is_virtual)
        except Exception as error:  # damaged object headers surface as many types
            return f"not a readable HDF5 file ({name}: {type(error).__name__})"
        return (
            f"dataset {name} keeps its data in other files; dpedge reads self-contained files only"
            if elsewhere
            else None
        )

    try:
        found = handle.visititems_links(problem)
    except (
        RuntimeError,
        OSError,
        KeyError,
        ValueError,
        SystemError,
    ) as error:  # damaged metadata surfaces as any of these
        raise DataError(f"{path}: not a readable HDF5 file ({error})") from None
    if found:
        raise DataError(f"{path}: {found}")


def open_hdf5(path: str):
    """h5py.File (read-only) that reports unreadable, corrupt or not self-contained files
    as DataError."""
    import h5py

    def open_checked(name: str):
        handle = h5py.File(name, "r")
        try:
            check_self_contained(handle, name)
        except BaseException:
            handle.close()
            raise
        return handle

    return _opened(open_checked, path, "HDF5")


def open_netcdf(path: str):
    """netCDF4.Dataset (read-only) that reports unreadable or corrupt files as DataError;
    a netCDF-4 file (HDF5 inside) must be self-contained, as `open_hdf5` checks."""
    import netCDF4

    try:
        with open(path, "rb") as file:
            hdf5 = file.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
    except OSError as error:
        raise DataError(f"{path}: not a readable netCDF file ({error})") from None
    if hdf5:
        with open_hdf5(path):
            pass
    return _opened(lambda name: netCDF4.Dataset(name, "r"), path, "netCDF")


def read_array(node, path: str, selection=Ellipsis) -> np.ndarray:
    """Read (part of) an h5py dataset or netCDF variable; a damaged chunk becomes a DataError."""
    try:
        return node[selection]
    except (OSError, RuntimeError, ValueError) as error:
        raise DataError(f"{path}: cannot read {getattr(node, 'name', 'data')} ({error})") from None


def require_finite(values: np.ndarray, path: str) -> None:
    """Reject NaN/inf (see the module notes for why they are not repaired)."""
    if np.issubdtype(values.dtype, np.floating):
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            raise DataError(
                f"{path}: {bad} NaN or infinite values of {values.size}; "
                f"dpedge does not fill them, repair or drop these time steps"
            )


def _duration(seconds: float) -> str:
    return str(timedelta(seconds=float(seconds)))


def check_regular_steps(seconds: np.ndarray, labels: Sequence[str], step: float, source: str) -> None:
    """Sorted times must advance by exactly `step` seconds; name the first gap otherwise.

    Windows assume consecutive frames: a missing frame would silently pair an input with a
    target from the wrong lead time."""
    steps = np.diff(seconds)
    same = np.flatnonzero(steps == 0)
    if len(same):
        raise DataError(f"{source}: {labels[same[0]]} and {labels[same[0] + 1]} have the same time")
    bad = np.flatnonzero(steps != step)
    if len(bad):
        first = bad[0]
        raise DataError(
            f"{source}: frames must be consecutive {_duration(step)} steps, but "
            f"{labels[first]} → {labels[first + 1]} is {_duration(steps[first])}"
        )
