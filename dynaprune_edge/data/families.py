"""The dataset table and the one entry point, `load_dataset`.

Families are registered here, explicitly, in one place (not by import side effects), and
everything that is the same for every family happens in `load_dataset`: defaults,
option checks, where the data comes from (synthetic / bundled sample / user files), the
check that every split holds a window, and the training-only normalisation.
"""

from __future__ import annotations

import dataclasses
import os

from dynaprune_edge.data.base import SAMPLE, DataConfig, DatasetFamily, Normalizer, SpatioTemporalData
from dynaprune_edge.data.radar import Knmi, Sevir
from dynaprune_edge.data.sources import sample_path
from dynaprune_edge.data.taxibj import NycBike, TaxiBJ
from dynaprune_edge.data.weatherbench import WeatherBench
from dynaprune_edge.data.windows import WindowDataset, check_windows_fit
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.registry import Registry

DATASETS: Registry[DatasetFamily] = Registry("dataset", [TaxiBJ(), NycBike(), WeatherBench(), Sevir(), Knmi()])


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
        synthetic_frames=(
            defaults.synthetic_frames if config.synthetic_frames is None else config.synthetic_frames
        ),
    )
    for option in ("frames_in", "frames_out", "synthetic_frames"):
        value = getattr(filled, option)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{config.name}: {option} must be a whole number ≥ 1, got {value!r}")
    if not isinstance(filled.size, int) or filled.size < 1:
        raise ConfigError(f"{config.name}: size must be a whole number of pixels ≥ 1, got {filled.size!r}")
    return filled


def load_dataset(config: DataConfig) -> SpatioTemporalData:
    """Config → normalised train/val/test windows; the same config always gives the same data."""
    family = DATASETS.get(config.name)
    config = complete_config(config, family)
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
