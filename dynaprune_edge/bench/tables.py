"""The benchmarks' tables, built from the rows as their results files hold them (the dicts of
each row's `as_dict`): the same columns and number formats for the terminal (`rich_table`)
and for docs/benchmarks.md (bench/render.py), so the page shows what the terminal showed.

Torch-free, like the renderer that reads results files with it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from rich.table import Table

ORACLE = "oracle (hindsight)"
REFERENCE = "reference"
"""The family of reference nowcasts: a row of the table and a line on every family's panel,
set against no static curve and never a candidate of the verdict."""


@dataclass
class Grid:
    """A table: its columns (left-aligned ones named in `left`, the others right-aligned),
    its rows of formatted cells, and the title and caption the terminal prints."""

    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    left: frozenset[str] = frozenset()
    title: str = ""
    caption: str = ""


def rich_table(grid: Grid) -> Table:
    table = Table(title=grid.title or None, caption=grid.caption or None)
    for column in grid.columns:
        table.add_column(column, justify="left" if column in grid.left else "right")
    for row in grid.rows:
        table.add_row(*row)
    return table


def optional(value: float | None, format: Callable[[float], str]) -> str:
    """ "–" for None, else `format(value)`."""
    return "–" if value is None else format(value)


ACCURACY_CAPTION = (
    "MAE on the validation split in the unit shown; FLOPs = pruned/dense, mean and max over validation samples"
)


def accuracy_grid(rows: Iterable[dict], title: str = "") -> Grid:
    """`bench accuracy`: one row per backbone and dataset (bench.accuracy.Comparison)."""
    grid = Grid(
        [
            "backbone",
            "dataset",
            "persistence MAE",
            "dense MAE",
            "pruned MAE",
            "Δ MAE",
            "FLOPs",
            "FLOPs max",
            "data kept",
            "train s",
            "unit",
        ],
        left=frozenset({"backbone", "dataset", "unit"}),
        title=title,
        caption=ACCURACY_CAPTION,
    )
    for row in rows:
        grid.rows.append(
            [
                row["backbone"],
                row["dataset"],
                f"{row['persistence_mae']:.4g}",
                f"{row['dense_mae']:.4g}",
                f"{row['pruned_mae']:.4g}",
                f"{100 * row['relative_difference']:+.1f} %",
                f"{row['flops_ratio']:.3f}",
                f"{row['flops_ratio_max']:.3f}",
                f"{row['data_kept']:.3f}",
                f"{row['seconds']:.0f}",
                row["unit"],
            ]
        )
    return grid


PARETO_CAPTION = (
    "ms: measured mean per validation sample; speedup and FLOPs against the family's full-width dense model; "
    "static at same ms: the static curve's MAE at the point's latency (interpolated); predicted: the cost table's (models priced in ms); "
    "routed B COST: the width-routed model priced on COST at run-time budget B; level ×W COST: its width level W alone; oracle: the best static model per "
    "window in hindsight (its ms: the mean of the measured latencies it picked); train s: the model's training wall-clock here; "
    "reference: pysteps' optical-flow extrapolation, no model (radar data: ms of motion field and extrapolation per window, 1 thread)"
)


def pareto_grid(points: Iterable[dict], title: str = "") -> Grid:
    """`bench pareto` and `dpedge demo`: one row per artifact (bench.pareto.ParetoPoint)."""
    grid = Grid(
        [
            "dataset",
            "family",
            "model",
            "val MAE",
            "FLOPs",
            "cost",
            "ms mean/p90",
            "speedup",
            "static MAE at same ms",
            "predicted ms",
            "train s",
        ],
        left=frozenset({"dataset", "family", "model"}),
        title=title,
        caption=PARETO_CAPTION,
    )
    for p in points:
        if p["static_mae_at_ms"] is not None:
            static = f"{p['static_mae_at_ms']:.4g} ({'below' if p['beats_static'] else 'above'})"
        else:
            static = f"– (faster and better than {p['dominates'][0]})" if p["dominates"] else "–"
        predicted = (
            "–"
            if p["predicted_ms"] is None
            else f"{p['predicted_ms']:.3f} ({100 * (p['predicted_ms'] / p['ms_mean'] - 1):+.0f} %)"
        )
        grid.rows.append(
            [
                p["dataset"],
                p["family"],
                p["model"],
                f"{p['val_mae']:.4g}",
                optional(p["flops_ratio"], lambda v: f"{v:.3f}"),
                optional(p["cost_ratio"], lambda v: f"{v:.3f}"),
                f"{p['ms_mean']:.3f}/" + optional(p["ms_p90"], lambda v: f"{v:.3f}"),
                optional(p["speedup"], lambda v: f"{v:.2f}×"),
                static,
                predicted,
                optional(p["train_seconds"], lambda v: f"{v:.0f}"),
            ]
        )
    return grid


def verdict(points: list) -> list[str]:
    """What to ship, per family, for every latency target on this machine: the most accurate
    artifact at most that slow, and by how much it beats the best static model that fast
    (the oracle is not an artifact). The choice changes only at an artifact's measured ms,
    so the targets are those, merged into ranges where the choice (and the static model it
    is set against) stays the same. points: objects with bench.pareto.ParetoPoint's
    attributes (dataset, family, model, val_mae, ms_mean), of one dataset."""
    lines = []
    for family in dict.fromkeys(p.family for p in points if p.family != REFERENCE):
        mine = [p for p in points if p.family == family and p.model != ORACLE]
        ranges: list[list] = []  # [from ms, best, best static or None]
        for target in sorted({p.ms_mean for p in mine}):
            fits = [p for p in mine if p.ms_mean <= target]
            statics = [p for p in fits if p.model.startswith("static")]
            # the most accurate; of equally accurate ones (one network at several budgets), the fastest
            best = min(fits, key=lambda p: (p.val_mae, p.ms_mean))
            best_static = min(statics, key=lambda p: p.val_mae, default=None)
            if not ranges or (ranges[-1][1], ranges[-1][2]) != (best, best_static):
                ranges.append([target, best, best_static])
        for i, (start, best, best_static) in enumerate(ranges):
            end = f"{ranges[i + 1][0]:.3f}" if i + 1 < len(ranges) else None
            if end == f"{start:.3f}":
                continue  # a choice for less than a microsecond of target: within the timing noise
            span = f"{start:.3f}–{end} ms" if end else f"{start:.3f} ms or more"
            if best_static is None:
                choice = f"{best.model} (MAE {best.val_mae:.4g} at {best.ms_mean:.3f} ms): no static model is this fast"
            elif best is best_static:
                choice = f"{best.model} (MAE {best.val_mae:.4g}): no dynamic artifact beats it"
            else:
                gain = 100 * (1 - best.val_mae / best_static.val_mae)
                choice = (
                    f"{best.model} (MAE {best.val_mae:.4g} at {best.ms_mean:.3f} ms), {gain:.1f} % below the best static model that fast "
                    f"({best_static.model}, {best_static.val_mae:.4g})"
                )
            lines.append(f"{points[0].dataset}, {family}, latency target {span}: ship {choice}")
    return lines


LATENCY_CAPTION = (
    "ms per sample at batch 1; speedup = mean dense / mean sparse latency; efficiency = speedup × FLOPs ratio; "
    "overhead = profiled share of router and routing nodes; router = the router graph alone / sparse latency; "
    "predicted = mean sparse latency the cost table predicts (models priced in ms), its error against the measured mean; "
    "single/split = mean ms of the sparse export as one graph and split into router and branch graphs (* the layout the export chose)"
)


def latency_grid(rows: Iterable[dict], title: str = "") -> Grid:
    """`bench latency`: one row per model and thread count (bench.latency.LatencyRow)."""
    grid = Grid(
        [
            "backbone",
            "dataset",
            "budget",
            "threads",
            "export",
            "dense p50/p90",
            "sparse p50/p90",
            "speedup",
            "FLOPs ratio",
            "efficiency",
            "overhead",
            "router",
            "single/split",
            "predicted",
        ],
        left=frozenset({"backbone", "dataset", "export"}),
        title=title,
        caption=LATENCY_CAPTION,
    )
    for row in rows:
        predicted = (
            "–"
            if row["predicted_ms"] is None
            else f"{row['predicted_ms']:.3f} ({100 * row['prediction_error']:+.0f} %)"
        )
        grid.rows.append(
            [
                row["backbone"],
                row["dataset"],
                f"{row['budget']:g} {row['cost']}",
                str(row["threads"]),
                row["mode"],
                f"{row['dense_ms_p50']:.3f}/{row['dense_ms_p90']:.3f}",
                f"{row['sparse_ms_p50']:.3f}/{row['sparse_ms_p90']:.3f}",
                f"{row['speedup']:.2f}×",
                f"{row['flops_ratio']:.3f}",
                f"{row['efficiency']:.2f}",
                f"{100 * row['overhead_share']:.1f} %",
                f"{100 * row['router_share']:.1f} %",
                "/".join(
                    f"{ms:.3f}{'*' if layout == row['layout'] else ''}"
                    for layout, ms in (("single", row["single_ms_mean"]), ("split", row["split_ms_mean"]))
                ),
                predicted,
            ]
        )
    return grid


def training_grid(rows: Iterable[dict], title: str = "") -> Grid:
    """`bench training`: one row per dataset, model and method (bench.training.Row)."""
    grid = Grid(
        [
            "dataset",
            "windows",
            "model",
            "method",
            "final MAE",
            "s to target",
            "speedup",
            "s to stay",
            "speedup",
            "pruned",
            "samples",
            "scoring s",
            "train s",
        ],
        left=frozenset({"dataset", "model", "method"}),
        title=title,
    )
    seconds = lambda value: "never" if value is None else f"{value:.1f}"
    times = lambda value: optional(value, lambda v: f"{v:.2f}×")
    for r in rows:
        grid.rows.append(
            [
                r["dataset"],
                str(r["windows"]),
                r["model"],
                r["method"],
                f"{r['final_mae']:.4g}",
                seconds(r["seconds_to_target"]),
                times(r["speedup"]),
                seconds(r["seconds_to_stay"]),
                times(r["speedup_to_stay"]),
                f"{r['pruned_fraction']:.2f}",
                str(r["samples_seen"]),
                f"{r['scoring_seconds']:.2f}",
                f"{r['train_seconds']:.1f}",
            ]
        )
    return grid


def training_processes_line(processes: list[dict], frames: int | None) -> str:
    """`bench training`'s 1 against 2 processes, in a line."""
    one, two = processes
    data = f"taxibj ({frames} frames)" if frames else "taxibj (synthetic, the larger size)"
    return (
        f"{data}, SimVP dense, 1 epoch: {one['windows_per_second']:.1f} windows/s on 1 process, "
        f"{two['windows_per_second']:.1f} on 2 ({two['windows_per_second'] / one['windows_per_second']:.2f}×)"
    )


ORIN_CAPTION = (
    "published: measured by the source (see --json for each row's source); emulated: predicted here, never measured"
)


def orin_grid(rows: Iterable[dict], title: str = "", caption: str = ORIN_CAPTION) -> Grid:
    """`bench orin`: published against emulated ms, one row per network, precision and power
    mode (bench.orin.Row)."""
    columns = [
        "model",
        "precision",
        "mode",
        "role",
        "GFLOPs",
        "kernels",
        "published ms",
        "emulated ms",
        "error",
        "fitted ms",
        "error",
    ]
    grid = Grid(columns, left=frozenset({"model", "precision", "mode", "role"}), title=title, caption=caption)
    for r in rows:
        grid.rows.append(
            [
                r["model"],
                r["precision"],
                r["power_mode"],
                r["role"],
                f"{r['gflops']:.1f}",
                str(r["kernels"]),
                f"{r['published_ms']:.3f}",
                f"{r['emulated_ms']:.3f}",
                f"{100 * r['error']:+.0f} %",
                f"{r['fitted_ms']:.3f}",
                "(fitted on it)" if r["role"] == "fit" else f"{100 * r['fitted_error']:+.0f} %",
            ]
        )
    return grid


ORIN_SUMMARIES = (
    ("as_is_all_rows", "constants as they stand, every row"),
    ("as_is_check_rows", "constants as they stand, check rows"),
    ("fitted_check_rows", "fitted constants, check rows only"),
)


def orin_summary_lines(result: dict) -> list[str]:
    """`bench orin`'s error summaries: median |error| and the worst ratio, against its targets."""
    return [
        f"{name}: median |error| {100 * result[key]['median_abs_error']:.0f} %, worst {result[key]['worst_ratio']:.2f}× "
        f"over {result[key]['rows']} rows (target ≤ 25 %, ≤ 2×)"
        for key, name in ORIN_SUMMARIES
    ]


def orin_constants_line(result: dict) -> str:
    """`bench orin`'s fitted constants, and the emulator's as they stand."""
    return (
        "fitted on "
        + ", ".join(f"{r['model']} {r['precision']}" for r in result["rows"] if r["role"] == "fit")
        + ": "
        + ", ".join(f"{k} {v:.3g}" for k, v in result["fitted"].items())
        + "; as they stand: "
        + ", ".join(f"{k} {v:.3g}" for k, v in result["constants"].items())
    )


def orin_calibrated_grid(calibrated: list[dict], title: str = "") -> Grid:
    """`bench orin`'s MobileNetV2 emulated from first principles and from a recorded profile."""
    first = calibrated[0]
    grid = Grid(
        ["mode", "first principles ms", "kernels", "calibrated ms", "calibrated / first principles"],
        left=frozenset({"mode"}),
        title=title,
        caption=f"calibrated: TensorRT's per-layer profile measured on {first['measured_on']} "
        f"({first['measured_ms']:.3f} ms there, {first['layers']} layers), scaled by roofline ratios; "
        "no published Orin figure to check either against",
    )
    for row in calibrated:
        grid.rows.append(
            [
                row["power_mode"],
                f"{row['first_principles_ms']:.3f}",
                str(row["kernels"]),
                f"{row['calibrated_ms']:.3f}",
                f"{row['calibrated_ms'] / row['first_principles_ms']:.2f}",
            ]
        )
    return grid


LAYOUT_MASKS_COLUMNS = [
    "channels",
    "map",
    "no mask",
    "broadcast mask",
    "blocked mask",
    "broadcast overhead",
    "blocked overhead",
]


def layout_masks_title(layers: int, frames: int) -> str:
    return f"Masks: {layers} masked 3×3 convolutions + ReLU on {frames} rows, onnxruntime CPU, 1 thread (median ms)"


def layout_widths_title(widest: int) -> str:
    return f"Widths: the same chain unmasked, time (and FLOPs) as a share of the {widest}-channel chain's"


def layout_masks_grid(rows: Iterable[dict], title: str = "") -> Grid:
    """`bench layout`'s masks: median ms of the chain unmasked and masked two ways (bench.layout.MaskRow)."""
    grid = Grid(list(LAYOUT_MASKS_COLUMNS), title=title)
    for row in rows:
        grid.rows.append(
            [
                str(row["channels"]),
                f"{row['height']}×{row['width']}",
                f"{row['none_ms']:.4f}",
                f"{row['broadcast_ms']:.4f}",
                f"{row['blocked_ms']:.4f}",
                f"{row['broadcast_overhead']:+.0%}",
                f"{row['blocked_overhead']:+.0%}",
            ]
        )
    return grid


def layout_widths_grid(rows: list[dict], title: str = "") -> Grid:
    """`bench layout`'s widths: each width's ms, its time and (in brackets) FLOPs as a share
    of the widest chain's (bench.layout.WidthRow)."""
    widths = list(rows[0]["ms"]) if rows else []
    grid = Grid(["map", *(f"{channels} ch" for channels in widths)], title=title)
    for row in rows:
        grid.rows.append(
            [
                f"{row['height']}×{row['width']}",
                *(f"{row['ms'][c]:.3f} ms: {row['time_share'][c]:.2f} ({row['flops_share'][c]:.2f})" for c in widths),
            ]
        )
    return grid


def gpu_check_grid(rows: list[dict], title: str = "", caption: str = "", columns: list[str] | None = None) -> Grid:
    """`bench gpu-check`: one row per branch, every column of the rows (or `columns`), floats
    to 4 decimals."""
    columns = [key for key in rows[0] if key != "branch"] if columns is None else columns
    grid = Grid(["branch", *(column.replace("_", " ") for column in columns)], title=title, caption=caption)
    for row in rows:
        grid.rows.append(
            [
                str(row["branch"]),
                *(f"{row[c]:.4f}" if isinstance(row.get(c), float) else str(row.get(c, "–")) for c in columns),
            ]
        )
    return grid
