"""`dpedge bench latency`: does the exported sparse model run faster than the same model
exported dense, by as much as its FLOPs say? Trained models, real validation samples,
onnxruntime on this CPU at batch 1 (as deployed), dense and sparse timed interleaved on
the same samples so that machine noise hits both alike."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from rich.table import Table

from dynaprune_edge.data import DataConfig, SpatioTemporalData, load_dataset
from dynaprune_edge.export.exporter import Exporter, ExportOptions
from dynaprune_edge.export.network import router_graph
from dynaprune_edge.files import atomic_write_bytes
from dynaprune_edge.profiling.latency import LatencyStats, interleaved_latency, node_time_shares
from dynaprune_edge.runtime import load
from dynaprune_edge.runtime.manifest import INPUT
from dynaprune_edge.runtime.onnxruntime import open_session, session_options
from dynaprune_edge.training import load_model
from dynaprune_edge.training.run import RunSpec, train_run
from dynaprune_edge.training.trainer import TrainConfig

OVERHEAD_PREFIXES = ("router/", "route/")  # mask generator, branch choice, index computation


@dataclass
class LatencyRow:
    backbone: str
    dataset: str
    target_flops: float
    threads: int
    mode: str  # the sparse export's filter mode and tile policy, e.g. "bucketed/wide"
    samples: int  # distinct validation samples
    runs: int  # timed runs of each model
    dense_ms_p50: float
    dense_ms_p90: float
    sparse_ms_p50: float
    sparse_ms_p90: float
    speedup: float  # mean dense latency / mean sparse latency
    flops_ratio: float  # mean FLOPs the sparse graph executed / dense FLOPs
    efficiency: float  # speedup × flops_ratio: 1 = time falls exactly as FLOPs do
    overhead_share: float  # profiled kernel time in router/* and route/* nodes (mask generator, branch choice, index and weight gathers)
    router_share: float  # wall-clock of the router graph alone / sparse latency
    val_mae: float
    runtime: dict  # backend, device, onnxruntime version, threads (Backend.describe)

    def as_dict(self) -> dict:
        return asdict(self)


def trained_model(backbone: str, data: SpatioTemporalData, target: float, steps: int, group_order: str, out: Path) -> Path:
    """model.pt of a pruned model, trained now unless `out` already holds one trained
    with the same settings (reruns of the benchmark only re-measure)."""
    path = out / "model.pt"
    train = TrainConfig().for_steps(steps, len(data.train))
    spec = RunSpec.create(backbone, data.config, target, train, pruning_overrides={"group_order": group_order})
    if path.is_file():
        trained = load_model(path)
        config = trained.model_config
        if (config.backbone, config.pruning, trained.data_config, trained.metrics.get("epochs")) == (backbone, spec.pruning, data.config, train.epochs):
            print(f"reusing {path}", file=sys.stderr)
            return path
    train_run(spec, out, data=data)
    return path


def measure(backbone: str, data_config: DataConfig, target: float, threads: list[int], steps: int, group_order: str, runs: int, out: Path) -> list[LatencyRow]:
    folder = out / f"{backbone}-{data_config.name}-{target:g}"
    data = load_dataset(data_config)
    model_path = trained_model(backbone, data, target, steps, group_order, folder)
    log = lambda line: print(line, file=sys.stderr)  # noqa: E731
    sparse_export = Exporter(model_path, ExportOptions(), log=log, data=data)
    chosen, _, _ = sparse_export.run(folder / "model.onnx")
    Exporter(model_path, ExportOptions(dense=True), log=log, data=data).run(folder / "model.dense.onnx")
    frames = torch.stack([data.val[i][0] for i in range(len(data.val))]).numpy()
    metrics = sparse_export.trained.metrics
    label = f"{data.config.name} ({'synthetic' if data.is_synthetic else 'real'})"
    rows = []
    router_path = folder / "model.router.onnx"
    atomic_write_bytes(router_graph(sparse_export.trained.model, chosen.mode).SerializeToString(), router_path)
    for count in threads:
        dense = load(folder / "model.dense.onnx", "ort", count)
        sparse = load(folder / "model.onnx", "ort", count)
        router = open_session(router_path, session_options(count), ["CPUExecutionProvider"])
        run_router = lambda sample: router.run(None, {INPUT: sample})  # noqa: E731
        dense_ms, sparse_ms, router_ms = interleaved_latency([dense.run_one, sparse.run_one, run_router], frames, max(runs, len(frames)))
        overhead = node_time_shares(folder / "model.onnx", frames[:32], count, OVERHEAD_PREFIXES)
        dense_stats, sparse_stats = LatencyStats.from_samples(dense_ms), LatencyStats.from_samples(sparse_ms)
        speedup = dense_stats.mean / sparse_stats.mean
        flops_ratio = float(sparse.run(frames).flops.mean()) / sparse.manifest.dense_flops
        rows.append(
            LatencyRow(
                backbone=backbone,
                dataset=label,
                target_flops=target,
                threads=count,
                mode=f"{chosen.mode}/{chosen.tiles}",
                samples=len(frames),
                runs=len(dense_ms),
                dense_ms_p50=dense_stats.p50,
                dense_ms_p90=dense_stats.p90,
                sparse_ms_p50=sparse_stats.p50,
                sparse_ms_p90=sparse_stats.p90,
                speedup=speedup,
                flops_ratio=flops_ratio,
                efficiency=speedup * flops_ratio,
                overhead_share=sum(overhead.values()),
                router_share=float(router_ms.mean()) / sparse_stats.mean,
                val_mae=metrics.get("val_mae", float("nan")),
                runtime={key: value for key, value in sparse.describe().items() if key != "model"},
            )
        )
    return rows


def latency_table(rows: list[LatencyRow], title: str) -> Table:
    table = Table(
        title=title,
        caption="ms per sample at batch 1; speedup = mean dense / mean sparse latency; efficiency = speedup × FLOPs ratio; "
        "overhead = profiled share of router and routing nodes; router = the router graph alone / sparse latency",
    )
    columns = ("backbone", "dataset", "target", "threads", "export", "dense p50/p90", "sparse p50/p90", "speedup", "FLOPs ratio", "efficiency", "overhead", "router")
    for column in columns:
        table.add_column(column, justify="left" if column in ("backbone", "dataset", "export") else "right")
    for row in rows:
        table.add_row(
            row.backbone, row.dataset, f"{row.target_flops:g}", str(row.threads), row.mode,
            f"{row.dense_ms_p50:.3f}/{row.dense_ms_p90:.3f}", f"{row.sparse_ms_p50:.3f}/{row.sparse_ms_p90:.3f}",
            f"{row.speedup:.2f}×", f"{row.flops_ratio:.3f}", f"{row.efficiency:.2f}", f"{100 * row.overhead_share:.1f} %", f"{100 * row.router_share:.1f} %",
        )
    return table
