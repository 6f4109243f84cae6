"""Spatio-temporal datasets for dpedge: `load_dataset(DataConfig(name=...))`.

Families (see `DATASETS.names()`): taxibj, nycbike, weatherbench, sevir, knmi. Each reads its real
format or, without a path, generates seeded synthetic data of the same shape; `path="sample"`
(`SAMPLE`) loads the real sample bundled in `samples/` (knmi, weatherbench, nycbike).
"""

from dynaprune_edge.data.base import (
    SAMPLE,
    DataConfig,
    DatasetFamily,
    FamilyDefaults,
    FrameSegments,
    Normalizer,
    SpatioTemporalData,
    check_seed,
)
from dynaprune_edge.data.families import DATASETS, load_dataset

__all__ = [
    "DATASETS",
    "SAMPLE",
    "DataConfig",
    "DatasetFamily",
    "FamilyDefaults",
    "FrameSegments",
    "Normalizer",
    "SpatioTemporalData",
    "check_seed",
    "load_dataset",
]
