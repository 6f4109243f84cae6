"""Dense-versus-pruned accuracy: `dpedge bench accuracy`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from dynaprune_edge.bench.common import bench_datasets, checked_backbones, report
from dynaprune_edge.bench.tables import accuracy_grid, rich_table
from dynaprune_edge.data import DataConfig, load_dataset
from dynaprune_edge.flops import FLOPS_CONVENTION
from dynaprune_edge.masks import PruningConfig
from dynaprune_edge.training.config import TrainConfig
from dynaprune_edge.training.run import RunSpec, train_run


@dataclass
class Comparison:
    backbone: str
    dataset: str
    unit: str
    persistence_mae: float
    dense_mae: float
    pruned_mae: float
    flops_ratio: float
    flops_ratio_max: float  # the validation sample that cost most; at most the cap
    data_kept: float
    seconds: float

    @property
    def relative_difference(self) -> float:
        return (self.pruned_mae - self.dense_mae) / self.dense_mae

    def as_dict(self) -> dict:
        return {**self.__dict__, "relative_difference": self.relative_difference}


def compare(
    backbone: str, data_config: DataConfig, budget: float, train: TrainConfig, out: Path, steps: int | None = None
) -> Comparison:
    """Train the dense baseline and the pruned model the same way; compare on validation.
    `steps` (optional) overrides train.epochs with as many epochs as that many optimizer
    steps take, so small and large datasets get the same training budget."""
    data = load_dataset(data_config)
    if steps is not None:
        train = train.for_steps(steps, data)
    runs = {}
    for name, target in (("dense", 1.0), ("pruned", budget)):
        spec = RunSpec.create(backbone, data.config, target, train)
        runs[name] = train_run(spec, out / f"{backbone}-{data.config.name}-{name}", data=data)
    label = f"{data.config.name} ({'synthetic' if data.is_synthetic else 'real'})"
    return Comparison(
        backbone=backbone,
        dataset=label,
        unit=data.unit,
        persistence_mae=runs["dense"]["val_mae_persistence"],
        dense_mae=runs["dense"]["val_mae"],
        pruned_mae=runs["pruned"]["val_mae"],
        flops_ratio=runs["pruned"]["flops_ratio_mean"],
        flops_ratio_max=runs["pruned"]["cost"]["val"]["max"],
        data_kept=runs["pruned"]["data_kept_mean"],
        seconds=runs["dense"]["train_seconds"] + runs["pruned"]["train_seconds"],
    )


def comparison_table(rows: list[Comparison], title: str) -> Table:
    return rich_table(accuracy_grid([row.as_dict() for row in rows], title))


def bench(
    out: Path, steps: int, budget: float, backbones: list[str], as_json: bool, knmi: str | None, console: Console
) -> list[Comparison]:
    """`dpedge bench accuracy`: one comparison per backbone and dataset (synthetic TaxiBJ, the
    KNMI radar event from `knmi`, None: the default), rows into OUT/results.json."""
    names = checked_backbones(backbones)
    PruningConfig(budget=budget)  # a bad target fails now, not after the dense runs
    return report(
        (
            compare(name, data_config, budget, TrainConfig(), out, steps=steps)
            for name in names
            for data_config in bench_datasets(knmi)
        ),
        as_json,
        out,
        console,
        lambda rows: comparison_table(rows, f"dense vs pruned (target FLOPs {budget}), {steps} steps each"),
        f"; {FLOPS_CONVENTION}",
        benchmark="accuracy",
    )
