"""The dataset table and the one entry point, `load_dataset`.

Families are registered here, explicitly, in one place (not by import side effects), and
everything that is the same for every family happens in `load_dataset`: defaults,
option checks, where the data comes from (synthetic / bundled sample / user files), the
check that every split holds a window, and the training-only normalisation.
"""

from __future__ import annotations

import dataclasses
import os

from dynaprune_edge.checks import is_count
from dynaprune_edge.data.base import SAMPLE, DataConfig, DatasetFamily, Normalizer, SpatioTemporalData, check_seed
from dynaprune_edge.data.radar import Knmi, Sevir
from dynaprune_edge.data.sources import sample_path
from dynaprune_edge.data.taxibj import NycBike, TaxiBJ
from dynaprune_edge.data.weatherbench import WeatherBench
from dynaprune_edge.data.windows import WindowDataset, check_windows_fit
from dynaprune_edge.errors import ConfigError, DataError
from dynaprune_edge.registry import Registry

DATASETS: Registry[DatasetFamily] = Registry("dataset", [TaxiBJ(), NycBike(), WeatherBench(), Sevir(), Knmi()])
MAX_SIZE = 2048
"""Largest --size in pixels: above every family's native grid (KNMI's 765×700, ERA5's
721×1440), and a bound on what a mistyped size can make a run allocate."""
MAX_WINDOW_FRAMES = 1000
"""Largest --frames-in and --frames-out: far beyond any forecaster's horizon."""
MAX_SYNTHETIC_BYTES = 4 * 2**30
"""What generating a synthetic series may take (float64): 4 GiB, ~500 times the default
TaxiBJ series, instead of a series of a mistyped length exhausting the memory."""
SYNTHETIC_WIDTH_BOUND = 2
"""Synthetic grids are at most twice as wide as high (weatherbench, nycbike)."""


def complete_config(config: DataConfig, family: DatasetFamily) -> DataConfig:
    """Fill every None with the family default and check the values can work.

    Real paths are made absolute so a checkpoint's config finds the same files from another
    working directory (globs keep their pattern, only made absolute)."""
    defaults = family.defaults
    path = config.path
    if path is not None and path != SAMPLE:
        path = os.path.abspath(os.path.expanduser(path))
    filled = dataclasses.replace(
        config,
        path=path,
        frames_in=defaults.frames_in if config.frames_in is None else config.frames_in,
        frames_out=defaults.frames_out if config.frames_out is None else config.frames_out,
        size=defaults.size if config.size is None else config.size,
        synthetic_frames=(defaults.synthetic_frames if config.synthetic_frames is None else config.synthetic_frames),
    )
    for option, most in (
        ("frames_in", MAX_WINDOW_FRAMES),
        ("frames_out", MAX_WINDOW_FRAMES),
        ("synthetic_frames", None),
        ("size", MAX_SIZE),
    ):
        value = getattr(filled, option)
        if not is_count(value, 1) or (most is not None and value > most):
            bound = "≥ 1" if most is None else f"in [1, {most}]"
            raise ConfigError(
                f"{config.name}: --{option.replace('_', '-')} must be a whole number {bound}, got {value!r}"
            )
    check_seed(filled.seed)
    if filled.path is None:
        values = filled.synthetic_frames * defaults.channels * filled.size * SYNTHETIC_WIDTH_BOUND * filled.size
        if values * 8 > MAX_SYNTHETIC_BYTES:  # generated in float64
            raise ConfigError(
                f"{config.name}: {filled.synthetic_frames} synthetic frames of {filled.size} pixels would take about "
                f"{values * 8 / 2**30:.0f} GiB to generate (at most {MAX_SYNTHETIC_BYTES // 2**30} GiB): "
                "lower --synthetic-frames or --size"
            )
    return filled


def load_dataset(config: DataConfig, recorded_in: str | None = None) -> SpatioTemporalData:
    """Config → normalised train/val/test windows; the same config always gives the same data.

    recorded_in: the file the config was read from (a model.pt, a manifest), when it is not
    the user's own option. Its path is then never globbed recursively: a `**` pattern in a
    file someone handed over could walk the whole filesystem."""
    family = DATASETS.get(config.name)
    config = complete_config(config, family)
    if recorded_in is not None and config.path is not None and "**" in config.path:
        raise DataError(
            f"{recorded_in} records the data as the recursive pattern {config.path}, which dpedge does not follow "
            "from a file: pass the data with --data"
        )
    if config.path is None:
        source = "synthetic"
        segments = family.synthesize(config)
    else:
        source = sample_path(family.name, family.sample) if config.path == SAMPLE else config.path
        segments = family.read(source, config)
    check_windows_fit(segments, config, source)
    normalizer = Normalizer.fit_segments(segments.train)
    channels, height, width = segments.train[0].shape[1:]
    splits = {
        name: WindowDataset(split, config.frames_in, config.frames_out, normalizer)
        for name, split in segments.splits().items()
    }
    return SpatioTemporalData(
        config=config,
        normalizer=normalizer,
        channels=channels,
        height=height,
        width=width,
        source=source,
        unit=family.defaults.unit,
        **splits,
    )
