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
    assert {(p.budget, p.cost) for p in simvp if p.budget} == {(0.3, "flops"), (0.3, "ort-cpu"), (0.5, "flops"), (0.5, "ort-cpu")}
    quarter = next(p for p in simvp if p.width == 0.25)
    assert (quarter.options["spatial_channels"], quarter.options["temporal_channels"]) == (4, 16)  # every layer a quarter
    large = next(p for p in by_family["simvp-large"] if p.width == 0.5)
    assert (large.options["spatial_channels"], large.options["temporal_channels"]) == (16, 64)
    assert {p.width for p in by_family["vit"] if p.width} == {0.5, 1.0} and {p.budget for p in by_family["vit"] if p.budget} == {0.3}
    assert "simvp-large" not in {p.family for p in plan("knmi", ["simvp"], [0.3], ["flops"], large=True)}
    assert len({p.name for p in planned}) == len(planned), "every model has its own folder"


def test_finer_regions_on_the_small_city_grid_leave_a_vit_at_its_patch_size():
    """NYC's 10×20 grid gets 4-pixel regions, but a ViT's regions are its tokens: a pruned
    ViT at another region size than its patch cannot be built at all."""
    pruned = {p.backbone: p for p in plan("nycbike", ["simvp", "vit"], [0.3], ["flops"], large=False) if p.budget}
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
    static = [ParetoPoint("d", "vit", f"static ×{w:g}", mae, w * w, None, ms, ms, 1.0 / w) for w, mae, ms in ((0.5, 0.22, 1.0), (1.0, 0.21, 2.0))]
    better = ParetoPoint("d", "vit", "dyna 0.3 ort-cpu", 0.215, 0.2, 0.3, 0.5, 0.6, 4.0)
    worse = ParetoPoint("d", "vit", "dyna 0.3 ort-cpu", 0.25, 0.2, 0.3, 0.5, 0.6, 4.0)
    for point in (better, worse):
        pareto.judge(point, static)
        assert point.static_mae_at_ms is None  # no static model is this fast
    assert better.dominates == ["static ×0.5"] and better.beats_static is True
    assert worse.dominates == [] and worse.beats_static is None, "a narrower static model might do better still: no claim"


def test_tiny_models_are_trained_exported_timed_and_plotted(tmp_path):
    """Three tiny SimVPs end to end: two static widths and one pruned model, timed together."""
    import matplotlib.image

    data = load_dataset(DataConfig("taxibj", synthetic_frames=120, size=16))
    options = {"spatial_channels": 16, "temporal_channels": 16}
    planned = [Planned("simvp", "simvp", {"spatial_channels": 8, "temporal_channels": 8}, width=0.5),
               Planned("simvp", "simvp", options, width=1.0), Planned("simvp", "simvp", options, budget=0.5)]
    built = [pareto.build(p, data, 3, tmp_path) for p in planned]
    points = pareto.measure_dataset(built, data, runs=8, threads=1, repeat=1)
    half, full, dynamic = points
    assert full.speedup == pytest.approx(1.0) and full.flops_ratio == pytest.approx(1.0)
    assert 0.2 < half.flops_ratio < 0.3  # half of every width: a quarter of the FLOPs
    assert dynamic.cost_ratio is not None and dynamic.cost_ratio < 1.0  # its FLOPs follow the tile policy export timed fastest
    assert all(p.ms_mean > 0 and p.ms_p90 >= 0 for p in points)
    assert half.static_mae_at_ms is None, "static points are the curve, not judged against it"
    png = tmp_path / "pareto-taxibj.png"
    pareto.plot(points, png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(png).shape
    assert (height, width) == (int(3.8 * 120), int(4.5 * 120))
    assert not list(tmp_path.glob(".*.tmp"))
