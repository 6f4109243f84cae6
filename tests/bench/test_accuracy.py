"""The dense-versus-pruned comparison behind `dpedge demo` and `dpedge bench accuracy`."""

import json

import pytest
from rich.console import Console

from dynaprune_edge.bench.accuracy import Comparison, compare, comparison_table
from dynaprune_edge.data import DataConfig
from dynaprune_edge.training.config import TrainConfig


def rendered(rows: list[Comparison]) -> str:
    console = Console(width=200, record=True)
    console.print(comparison_table(rows, "t"))
    return console.export_text()


def row(dataset: str, dense_mae: float, pruned_mae: float) -> Comparison:
    return Comparison(
        "simvp",
        dataset,
        "mm/h",
        persistence_mae=3.0,
        dense_mae=dense_mae,
        pruned_mae=pruned_mae,
        flops_ratio=0.31,
        flops_ratio_max=0.44,
        data_kept=0.6,
        seconds=12.0,
    )


@pytest.mark.slow
def test_compare_trains_both_models_with_the_same_budget_and_tabulates(tmp_path):
    data = DataConfig("taxibj", synthetic_frames=120)
    row = compare("simvp", data, 0.5, TrainConfig(batch_size=8), tmp_path, steps=12)
    dense = json.loads((tmp_path / "simvp-taxibj-dense" / "metrics.json").read_text())
    pruned = json.loads((tmp_path / "simvp-taxibj-pruned" / "metrics.json").read_text())
    assert dense["steps"] == pruned["steps"] >= 12
    assert dense["flops_ratio_mean"] == 1.0 and pruned["budget"] == 0.5
    assert row.dense_mae == dense["val_mae"] and row.pruned_mae == pruned["val_mae"]
    assert row.persistence_mae == dense["val_mae_persistence"] > 0
    text = rendered([row])
    assert "taxibj (synthetic)" in text and f"{row.flops_ratio:.3f}" in text and f"{row.flops_ratio_max:.3f}" in text
    assert row.flops_ratio_max == pruned["cost"]["val"]["max"] <= pruned["max_cost"] + 1e-6


def test_the_table_and_the_json_say_whether_pruning_cost_accuracy():
    """A pruned model worse than dense shows a positive Δ MAE with its sign, a better one a
    negative one, in the table and in results.json's relative_difference."""
    worse, better = row("knmi (real)", 2.0, 2.5), row("taxibj (synthetic)", 4.0, 3.6)
    lines = {line.split("│")[2].strip(): line for line in rendered([worse, better]).splitlines() if line.count("│") > 3}
    assert "+25.0 %" in lines["knmi (real)"] and "-10.0 %" in lines["taxibj (synthetic)"]
    assert "+25.0 %" not in lines["taxibj (synthetic)"]
    assert json.loads(json.dumps(worse.as_dict()))["relative_difference"] == 0.25
    assert better.as_dict()["relative_difference"] < 0
