"""`dpedge bench latency`'s figures come from the measured runs: the dense and the sparse
timings in their own columns, the statistics, speedup, efficiency and router share computed
from them and from the FLOPs the sparse graph reports."""

from pathlib import Path

import numpy as np
import pytest
import torch

from dynaprune_edge.bench.common import trained_model
from dynaprune_edge.bench.latency import export_for_timing, latency_rows
from dynaprune_edge.data import DataConfig, load_dataset
from dynaprune_edge.export.exporter import ExportOptions
from dynaprune_edge.masks import PruningConfig
from dynaprune_edge.models import ForecastShape, ModelConfig, build_model
from dynaprune_edge.runtime import load
from dynaprune_edge.training import load_model
from dynaprune_edge.training.checkpoint import atomic_save, model_payload

# Milliseconds per run the fake timer reports: mean 14.8, p50 12.5, p90 18.4 (numpy's linear
# interpolation: 16 + 0.1 × (40 − 16)); sparse mean 7.2, p50 6, p90 9.2; router mean 1.0.
DENSE_MS = [8, 9, 10, 11, 12, 13, 14, 15, 16, 40]
SPARSE_MS = [4, 4, 5, 5, 6, 6, 7, 7, 8, 20]
OTHER_LAYOUT_MS = [9.0] * 10  # the sparse export in the layout its export did not choose
ROUTER_MS = [0.5, 1.5] * 5


class FakeTimer:
    """Stands in for interleaved_latency. It tells the runners apart by what they do, not by
    their position: a model run returns (forecast, flops, branch) and the one executing more
    FLOPs over the samples is the dense export; of the sparse ones, the backend in the
    layout its manifest chose gets SPARSE_MS; the router graph returns its outputs only."""

    def __init__(self):
        self.asked_runs = []
        self.asked_repeat = []

    def __call__(self, runners, frames, runs, repeat=1):
        self.asked_runs.append(runs)
        self.asked_repeat.append(repeat)
        flops = {}
        for index, runner in enumerate(runners):
            results = [runner(sample[None]) for sample in frames]
            if isinstance(results[0], tuple):
                flops[index] = sum(result[1] for result in results)
        assert len(flops) == 3 and len(set(flops.values())) == 2, (
            "expected a dense model and a sparse one in two layouts"
        )
        dense = max(flops, key=flops.get)

        def chosen(runner) -> bool:
            backend = runner.__self__
            return backend.layout == backend.manifest.layout

        return [
            np.array(
                DENSE_MS
                if i == dense
                else (SPARSE_MS if chosen(runners[i]) else OTHER_LAYOUT_MS)
                if i in flops
                else ROUTER_MS,
                float,
            )
            for i in range(len(runners))
        ]


def tiny_ordered_model(folder: Path, data) -> Path:
    """An untrained small SimVP (ordered groups, as the benchmark trains) whose masks vary from
    sample to sample, saved as FOLDER/model.pt."""
    torch.manual_seed(0)
    shape = ForecastShape(data.frames_in, data.frames_out, data.channels, data.height, data.width)
    config = ModelConfig(
        "simvp",
        shape,
        {"spatial_channels": 16, "temporal_channels": 32, "translator_blocks": 2},
        PruningConfig(budget=0.3, group_order="ordered"),
    )
    model = build_model(config)
    with torch.no_grad():
        model.generator.importance.weight.normal_(0, 1.0)
        model.model_mask.width_bias.uniform_(-1.0, 1.0)
        model.eval()
        frames = torch.stack([data.train[i][0] for i in range(0, len(data.train), 4)])
        model.generator.importance.bias -= model.generator(frames).logits.median()  # about half the regions kept
    path = folder / "model.pt"
    atomic_save(model_payload(model, config, data.config, data.normalizer, {"val_mae": 0.125}), path)
    return path


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    data = load_dataset(DataConfig("taxibj", synthetic_frames=160))
    folder = tmp_path_factory.mktemp("simvp-taxibj-0.3")
    return export_for_timing(tiny_ordered_model(folder, data), data, ExportOptions(mode="sliced", tiles="none"))


@pytest.mark.slow
def test_rows_take_the_dense_and_sparse_statistics_from_the_measured_runs(exported):
    timer = FakeTimer()
    rows = latency_rows(exported, "simvp", 0.3, [1, 2], runs=5, timer=timer)
    sparse = load(exported.sparse)
    measured_flops_ratio = float(sparse.run(exported.frames).flops.mean()) / sparse.manifest.dense_flops
    assert 0 < measured_flops_ratio < 1
    assert [row.threads for row in rows] == [1, 2]
    assert timer.asked_runs == [len(exported.frames)] * 2, "every validation sample is timed at least once"
    for row in rows:
        assert (row.dense_ms_p50, row.dense_ms_p90) == pytest.approx((12.5, 18.4))
        assert (row.sparse_ms_p50, row.sparse_ms_p90) == pytest.approx((6.0, 9.2))
        assert row.speedup == pytest.approx(14.8 / 7.2)  # mean dense / mean sparse, not medians
        assert row.flops_ratio == pytest.approx(measured_flops_ratio)
        assert row.efficiency == pytest.approx(14.8 / 7.2 * measured_flops_ratio)
        assert row.router_share == pytest.approx(1.0 / 7.2)
        single, split = (
            (7.2, 9.0) if row.layout == "single" else (9.0, 7.2)
        )  # the sparse columns time the export's layout
        assert (row.single_ms_mean, row.split_ms_mean) == pytest.approx((single, split))
        assert row.runs == len(DENSE_MS) and row.samples == len(exported.frames)
        assert 0 < row.overhead_share < 1
        assert (row.backbone, row.dataset, row.budget, row.mode, row.val_mae) == (
            "simvp",
            "taxibj (synthetic)",
            0.3,
            "sliced/none",
            0.125,
        )
        assert row.runtime["threads"] == row.threads and row.runtime["backend"] == "ort" and "model" not in row.runtime


def test_more_runs_than_samples_and_warm_repeats_are_asked_for_when_requested(exported):
    timer = FakeTimer()
    (row,) = latency_rows(exported, "simvp", 0.3, [1], runs=len(exported.frames) + 7, repeat=3, timer=timer)
    assert timer.asked_runs == [len(exported.frames) + 7]
    assert timer.asked_repeat == [3] and row.repeat == 3


def test_a_model_file_the_benchmark_cannot_reuse_is_retrained_not_an_error(tmp_path):
    """A model.pt written by an older dpedge (another checkpoint version) in the benchmark's
    folder is trained again with the benchmark's settings, then reused on the next run."""
    data = load_dataset(DataConfig("taxibj", synthetic_frames=120))
    folder = tmp_path / "simvp-taxibj-0.5"
    path = tiny_ordered_model(folder, data)
    torch.save({**torch.load(path, weights_only=True), "version": 1}, path)
    assert trained_model("simvp", data, 0.5, 2, folder) == path
    assert load_model(path).model_config.pruning.budget == 0.5
    before = path.stat().st_mtime_ns
    trained_model("simvp", data, 0.5, 2, folder)
    assert path.stat().st_mtime_ns == before, "the retrained model is reused"


def made_up_table(model, threads: int = 1) -> dict:
    """A cost table for `model`'s layers (numbers made up, not measured): every layer 0.1 ms
    per kept region on tiles, 2 ms on whole maps."""
    from dynaprune_edge.cost import CostTable, machine_fingerprint

    points = [0, 1, 4, 8, 12, model.regions]
    layers = {
        name: {
            "width_share": [0.25, 0.5, 0.75, 1.0],
            "tiled_ms": [[0.1 * n for n in points]] * 4,
            "whole_ms": [2.0] * 4,
            "tile_limit": 12,
        }
        for name in model.layer_names.values()
    }
    return CostTable("ort-cpu", machine_fingerprint(threads), {}, model.regions, points, {}, 0.1, 30.0, 1).to_dict() | {
        "layers": layers
    }


@pytest.mark.slow
def test_a_model_priced_in_milliseconds_gets_its_predicted_latency_against_the_measured(tmp_path):
    data = load_dataset(DataConfig("taxibj", synthetic_frames=160))
    path = tiny_ordered_model(tmp_path, data)
    payload = torch.load(path, weights_only=True)
    config = ModelConfig.from_dict(payload["model_config"])
    pruning = config.pruning.to_dict() | {"cost": "ort-cpu", "cost_table": made_up_table(build_model(config))}
    payload["model_config"]["pruning"] = pruning
    torch.save(payload, path)
    exported = export_for_timing(path, data, ExportOptions(mode="sliced"))
    rows = latency_rows(exported, "simvp", 0.3, [1, 2], runs=5, timer=FakeTimer())
    sparse = load(exported.sparse)
    branches = sparse.run(exported.frames).branch
    per_branch = np.asarray(sparse.manifest.predicted["per_branch"])
    assert len(set(branches)) > 1, "samples take different branches, so the mean is over them"
    one_thread, two_threads = rows
    assert one_thread.cost == "ort-cpu"
    assert one_thread.predicted_ms == pytest.approx(per_branch[branches].mean())
    assert one_thread.prediction_error == pytest.approx(
        per_branch[branches].mean() / 7.2 - 1
    )  # the fake timer's sparse mean
    assert two_threads.predicted_ms is None, "the table is for 1 thread: nothing predicted for 2"
