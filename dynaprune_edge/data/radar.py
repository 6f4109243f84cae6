"""Radar nowcasting families: SEVIR (VIL, storm events) and KNMI (Dutch rain composites).

Both are 5-minute frames, mostly dry, downsampled by area means to `size` (default 64).

SEVIR: HDF5 files with dataset `vil` (N, 384, 384, 49) uint8, one 49-frame storm event per
row. Events are independent, so each is windowed on its own (13 in → 12 out gives 25
windows per event) and whole events go to train/val/test in file order.

KNMI: one HDF5 file per frame, `image1/image_data` uint16 (765, 700). Calibration is parsed
from `image1/calibration/calibration_formulas` ("GEO=0.01*PV+0.0" → mm per 5 minutes);
the "missing / out of image" codes come from the calibration attributes (65535 when
absent). Frames are ordered by the YYYYmmddHHMM stamp in the file name (the end of the
5-minute accumulation) or, when the name has none, by `overview/product_datetime_start`,
and must be consecutive 5-minute steps. Around 74 % of a frame lies outside radar range, so we crop to the square
around the bounding box of pixels valid in *any* frame, and then fill the remaining
missing pixels with 0 mm ("no echo"): the models need a value everywhere, and a dry
pixel is what a masked region should cost least to predict. The few missing pixels inside
the radar range are treated the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dynaprune_edge.data.base import DataConfig, DatasetFamily, FamilyDefaults, FrameSegments
from dynaprune_edge.data.grids import fit_grid
from dynaprune_edge.data.sources import (
    check_regular_steps,
    open_hdf5,
    read_array,
    require_finite,
    resolve_files,
)
from dynaprune_edge.data.synthetic import rain_cells
from dynaprune_edge.data.windows import event_split, time_split
from dynaprune_edge.errors import DataError
from dynaprune_edge.progress import progress_bar

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
FRAME_SECONDS = 300
SEVIR_EVENT_FRAMES = 49


def _member(handle, name: str, path: str):
    """The group or dataset `name` of an open HDF5 file, DataError listing what is there if absent."""
    if name not in handle:
        found = []
        handle.visit(found.append)
        raise DataError(f"{path}: no dataset {name!r}; found: {', '.join(found) or 'nothing'}")
    try:
        return handle[name]
    except (KeyError, OSError, RuntimeError, ValueError) as error:  # h5py's words for a damaged object header
        raise DataError(f"{path}: cannot read {name!r}, the file is damaged ({error})") from error


def _dataset(handle, name: str, path: str):
    """The numeric dataset `name` (DataError if it is missing, a group, or holds text)."""
    import h5py

    node = _member(handle, name, path)
    if not isinstance(node, h5py.Dataset):
        raise DataError(f"{path}: {name} is a group, not an array")
    if not (np.issubdtype(node.dtype, np.number) and not np.issubdtype(node.dtype, np.complexfloating)):
        raise DataError(f"{path}: {name} holds {node.dtype}, not numbers")
    return node


# ----------------------------------------------------------------------------- SEVIR


def _sevir_events(files: list[str], size: int) -> list[np.ndarray]:
    """Every event of every file, in order, as (49, 1, size, size) VIL frames."""
    events = []
    with progress_bar(transient=True) as bar:
        for path in files:
            with open_hdf5(path) as handle:
                vil = _dataset(handle, "vil", path)
                if vil.ndim != 4:
                    raise DataError(f"{path}: vil has shape {vil.shape}, expected (events, H, W, frames)")
                for index in bar.track(range(vil.shape[0]), description=f"reading {Path(path).name}"):
                    event = np.moveaxis(read_array(vil, path, index), -1, 0)[:, None].astype(np.float32)
                    require_finite(event, path)
                    events.append(fit_grid(event, size, path))
    return events


class Sevir(DatasetFamily):
    name = "sevir"
    defaults = FamilyDefaults(
        frames_in=13,
        frames_out=12,
        size=64,
        synthetic_frames=16 * SEVIR_EVENT_FRAMES,  # 16 events → 12/2/2 → 300/50/50 windows
        channels=1,
        unit="VIL (0-255)",
        split=(0.7, 0.15, 0.15),
    )

    def read(self, path: str, config: DataConfig) -> FrameSegments:
        return event_split(_sevir_events(resolve_files(path, HDF5_SUFFIXES), config.size), self.defaults.split)

    def synthesize(self, config: DataConfig) -> FrameSegments:
        """synthetic_frames // 49 independent events, VIL levels as integers 0..255."""
        rng = np.random.default_rng(config.seed)
        events = [
            np.clip(np.round(180.0 * rain_cells(SEVIR_EVENT_FRAMES, config.size, rng)), 0, 255)
            for _ in range(config.synthetic_frames // SEVIR_EVENT_FRAMES)
        ]
        return event_split(events, self.defaults.split)


# ------------------------------------------------------------------------------ KNMI

KNMI_IMAGE = "image1/image_data"
KNMI_CALIBRATION = "image1/calibration"
_NUMBER = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"  # unsigned; signs are matched apart
_FORMULA = re.compile(rf"GEO\s*=\s*([-+]?{_NUMBER})\s*\*\s*PV\s*(?:([-+])\s*({_NUMBER}))?\s*$")
_STAMP = re.compile(r"(?<!\d)(\d{12})(?!\d)")


@dataclass
class _KnmiFrame:
    path: str
    seconds: int
    slope: float
    offset: float
    missing: tuple[int, ...]

    def valid(self, raw: np.ndarray) -> np.ndarray:
        return ~np.isin(raw, self.missing)

    def calibrated(self, raw: np.ndarray) -> np.ndarray:
        """Physical values; missing / out-of-image pixels become 0 mm (see module notes)."""
        physical = self.slope * raw.astype(np.float32) + self.offset
        return np.where(self.valid(raw), physical, 0.0).astype(np.float32)


def _attribute_text(value) -> str:
    value = np.asarray(value).reshape(-1)[0] if np.ndim(value) else value
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value)


def _knmi_time(path: str, handle) -> int:
    stamp = _STAMP.search(Path(path).name)
    try:
        if stamp:
            moment = datetime.strptime(stamp.group(1), "%Y%m%d%H%M")
        else:
            text = _attribute_text(handle["overview"].attrs["product_datetime_start"])
            moment = datetime.strptime(text.strip(), "%d-%b-%Y;%H:%M:%S.%f")
    except (KeyError, ValueError) as error:
        raise DataError(
            f"{path}: no YYYYmmddHHMM time in the file name and no readable overview/product_datetime_start ({error})"
        ) from None
    return int(moment.replace(tzinfo=timezone.utc).timestamp())


def _knmi_frame(path: str, handle) -> _KnmiFrame:
    calibration = _member(handle, KNMI_CALIBRATION, path).attrs
    if "calibration_formulas" not in calibration:
        raise DataError(f"{path}: no attribute {KNMI_CALIBRATION}/calibration_formulas")
    formula = _attribute_text(calibration["calibration_formulas"])
    match = _FORMULA.match(formula.strip())
    if not match:
        raise DataError(f"{path}: cannot parse calibration formula {formula!r} (expected GEO=a*PV+b)")
    slope, sign, offset = match.groups()
    missing = set()
    for key in ("calibration_missing_data", "calibration_out_of_image"):
        codes = np.atleast_1d(calibration.get(key, 65535))
        if not np.issubdtype(codes.dtype, np.integer):
            raise DataError(
                f"{path}: {KNMI_CALIBRATION}/{key} must be whole numbers (pixel codes), got {codes.tolist()!r}"[:300]
            )
        missing.update(int(code) for code in codes)
    return _KnmiFrame(
        path=path,
        seconds=_knmi_time(path, handle),
        slope=float(slope),
        offset=float(sign + offset) if offset else 0.0,
        missing=tuple(sorted(missing)),
    )


def _knmi_image(path: str, handle, selection=Ellipsis) -> np.ndarray:
    image = _dataset(handle, KNMI_IMAGE, path)
    if image.ndim != 2:
        raise DataError(f"{path}: {KNMI_IMAGE} has shape {image.shape}, expected (rows, columns)")
    return read_array(image, path, selection)


def _square_around(valid: np.ndarray) -> tuple[slice, slice]:
    """Square crop containing the valid pixels (square keeps pixels square when resampled),
    centred on them and shifted to stay inside the image."""
    rows, columns = np.flatnonzero(valid.any(axis=1)), np.flatnonzero(valid.any(axis=0))
    side = min(max(rows[-1] - rows[0], columns[-1] - columns[0]) + 1, *valid.shape)
    bounds = []
    for used, length in ((rows, valid.shape[0]), (columns, valid.shape[1])):
        start = (used[0] + used[-1] + 1 - side) // 2
        start = min(max(start, 0), length - side)
        bounds.append(slice(start, start + side))
    return bounds[0], bounds[1]


def _knmi_frames(files: list[str], size: int, source: str) -> np.ndarray:
    """Two passes over the files (the crop is known only after seeing every frame): memory
    stays at one full frame plus the small output, whatever the archive's length."""
    frames, valid, shape = [], None, None
    with progress_bar(transient=True) as bar:
        for path in bar.track(files, description="scanning KNMI frames"):
            with open_hdf5(path) as handle:
                frame = _knmi_frame(path, handle)
                image = _knmi_image(path, handle)
            if shape is not None and image.shape != shape:
                raise DataError(f"{path}: image is {image.shape}, but {frames[0].path} is {shape}")
            shape = image.shape
            valid = frame.valid(image) if valid is None else valid | frame.valid(image)
            frames.append(frame)
        frames.sort(key=lambda f: f.seconds)
        names = [Path(f.path).name for f in frames]
        check_regular_steps(np.array([f.seconds for f in frames]), names, FRAME_SECONDS, source)
        if not valid.any():
            raise DataError(f"{source}: every pixel of every frame is missing / out of image")
        rows, columns = _square_around(valid)
        out = []
        for frame in bar.track(frames, description="cropping KNMI frames"):
            with open_hdf5(frame.path) as handle:
                physical = frame.calibrated(_knmi_image(frame.path, handle, (rows, columns)))
            require_finite(physical, frame.path)
            out.append(fit_grid(physical[None, None], size, frame.path)[0])
    return np.stack(out)


class Knmi(DatasetFamily):
    name = "knmi"
    sample = "knmi_radar_2010-08-26"
    defaults = FamilyDefaults(
        frames_in=6,  # the bundled event has 92 frames; 13 → 12 fits longer archives only
        frames_out=6,
        size=64,
        synthetic_frames=500,  # ≈ 42 hours → 289/89/89 windows
        channels=1,
        unit="mm/5min",
        split=(0.6, 0.2, 0.2),
    )

    def read(self, path: str, config: DataConfig) -> FrameSegments:
        frames = _knmi_frames(resolve_files(path, HDF5_SUFFIXES), config.size, path)
        return time_split(frames, self.defaults.split)

    def synthesize(self, config: DataConfig) -> FrameSegments:
        """Rain cells in mm/5min, quantised to KNMI's 0.01 mm steps (heavy rain ≈ 1-2 mm)."""
        rng = np.random.default_rng(config.seed)
        rain = np.round(1.5 * rain_cells(config.synthetic_frames, config.size, rng), 2)
        return time_split(rain.astype(np.float32), self.defaults.split)
