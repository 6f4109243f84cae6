"""TaxiBJ: Beijing taxi inflow/outflow on a 32×32 grid, 30-minute frames, 4 in → 4 out.

Real format (OpenSTL's `dataset.npz`): X_train, Y_train, X_test, Y_test, each (N, 4, 2, 32,
32) in [-1, 1], windows already cut and in time order. We map to [0, 1] with (x + 1) / 2 as
OpenSTL does, so that errors are comparable with published numbers in that unit.

Validation: the last ~10 % of the training windows. Neighbouring windows share frames, so
the L - 1 windows just before the validation block (L = frames per window) are dropped:
whatever the stride between window starts (≥ 1 frame), a window starting L or more windows
earlier ends before the first validation frame, so no frame is in both train and val.
Test: X_test/Y_test as published.

NYCBike2 (`nycbike`) has the same layout and scale on a 10×20 grid.
"""

from __future__ import annotations

import tokenize
import zipfile

import numpy as np

from dynaprune_edge.data.base import DataConfig, DatasetFamily, FamilyDefaults, FrameSegments
from dynaprune_edge.data.grids import fit_grid
from dynaprune_edge.data.sources import require_finite, resolve_files
from dynaprune_edge.data.synthetic import city_flows
from dynaprune_edge.data.windows import time_split
from dynaprune_edge.errors import DataError

VALIDATION_FRACTION = 0.1
NYC_EMPTY_SHARE = 0.71  # of NYCBike2's cells, in any hour
ARRAYS = ("X_train", "Y_train", "X_test", "Y_test")


def _load_npz(path: str) -> dict[str, np.ndarray]:
    try:
        archive = np.load(path)
    except (
        OSError,
        ValueError,
        zipfile.BadZipFile,
        EOFError,
        SyntaxError,
        tokenize.TokenError,
    ) as error:  # a damaged header: the last two
        raise DataError(f"{path}: not a readable .npz file ({error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: a single array, not OpenSTL's TaxiBJ .npz ({', '.join(ARRAYS)})")
    with archive:
        missing = [name for name in ARRAYS if name not in archive.files]
        if missing:
            raise DataError(
                f"{path}: missing array(s) {', '.join(missing)}; found "
                f"{', '.join(archive.files) or 'none'} (OpenSTL's TaxiBJ layout has {', '.join(ARRAYS)})"
            )
        try:
            return {name: archive[name] for name in ARRAYS}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError, SyntaxError, tokenize.TokenError) as error:
            raise DataError(f"{path}: cannot read the arrays ({error})") from None


def _windows(inputs: np.ndarray, targets: np.ndarray, config: DataConfig, path: str) -> np.ndarray:
    """X (N, T_in, C, H, W) and Y (N, T_out, C, H, W) → (N, T_in + T_out, C, H, W) in [0, 1]."""
    for name, array in (("X", inputs), ("Y", targets)):
        if not (np.issubdtype(array.dtype, np.number) and not np.issubdtype(array.dtype, np.complexfloating)):
            raise DataError(f"{path}: the {name} arrays hold {array.dtype}, not numbers")
    expected = {"frames_in": (inputs, config.frames_in), "frames_out": (targets, config.frames_out)}
    for option, (array, frames) in expected.items():
        if array.ndim != 5 or array.shape[1] != frames or array.shape[2] != 2:
            raise DataError(f"{path}: arrays must be (N, {frames}, 2, H, W) for {option}={frames}, got {array.shape}")
    if inputs.shape[0] != targets.shape[0] or inputs.shape[3:] != targets.shape[3:]:
        raise DataError(f"{path}: X {inputs.shape} and Y {targets.shape} do not pair up")
    joined = np.concatenate([inputs, targets], axis=1).astype(np.float32)
    require_finite(joined, path)
    joined += 1.0  # in place: the real training set is over a gigabyte
    joined /= 2.0
    return joined


class TaxiBJ(DatasetFamily):
    name = "taxibj"
    defaults = FamilyDefaults(
        frames_in=4,
        frames_out=4,
        size=32,
        synthetic_frames=880,  # ≈ 18 days → 609/125/125 windows: minutes per epoch on 2 cores
        channels=2,
        unit="flow, OpenSTL [0,1] scale",
        split=(0.7, 0.15, 0.15),
    )

    def read(self, path: str, config: DataConfig) -> FrameSegments:
        files = resolve_files(path, (".npz",))
        if len(files) != 1:
            raise DataError(f"{path}: {len(files)} .npz files; TaxiBJ reads one dataset.npz")
        path = files[0]
        arrays = _load_npz(path)
        train = fit_grid(_windows(arrays["X_train"], arrays["Y_train"], config, path), config.size, path)
        test = fit_grid(_windows(arrays["X_test"], arrays["Y_test"], config, path), config.size, path)
        window = config.frames_in + config.frames_out
        val_count = max(1, round(len(train) * VALIDATION_FRACTION))
        kept_train = max(0, len(train) - val_count - (window - 1))
        return FrameSegments(
            train=list(train[:kept_train]),
            val=list(train[len(train) - val_count :]),
            test=list(test),
        )

    def synthesize(self, config: DataConfig) -> FrameSegments:
        rng = np.random.default_rng(config.seed)
        return time_split(city_flows(config.synthetic_frames, config.size, rng), self.defaults.split)


class NycBike(TaxiBJ):
    """NYCBike2: hourly Citi Bike inflow/outflow of New York on a 10×20 grid, in TaxiBJ's
    layout and scale (real: the bundled sample, 828 hours; see samples/README.md). About
    71 % of the cells are empty in any hour (rivers, parks, outside the bike network):
    the input-dependent redundancy DataMask regions exist for. The grid is used whole; the
    model pads it to what its regions need."""

    name = "nycbike"
    sample = "nycbike2_10x20/dataset.npz"
    defaults = FamilyDefaults(
        frames_in=4,
        frames_out=4,
        size=10,
        synthetic_frames=828,  # as many hours as the real sample
        channels=2,
        unit="flow, OpenSTL [0,1] scale (0.01 = 3.07 bikes per cell and hour)",
        split=(0.7, 0.15, 0.15),
    )

    def synthesize(self, config: DataConfig) -> FrameSegments:
        """TaxiBJ's synthetic city on a grid twice as wide as high, outside a bike network
        of a few contiguous districts (29 % of the cells) always empty."""
        rng = np.random.default_rng(config.seed)
        height, width = config.size, 2 * config.size
        flows = city_flows(config.synthetic_frames, width, rng)[:, :, :height]
        rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        districts = sum(
            np.exp(-0.5 * (((rows - r) / (0.15 * height)) ** 2 + ((columns - c) / (0.12 * width)) ** 2))
            for r, c in zip(rng.uniform(0, height, 4), rng.uniform(0, width, 4))
        )
        network = districts >= np.quantile(districts, NYC_EMPTY_SHARE)
        return time_split(np.ascontiguousarray(flows * network), self.defaults.split)
