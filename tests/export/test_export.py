"""`dpedge export`: the ONNX graph computes what the PyTorch hard-mask forward computes,
sample by sample, with only the kept work in it, and never leaves a wrong artifact."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from dynaprune_edge.data import load_dataset
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export import parity as parity_module
from dynaprune_edge.export.exporter import Exporter, ExportOptions
from dynaprune_edge.export.parity import ExportError
from dynaprune_edge.masks import MaskMode
from dynaprune_edge.models import BACKBONES
from dynaprune_edge.runtime import load, read_manifest
from dynaprune_edge.training import load_model
from dynaprune_edge.training.checkpoint import atomic_save, model_payload
from tests.exported import run_in_model_units


def kept_counts(path: Path, frames: torch.Tensor) -> np.ndarray:
    model = load_model(path).model
    with torch.no_grad():
        return model(frames, MaskMode(hard=True)).masks.region_mask.sum(dim=(1, 2, 3)).round().int().numpy()


# ONNX ops that TensorRT 8.5 (JetPack 5.1, the oldest supported) parses, among those the
# exporter may emit (onnx-tensorrt's operator matrix): no LayerNormalization, NonZero, Loop.
TENSORRT_85_OPS = {
    "Abs",
    "Add",
    "And",
    "Cast",
    "Concat",
    "Conv",
    "DepthToSpace",
    "Div",
    "Equal",
    "Erf",
    "Expand",
    "Gather",
    "Gemm",
    "Greater",
    "GreaterOrEqual",
    "Identity",
    "If",
    "Less",
    "Log",
    "MatMul",
    "Max",
    "MaxPool",
    "Mul",
    "Or",
    "Pad",
    "Pow",
    "ReduceMax",
    "ReduceMean",
    "ReduceSum",
    "Relu",
    "Reshape",
    "Resize",
    "ScatterElements",
    "ScatterND",
    "Sigmoid",
    "Slice",
    "Softmax",
    "Split",
    "Sqrt",
    "Sub",
    "Tanh",
    "TopK",
    "Transpose",
    "Unsqueeze",
    "Where",
}


def assert_tensorrt_parses(model: onnx.ModelProto) -> None:
    ops = {n.op_type for g in graphs(model.graph) for n in g.node}
    assert ops <= TENSORRT_85_OPS, ops - TENSORRT_85_OPS


def graphs(graph):
    """A graph and every `If` branch inside it, recursively."""
    yield graph
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from graphs(attribute.g)


@pytest.fixture(scope="module")
def scored_model(tmp_path_factory, varied_model) -> Path:
    return varied_model(tmp_path_factory.mktemp("scored"))


@pytest.mark.slow
@pytest.mark.parametrize("tiles", ["all", "wide", "none"])
def test_gather_export_matches_pytorch_in_every_branch_the_data_reaches(scored_model, tmp_path, tiles, varied_data):
    out = tmp_path / "model.onnx"
    chosen, manifest, _ = Exporter(scored_model, ExportOptions(mode="gather", tiles=tiles), log=lambda _: None).run(out)
    assert chosen.mode == "gather" and chosen.tiles == tiles
    reached = chosen.parity
    assert len(reached) >= 3, f"the test model should route samples to several branches, got {reached}"
    assert max(reached.values()) <= 1e-4
    assert read_manifest(out) == manifest

    # Independently of the exporter's own check: the runtime on fresh validation samples.
    data = load_dataset(varied_data)
    frames = torch.stack([data.test[i][0] for i in range(12)])
    trained = load_model(scored_model)
    with torch.no_grad():
        forecast = trained.model(frames, MaskMode(hard=True))
    result = run_in_model_units(out, frames, trained.normalizer)
    assert np.abs(result.forecast - forecast.prediction.numpy()).max() <= 1e-4
    counts = kept_counts(scored_model, frames)
    for n, branch in zip(counts, result.branch):
        low, high = manifest.branches[branch].regions
        assert low <= n <= high
    assert np.allclose(result.flops, [manifest.branches[b].flops for b in result.branch])


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES.names())
@pytest.mark.parametrize("group_order, mode", [("scored", "gather"), ("ordered", "sliced")])
def test_every_backbone_exports_with_parity(tmp_path, backbone, group_order, mode, varied_model):
    path = varied_model(tmp_path, group_order, backbone)
    for tiles in ("all", "none"):
        chosen, _, _ = Exporter(path, ExportOptions(mode=mode, tiles=tiles, levels=16), log=lambda _: None).run(
            tmp_path / "model.onnx"
        )
        assert len(chosen.parity) >= 2 and max(chosen.parity.values()) <= 1e-4, (tiles, chosen.parity)
        assert_tensorrt_parses(onnx.load(tmp_path / "model.onnx"))


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_executed_flops_equal_the_training_ledger_in_every_branch(tmp_path, backbone, varied_model, varied_data):
    """One branch per kept-region count and tiles everywhere: a sample's graph computes
    exactly the tiles and filters its masks keep, so the FLOPs the graph reports are the
    FLOPs training counted (and regions and filters skipped in training cost nothing).
    A layer that computes skipped regions and zeroes them (`skips_regions_when_tiled`
    False: the ConvLSTM's recurrence) is charged in full by training too."""
    data = load_dataset(varied_data)
    frames = torch.stack([data.val[i][0] for i in range(16)])
    path = varied_model(tmp_path, backbone=backbone)
    trained = load_model(path)
    model = trained.model
    regions = model.grid[0] * model.grid[1]
    counts = kept_counts(path, frames)
    assert counts.min() > 0 and counts.max() < regions, "the varied model must skip some regions, not all"
    out = tmp_path / "model.onnx"
    Exporter(path, ExportOptions(mode="gather", tiles="all", levels=regions), log=lambda _: None).run(out)
    with torch.no_grad():
        ledger = model(frames, MaskMode(hard=True)).flops.numpy()
    np.testing.assert_allclose(run_in_model_units(out, frames, trained.normalizer).flops, ledger, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_the_router_applies_the_keep_threshold_and_the_cap_as_training_does(
    tmp_path, backbone, varied_model, varied_data
):
    """A calibrated model (threshold below its logits' median, a cap of a third of the
    regions) exports with parity, and on featureless frames, where regions tie exactly,
    the graph keeps the same regions as PyTorch: the earlier of equal regions."""
    trained = load_model(varied_model(tmp_path, backbone=backbone))
    model = trained.model
    cap = model.regions // 3
    model.data_mask.threshold.fill_(-0.5)
    model.data_mask.max_regions.fill_(cap)
    path = tmp_path / "capped.pt"
    atomic_save(model_payload(model, trained.model_config, trained.data_config, trained.normalizer, {}), path)
    out = tmp_path / "model.onnx"
    chosen, manifest, _ = Exporter(path, ExportOptions(mode="gather", tiles="all"), log=lambda _: None).run(out)
    assert max(chosen.parity.values()) <= 1e-4
    assert max(high for _, high in (b.regions for b in manifest.branches)) == cap, "no branch beyond the cap"
    assert_tensorrt_parses(onnx.load(out))

    data = load_dataset(varied_data)
    frames = torch.cat([torch.stack([data.test[i][0] for i in range(6)]), torch.zeros(2, *data.test[0][0].shape)])
    frames[-1] = 0.5
    with torch.no_grad():
        forecast = model(frames, MaskMode(hard=True))
    counts = forecast.masks.region_mask.sum(dim=(1, 2, 3)).round().int().numpy()
    assert (counts <= cap).all() and (counts == cap).any()
    result = run_in_model_units(out, frames, trained.normalizer)
    assert np.abs(result.forecast - forecast.prediction.numpy()).max() <= 1e-4
    for n, branch in zip(counts, result.branch):
        low, high = manifest.branches[branch].regions
        assert low <= n <= high


def fake_timer(candidate_ms: list[float], twin_ms: float, asked: list, split_ms: list[float] | None = None):
    """A timer that reports fixed milliseconds per runner: the candidates' single graphs,
    their split layouts (default: 1 ms slower each), then the dense twin's."""
    split_ms = [ms + 1.0 for ms in candidate_ms] if split_ms is None else split_ms

    def timer(runners, frames, runs):
        asked.append((len(runners), len(frames), runs))
        assert len(runners) == 2 * len(candidate_ms) + 1
        return [np.full(runs, ms) for ms in [*candidate_ms, *split_ms, twin_ms]]

    return timer


@pytest.mark.slow
def test_auto_keeps_the_candidate_measured_fastest_and_records_its_dense_twin(tmp_path, varied_model):
    """`auto` exports every mode × tile policy, times them together with the model's dense
    twin, and writes the one the timer measured fastest (a fake timer here, so the answer
    is known), with what it measured in the manifest."""
    path = varied_model(tmp_path, group_order="ordered")
    asked, logged = [], []
    candidate_ms = [5.0 - 0.5 * index for index in range(8)]  # the last is fastest
    out = tmp_path / "model.onnx"
    exporter = Exporter(path, ExportOptions(mode="auto", tiles="auto"), log=logged.append)
    chosen, manifest, candidates = exporter.run(out, timer=fake_timer(candidate_ms, 4.0, asked))
    assert [(c.mode, c.tiles) for c in candidates] == [
        (m, t) for t in ("all", "sparse", "wide", "none") for m in ("sliced", "gather")
    ]
    assert asked == [(17, 16, 48)], "one interleaved timing of all candidates, single and split, and the dense twin"
    assert chosen is candidates[-1] and chosen.latency_ms["single"] == pytest.approx(5.0 - 0.5 * 7)
    assert manifest.mode == "gather" and manifest.layout == "single" and read_manifest(out) == manifest
    assert onnx.load(out).SerializeToString() == candidates[-1].onnx_model.SerializeToString()
    measured = manifest.measured
    assert measured["ms"] == pytest.approx(1.5) and measured["dense_twin_ms"] == pytest.approx(4.0)
    assert measured["speedup"] == pytest.approx(4.0 / 1.5) and "measured at export" in measured["label"]
    assert measured["layouts_ms"] == {"single": pytest.approx(1.5), "split": pytest.approx(2.5)}
    reached = {int(b) for b in measured["per_branch_ms"]}
    assert reached and reached <= set(range(len(manifest.branches)))
    assert not any(line.startswith("warning") for line in logged)


def test_a_split_layout_measured_faster_is_what_the_runtime_runs(tmp_path, varied_model):
    """When the router graph and the picked branch's graph, run one after the other, beat
    the single graph, the manifest says split and `load` runs it so, with the single
    graph's forecasts and branches."""
    path = varied_model(tmp_path, group_order="ordered")
    out = tmp_path / "model.onnx"
    _, manifest, _ = Exporter(path, ExportOptions(mode="sliced", tiles="none"), log=lambda _: None).run(
        out, timer=fake_timer([2.0], 3.0, [], split_ms=[1.5])
    )
    assert manifest.layout == "split" and manifest.measured["ms"] == pytest.approx(1.5)
    split, single = load(out), load(out, layout="single")
    assert (split.describe()["layout"], single.describe()["layout"]) == ("split", "single")
    frames = np.random.default_rng(0).random((12, *manifest.input.shape[1:])).astype(np.float32) * 3
    frames[::3, -1] = frames[::3, -2]
    ours, theirs = split.run(frames), single.run(frames)
    assert np.array_equal(ours.branch, theirs.branch) and np.abs(ours.forecast - theirs.forecast).max() <= 1e-5


def test_an_export_slower_than_its_dense_twin_says_so(tmp_path, varied_model):
    path = varied_model(tmp_path)
    logged = []
    out = tmp_path / "model.onnx"
    _, manifest, _ = Exporter(path, ExportOptions(mode="gather", tiles="none"), log=logged.append).run(
        out, timer=fake_timer([2.0], 1.6, [])
    )
    assert manifest.measured["speedup"] == pytest.approx(0.8)
    (warning,) = [line for line in logged if line.startswith("warning")]
    assert "0.80× as fast as its dense twin" in warning and "--cost ort-cpu" in warning
    assert read_manifest(out) == manifest, "the export is still written: it is exact, only not faster"


@pytest.mark.slow
def test_sliced_export_of_an_ordered_model_owns_constant_weights(tmp_path, varied_model):
    path = varied_model(tmp_path, group_order="ordered")
    out = tmp_path / "model.onnx"
    chosen, manifest, candidates = Exporter(path, ExportOptions(mode="auto", tiles="none"), log=lambda _: None).run(out)
    assert {c.mode for c in candidates} == {"sliced", "gather"}
    sliced = next(c for c in candidates if c.mode == "sliced")
    assert max(sliced.parity.values()) <= 1e-4
    branches = [g for g in graphs(sliced.onnx_model.graph) if g.name.startswith("subnetwork")]
    assert len(branches) == len(manifest.branches) - 1
    for branch in branches:
        owned = {i.name for i in branch.initializer}
        convs = [n for n in branch.node if n.op_type == "Conv"]
        assert convs and all(n.input[1] in owned for n in convs), f"{branch.name} does not own its weights"


@pytest.mark.slow
def test_graph_has_no_data_dependent_shapes(scored_model, tmp_path):
    """TensorRT on JetPack 5 cannot run NonZero or a TopK whose K is computed."""
    out = tmp_path / "model.onnx"
    Exporter(scored_model, ExportOptions(mode="gather", tiles="all"), log=lambda _: None).run(out)
    model = onnx.load(out)
    onnx.checker.check_model(model, full_check=True)

    constants = {i.name for g in graphs(model.graph) for i in g.initializer}
    ops = [n for g in graphs(model.graph) for n in g.node]
    assert not {n.op_type for n in ops} & {"NonZero", "Loop", "Unique", "Compress"}
    top_k = [n for n in ops if n.op_type == "TopK"]
    assert top_k and all(n.input[1] in constants for n in top_k)
    assert not any(n.op_type == "BatchNormalization" for n in ops), "BatchNorm is folded"
    assert_tensorrt_parses(model)


def test_dense_export_is_the_same_backbone_with_pruning_off(scored_model, tmp_path):
    out = tmp_path / "model.dense.onnx"
    chosen, manifest, _ = Exporter(scored_model, ExportOptions(dense=True), log=lambda _: None).run(out)
    assert chosen.mode == "dense" and len(manifest.branches) == 1
    assert manifest.branches[0].flops == pytest.approx(manifest.dense_flops)
    from dynaprune_edge.flops.fvcore_count import dense_flops_fvcore

    assert manifest.dense_flops == pytest.approx(dense_flops_fvcore(load_model(scored_model).model), rel=1e-6)


def test_sliced_mode_refuses_per_sample_filter_choices(scored_model):
    with pytest.raises(ConfigError, match="--group-order ordered"):
        Exporter(scored_model, ExportOptions(mode="sliced"), log=lambda _: None)


def test_failed_parity_writes_nothing(scored_model, tmp_path, monkeypatch):
    monkeypatch.setattr(parity_module, "PARITY_TOLERANCE", 0.0)
    out = tmp_path / "out" / "model.onnx"
    with pytest.raises(ExportError, match="disagrees with PyTorch"):
        Exporter(scored_model, ExportOptions(mode="gather", tiles="none"), log=lambda _: None).run(out)
    assert list(out.parent.iterdir()) == []


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is not None,
    reason="tensorrt imports here: --trt builds an engine instead of explaining",
)
def test_cli_export_writes_model_and_manifest_and_explains_tensorrt(scored_model, tmp_path):
    out = tmp_path / "model.onnx"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dynaprune_edge",
            "export",
            str(scored_model),
            "-o",
            str(out),
            "--mode",
            "gather",
            "--tiles",
            "wide",
            "--trt",
            "--fp16",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file() and (tmp_path / "model.dpedge.json").is_file()
    assert "max abs error" in result.stdout
    # a pruned model's engines are a bundle, built by dpedge where TensorRT is
    assert "no TensorRT engine built" in result.stdout and "dpedge engine model.onnx --precision fp16" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["--mode", "sliced"], "--group-order ordered"),
        (["--mode", "fastest"], "--mode must be one of"),
        (["--int8"], "add --trt"),
        (["-o", "model.trt"], "must end in .onnx"),
    ],
)
def test_cli_export_errors_are_one_line(dpedge, scored_model, tmp_path, args, message):
    result = dpedge("export", scored_model, *args, cwd=tmp_path, timeout=300)
    assert result.returncode == 1
    assert result.stderr.strip().startswith("error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def reorders(path: Path, tmp_path: Path) -> int:
    """Layout changes (NCHW ↔ blocked NCHWc) in onnxruntime's optimised graph of `path`."""
    import onnxruntime

    from dynaprune_edge.runtime.onnxruntime import session_options

    options = session_options(1)
    options.optimized_model_filepath = str(tmp_path / f"{path.stem}.optimised.onnx")
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    optimised = onnx.load(options.optimized_model_filepath)
    return sum(n.op_type in ("ReorderInput", "ReorderOutput") for g in graphs(optimised.graph) for n in g.node)


def test_masked_whole_map_layers_keep_onnxruntime_s_blocked_layout(tmp_path, varied_model):
    """Zeroing skipped regions on whole maps must not send every layer out of NCHWc and
    back (a broadcast mask did: a layout change around every masked layer). At full
    width (narrower layers and filter masks leave the layout for reasons of their own:
    fewer channels than a block, broadcasts), each branch changes layout no more often
    than the dense model, plus its own entry and exit; the router adds one."""
    path = varied_model(tmp_path, group_order="ordered")
    trained = load_model(path)
    with torch.no_grad():
        trained.model.model_mask.width_bias.fill_(30.0)  # every gate full, whatever the sample keeps
    atomic_save(model_payload(trained.model, trained.model_config, trained.data_config, trained.normalizer, {}), path)
    sparse, dense = tmp_path / "model.onnx", tmp_path / "model.dense.onnx"
    _, manifest, _ = Exporter(path, ExportOptions(mode="sliced", tiles="none"), log=lambda _: None).run(sparse)
    Exporter(path, ExportOptions(dense=True), log=lambda _: None).run(dense)
    branches = len(manifest.branches) - 1
    assert reorders(sparse, tmp_path) <= (reorders(dense, tmp_path) + 2) * branches + 4
