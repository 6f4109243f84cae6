"""The dense-versus-pruned comparison behind `dpedge demo` and `dpedge bench accuracy`."""

import json

from rich.console import Console

from dynaprune_edge.data import DataConfig
from dynaprune_edge.experiments import compare, comparison_table
from dynaprune_edge.training.trainer import TrainConfig


def test_compare_trains_both_models_with_the_same_budget_and_tabulates(tmp_path):
    data = DataConfig("taxibj", synthetic_frames=120)
    row = compare("simvp", data, 0.5, TrainConfig(batch_size=8), tmp_path, steps=12)
    dense = json.loads((tmp_path / "simvp-taxibj-dense" / "metrics.json").read_text())
    pruned = json.loads((tmp_path / "simvp-taxibj-pruned" / "metrics.json").read_text())
    assert dense["steps"] == pruned["steps"] >= 12
    assert dense["flops_ratio_mean"] == 1.0 and pruned["target_flops"] == 0.5
    assert row.dense_mae == dense["val_mae"] and row.pruned_mae == pruned["val_mae"]
    assert row.persistence_mae == dense["val_mae_persistence"] > 0
    assert row.relative_difference == (row.pruned_mae - row.dense_mae) / row.dense_mae
    console = Console(width=200, record=True)
    console.print(comparison_table([row], "t"))
    text = console.export_text()
    assert "taxibj (synthetic)" in text and f"{row.flops_ratio:.3f}" in text
