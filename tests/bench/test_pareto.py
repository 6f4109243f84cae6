"""`dpedge bench pareto`: what it compares, how a dynamic point is set against the static
curve, and its plot."""

from __future__ import annotations

import numpy as np
import pytest

from dynaprune_edge.bench import pareto
from dynaprune_edge.bench.pareto import ParetoPoint, Planned, plan, static_curve_at
from dynaprune_edge.data import DataConfig, load_dataset


def test_the_plan_is_the_static_curve_and_the_budgets_per_family():
    planned = plan("taxibj", ["simvp", "vit"], [0.3, 0.5], ["flops", "ort-cpu"], large=True)
    by_family = {}
    for p in planned:
        by_family.setdefault(p.family, []).append(p)
    assert set(by_family) == {"simvp", "simvp-large", "vit"}
    simvp = by_family["simvp"]
    assert [p.width for p in simvp if p.width] == [0.25, 0.5, 0.75, 1.0]
    assert {(p.budget, p.cost) for p in simvp if p.budget and not p.routed} == {
        (0.3, "flops"),
        (0.3, "ort-cpu"),
        (0.5, "flops"),
        (0.5, "ort-cpu"),
    }
    assert all({p.cost for p in models if p.routed} == {"flops", "ort-cpu"} for models in by_family.values()), (
        "a width-routed model per cost"
    )
    quarter = next(p for p in simvp if p.width == 0.25)
    assert (quarter.options["spatial_channels"], quarter.options["temporal_channels"]) == (
        4,
        16,
    )  # every layer a quarter
    large = next(p for p in by_family["simvp-large"] if p.width == 0.5)
    assert (large.options["spatial_channels"], large.options["temporal_channels"]) == (16, 64)
    assert {p.width for p in by_family["vit"] if p.width} == {0.5, 1.0}
    assert {p.budget for p in by_family["vit"] if p.budget and not p.routed} == {0.3}
    assert "simvp-large" not in {p.family for p in plan("nycbike", ["simvp"], [0.3], ["flops"], large=True)}
    assert "simvp-large" in {
        p.family for p in plan("knmi", ["simvp"], [0.3], ["flops"], large=True)
    }  # the moonshot's dataset
    assert len({p.name for p in planned}) == len(planned), "every model has its own folder"


def test_without_budgets_no_backbone_gets_a_region_pruned_model():
    planned = plan("knmi", ["simvp", "convlstm"], [], ["ort-cpu"], large=True)
    assert not [p for p in planned if p.budget and not p.routed]
    assert {p.family for p in planned if p.routed} == {"simvp", "simvp-large", "convlstm"}


def test_finer_regions_on_the_small_city_grid_leave_a_vit_at_its_patch_size():
    """NYC's 10×20 grid gets 4-pixel regions, but a ViT's regions are its tokens: a pruned
    ViT at another region size than its patch cannot be built at all."""
    pruned = {
        p.backbone: p
        for p in plan("nycbike", ["simvp", "vit"], [0.3], ["flops"], large=False)
        if p.budget and not p.routed
    }
    assert pareto.pruned_region_size(pruned["simvp"], "nycbike") == 4
    assert pareto.pruned_region_size(pruned["vit"], "nycbike") == 8  # ViTOptions' patch_size
    assert pareto.pruned_region_size(pruned["simvp"], "knmi") == 8


def test_a_dynamic_point_is_judged_against_the_static_curve_at_its_own_latency():
    curve = [(1.0, 0.30), (2.0, 0.20), (4.0, 0.10)]
    assert static_curve_at(curve, 1.5) == pytest.approx(0.25)
    assert static_curve_at(curve, 3.0) == pytest.approx(0.15)
    assert static_curve_at(curve, 0.5) is None and static_curve_at(curve, 5.0) is None  # outside: no claim
    below = ParetoPoint("d", "simvp", "dyna 0.3 flops", 0.14, 0.3, 0.3, 3.0, 3.5, 1.3, static_mae_at_ms=0.15)
    above = ParetoPoint("d", "simvp", "dyna 0.3 flops", 0.16, 0.3, 0.3, 3.0, 3.5, 1.3, static_mae_at_ms=0.15)
    assert below.beats_static and not above.beats_static and below.as_dict()["beats_static"] is True


def test_a_point_faster_than_every_static_model_is_below_the_curve_only_if_it_beats_one():
    static = [
        ParetoPoint("d", "vit", f"static ×{w:g}", mae, w * w, None, ms, ms, 1.0 / w)
        for w, mae, ms in ((0.5, 0.22, 1.0), (1.0, 0.21, 2.0))
    ]
    better = ParetoPoint("d", "vit", "dyna 0.3 ort-cpu", 0.215, 0.2, 0.3, 0.5, 0.6, 4.0)
    worse = ParetoPoint("d", "vit", "dyna 0.3 ort-cpu", 0.25, 0.2, 0.3, 0.5, 0.6, 4.0)
    for point in (better, worse):
        pareto.judge(point, static)
        assert point.static_mae_at_ms is None  # no static model is this fast
    assert better.dominates == ["static ×0.5"] and better.beats_static is True
    assert worse.dominates == [] and worse.beats_static is None, (
        "a narrower static model might do better still: no claim"
    )


def test_the_verdict_names_what_to_ship_at_every_latency_target():
    def point(model, mae, ms):
        return ParetoPoint("d", "simvp", model, mae, 0.5, None, ms, ms, 1.0)

    points = [
        point("static ×0.5", 2.0, 1.0),
        point("static ×1", 1.0, 3.0),
        point("routed 0.5 ort-cpu", 1.5, 2.0),
        point("routed 0.3 ort-cpu", 3.0, 0.5),
        point("routed 0.4 ort-cpu", 2.5, 1.5),
        point(pareto.ORACLE, 0.5, 1.0),
        point("routed 0.7 ort-cpu", 1.5, 2.5),
    ]  # as accurate as routed 0.5, slower: never the one to ship
    assert (
        pareto.verdict(points)
        == [
            "d, simvp, latency target 0.500–1.000 ms: ship routed 0.3 ort-cpu (MAE 3 at 0.500 ms): no static model is this fast",
            "d, simvp, latency target 1.000–2.000 ms: ship static ×0.5 (MAE 2): no dynamic artifact beats it",  # the oracle is no artifact
            "d, simvp, latency target 2.000–3.000 ms: ship routed 0.5 ort-cpu (MAE 1.5 at 2.000 ms), 25.0 % below the best static model that fast (static ×0.5, 2)",
            "d, simvp, latency target 3.000 ms or more: ship static ×1 (MAE 1): no dynamic artifact beats it",
        ]
    )


def test_the_oracle_picks_per_window_the_best_static_model_under_a_mean_latency():
    """Two static models, each the better one on half of the windows: at the latency
    halfway between them, the oracle runs the wide one where it helps most."""
    narrow = np.array([1.0, 1.0, 1.0, 1.0])
    wide = np.array([0.2, 0.3, 0.9, 0.95])
    ((ms, mae, flops),) = pareto.oracle([(1.0, 0.25, narrow), (3.0, 1.0, wide)])
    assert ms == pytest.approx(2.0) and flops == pytest.approx(0.625)  # the wide model on the two windows it helps most
    assert mae == pytest.approx((0.2 + 0.3 + 1.0 + 1.0) / 4)
    assert mae < static_curve_at([(1.0, narrow.mean()), (3.0, wide.mean())], ms)


@pytest.mark.slow
def test_tiny_models_are_trained_exported_timed_and_plotted(tmp_path):
    """Tiny SimVPs end to end: two static widths, a region-pruned and a width-routed model
    (a line over run-time budgets, and its levels alone), timed together, the oracle, the
    plot and the verdict."""
    import matplotlib.image

    data = load_dataset(DataConfig("taxibj", synthetic_frames=120, size=16))
    options = {"spatial_channels": 16, "temporal_channels": 16}
    planned = [
        Planned("simvp", "simvp", {"spatial_channels": 8, "temporal_channels": 8}, width=0.5),
        Planned("simvp", "simvp", options, width=1.0),
        Planned("simvp", "simvp", options, budget=0.5),
        Planned("simvp", "simvp", options, budget=0.5, routed=True),
    ]
    built = [pareto.build(p, data, 3, tmp_path) for p in planned]
    points = pareto.measure_dataset(built, data, runs=8, threads=1, repeat=1)
    by_model = {p.model: p for p in points}
    half, full, dynamic = by_model["static ×0.5"], by_model["static ×1"], by_model["dyna 0.5 flops"]
    assert full.speedup == pytest.approx(1.0) and full.flops_ratio == pytest.approx(1.0)
    assert 0.2 < half.flops_ratio < 0.3  # half of every width: a quarter of the FLOPs
    assert (
        dynamic.cost_ratio is not None and dynamic.cost_ratio < 1.0
    )  # its FLOPs follow the tile policy export timed fastest
    routed = [by_model[f"routed {budget:g} flops"] for budget in pareto.ROUTED_BUDGETS]
    assert [p.cost_ratio for p in routed] == sorted(p.cost_ratio for p in routed), "a higher budget spent less"
    assert routed[0].flops_ratio < 1.0  # budget 1: the widest level, the router not run
    assert routed[-1].flops_ratio == pytest.approx(1.0) and routed[-1].cost_ratio == pytest.approx(1.0)
    levels = [by_model[f"level ×{width:g} flops"] for width in (0.25, 0.5, 0.75, 1.0)]
    assert levels[-1].val_mae == pytest.approx(routed[-1].val_mae, rel=1e-4), "budget 1 is the widest level"
    assert [p.flops_ratio for p in levels] == sorted(p.flops_ratio for p in levels)
    assert sum(p.model == pareto.ORACLE for p in points) == 1  # halfway between the two static models
    assert all(p.ms_mean > 0 and (p.ms_p90 is None or p.ms_p90 >= 0) for p in points)
    assert all((p.train_seconds is None) == (p.model == pareto.ORACLE) for p in points), (
        "every trained model says how long it trained"
    )
    assert half.static_mae_at_ms is None, "static points are the curve, not judged against it"
    lines = pareto.verdict(points)
    assert lines and all("ship" in line for line in lines) and "or more: ship" in lines[-1]
    png = tmp_path / "pareto-taxibj.png"
    pareto.plot(points, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(png).shape
    assert (height, width) == (int(3.8 * 120), int(4.5 * 120))
    assert not list(tmp_path.glob(".*.tmp"))
