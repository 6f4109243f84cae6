"""`dpedge bench orin`'s arithmetic: a row's reduced terms price it as the roofline does, and
the fit recovers constants that generated the latencies it is given."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from dynaprune_edge.bench.orin import PUBLISHED, Published, fit, summary, terms
from dynaprune_edge.cost.orin import Device, constant
from dynaprune_edge.cost.roofline import GraphRoofline


def two_convs(side: int):
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["y"], name="c1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["y"], ["r"], name="relu"),
        helper.make_node("Transpose", ["r"], ["t"], name="t", perm=[0, 1, 3, 2]),
        helper.make_node("Conv", ["t", "w2"], ["z"], name="c2", pads=[1, 1, 1, 1]),
    ]
    inits = [
        numpy_helper.from_array(np.zeros((64, 32, 3, 3), np.float32), "w1"),
        numpy_helper.from_array(np.zeros((32, 64, 3, 3), np.float32), "w2"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32, side, side])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [1, 32, side, side])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_rows_terms_price_it_as_the_roofline_does():
    roofline = GraphRoofline(two_convs(96), Device("agx-orin-64gb", "30W", "int8"))
    reduced = terms(roofline)
    assert reduced.kernels == 3
    as_they_stand = (constant("compute_efficiency"), constant("memory_efficiency"), constant("kernel_overhead_us"))
    assert reduced.ms(*as_they_stand) == pytest.approx(roofline.route_ms()[0])


def test_the_fit_recovers_the_constants_that_made_the_latencies():
    rows = []
    for side, precision in ((16, "fp16"), (128, "fp16"), (384, "fp32"), (256, "int8")):
        reduced = terms(GraphRoofline(two_convs(side), Device("agx-orin-64gb", "MAXN", precision)))
        rows.append((Published("toy", precision, reduced.ms(0.3, 0.5, 12.0), "fit", "made up"), reduced))
    assert fit(rows) == pytest.approx((0.3, 0.5, 12.0))


def test_every_published_row_names_its_source_and_fit_and_check_rows_are_apart():
    assert all(row.source and row.ms > 0 for row in PUBLISHED)
    fit_rows = {(r.model, r.precision) for r in PUBLISHED if r.role == "fit"}
    check_rows = {(r.model, r.precision) for r in PUBLISHED if r.role == "check"}
    assert fit_rows and check_rows and not fit_rows & check_rows
    assert {r.role for r in PUBLISHED} == {"fit", "check"}


def test_the_summary_counts_misses_both_ways():
    stats = summary([0.1, -0.5, 0.3])
    assert stats["median_abs_error"] == pytest.approx(0.3) and stats["worst_ratio"] == pytest.approx(2.0)


# Published sizes (parameters in millions, GFLOPs at the benchmark's input size): the
# Ultralytics YOLO11 model table (docs.ultralytics.com/models/yolo11) and torchvision's
# ResNet-50 weights card (25,557,032 parameters, 4.09 GMACs).
PUBLISHED_SIZES = {
    "resnet50": (25.557032, 8.18),
    "yolo11n": (2.6, 6.5),
    "yolo11m": (20.1, 68.0),
    "mobilenet_v2": (3.504872, None),
}  # FLOPs not checked: its depthwise convolutions run outside the tensor-core kernels summed below


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PUBLISHED_SIZES))
def test_the_reference_networks_are_the_published_architectures(name, tmp_path):
    """A latency compared against a published row is only meaningful if the graph is the one
    the source timed: its parameter count and, from the exported ONNX, its FLOPs match."""
    import onnx

    from dynaprune_edge.bench.reference_models import REFERENCE_MODELS, to_onnx

    params, gflops = PUBLISHED_SIZES[name]
    model, shape = REFERENCE_MODELS[name]()
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(params, abs=0.05)
    if gflops is None:
        return
    to_onnx(model, shape, tmp_path / "m.onnx")
    (route,) = GraphRoofline(onnx.load(str(tmp_path / "m.onnx")), Device("agx-orin-64gb", "MAXN", "fp16")).routes
    assert sum(k.operations for k in route if k.matrix) / 1e9 == pytest.approx(gflops, rel=0.01)


def test_a_transformer_row_is_published_and_checked_only():
    """BERT-Large INT8 from NVIDIA's MLPerf v3.1 Orin submission: a check row, its source the
    log file it was read from, its attention fused as NVIDIA's explicitly quantized engine does."""
    (row,) = [r for r in PUBLISHED if r.model == "bert_large"]
    assert (row.precision, row.role, row.power_mode, row.ms, row.explicit_int8) == (
        "int8",
        "check",
        "MAXN",
        6.487,
        True,
    )
    assert "closed/NVIDIA/results/Orin_TRT/bert-99/SingleStream/performance/run_1/mlperf_log_summary.txt" in row.source
    assert "Assumed" in row.source  # which percentile stands for 384 tokens is derived, and says so


@pytest.mark.slow
def test_bert_large_is_the_published_architecture(tmp_path):
    """333.96 M parameters with the embedding tables and 246.93 GOPs at 384 tokens, as
    Intel's open_model_zoo card of BERT-Large SQuAD (bert-large-uncased-whole-word-masking-
    squad-0001) gives them; the FLOPs from one exported layer (the 24 are identical)."""
    import onnx

    from dynaprune_edge.bench.reference_models import BERT_EMBEDDING_TABLES, BERT_SEQUENCE, BertLarge, to_onnx

    model = BertLarge()
    assert (sum(p.numel() for p in model.parameters()) + BERT_EMBEDDING_TABLES) / 1e6 == pytest.approx(333.96, abs=0.05)
    operations = {}
    for layers in (1, 2):
        to_onnx(BertLarge(layers=layers), (1, BERT_SEQUENCE, 1024), tmp_path / f"{layers}.onnx")
        (route,) = GraphRoofline(
            onnx.load(str(tmp_path / f"{layers}.onnx")), Device("agx-orin-64gb", "MAXN", "fp16")
        ).routes
        operations[layers] = sum(k.operations for k in route if k.matrix)
    per_layer = operations[2] - operations[1]
    assert (operations[1] + 23 * per_layer) / 1e9 == pytest.approx(246.93, rel=0.01)
