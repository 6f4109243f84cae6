"""What more than one command prints: the console, and a trained model's metrics (train
prints them when it ends, info when asked)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.table import Table

console = Console(width=None if sys.stdout.isatty() else 160)  # tables stay whole in logs and pipes


def show_metrics(metrics: dict) -> None:
    from dynaprune_edge.flops import format_flops

    console.print(
        f"{metrics['backbone']} on {metrics['dataset']}: val MAE {metrics['val_mae']:.4g} {metrics['unit']}, "
        f"MSE {metrics['val_mse']:.4g}; FLOPs {format_flops(metrics['flops_sparse_mean'])} of "
        f"{format_flops(metrics['flops_dense'])} dense (ratio {metrics['flops_ratio_mean']:.3f}), "
        f"data kept {metrics['data_kept_mean']:.3f}; {metrics['epochs']} epochs in {metrics['train_seconds']:.0f} s"
    )
    if "max_cost" in metrics:

        def spread(c: dict) -> str:
            return f"mean {c['mean']:.3f}, p10/p50/p90 {c['p10']:.3f}/{c['p50']:.3f}/{c['p90']:.3f}, max {c['max']:.3f}"

        console.print(
            f"cost ratio on {metrics['cost_target']} (budget {metrics['budget']}, cap {metrics['max_cost']:.3f}): "
            + "; ".join(f"{split} {spread(cost)}" for split, cost in metrics["cost"].items())
        )
    if "widths" in metrics:
        show_widths(metrics["widths"], metrics["unit"])
    if "budgets" in metrics:
        show_budgets(metrics["budgets"], metrics["unit"], metrics["cost_target"])
    console.print(f"[dim]{metrics['flops_convention']}[/dim]")


def show_widths(rows: list[dict], unit: str) -> None:
    """A slimmable network's width levels, each alone as a static network."""
    table = Table(title="width levels, each run alone", caption=f"every region, no router; MAE in {unit}")
    tested = all("test_mae" in row for row in rows)
    for column in ("width", "FLOPs ratio", "val MAE", *(["test MAE"] if tested else [])):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row['width']:g}",
            f"{row['flops_ratio']:.3f}",
            f"{row['val_mae']:.5g}",
            *([f"{row['test_mae']:.5g}"] if tested else []),
        )
    console.print(table)


def show_budgets(rows: list[dict], unit: str, target: str) -> None:
    """A width-routed model at several run-time budgets: one network, one knob."""
    table = Table(
        title="run-time budgets, one model",
        caption=f"cost: mean ratio to dense on {target}, router included; MAE in {unit}; "
        "share: the validation windows each branch took (persistence, then each width level)",
    )
    for column in ("budget", "cost", "FLOPs ratio", "val MAE", "share per branch"):
        table.add_column(column, justify="right")
    for row in rows:
        shares = " ".join(f"{share:.2f}" for share in row["branch_share"])
        table.add_row(
            f"{row['budget']:g}", f"{row['cost']:.3f}", f"{row['flops_ratio']:.3f}", f"{row['val_mae']:.5g}", shares
        )
    console.print(table)
