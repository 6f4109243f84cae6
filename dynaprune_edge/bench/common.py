"""What the benchmarks share: the dataset pair they run on, the backbone check, and reporting
rows, with where, when and from what code they were measured."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dynaprune_edge.bench.results import write_results
from dynaprune_edge.data import SAMPLE, DataConfig, SpatioTemporalData
from dynaprune_edge.data.radar import HDF5_SUFFIXES
from dynaprune_edge.data.sources import resolve_files
from dynaprune_edge.errors import CheckpointError, ConfigError
from dynaprune_edge.export.cost_table import priced_config
from dynaprune_edge.models import BACKBONES, resolve_backbone
from dynaprune_edge.training import load_model
from dynaprune_edge.training.run import RunSpec, train_run
from dynaprune_edge.training.trainer import TrainConfig


def bench_datasets(knmi: str | None = None) -> tuple[DataConfig, ...]:
    """What the benchmarks run on: synthetic TaxiBJ, the real New York bike traffic bundled
    with dpedge (10×20 cells, most of them empty) and the real KNMI radar event from `knmi`
    (None: the frames bundled with dpedge)."""
    return (
        DataConfig("taxibj"),
        DataConfig("nycbike", path=SAMPLE),
        DataConfig("knmi", path=SAMPLE if knmi is None else knmi),
    )


def checked_knmi(knmi: str | None) -> str | None:
    """`--knmi` as given, once it names KNMI files (a DataError now, not after the runs
    before the KNMI rows)."""
    if knmi is not None and knmi != SAMPLE:
        resolve_files(os.path.expanduser(knmi), HDF5_SUFFIXES)
    return knmi


def checked_backbones(names: list[str]) -> list[str]:
    """The named backbones (default: the built-in ones), each checked now, not after an hour
    of training; a backbone of your own (PATH.py:Class) is imported and registered."""
    return [resolve_backbone(name) for name in names] if names else BACKBONES.names()


def report(
    rows: Iterable,
    as_json: bool,
    out: Path,
    console: Console,
    table: Callable[[list], Table],
    note: str = "",
    *,
    benchmark: str,
) -> list:
    """A benchmark's rows as they come (one JSON line each with --json), then all of them in
    OUT/results.json (written by `benchmark`: bench.results), and (without --json)
    `table(rows)` printed with `note`."""
    collected = []
    for row in rows:
        collected.append(row)
        if as_json:
            print(json.dumps(row.as_dict()), flush=True)
    write_results([row.as_dict() for row in collected], out, benchmark=benchmark)
    if not as_json:
        console.print(table(collected))
        console.print(f"[dim]rows also in {out / 'results.json'}{note}[/dim]")
    return collected


def trained_model(
    backbone: str,
    data: SpatioTemporalData,
    budget: float,
    steps: int,
    out: Path,
    *,
    cost: str = "flops",
    group_order: str = "ordered",
    options: dict | None = None,
    group_size: int = 8,
    region_size: int = 8,
    slimmable: bool = False,
) -> Path:
    """OUT/model.pt of a model trained `steps` optimizer steps, now unless `out` already
    holds one trained with the same settings (reruns of a benchmark only re-measure; a
    measured cost target's table is part of the settings)."""
    path = out / "model.pt"
    train = TrainConfig().for_steps(steps, data)
    overrides = {
        "group_order": group_order,
        "cost": cost,
        "group_size": group_size,
        "region_size": region_size,
        "slimmable": slimmable,
    }
    spec = RunSpec.create(
        backbone, data.config, budget, train, {k: str(v) for k, v in (options or {}).items()}, overrides
    )
    config = priced_config(spec, data)
    if path.is_file():
        try:
            trained = load_model(path)
        except CheckpointError as error:  # e.g. written by an older dpedge: not these settings
            print(f"retraining: {error}", file=sys.stderr)
        else:
            saved = trained.model_config
            if (saved, trained.data_config, trained.metrics.get("epochs")) == (config, data.config, train.epochs):
                print(f"reusing {path}", file=sys.stderr)
                return path
    train_run(spec, out, data=data, config=config)
    return path


def feasible(rows: Callable[[], Iterable], what: str) -> Iterable:
    """`rows()`, or nothing if the settings cannot be trained (a cap that admits no region
    on this cost target, say): the benchmark says so on stderr and goes on with the rest."""
    try:
        yield from rows()
    except ConfigError as error:
        print(f"skipped {what}: {error}", file=sys.stderr)
