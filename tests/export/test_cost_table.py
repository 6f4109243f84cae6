"""The measured cost target end to end: `dpedge calibrate` times the sub-networks the
exporter emits, `dpedge train --cost ort-cpu` prices samples with the table and records
where tiles pay, and the export follows that record."""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pytest
import torch

from dynaprune_edge.cost import CostTable, MeasuredCost, machine_fingerprint
from dynaprune_edge.cost.orin import Device
from dynaprune_edge.cost.roofline import GraphRoofline
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.cost_table import architecture, measure, with_table
from dynaprune_edge.export.exporter import Exporter, ExportOptions
from dynaprune_edge.export.network import build_graph, build_width_router_graph
from dynaprune_edge.masks import MaskMode, PruningConfig
from dynaprune_edge.models import ForecastShape, ModelConfig, build_model
from dynaprune_edge.runtime.manifest import read_manifest
from dynaprune_edge.training.checkpoint import atomic_save, model_payload

SHAPE = ForecastShape(3, 2, 2, 16, 16)
SIZES = {"spatial_channels": 16, "temporal_channels": 16}
TINY = [
    "--dataset",
    "taxibj",
    "--size",
    "16",
    "--region-size",
    "4",
    "--arch",
    "spatial_channels=16",
    "--arch",
    "temporal_channels=16",
]


def tiny_config(**pruning) -> ModelConfig:
    return ModelConfig(
        "simvp", SHAPE, SIZES, PruningConfig(budget=0.5, region_size=4, group_order="ordered", **pruning)
    )


@pytest.mark.slow
def test_a_measured_table_times_every_layer_of_the_exported_sub_networks():
    config = tiny_config()
    table = measure(config, runs=3)
    model = build_model(config)
    assert set(table.layers) == set(model.layer_names.values())
    assert table.region_points[0] == 0 and table.region_points[-1] == model.regions == 16
    assert table.dense_ms > 0 and table.fixed_ms >= 0
    for name, times in table.layers.items():
        tiled = np.asarray(times.tiled_ms)
        assert tiled.shape == (len(config.pruning.width_levels), len(table.region_points)), name
        # nothing runs for no region; a tiny layer may fall within the profiler's per-node overhead
        assert np.all(tiled[:, 0] == 0) and np.all(tiled >= 0) and tiled.sum() > 0, name
        assert 0 <= times.tile_limit < model.regions, name
        assert min(times.width_share) > 0 and max(times.width_share) == 1.0, name
    table.check(machine_fingerprint(1), architecture(config))  # accepted here, for this model


def test_an_emulated_table_prices_the_same_graphs_with_the_orin_roofline():
    config = tiny_config()
    device = Device("agx-orin-64gb", "30W", "fp16")
    table = measure(config, target="orin-emu", device=device)
    assert (
        table.target == "orin-emu"
        and table.machine == device.fingerprint()
        and any("EMULATED" in note for note in table.notes)
    )
    model = build_model(config).eval()
    dense, _ = build_graph(model, None, "dense", None)
    assert table.dense_ms == pytest.approx(sum(GraphRoofline(dense, device).route_ms()))  # one route: no router
    assert set(table.layers) == set(model.layer_names.values())
    slower = measure(config, target="orin-emu", device=Device("agx-orin-64gb", "15W", "fp16"))
    assert slower.dense_ms > table.dense_ms and slower.fixed_ms >= table.fixed_ms
    table.check(device.fingerprint(), architecture(config))
    with pytest.raises(ConfigError, match="power_mode '30W', this run has '15W'"):
        table.check(slower.machine, architecture(config))
    assert "emulated, not measured" in MeasuredCost(table).describe()


def test_a_width_routed_table_times_each_branch_graph_whole():
    config = tiny_config(slimmable=True, group_size=4)
    device = Device("agx-orin-64gb", "30W", "fp16")
    table = measure(config, target="orin-emu", device=device)
    model = build_model(config).eval()
    levels = len(config.pruning.width_levels)
    assert not table.layers and len(table.branches.level_ms) == len(table.branches.alone_ms) == levels
    assert architecture(config)["mode"] == "widths"
    # each branch is timed on the routed graph's own route for it: the router made to send the sample there
    routes = GraphRoofline(build_width_router_graph(model)[0], device).route_ms()
    assert [table.branches.persistence_ms, *table.branches.level_ms] == pytest.approx(routes)
    assert (
        table.branches.alone_ms == sorted(table.branches.alone_ms)
        and table.branches.alone_ms[0] < table.branches.alone_ms[-1]
    )
    assert table.branches.alone_ms[-1] == pytest.approx(table.dense_ms)  # the widest level alone is the dense network
    priced = build_model(with_table(config, table))
    ratios = [table.branches.persistence_ms / table.dense_ms] + [ms / table.dense_ms for ms in table.branches.level_ms]
    assert priced.branch_costs().tolist() == pytest.approx(ratios)
    assert CostTable.from_json(table.to_json()) == table


@pytest.mark.parametrize("power_mode", ["MAXN", "15W"])
def test_on_the_emulated_orin_each_bundle_branch_costs_its_static_width_and_the_bundle_no_more_than_router_and_dispatch(
    power_mode,
):
    """Issue 28's emulated targets, on the graphs a user's export holds (physical units at
    both ends): each branch engine of the split bundle is priced as the static network of
    its width exported alone, and a sample's route exceeds the dense engine by no more than
    the router engine and the host dispatch."""
    from dynaprune_edge.cost.orin import constant
    from dynaprune_edge.cost.roofline import BundleRoofline
    from dynaprune_edge.data import Normalizer
    from dynaprune_edge.runtime.split import split_routed_graph

    config = tiny_config(slimmable=True, group_size=4)
    model, device = build_model(config).eval(), Device("agx-orin-64gb", power_mode, "fp16")
    units = Normalizer([3.0, 40.0], [2.0, 15.0])
    cut = split_routed_graph(build_width_router_graph(model, normalizer=units)[0])
    bundle = BundleRoofline(cut.router, cut.branches, device)
    dense = GraphRoofline(build_graph(model, None, "dense", None, normalizer=units)[0], device).route_ms()[0]
    router = bundle.engine_ms(bundle.router, cuda_graph=False) + constant("dispatch_overhead_us") / 1e3
    for level, branch in enumerate(bundle.branches[1:]):
        static = GraphRoofline(
            build_graph(model, None, "dense", None, width=level, normalizer=units)[0], device
        ).route_ms()[0]
        assert bundle.engine_ms(branch, cuda_graph=False) == pytest.approx(static, rel=1e-9)
    assert max(bundle.route_ms()) <= dense + router + 1e-12
    assert GraphRoofline(cut.bypass, device).route_ms()[0] == pytest.approx(dense), "budget 1: the dense network alone"


@pytest.mark.slow
def test_a_width_router_priced_in_ms_trains_exports_and_reports_its_branch_costs(dpedge, tmp_path):
    env = {**os.environ, "DPEDGE_CACHE_DIR": str(tmp_path / "cache")}
    table_file = tmp_path / "table.json"
    result = dpedge("calibrate", *TINY, "--slimmable", "--group-size", "4", "--runs", "5", "--out", table_file, env=env)
    assert result.returncode == 0, result.stderr
    assert "width-routed simvp" in result.stdout and "persistence" in result.stdout and "width ×0.25" in result.stdout
    table = CostTable.from_json(table_file.read_text())
    ratios = [table.branches.persistence_ms / table.dense_ms] + [ms / table.dense_ms for ms in table.branches.level_ms]

    out = tmp_path / "run"
    train = [
        "train",
        *TINY,
        "--synthetic-frames",
        "120",
        "--slimmable",
        "--group-size",
        "4",
        "--epochs",
        "1",
        "--budget",
        "0.8",
        "--cost",
        "ort-cpu",
    ]
    result = dpedge(*train, "--cost-table", table_file, "--out", out, env=env)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cost_target"].startswith("ort-cpu (measured on")
    assert metrics["branch_costs"] == pytest.approx(ratios)  # the router prices each branch as timed whole
    for row in metrics["budgets"]:
        spent = sum(share * cost for share, cost in zip(row["branch_share"], ratios))
        if row["budget"] >= 1:  # the widest level, the router not run
            spent = table.branches.alone_ms[-1] / table.dense_ms
        assert row["cost"] == pytest.approx(spent, abs=1e-4), row  # each sample costs its branch's measured ratio

    result = dpedge("export", out / "model.pt", env=env)
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(out / "model.onnx")
    assert manifest.mode == "widths" and manifest.budget["branch_costs"] == pytest.approx(ratios)
    assert manifest.predicted["per_branch"] == pytest.approx([table.branches.persistence_ms, *table.branches.level_ms])


@pytest.mark.slow
def test_a_width_router_that_costs_more_than_the_budget_on_its_target_is_refused(dpedge, tmp_path):
    # On the emulated Orin this 16×16 SimVP's router alone (many tiny kernels, each paying
    # its launch) costs about twice the dense model: no budget below 1 can be met.
    env = {**os.environ, "DPEDGE_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "run"
    result = dpedge(
        "train",
        *TINY,
        "--synthetic-frames",
        "120",
        "--slimmable",
        "--group-size",
        "4",
        "--budget",
        "0.5",
        "--cost",
        "orin-emu",
        "--out",
        out,
        env=env,
    )
    error = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 1 and result.stderr.count("error:") == 1, result.stderr
    assert "a width router cannot meet a budget of 0.5 on orin-emu: deciding the branch alone costs" in error
    assert not (out / "model.pt").exists()


def made_up_table(config: ModelConfig, whole_map: str) -> dict:
    """A table (numbers made up, not measured) in which `whole_map`'s tiles never pay and
    every other layer's always do."""
    model = build_model(config)
    points = [0, 1, 4, 8, 12, 16]
    layers = {
        name: {
            "width_share": [0.5, 0.5, 1.0, 1.0],
            "tiled_ms": [[0.0] + [0.1 * n for n in points[1:]]] * 4,
            "whole_ms": [2.0] * 4,
            "tile_limit": 0 if name == whole_map else 12,
        }
        for name in model.layer_names.values()
    }
    return CostTable("ort-cpu", machine_fingerprint(1), architecture(config), 16, points, {}, 0.1, 3.0, 1).to_dict() | {
        "layers": layers
    }


@pytest.fixture
def city():
    """A small city on a 16×16 grid, a third of its cells always empty."""
    from dynaprune_edge.data import DataConfig, Normalizer, SpatioTemporalData
    from dynaprune_edge.data.windows import WindowDataset, time_split

    rng = np.random.default_rng(0)
    series = rng.random((90, 2, 16, 16)).astype(np.float32)
    series[..., ::3] = 0.0
    segments = time_split(series, (0.7, 0.15, 0.15))
    normalizer = Normalizer.fit_segments(segments.train)
    splits = {name: WindowDataset(split, 3, 2, normalizer) for name, split in segments.splits().items()}
    return SpatioTemporalData(
        DataConfig("taxibj", frames_in=3, frames_out=2, size=16),
        normalizer=normalizer,
        channels=2,
        height=16,
        width=16,
        source="synthetic",
        unit="u",
        **splits,
    )


def test_a_layer_whose_tiles_do_not_pay_is_charged_in_full_and_exported_on_whole_maps(tmp_path, city):
    flops_config = tiny_config()
    config = tiny_config(cost="ort-cpu", cost_table=made_up_table(flops_config, whole_map="encoder.1"))
    torch.manual_seed(0)
    model = build_model(config).eval()
    with torch.no_grad():  # a generator that keeps about half the regions, differently per sample
        model.generator.importance.weight.normal_(0, 1.0)
        frames = torch.stack([city.train[i][0] for i in range(0, len(city.train), 3)])
        model.generator.importance.bias -= model.importance(model.pad(frames)).logits.median()
    layers = {name: layer for layer, name in model.layer_names.items()}

    forecast = model(frames, MaskMode(hard=True))
    kept = forecast.data_kept.detach()
    assert 0.1 < float(kept.mean()) < 0.9
    charged = {model.layer_names[layer]: use.flops for layer, use in forecast.masks.ledger.layers.items()}
    dense = {model.layer_names[e.layer]: e.dense * e.frames for e in forecast.masks.ledger.entries}

    # encoder.1 and encoder.2 are alike (16 → 16 channels, widths of enc0/enc1 vs enc1/enc2):
    # only encoder.1 is charged every position of every sample
    def width(name: str):
        return next(
            use.width for layer, use in forecast.masks.ledger.layers.items() if model.layer_names[layer] == name
        )

    assert torch.allclose(charged["encoder.1"], dense["encoder.1"] * width("encoder.1"))
    assert torch.allclose(charged["encoder.2"], dense["encoder.2"] * width("encoder.2") * kept)
    assert layers["encoder.1"].tile_limit == 0 and layers["encoder.2"].tile_limit == 12

    path = tmp_path / "model.pt"
    atomic_save(model_payload(model, config, city.config, city.normalizer, {}), path)
    out = tmp_path / "model.onnx"
    exporter = Exporter(path, ExportOptions(), data=city, log=lambda _: None)
    assert exporter.tile_policies() == ["all"]  # the record decides, per layer; nothing to second-guess
    chosen, manifest, _ = exporter.run(out)
    assert max(chosen.parity.values()) <= 1e-4

    def ops(scope: str, graph) -> set[str]:
        found = set()
        for node in graph.node:
            if node.name.startswith(scope + "/"):
                found.add(node.op_type)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    found |= ops(scope, attribute.g)
        return found

    graph = onnx.load(out).graph
    assert "Gather" in ops("compute/encoder.2", graph), "encoder.2's tiles pay: it gathers halo windows"
    assert "Gather" not in ops("compute/encoder.1", graph), "encoder.1 runs on whole maps in every branch"
    for branch in manifest.branches[1:]:  # executed FLOPs = what training charges at the branch's count
        hi = branch.regions[1]
        masks = model.masks_keeping(torch.tensor([hi]), frames[:1])
        masks.ledger.add_fixed(model.mask_flops())
        model.backbone(model.pad(frames[:1]), masks)
        assert branch.flops == pytest.approx(float(masks.ledger.sparse[0]), rel=1e-5), branch
    predicted = manifest.predicted
    assert predicted["unit"] == "ms" and "not measured" in predicted["label"]
    assert len(predicted["per_branch"]) == len(manifest.branches)
    assert predicted["per_branch"] == sorted(predicted["per_branch"])  # wider branches cost more


@pytest.mark.slow
def test_calibrate_then_train_on_the_measured_target_then_export(dpedge, tmp_path):
    env = {**os.environ, "DPEDGE_CACHE_DIR": str(tmp_path / "cache")}
    table_file = tmp_path / "table.json"
    result = dpedge(
        "calibrate", *TINY, "--no-slimmable", "--group-order", "ordered", "--runs", "3", "--out", table_file, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "tiles pay up to" in result.stdout and "measured (not predicted)" in result.stdout
    table = CostTable.from_json(table_file.read_text())
    assert list((tmp_path / "cache" / "cost-tables").glob("simvp-*.json")), "the table is cached for later runs"

    out = tmp_path / "run"
    # A cap of 1: on this 16×16 model one region at the narrowest widths measured up to 0.93
    # of the dense milliseconds (a run on the shared 2-core machine), so a cap of 0.9
    # sometimes left no region to compute at all.
    train = [
        "train",
        *TINY,
        "--synthetic-frames",
        "120",
        "--no-slimmable",
        "--group-order",
        "ordered",
        "--epochs",
        "1",
        "--budget",
        "0.6",
        "--max-cost",
        "1.0",
        "--cost",
        "ort-cpu",
    ]
    result = dpedge(*train, "--cost-table", table_file, "--out", out, env=env)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["cost_target"].startswith("ort-cpu (measured on")
    assert metrics["cost"]["val"]["max"] <= 1.0 + 1e-6  # the cap holds in milliseconds too
    assert metrics["flops_ratio_mean"] != pytest.approx(
        metrics["cost"]["val"]["mean"], abs=1e-3
    )  # priced in ms, not FLOPs

    result = dpedge("export", out / "model.pt", "--levels", "3", env=env)
    assert result.returncode == 0, result.stderr
    manifest = read_manifest(out / "model.onnx")
    assert manifest.predicted["dense"] == pytest.approx(table.dense_ms)
    assert (
        "predicted ms" in result.stdout and "measured on this machine" in result.stdout
    )  # the user sees both, branch by branch
    assert set(manifest.measured["per_branch_ms"]) <= {str(i) for i in range(len(manifest.branches))}

    foreign = json.loads(table_file.read_text())
    foreign["machine"]["cpu"] = "Some Other CPU"
    (tmp_path / "foreign.json").write_text(json.dumps(foreign))
    result = dpedge(*train, "--cost-table", tmp_path / "foreign.json", "--out", tmp_path / "refused", env=env)
    error = result.stderr.strip().splitlines()[-1]  # after the line saying which data was read
    assert result.returncode == 1 and result.stderr.count("error:") == 1 and error.startswith("error: ")
    assert "made with cpu 'Some Other CPU'" in error and "dpedge calibrate" in error
    assert not (tmp_path / "refused").exists()
