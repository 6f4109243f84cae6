"""`dpedge bench pareto`: the comparison the field uses. Per dataset, static-width networks
(every layer at 0.25…1.0 of its width, dense, trained the same steps) against Dyna-Pruner:
validation MAE against *measured* latency of each exported artifact. A dynamic network is
only worth having where it lies below the static curve.

Per family, besides the static curve: a width-routed slimmable model per cost target (one
artifact each) drawn as a line over run-time budgets (ROUTED_BUDGETS), its width levels each alone (the
slimmable network's own curve), the region-pruned models at their budgets, and a
hindsight oracle: per validation window the best static model under a mean-latency
budget, from the static models' own errors and measured latencies (what routing among
them could reach at all; not a model anyone can run). On radar data, besides the models,
pysteps' extrapolation nowcast (bench/baselines.py) as a reference: a row of the table and
a line on every panel, never a candidate of the verdict."""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from dynaprune_edge.bench import baselines
from dynaprune_edge.bench.common import checked_backbones, feasible, report, trained_model
from dynaprune_edge.bench.tables import ORACLE, REFERENCE, pareto_grid, rich_table, verdict
from dynaprune_edge.data import SAMPLE, DataConfig, SpatioTemporalData, load_dataset
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.exporter import Exporter, ExportOptions
from dynaprune_edge.files import atomic_write_text
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
LARGE_ON = ("taxibj", "knmi")  # the moonshot: the larger SimVP on radar
ROUTED_BUDGET = 0.5  # what the width-routed model is trained at
ROUTED_BUDGETS = (0.3, 0.4, 0.5, 0.7, 1.0)
"""Run-time budgets the width-routed artifact is measured at: its line."""
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
    routed: bool = False  # a slimmable network with a width router, trained at `budget`

    @property
    def name(self) -> str:
        if self.width is not None:
            return f"{self.family}-w{self.width:g}"
        return f"{self.family}-{'routed-' if self.routed else ''}{self.budget:g}-{self.cost}"

    @property
    def label(self) -> str:
        return f"static ×{self.width:g}" if self.width is not None else f"dyna {self.budget:g} {self.cost}"


@dataclass
class ParetoPoint:
    dataset: str
    family: str
    model: str  # "static ×0.5", "dyna 0.3 ort-cpu"
    val_mae: float
    flops_ratio: (
        float | None
    )  # FLOPs executed per validation sample / the family's full-width dense model's (None: a reference)
    cost_ratio: float | None  # a pruned model's validation mean on its cost target
    ms_mean: float  # measured, onnxruntime CPU, batch 1, interleaved with the family's dense model (the oracle: its mixture's; a reference: pysteps')
    ms_p90: float | None  # None: the oracle, a mixture of models whose latencies were measured apart
    speedup: float | None  # the family's full-width dense model's mean ms / this model's (None: a reference)
    predicted_ms: float | None = None  # a model priced in ms: the table's prediction, mean over samples
    train_seconds: float | None = None  # the model's training wall-clock (this machine; None: the oracle)
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
        "knmi": DataConfig("knmi", path=SAMPLE if knmi is None else knmi),
        "weatherbench": DataConfig("weatherbench", path=SAMPLE),
    }
    return [configs[name] for name in (names or DATASETS)]


def plan(dataset: str, backbones: list[str], budgets: list[float], costs: list[str], large: bool) -> list[Planned]:
    """Every model of one dataset's comparison (see the module doc). budgets: SimVP's
    region-pruned models' (the other backbones' at OTHER_BUDGET); none, no region-pruned
    model of any backbone."""
    planned = []
    families = [(b, b, {}) for b in backbones]
    if large and "simvp" in backbones and dataset in LARGE_ON:
        families.append(("simvp-large", "simvp", LARGE_SIMVP))
    for family, backbone, options in families:
        simvp = backbone == "simvp"
        for width in SIMVP_WIDTHS if simvp else OTHER_WIDTHS:
            planned.append(
                Planned(family, backbone, BACKBONES.get(backbone).scaled_options(options, width), width=width)
            )
        for budget in (budgets if simvp else [OTHER_BUDGET]) if budgets else []:
            planned.extend(Planned(family, backbone, dict(options), budget=budget, cost=cost) for cost in costs)
        planned.extend(
            Planned(family, backbone, dict(options), budget=ROUTED_BUDGET, cost=cost, routed=True) for cost in costs
        )
    return planned


@dataclass
class Built:
    planned: Planned
    onnx: Path
    cost_ratio: float | None = None  # a region-pruned model's validation mean on its cost target (metrics.json)
    train_seconds: float | None = None  # its training wall-clock (metrics.json)
    levels: dict[float, Path] = field(default_factory=dict)  # a width-routed model's levels, each exported alone


def pruned_region_size(planned: Planned, dataset: str) -> int:
    """REGION_SIZES' side for the dataset, unless the architecture fixes its own (ViT: its patch)."""
    fixed = BACKBONES.get(planned.backbone).region_size(planned.options)
    return fixed or REGION_SIZES.get(dataset, PruningConfig().region_size)


def build(planned: Planned, data: SpatioTemporalData, steps: int, out: Path) -> Built:
    """Train (or reuse) and export one model: a static width dense, a pruned one auto."""
    folder = out / f"{data.config.name}-{planned.name}"
    static, default = planned.width is not None, PruningConfig()
    path = trained_model(
        planned.backbone,
        data,
        1.0 if static else planned.budget,
        steps,
        folder,
        cost=planned.cost,
        options=planned.options,
        group_size=STATIC_GROUP_SIZE if static or planned.routed else default.group_size,
        region_size=default.region_size if static else pruned_region_size(planned, data.config.name),
        slimmable=planned.routed,
    )
    log = lambda line: print(line, file=sys.stderr)
    onnx_path = folder / ("model.dense.onnx" if static else "model.onnx")
    Exporter(path, ExportOptions(dense=static), log=log, data=data).run(onnx_path)
    trained, levels = load_model(path), {}
    if planned.routed:
        for width in trained.model_config.pruning.width_levels:
            levels[width] = folder / f"model.w{width:g}.onnx"
            Exporter(path, ExportOptions(width=width), log=log, data=data).run(levels[width])
    region_pruned = not static and not planned.routed
    return Built(
        planned,
        onnx_path,
        trained.metrics["cost"]["val"]["mean"] if region_pruned else None,
        trained.metrics["train_seconds"],
        levels,
    )


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


def timed_entries(built: list[Built], threads: int) -> list[tuple[Built, str, object]]:
    """(model, label, opened backend) of every artifact to time: one per model, but per
    run-time budget (ROUTED_BUDGETS) of a width-routed one, and each of its width levels."""
    entries = []
    for b in built:
        if not b.planned.routed:
            entries.append((b, b.planned.label, load(b.onnx, "ort", threads)))
            continue
        for budget in ROUTED_BUDGETS:
            backend = load(b.onnx, "ort", threads)
            backend.set_budget(budget)
            entries.append((b, f"routed {budget:g} {b.planned.cost}", backend))
        entries.extend(
            (b, f"level ×{width:g} {b.planned.cost}", load(path, "ort", threads)) for width, path in b.levels.items()
        )
    return entries


def window_errors(forecast: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(windows,) MAE of each validation window's forecast, both in the data's physical units."""
    return np.abs(forecast - targets).reshape(len(targets), -1).mean(axis=1)


def oracle(static: list[tuple[float, float, np.ndarray]]) -> list[tuple[float, float, float]]:
    """The hindsight oracle's (mean ms, MAE, FLOPs ratio) at mean-latency budgets halfway
    between the static models' latencies: per window the static model minimising error +
    price × ms, at the lowest price whose mean latency fits the budget. static: (mean ms,
    FLOPs ratio, per-window errors) of each static model of a family."""
    ms, flops = np.array([m for m, _, _ in static]), np.array([f for _, f, _ in static])
    errors = np.stack([e for _, _, e in static])  # (models, windows)
    windows = np.arange(errors.shape[1])
    scale = errors.mean() / ms.mean()
    frontier = []
    for price in np.concatenate([[0.0], np.geomspace(1e-4, 1e4, 400)]) * scale:
        choice = np.argmin(errors + price * ms[:, None], axis=0)
        frontier.append((float(ms[choice].mean()), float(errors[choice, windows].mean()), float(flops[choice].mean())))
    ordered = np.sort(ms)
    return [
        min((p for p in frontier if p[0] <= target), key=lambda p: p[1])
        for target in (ordered[1:] + ordered[:-1]) / 2
        if any(p[0] <= target for p in frontier)
    ]


def measure_dataset(
    built: list[Built], data: SpatioTemporalData, runs: int, threads: int, repeat: int
) -> list[ParetoPoint]:
    """Time every artifact of the dataset together (interleaved, each warm at its turn),
    score each on the validation windows from its own outputs, and set each against its
    family's full-width dense model and static curve; add each family's oracle, and on
    radar data the reference nowcast."""
    frames = data.normalizer.denormalize(
        torch.stack([data.val[i][0] for i in range(len(data.val))]).numpy()
    )  # physical, as the graphs take them
    targets = data.normalizer.denormalize(torch.stack([data.val[i][1] for i in range(len(data.val))]).numpy())
    entries = timed_entries(built, threads)
    times = interleaved_latency(
        [backend.run_one for _, _, backend in entries], frames, max(runs, len(frames)), repeat=repeat
    )
    label = f"{data.config.name} ({'synthetic' if data.is_synthetic else 'real'})"
    reference = {b.planned.family: i for i, (b, _, _) in enumerate(entries) if b.planned.width == 1.0}
    points, errors = [], []
    for (b, model, backend), ms in zip(entries, times):
        result = backend.run(frames)
        errors.append(window_errors(result.forecast, targets))
        ref = reference[b.planned.family]
        manifest, predicted = backend.manifest, backend.manifest.predicted
        predicted_ms = None
        if predicted and predicted["machine"]["threads"] == threads:
            predicted_ms = float(np.mean(np.asarray(predicted["per_branch"])[result.branch]))
        cost = b.cost_ratio
        if manifest.mode == "widths":  # each sample its branch's cost; at budget 1, the widest level's alone
            full = backend.budget == 1
            cost = float(
                manifest.budget["level_costs"][-1]
                if full
                else np.mean(np.asarray(manifest.budget["branch_costs"])[result.branch])
            )
        points.append(
            ParetoPoint(
                dataset=label,
                family=b.planned.family,
                model=model,
                val_mae=float(errors[-1].mean()),
                flops_ratio=float(result.flops.mean()) / entries[ref][2].manifest.dense_flops,
                cost_ratio=cost,
                ms_mean=float(np.mean(ms)),
                ms_p90=float(np.percentile(ms, 90)),
                speedup=float(np.mean(times[ref]) / np.mean(ms)),
                predicted_ms=predicted_ms,
                train_seconds=b.train_seconds,
                threads=threads,
                runtime={k: v for k, v in backend.describe().items() if k != "model"},
            )
        )
    for family, ref in reference.items():
        dense_ms = points[ref].ms_mean
        static = [
            (p.ms_mean, p.flops_ratio, error)
            for p, error in zip(points, errors)
            if p.family == family and p.model.startswith("static")
        ]
        for ms, mae, flops in oracle(static):
            points.append(
                ParetoPoint(label, family, ORACLE, mae, flops, None, ms, None, dense_ms / ms, threads=threads)
            )
    for point in points:
        if not point.model.startswith("static"):
            judge(point, [p for p in points if p.family == point.family and p.model.startswith("static")])
    return points + reference_points(data, label, frames, targets)


def reference_points(
    data: SpatioTemporalData, label: str, frames: np.ndarray, targets: np.ndarray
) -> list[ParetoPoint]:
    """On radar data, pysteps' extrapolation nowcast (bench/baselines.py) of the validation
    windows the models were scored on (`frames`, `targets`: physical units), its MAE as
    theirs (window_errors); elsewhere, or
    without pysteps, none. Its ms: motion estimation and extrapolation per window."""
    if data.config.name not in baselines.RADAR:
        return []
    nowcast = baselines.extrapolation(frames, data.frames_out)
    if nowcast is None:
        return []
    forecast, ms = nowcast
    mae = float(window_errors(forecast, targets).mean())
    return [
        ParetoPoint(
            label,
            REFERENCE,
            baselines.EXTRAPOLATION,
            mae,
            None,
            None,
            float(np.mean(ms)),
            float(np.percentile(ms, 90)),
            None,
        )
    ]


def plot(points: list[ParetoPoint], path: Path) -> None:
    """MAE vs measured latency, one panel per family: the static curve, the width-routed
    model's line over run-time budgets, its levels alone, the oracle and the region-pruned
    points; a reference nowcast a horizontal line at its MAE, its ms in the legend (tens of
    ms: as a point it would squeeze the models' sub-millisecond range into a corner)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot
    except ImportError:
        raise ConfigError("the pareto plots need matplotlib: pip install 'dynaprune-edge[plots]'") from None
    families = list(dict.fromkeys(p.family for p in points if p.family != REFERENCE))
    figure, axes = pyplot.subplots(1, len(families), figsize=(4.5 * len(families), 3.8), squeeze=False)
    for axis, family in zip(axes[0], families):
        mine = [p for p in points if p.family == family]
        static = sorted((p for p in mine if p.model.startswith("static")), key=lambda p: p.ms_mean)
        axis.plot([p.ms_mean for p in static], [p.val_mae for p in static], "o-", color="0.4", label="static widths")
        for p in static:
            axis.annotate(
                p.model.split()[-1], (p.ms_mean, p.val_mae), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
        lines = [(ORACLE, "", ":", "tab:green", "^", "oracle: best static per window (hindsight)")] + [
            (prefix, cost, style, color, marker, f"{name}, {cost}")
            for cost, marker in (("flops", "o"), ("ort-cpu", "D"))
            for prefix, style, color, name in (
                ("level", "--", "tab:blue", "slimmable levels alone"),
                ("routed", "-", "tab:red", "width-routed over budgets"),
            )
        ]
        for prefix, cost, style, color, marker, name in lines:
            line = sorted(
                (p for p in mine if p.model.startswith(prefix) and p.model.endswith(cost)), key=lambda p: p.ms_mean
            )
            if line:
                axis.plot(
                    [p.ms_mean for p in line],
                    [p.val_mae for p in line],
                    style,
                    marker=marker,
                    color=color,
                    markersize=4,
                    label=name,
                )
        budgets: dict[
            tuple[str, float], list
        ] = {}  # one label per network and MAE: budgets taking the same branches share it
        for p in mine:
            if p.model.startswith("routed"):
                budgets.setdefault((p.model.split()[-1], p.val_mae), []).append(p)
        for same in budgets.values():
            label = "/".join(p.model.split()[1] for p in same)
            axis.annotate(
                label,
                (same[0].ms_mean, same[0].val_mae),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
                color="tab:red",
            )
        for marker, cost in (("s", "flops"), ("D", "ort-cpu")):
            dynamic = [p for p in mine if p.model.startswith("dyna") and p.model.endswith(cost)]
            if dynamic:
                axis.scatter(
                    [p.ms_mean for p in dynamic],
                    [p.val_mae for p in dynamic],
                    marker=marker,
                    s=40,
                    zorder=3,
                    color="tab:purple",
                    label=f"region-pruned, {cost} budget",
                )
                for p in dynamic:
                    axis.annotate(
                        p.model.split()[1],
                        (p.ms_mean, p.val_mae),
                        textcoords="offset points",
                        xytext=(4, -10),
                        fontsize=7,
                    )
        for p in points:
            if p.family == REFERENCE:
                axis.axhline(
                    p.val_mae, linestyle="-.", color="tab:orange", label=f"{p.model}, {p.ms_mean:.1f} ms (1 thread)"
                )
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
    return rich_table(pareto_grid([p.as_dict() for p in points], title))


def bench(
    out: Path,
    steps: int,
    datasets: list[str],
    backbones: list[str],
    budgets: list[float],
    costs: list[str],
    large: bool,
    region_pruned: bool,
    threads: int,
    runs: int,
    repeat: int,
    as_json: bool,
    knmi: str | None,
    console: Console,
) -> list[ParetoPoint]:
    """`dpedge bench pareto`; rows into OUT/results.json, one plot per dataset OUT/pareto-DATASET.png."""
    configs, names = pareto_data(datasets, knmi), checked_backbones(backbones)
    if budgets and not region_pruned:
        raise ConfigError("--budget sets the region-pruned models' budgets: drop it or --no-region-pruned")
    budgets, costs = (budgets or [0.3, 0.5]) if region_pruned else [], costs or ["flops", "ort-cpu"]
    for budget in budgets:
        for cost in costs:
            PruningConfig(budget=budget, cost=cost)  # bad settings fail now, not after an hour of training
    if threads < 1:
        raise ConfigError(f"--threads must be ≥ 1, got {threads}")

    def rows():
        for config in configs:
            data = load_dataset(config)
            built = [
                b
                for planned in plan(config.name, names, budgets, costs, large)
                for b in feasible(
                    lambda planned=planned, data=data: [build(planned, data, steps, out)],
                    f"{planned.name} on {config.name}",
                )
            ]
            points = measure_dataset(built, data, runs, threads, repeat)
            plot(points, out / f"pareto-{config.name}.png")
            yield from points

    title = f"MAE vs measured latency: static widths vs Dyna-Pruner ({steps}-step models, onnxruntime CPU, {threads} thread)"
    points = report(
        rows(),
        as_json,
        out,
        console,
        lambda collected: pareto_table(collected, title),
        f"; plots in {out}/pareto-*.png",
        benchmark="pareto",
    )
    write_verdict(points, out, None if as_json else console)
    return points


def write_verdict(points: list[ParetoPoint], out: Path, console: Console | None) -> None:
    """Each dataset's verdict into OUT/verdict.txt, and printed on `console` (None: not)."""
    lines = [
        line
        for dataset in dict.fromkeys(p.dataset for p in points)
        for line in verdict([p for p in points if p.dataset == dataset])
    ]
    atomic_write_text("\n".join(lines) + "\n", out / "verdict.txt")
    if console is not None:
        console.print("[bold]verdict[/bold] (this machine, onnxruntime CPU, measured latencies):")
        for line in lines:
            console.print(f"  {line}", soft_wrap=True)
