"""`dpedge bench pareto`: the comparison the field uses. Per dataset, static-width networks
(every layer at 0.25…1.0 of its width, dense, trained the same steps) against Dyna-Pruner at
its budgets: validation MAE against *measured* latency of each exported artifact. A
dynamic network is only worth having where its point lies below the static curve."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from dynaprune_edge.bench.common import checked_backbones, default_knmi, feasible, report, trained_model
from dynaprune_edge.data import SAMPLE, DataConfig, SpatioTemporalData, load_dataset
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.exporter import Exporter, ExportOptions
from dynaprune_edge.masks import PruningConfig
from dynaprune_edge.models import BACKBONES
from dynaprune_edge.profiling.latency import interleaved_latency
from dynaprune_edge.runtime import load
from dynaprune_edge.training import load_model

DATASETS = ("taxibj", "nycbike", "knmi", "weatherbench")
SIMVP_WIDTHS = (0.25, 0.5, 0.75, 1.0)
OTHER_WIDTHS = (0.5, 1.0)  # ConvLSTM and ViT: dense and half width
OTHER_BUDGET = 0.3
LARGE_SIMVP = {"spatial_channels": 32, "temporal_channels": 128}  # closer to what users deploy
LARGE_ON = "taxibj"
STATIC_GROUP_SIZE = 4  # every static width a multiple of it
REGION_SIZES = {"nycbike": 4}
"""Region side of the pruned models where the default (8) is too coarse (but a ViT's,
whose tokens are its regions: `pruned_region_size`): NYC's 10×20 cells make 6 regions of
8, of which one alone costs 0.49 of the dense model in onnxruntime milliseconds, above the
cap a budget of 0.3 allows; and in FLOPs, regions of 4 forecast better (this benchmark at
budget 0.3: MAE 0.005813 against 0.00657 with regions of 8)."""


@dataclass(frozen=True)
class Planned:
    """One model of a dataset's comparison: a static width (budget 1.0) or a pruned one."""

    family: str  # "simvp", "simvp-large", "convlstm", "vit": points on one plot share it
    backbone: str
    options: dict
    width: float | None = None  # static models
    budget: float | None = None  # pruned models
    cost: str = "flops"

    @property
    def name(self) -> str:
        return f"{self.family}-w{self.width:g}" if self.width is not None else f"{self.family}-{self.budget:g}-{self.cost}"

    @property
    def label(self) -> str:
        return f"static ×{self.width:g}" if self.width is not None else f"dyna {self.budget:g} {self.cost}"


@dataclass
class ParetoPoint:
    dataset: str
    family: str
    model: str  # "static ×0.5", "dyna 0.3 ort-cpu"
    val_mae: float
    flops_ratio: float  # FLOPs executed per validation sample / the family's full-width dense model's
    cost_ratio: float | None  # a pruned model's validation mean on its cost target
    ms_mean: float  # measured, onnxruntime CPU, batch 1, interleaved with the family's dense model
    ms_p90: float
    speedup: float  # the family's full-width dense model's mean ms / this model's
    predicted_ms: float | None = None  # a model priced in ms: the table's prediction, mean over samples
    static_mae_at_ms: float | None = None  # the static curve's MAE at this model's measured ms (pruned models)
    dominates: list[str] = field(default_factory=list)  # static models both slower and less accurate than this one
    threads: int = 1
    runtime: dict = field(default_factory=dict)

    @property
    def beats_static(self) -> bool | None:
        """Below the static curve at this latency; outside the curve's range (faster than
        every static model), below it if it is faster *and* more accurate than one of them."""
        if self.static_mae_at_ms is None:
            return True if self.dominates else None
        return self.val_mae < self.static_mae_at_ms

    def as_dict(self) -> dict:
        return {**asdict(self), "beats_static": self.beats_static}


def pareto_data(names: list[str], knmi: str | None) -> list[DataConfig]:
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        raise ConfigError(f"--dataset: unknown {', '.join(unknown)}; known: {', '.join(DATASETS)}")
    configs = {
        "taxibj": DataConfig("taxibj"),
        "nycbike": DataConfig("nycbike", path=SAMPLE),
        "knmi": DataConfig("knmi", path=default_knmi() if knmi is None else knmi),
        "weatherbench": DataConfig("weatherbench", path=SAMPLE),
    }
    return [configs[name] for name in (names or DATASETS)]


def plan(dataset: str, backbones: list[str], budgets: list[float], costs: list[str], large: bool) -> list[Planned]:
    """Every model of one dataset's comparison (see the module doc)."""
    planned = []
    families = [(b, b, {}) for b in backbones]
    if large and "simvp" in backbones and dataset == LARGE_ON:
        families.append(("simvp-large", "simvp", LARGE_SIMVP))
    for family, backbone, options in families:
        simvp = backbone == "simvp"
        for width in SIMVP_WIDTHS if simvp else OTHER_WIDTHS:
            planned.append(Planned(family, backbone, BACKBONES.get(backbone).scaled_options(options, width), width=width))
        for budget in budgets if simvp else [OTHER_BUDGET]:
            planned.extend(Planned(family, backbone, dict(options), budget=budget, cost=cost) for cost in costs)
    return planned


@dataclass
class Built:
    planned: Planned
    onnx: Path
    val_mae: float
    cost_ratio: float | None


def pruned_region_size(planned: Planned, dataset: str) -> int:
    """REGION_SIZES' side for the dataset, unless the architecture fixes its own (ViT: its patch)."""
    fixed = BACKBONES.get(planned.backbone).region_size(planned.options)
    return fixed or REGION_SIZES.get(dataset, PruningConfig().region_size)


def build(planned: Planned, data: SpatioTemporalData, steps: int, out: Path) -> Built:
    """Train (or reuse) and export one model: a static width dense, a pruned one auto."""
    folder = out / f"{data.config.name}-{planned.name}"
    static, default = planned.width is not None, PruningConfig()
    path = trained_model(
        planned.backbone, data, 1.0 if static else planned.budget, steps, folder, cost=planned.cost, options=planned.options,
        group_size=STATIC_GROUP_SIZE if static else default.group_size,
        region_size=default.region_size if static else pruned_region_size(planned, data.config.name),
    )
    onnx_path = folder / ("model.dense.onnx" if static else "model.onnx")
    exporter = Exporter(path, ExportOptions(dense=static), log=lambda line: print(line, file=sys.stderr), data=data)
    exporter.run(onnx_path)
    metrics = load_model(path).metrics
    return Built(planned, onnx_path, metrics["val_mae"], None if static else metrics["cost"]["val"]["mean"])


def static_curve_at(points: list[tuple[float, float]], ms: float) -> float | None:
    """The static models' MAE at `ms` by linear interpolation in latency between the two
    static models around it (None outside their range: no claim either way)."""
    points = sorted(points)
    for (ms_lo, mae_lo), (ms_hi, mae_hi) in zip(points, points[1:]):
        if ms_lo <= ms <= ms_hi:
            share = 0.0 if ms_hi == ms_lo else (ms - ms_lo) / (ms_hi - ms_lo)
            return mae_lo + share * (mae_hi - mae_lo)
    return None


def judge(point: ParetoPoint, static: list[ParetoPoint]) -> None:
    """Place a pruned model against its family's static models (ParetoPoint.beats_static)."""
    point.static_mae_at_ms = static_curve_at([(p.ms_mean, p.val_mae) for p in static], point.ms_mean)
    point.dominates = [p.model for p in static if p.ms_mean >= point.ms_mean and p.val_mae > point.val_mae]


def measure_dataset(built: list[Built], data: SpatioTemporalData, runs: int, threads: int, repeat: int) -> list[ParetoPoint]:
    """Time every model of the dataset together (interleaved, each warm at its turn), and
    set each against its family's full-width dense model and static curve."""
    frames = torch.stack([data.val[i][0] for i in range(len(data.val))]).numpy()
    backends = [load(b.onnx, "ort", threads) for b in built]
    times = interleaved_latency([backend.run_one for backend in backends], frames, max(runs, len(frames)), repeat=repeat)
    results = [backend.run(frames) for backend in backends]
    label = f"{data.config.name} ({'synthetic' if data.is_synthetic else 'real'})"
    reference = {b.planned.family: i for i, b in enumerate(built) if b.planned.width == 1.0}
    points = []
    for index, (b, ms, result, backend) in enumerate(zip(built, times, results, backends)):
        ref = reference[b.planned.family]
        predicted = backend.manifest.predicted
        predicted_ms = None
        if predicted and predicted["machine"]["threads"] == threads:
            predicted_ms = float(np.mean(np.asarray(predicted["per_bucket"])[result.bucket]))
        points.append(ParetoPoint(
            dataset=label, family=b.planned.family, model=b.planned.label, val_mae=b.val_mae,
            flops_ratio=float(result.flops.mean()) / backends[ref].manifest.dense_flops, cost_ratio=b.cost_ratio,
            ms_mean=float(np.mean(ms)), ms_p90=float(np.percentile(ms, 90)), speedup=float(np.mean(times[ref]) / np.mean(ms)),
            predicted_ms=predicted_ms, threads=threads,
            runtime={k: v for k, v in backend.describe().items() if k != "model"},
        ))
    for point in points:
        if not point.model.startswith("static"):
            judge(point, [p for p in points if p.family == point.family and p.model.startswith("static")])
    return points


def plot(points: list[ParetoPoint], path: Path) -> None:
    """MAE vs measured latency, one panel per family: the static curve and the dynamic points."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise ConfigError("the pareto plots need matplotlib: pip install 'dynaprune-edge[plots]'") from None
    families = list(dict.fromkeys(p.family for p in points))
    figure, axes = pyplot.subplots(1, len(families), figsize=(4.5 * len(families), 3.8), squeeze=False)
    for axis, family in zip(axes[0], families):
        mine = [p for p in points if p.family == family]
        static = sorted((p for p in mine if p.model.startswith("static")), key=lambda p: p.ms_mean)
        axis.plot([p.ms_mean for p in static], [p.val_mae for p in static], "o-", color="0.4", label="static widths")
        for p in static:
            axis.annotate(p.model.split()[-1], (p.ms_mean, p.val_mae), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for marker, cost in (("s", "flops"), ("D", "ort-cpu")):
            dynamic = [p for p in mine if p.model.startswith("dyna") and p.model.endswith(cost)]
            if dynamic:
                axis.scatter([p.ms_mean for p in dynamic], [p.val_mae for p in dynamic], marker=marker, s=40, zorder=3, label=f"Dyna-Pruner, {cost} budget")
                for p in dynamic:
                    axis.annotate(p.model.split()[1], (p.ms_mean, p.val_mae), textcoords="offset points", xytext=(4, -10), fontsize=7)
        axis.set_title(f"{points[0].dataset}: {family}", fontsize=9)
        axis.set_xlabel(f"measured ms per sample (onnxruntime CPU, {points[0].threads} thread, batch 1)", fontsize=8)
        axis.set_ylabel("validation MAE", fontsize=8)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, dpi=120, format="png")
    pyplot.close(figure)
    temporary.replace(path)


def pareto_table(points: list[ParetoPoint], title: str) -> Table:
    table = Table(title=title, caption="ms: measured mean per validation sample; speedup and FLOPs against the family's full-width dense model; "
                  "static at same ms: the static curve's MAE at the point's latency (interpolated); predicted: the cost table's (models priced in ms)")
    for column in ("dataset", "family", "model", "val MAE", "FLOPs", "cost", "ms mean/p90", "speedup", "static MAE at same ms", "predicted ms"):
        table.add_column(column, justify="left" if column in ("dataset", "family", "model") else "right")
    for p in points:
        if p.static_mae_at_ms is not None:
            static = f"{p.static_mae_at_ms:.4g} ({'below' if p.beats_static else 'above'})"
        else:
            static = f"– (faster and better than {p.dominates[0]})" if p.dominates else "–"
        predicted = "–" if p.predicted_ms is None else f"{p.predicted_ms:.3f} ({100 * (p.predicted_ms / p.ms_mean - 1):+.0f} %)"
        table.add_row(
            p.dataset, p.family, p.model, f"{p.val_mae:.4g}", f"{p.flops_ratio:.3f}", "–" if p.cost_ratio is None else f"{p.cost_ratio:.3f}",
            f"{p.ms_mean:.3f}/{p.ms_p90:.3f}", f"{p.speedup:.2f}×", static, predicted,
        )
    return table


def bench(
    out: Path, steps: int, datasets: list[str], backbones: list[str], budgets: list[float], costs: list[str], large: bool,
    threads: int, runs: int, repeat: int, as_json: bool, knmi: str | None, console: Console,
) -> list[ParetoPoint]:
    """`dpedge bench pareto`; rows into OUT/results.json, one plot per dataset OUT/pareto-DATASET.png."""
    configs, names = pareto_data(datasets, knmi), checked_backbones(backbones)
    budgets, costs = budgets or [0.3, 0.5], costs or ["flops", "ort-cpu"]
    for budget in budgets:
        for cost in costs:
            PruningConfig(budget=budget, cost=cost)  # bad settings fail now, not after an hour of training
    if threads < 1:
        raise ConfigError(f"--threads must be ≥ 1, got {threads}")

    def rows():
        for config in configs:
            data = load_dataset(config)
            built = [
                b for planned in plan(config.name, names, budgets, costs, large)
                for b in feasible(lambda: [build(planned, data, steps, out)], f"{planned.name} on {config.name}")
            ]
            points = measure_dataset(built, data, runs, threads, repeat)
            plot(points, out / f"pareto-{config.name}.png")
            yield from points

    title = f"MAE vs measured latency: static widths vs Dyna-Pruner ({steps}-step models, onnxruntime CPU, {threads} thread)"
    return report(rows(), as_json, out, console, lambda collected: pareto_table(collected, title), f"; plots in {out}/pareto-*.png")
