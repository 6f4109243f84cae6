"""`dpedge bench training`: ST-Prune against full-data training and an InfoBatch-style
baseline (the loss alone as score, the same ratio and annealing), same seeds; and the
training throughput of 1 against 2 processes.

For each dataset and model (SimVP dense, and Dyna-Pruner at budget 0.5), all three train
the same epochs. The full-data run's final validation MAE, plus 1 %, is the target. A run's
time to target is its training wall-clock (evaluation left out) up to the end of the first
epoch whose validation MAE meets it; its time to stay, up to the end of the epoch from
which every later epoch meets it (validation curves are noisy: full data may touch the
target early and leave it for most of the run). A speedup is full data's time over the
run's. Synthetic TaxiBJ comes in two sizes, since ST-Prune's gain grows with the data and
its scoring overhead matters most on small sets; the real KNMI event is small.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from rich.console import Console

from dynaprune_edge.bench.results import write_results
from dynaprune_edge.bench.tables import rich_table, training_grid, training_processes_line
from dynaprune_edge.data import SAMPLE, DataConfig, load_dataset
from dynaprune_edge.training.config import TrainConfig
from dynaprune_edge.training.run import RunSpec, train_run
from dynaprune_edge.training.sample_pruning import SamplePruning

METHODS = {"full data": None, "ST-Prune": "both", "InfoBatch-style": "loss"}
MODELS = {"SimVP dense": 1.0, "SimVP Dyna-Pruner 0.5": 0.5}
TOLERANCE = 0.01


@dataclass
class Row:
    dataset: str
    windows: int
    model: str
    method: str
    final_mae: float
    target_mae: float
    seconds_to_target: float | None  # None: the target was never met
    speedup: float | None
    seconds_to_stay: float | None  # from the end of this epoch on, every epoch meets the target
    speedup_to_stay: float | None
    pruned_fraction: float
    samples_seen: int
    scoring_seconds: float
    train_seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


def seconds_to(history: list[dict], target: float) -> float | None:
    """Training seconds up to the end of the first epoch whose validation MAE ≤ target."""
    return next((epoch["train_seconds"] for epoch in history if epoch["val_mae"] <= target), None)


def seconds_to_stay(history: list[dict], target: float) -> float | None:
    """Training seconds up to the end of the epoch from which every validation MAE ≤ target
    (the first touch of a noisy curve can come epochs before it settles there)."""
    settled = None
    for epoch in reversed(history):
        if epoch["val_mae"] > target:
            break
        settled = epoch["train_seconds"]
    return settled


def ratio(baseline: float | None, run: float | None) -> float | None:
    return None if baseline is None or run is None else baseline / run


def datasets(frames: list[int], knmi: str) -> list[DataConfig]:
    return [*(DataConfig("taxibj", synthetic_frames=n) for n in frames), DataConfig("knmi", path=knmi)]


def compare(config: DataConfig, epochs: int, pruning: SamplePruning, out: Path) -> list[Row]:
    """Every model × method on one dataset; `pruning`'s score is replaced by each method's."""
    data = load_dataset(config)
    rows = []
    for model, budget in MODELS.items():
        runs = {}
        for method, score in METHODS.items():
            chosen = None if score is None else dataclasses.replace(pruning, score=score)
            spec = RunSpec.create("simvp", config, budget, TrainConfig(epochs=epochs, sample_pruning=chosen))
            folder = out / f"{config.name}-{len(data.train)}" / f"{budget:g}-{method.split()[0].lower()}"
            print(f"{config.name} ({len(data.train)} training windows), {model}, {method}", file=sys.stderr)
            runs[method] = train_run(spec, folder, data=data)
        target = runs["full data"]["val_mae"] * (1 + TOLERANCE)
        full = runs["full data"]["history"]
        for method, metrics in runs.items():
            reached, stays = seconds_to(metrics["history"], target), seconds_to_stay(metrics["history"], target)
            rows.append(
                Row(
                    config.name,
                    len(data.train),
                    model,
                    method,
                    metrics["val_mae"],
                    target,
                    reached,
                    ratio(seconds_to(full, target), reached),
                    stays,
                    ratio(seconds_to_stay(full, target), stays),
                    metrics["pruned_fraction"],
                    metrics["samples_seen"],
                    metrics["scoring_seconds"],
                    metrics["train_seconds"],
                )
            )
    return rows


def throughput(config: DataConfig, epochs: int, out: Path) -> list[dict]:
    """Training windows per second of SimVP dense, 1 and 2 processes, the same global batch."""
    found = []
    for nproc in (1, 2):
        folder = out / f"throughput-{config.name}-{nproc}"
        command = [
            sys.executable,
            "-m",
            "dynaprune_edge",
            "train",
            "--out",
            str(folder),
            "--dataset",
            config.name,
            "--epochs",
            str(epochs),
            *(["--nproc", "2"] if nproc == 2 else []),
        ]
        if config.synthetic_frames:
            command += ["--synthetic-frames", str(config.synthetic_frames)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        metrics = json.loads((folder / "metrics.json").read_text())
        found.append(
            {
                "processes": nproc,
                "windows_per_second": metrics["samples_seen"] / metrics["train_seconds"],
                "train_seconds": metrics["train_seconds"],
            }
        )
    return found


def document(rows: list[Row], processes: list[dict], epochs: int, frames: list[int], pruning: SamplePruning) -> dict:
    """What results.json holds: the rows, the `throughput` of 1 and 2 processes, the settings."""
    return {
        "rows": [r.as_dict() for r in rows],
        "processes": processes,
        "settings": {
            "epochs": epochs,
            "frames": frames,
            "prune_ratio": pruning.ratio,
            "anneal": pruning.anneal,
            "easy_share": pruning.easy_share,
            "tolerance": TOLERANCE,
        },
    }


def bench(
    out: Path, epochs: int, frames: list[int], pruning: SamplePruning, knmi: str | None, as_json: bool, console: Console
) -> dict:
    rows = [row for config in datasets(frames, knmi or SAMPLE) for row in compare(config, epochs, pruning, out)]
    processes = throughput(DataConfig("taxibj", synthetic_frames=max(frames)), 1, out)
    result = document(rows, processes, epochs, frames, pruning)
    write_results(result, out, benchmark="training")
    if as_json:
        print(json.dumps(result))
        return result
    title = (
        f"ST-Prune vs full data vs InfoBatch-style ({epochs} epochs, --prune-ratio {pruning.ratio}, "
        f"--easy-share {pruning.easy_share}, --anneal {pruning.anneal}; measured)"
    )
    console.print(rich_table(training_grid(result["rows"], title)))
    console.print(training_processes_line(processes, max(frames)))
    console.print(
        f"[dim]target: the full-data run's final validation MAE + {TOLERANCE:.0%}; 'to target': the first epoch meeting it, "
        f"'to stay': the epoch from which every later one does; rows in {out / 'results.json'}[/dim]"
    )
    return result
