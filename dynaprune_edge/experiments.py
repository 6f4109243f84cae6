"""Dense-versus-pruned comparisons: the demo and the accuracy benchmark."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.table import Table

from dynaprune_edge.data import SAMPLE, DataConfig, load_dataset
from dynaprune_edge.training.run import RunSpec, train_run
from dynaprune_edge.training.trainer import TrainConfig

SHARED_KNMI = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "knmi_radar_2010-08-26"


def knmi_data_path() -> str:
    """The team's copy of the KNMI event beside the repository when present, else the
    identical frames bundled with dpedge."""
    return str(SHARED_KNMI) if SHARED_KNMI.is_dir() else SAMPLE


def bench_datasets() -> tuple[DataConfig, DataConfig]:
    """What the benchmarks run on: synthetic TaxiBJ and the real KNMI radar event."""
    return DataConfig("taxibj"), DataConfig("knmi", path=knmi_data_path())


@dataclass
class Comparison:
    backbone: str
    dataset: str
    unit: str
    persistence_mae: float
    dense_mae: float
    pruned_mae: float
    flops_ratio: float
    data_kept: float
    seconds: float

    @property
    def relative_difference(self) -> float:
        return (self.pruned_mae - self.dense_mae) / self.dense_mae

    def as_dict(self) -> dict:
        return {**self.__dict__, "relative_difference": self.relative_difference}


def compare(backbone: str, data_config: DataConfig, target_flops: float, train: TrainConfig, out: Path, steps: int | None = None) -> Comparison:
    """Train the dense baseline and the pruned model the same way; compare on validation.
    `steps` (optional) overrides train.epochs with as many epochs as that many optimizer
    steps take, so small and large datasets get the same training budget."""
    data = load_dataset(data_config)
    if steps is not None:
        train = train.for_steps(steps, len(data.train))
    runs = {}
    for name, target in (("dense", 1.0), ("pruned", target_flops)):
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
        data_kept=runs["pruned"]["data_kept_mean"],
        seconds=runs["dense"]["train_seconds"] + runs["pruned"]["train_seconds"],
    )


def comparison_table(rows: list[Comparison], title: str) -> Table:
    table = Table(title=title, caption="MAE on the validation split in the unit shown; FLOPs = pruned/dense")
    for column in ("backbone", "dataset", "persistence MAE", "dense MAE", "pruned MAE", "Δ MAE", "FLOPs", "data kept", "train s", "unit"):
        table.add_column(column, justify="left" if column in ("backbone", "dataset", "unit") else "right")
    for row in rows:
        table.add_row(
            row.backbone,
            row.dataset,
            f"{row.persistence_mae:.4g}",
            f"{row.dense_mae:.4g}",
            f"{row.pruned_mae:.4g}",
            f"{100 * row.relative_difference:+.1f} %",
            f"{row.flops_ratio:.3f}",
            f"{row.data_kept:.3f}",
            f"{row.seconds:.0f}",
            row.unit,
        )
    return table
