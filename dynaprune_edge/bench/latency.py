"""Export latency: does the sparse export run faster than the same model exported dense, by as much as its FLOPs say?"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from dynaprune_edge.bench.common import bench_datasets, checked_backbones, feasible, report, trained_model
from dynaprune_edge.bench.tables import latency_grid, rich_table
from dynaprune_edge.data import DataConfig, SpatioTemporalData, load_dataset
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.exporter import Exporter, ExportOptions
from dynaprune_edge.export.network import router_graph
from dynaprune_edge.files import atomic_write_bytes
from dynaprune_edge.masks import PruningConfig
from dynaprune_edge.profiling.latency import LatencyStats, interleaved_latency, node_time_shares
from dynaprune_edge.runtime import load
from dynaprune_edge.runtime.manifest import INPUT, LAYOUTS
from dynaprune_edge.runtime.onnxruntime import open_session, session_options

OVERHEAD_PREFIXES = ("router/", "route/")  # mask generator, branch choice, index computation

Timer = Callable[..., list[np.ndarray]]
"""interleaved_latency's contract: (runners, frames, runs, repeat=…) → milliseconds per run of
each runner, in order."""


@dataclass
class LatencyRow:
    backbone: str
    dataset: str
    budget: float
    threads: int
    mode: str  # the sparse export's filter mode and tile policy, e.g. "sliced/wide"
    samples: int  # distinct validation samples
    runs: int  # timed runs of each model
    repeat: int  # runs of each model in a row at its turn, the last timed (1: strict turns)
    dense_ms_p50: float
    dense_ms_p90: float
    sparse_ms_p50: float
    sparse_ms_p90: float
    speedup: float  # mean dense latency / mean sparse latency
    flops_ratio: float  # mean FLOPs the sparse graph executed / dense FLOPs
    efficiency: float  # speedup × flops_ratio: 1 = time falls exactly as FLOPs do
    overhead_share: float  # profiled kernel time in router/* and route/* nodes (mask generator, branch choice, index and weight gathers)
    router_share: float  # wall-clock of the router graph alone / sparse latency
    single_ms_mean: float  # the sparse export run as one graph (its branches If nodes)
    split_ms_mean: float  # … split into a router graph and one graph per branch (runtime/split.py)
    layout: str  # the one the export measured faster, which the sparse columns time
    val_mae: float
    runtime: dict  # backend, device, onnxruntime version, threads (Backend.describe)
    cost: str = "flops"  # the cost target the model's budget was priced on
    predicted_ms: float | None = (
        None  # mean over the samples of their branch's latency as the cost table predicts it (measured targets only)
    )
    prediction_error: float | None = None  # predicted_ms / measured mean sparse latency − 1

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Exported:
    """One model exported for timing: FOLDER/model.onnx (sparse), model.dense.onnx (the same
    model with pruning off) and model.router.onnx (the sparse export's router graph alone)."""

    folder: Path
    mode: str  # the sparse export's choice, "mode/tiles"
    frames: np.ndarray  # the validation samples, (N, T, C, H, W)
    dataset: str  # e.g. "knmi (real)"
    val_mae: float
    cost: str  # the cost target the model was trained on

    @property
    def sparse(self) -> Path:
        return self.folder / "model.onnx"

    @property
    def dense(self) -> Path:
        return self.folder / "model.dense.onnx"

    @property
    def router(self) -> Path:
        return self.folder / "model.router.onnx"


def export_for_timing(model_path: Path, data: SpatioTemporalData, options: ExportOptions = ExportOptions()) -> Exported:
    """Export the model beside its model.pt sparse (with `options`; default: auto, the
    fastest) and dense, and its router graph on its own."""
    folder = model_path.parent
    log = lambda line: print(line, file=sys.stderr)
    sparse_export = Exporter(model_path, options, log=log, data=data)
    chosen, _, _ = sparse_export.run(folder / "model.onnx")
    Exporter(model_path, ExportOptions(dense=True), log=log, data=data).run(folder / "model.dense.onnx")
    exported = Exported(
        folder=folder,
        mode=f"{chosen.mode}/{chosen.tiles}",
        frames=data.normalizer.denormalize(
            torch.stack([data.val[i][0] for i in range(len(data.val))]).numpy()
        ),  # the graphs take physical units
        dataset=f"{data.config.name} ({'synthetic' if data.is_synthetic else 'real'})",
        val_mae=sparse_export.trained.metrics.get("val_mae", float("nan")),
        cost=sparse_export.trained.model_config.pruning.cost,
    )
    router = router_graph(sparse_export.trained.model, chosen.mode, sparse_export.trained.normalizer)
    atomic_write_bytes(router.SerializeToString(), exported.router)
    return exported


def latency_rows(
    exported: Exported,
    backbone: str,
    target: float,
    threads: list[int],
    runs: int,
    repeat: int = 1,
    timer: Timer = interleaved_latency,
) -> list[LatencyRow]:
    """One row per thread count: onnxruntime on this CPU at batch 1 (as deployed), the dense
    export, the sparse export and the router graph timed by `timer` taking turns on the same
    validation samples (at least `runs` runs, every sample at least once, each model `repeat`
    times in a row at its turn, the last timed), so that machine noise hits them alike; the
    FLOPs ratio is what the sparse graph reports it executed."""
    frames = exported.frames
    rows = []
    for count in threads:
        dense = load(exported.dense, "ort", count)
        layouts = {layout: load(exported.sparse, "ort", count, layout=layout) for layout in LAYOUTS}
        sparse = layouts[layouts["single"].manifest.layout]
        router = open_session(exported.router, session_options(count), ["CPUExecutionProvider"])
        run_router = lambda sample, router=router: router.run(None, {INPUT: sample})
        runners = [dense.run_one, layouts["single"].run_one, layouts["split"].run_one, run_router]
        dense_ms, single_ms, split_ms, router_ms = timer(runners, frames, max(runs, len(frames)), repeat=repeat)
        sparse_ms = single_ms if sparse is layouts["single"] else split_ms
        overhead = node_time_shares(exported.sparse, frames[:32], count, OVERHEAD_PREFIXES)
        dense_stats, sparse_stats = LatencyStats.from_samples(dense_ms), LatencyStats.from_samples(sparse_ms)
        speedup = dense_stats.mean / sparse_stats.mean
        result, predicted = sparse.run(frames), sparse.manifest.predicted
        flops_ratio = float(result.flops.mean()) / sparse.manifest.dense_flops
        # every timed run cycles over the samples alike, so the mean prediction is over the samples
        predicted_ms = (
            float(np.mean(np.asarray(predicted["per_branch"])[result.branch]))
            if predicted and count == predicted["machine"]["threads"]
            else None
        )
        rows.append(
            LatencyRow(
                backbone=backbone,
                dataset=exported.dataset,
                budget=target,
                threads=count,
                mode=exported.mode,
                samples=len(frames),
                runs=len(dense_ms),
                repeat=repeat,
                dense_ms_p50=dense_stats.p50,
                dense_ms_p90=dense_stats.p90,
                sparse_ms_p50=sparse_stats.p50,
                sparse_ms_p90=sparse_stats.p90,
                speedup=speedup,
                flops_ratio=flops_ratio,
                efficiency=speedup * flops_ratio,
                overhead_share=sum(overhead.values()),
                router_share=float(np.mean(router_ms)) / sparse_stats.mean,
                single_ms_mean=float(np.mean(single_ms)),
                split_ms_mean=float(np.mean(split_ms)),
                layout=sparse.manifest.layout,
                val_mae=exported.val_mae,
                runtime={key: value for key, value in sparse.describe().items() if key != "model"},
                cost=exported.cost,
                predicted_ms=predicted_ms,
                prediction_error=None if predicted_ms is None else predicted_ms / sparse_stats.mean - 1,
            )
        )
    return rows


def measure(
    backbone: str,
    data_config: DataConfig,
    target: float,
    threads: list[int],
    steps: int,
    group_order: str,
    runs: int,
    repeat: int,
    out: Path,
    cost: str = "flops",
) -> list[LatencyRow]:
    """Train (or reuse) the pruned model in OUT/BACKBONE-DATASET-TARGET[-COST], export it, time it."""
    folder = out / f"{backbone}-{data_config.name}-{target:g}{'' if cost == 'flops' else '-' + cost}"
    data = load_dataset(data_config)
    model_path = trained_model(backbone, data, target, steps, folder, cost=cost, group_order=group_order)
    return latency_rows(export_for_timing(model_path, data), backbone, target, threads, runs, repeat)


def latency_table(rows: list[LatencyRow], title: str) -> Table:
    return rich_table(latency_grid([row.as_dict() for row in rows], title))


def bench(
    out: Path,
    steps: int,
    budget: list[float],
    threads: list[int],
    backbones: list[str],
    group_order: str,
    runs: int,
    repeat: int,
    as_json: bool,
    knmi: str | None,
    console: Console,
    costs: list[str] = (),
) -> list[LatencyRow]:
    """`dpedge bench latency`: every backbone × dataset (synthetic TaxiBJ, the KNMI radar event
    from `knmi`, None: the default) × cost target (default flops) × budget (default 0.3,
    0.5) × thread count (default 1, 2); settings checked before any training; rows into
    OUT/results.json."""
    targets, thread_counts, costs = budget or [0.3, 0.5], threads or [1, 2], list(costs) or ["flops"]
    names = checked_backbones(backbones)
    for target in targets:
        for cost in costs:
            PruningConfig(budget=target, group_order=group_order, cost=cost)
    if min(thread_counts) < 1:
        raise ConfigError(f"--threads must be ≥ 1, got {min(thread_counts)}")
    rows = (
        row
        for name in names
        for data_config in bench_datasets(knmi)
        for cost in costs
        for target in targets
        for row in feasible(
            functools.partial(
                measure, name, data_config, target, thread_counts, steps, group_order, runs, repeat, out, cost
            ),
            f"{name} on {data_config.name} at budget {target:g} on {cost}",
        )
    )
    title = f"export latency, onnxruntime CPU, batch 1 ({steps}-step models, {group_order} groups)"
    return report(rows, as_json, out, console, lambda collected: latency_table(collected, title), benchmark="latency")
