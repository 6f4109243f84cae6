"""The orin-emu roofline: a single convolution and a single matrix product priced as worked
out by hand from the constants table, TensorRT's fusions, and power modes and modules
scaling as their clocks, SM counts and memory clocks say."""

import math
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dynaprune_edge.cost.orin import CONSTANTS, MODULES, Device, constants_markdown
from dynaprune_edge.cost.roofline import GraphRoofline
from dynaprune_edge.errors import ConfigError

DOCS = Path(__file__).resolve().parents[2] / "docs" / "orin-emulator.md"


def graph(nodes, inputs, outputs, initializers) -> onnx.ModelProto:
    return helper.make_model(
        helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                          [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                          initializer=[numpy_helper.from_array(np.zeros(s, np.float32), n) for n, s in initializers]),
        opset_imports=[helper.make_opsetid("", 17)],
    )


def conv_graph(cin=32, cout=96, side=40, extra=()) -> onnx.ModelProto:
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]), *extra]
    out = nodes[-1].output[0]
    return graph(nodes, [("x", [1, cin, side, side])], [(out, [1, cout, side, side])], [("w", [cout, cin, 3, 3]), ("b", [cout])])


def test_a_convolution_costs_what_the_roofline_worked_out_by_hand_says():
    device = Device("agx-orin-64gb", "MAXN", "fp16")
    (kernel,) = GraphRoofline(conv_graph(), device).routes[0]
    ops = 2 * (96 * 40 * 40) * (32 * 3 * 3)  # a multiply-add per output and input tap, counted as 2
    moved = 2 * (32 * 40 * 40 + 96 * 32 * 9 + 96 + 96 * 40 * 40)  # fp16: input, weights, bias, output
    tiles = math.ceil(40 * 40 / 64) * math.ceil(96 / 64)  # 25 × 2 output tiles of 64 × 64
    waves = math.ceil(tiles / 16)
    peak = 2048 * 16 * 1300e6  # FP16 tensor-core FLOP/s at MAXN
    compute = ops / (peak * 0.6 * tiles / (waves * 16)) * 1e3
    memory = moved / (64 * 3200e6 * 0.7) * 1e3
    assert kernel.operations == ops and kernel.bytes == moved
    assert kernel.compute_ms == pytest.approx(compute) and kernel.memory_ms == pytest.approx(memory)
    assert kernel.ms == pytest.approx(max(compute, memory) + 8e-3)


def test_a_matrix_product_costs_what_the_roofline_worked_out_by_hand_says():
    model = graph([helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")], [("a", [1, 256, 512])], [("y", [1, 256, 1024])], [("w", [512, 1024])])
    (kernel,) = GraphRoofline(model, Device("agx-orin-64gb", "MAXN", "int8")).routes[0]
    ops = 2 * 256 * 1024 * 512
    moved = 256 * 512 + 512 * 1024 + 256 * 1024  # int8: one byte each
    tiles = 4 * 16  # 64 tiles: 4 full waves over 16 SMs
    compute = ops / (4096 * 16 * 1300e6 * 0.6 * (tiles / (4 * 16))) * 1e3
    memory = moved / (204.8e9 * 0.7) * 1e3
    assert kernel.operations == ops and kernel.bytes == moved
    assert kernel.ms == pytest.approx(max(compute, memory) + 8e-3)


def test_pointwise_ops_fuse_into_the_convolution_and_shape_ops_cost_nothing():
    fused = conv_graph(extra=[
        helper.make_node("Relu", ["y"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["v"], name="view"),
        helper.make_node("Reshape", ["v", "back"], ["v2"], name="view_back"),
        helper.make_node("Add", ["v2", "x2"], ["z"], name="residual"),
    ])
    fused.graph.initializer.extend([numpy_helper.from_array(np.array([1, 96, 1600], np.int64), "shape"),
                                    numpy_helper.from_array(np.array([1, 96, 40, 40], np.int64), "back")])
    fused.graph.input.append(helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 96, 40, 40]))
    device = Device("agx-orin-64gb", "MAXN", "fp16")
    (kernel,) = GraphRoofline(fused, device).routes[0]
    assert kernel.ops == ["Conv", "Relu", "Add"]
    alone = GraphRoofline(conv_graph(), device).routes[0][0]
    assert kernel.bytes == alone.bytes + 2 * 96 * 40 * 40  # the residual is read; y and r are never written

    apart = conv_graph(extra=[helper.make_node("Transpose", ["y"], ["t"], name="t", perm=[0, 1, 3, 2]),
                              helper.make_node("Relu", ["t"], ["r"], name="relu")])
    kernels = GraphRoofline(apart, device).routes[0]
    assert [k.ops for k in kernels] == [["Conv"], ["Transpose"], ["Relu"]]


@pytest.mark.parametrize("module", sorted(MODULES))
def test_power_modes_scale_as_their_sm_counts_clocks_and_memory_clocks(module):
    model = conv_graph(cin=128, cout=256, side=64)  # compute-bound and many waves: utilisation ~1 in every mode
    kernels = {mode: GraphRoofline(model, Device(module, mode, "fp16")).routes[0][0] for mode in MODULES[module]}
    top = MODULES[module]["MAXN"]
    for mode, kernel in kernels.items():
        spec = MODULES[module][mode]
        utilisation = kernel.utilisation / kernels["MAXN"].utilisation
        assert kernels["MAXN"].compute_ms / kernel.compute_ms == pytest.approx(spec.sms * spec.gpu_mhz / (top.sms * top.gpu_mhz) * utilisation)
        assert kernels["MAXN"].memory_ms / kernel.memory_ms == pytest.approx(spec.emc_mhz / top.emc_mhz)
    assert kernels["15W"].ms > kernels["30W"].ms > kernels["MAXN"].ms


def test_the_64gb_module_has_16_sms_and_the_32gb_module_14():
    assert Device("agx-orin-64gb", "MAXN", "fp16").sms == 16
    assert Device("agx-orin-32gb", "MAXN", "fp16").sms == 14
    assert Device("agx-orin-64gb", "MAXN", "fp16").matrix_ops_per_second() == pytest.approx(42.6e12, rel=0.01)  # the data sheet's dense FP16
    assert Device("agx-orin-64gb", "MAXN", "fp16").bytes_per_second() == pytest.approx(204.8e9)


def test_lower_precision_never_costs_more():
    model = conv_graph(cin=128, cout=256, side=64)
    ms = [GraphRoofline(model, Device("agx-orin-64gb", "MAXN", p)).routes[0][0].ms for p in ("fp32", "fp16", "int8")]
    assert ms[0] > ms[1] > ms[2]


@pytest.mark.parametrize("module, mode, precision, message", [
    ("agx-orin-16gb", "MAXN", "fp16", "--module"),
    ("agx-orin-32gb", "50W", "fp16", "--power-mode on agx-orin-32gb must be one of MAXN, 40W, 30W, 15W"),
    ("agx-orin-64gb", "MAXN", "bf16", "--precision"),
])
def test_an_unknown_device_setting_is_refused(module, mode, precision, message):
    with pytest.raises(ConfigError, match=message):
        Device(module, mode, precision)


def test_a_dynamic_shape_is_refused():
    model = conv_graph()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    with pytest.raises(ConfigError, match="dynamic shape"):
        GraphRoofline(model, Device("agx-orin-64gb", "MAXN", "fp16"))


def test_the_documented_constants_table_is_the_one_the_emulator_uses():
    assert constants_markdown() in DOCS.read_text(), "docs/orin-emulator.md: paste the output of constants_markdown()"
    assert all(c.source for c in CONSTANTS.values())


@pytest.mark.parametrize("shortcut", [False, True], ids=["region-routed", "width-routed"])
def test_a_pruned_graph_is_priced_as_its_split_bundle_runs(routed_toy, shortcut):
    """Per branch: the router engine, one host dispatch, that branch's engine alone; the
    single-If engine run eagerly costs every branch for any sample; CUDA graphs trade each
    kernel's launch for one graph launch per engine."""
    from dynaprune_edge.cost.roofline import BundleRoofline
    from dynaprune_edge.runtime.split import split_routed_graph

    graph, device = routed_toy.make(shortcut), Device.chosen()
    cut = split_routed_graph(graph)
    bundle = BundleRoofline(cut.router, cut.branches, device)
    router = sum(GraphRoofline(cut.router, device).route_ms())
    branches = [sum(GraphRoofline(g, device).route_ms()) for g in cut.branches]
    dispatch = CONSTANTS["dispatch_overhead_us"].value / 1e3
    assert bundle.route_ms() == pytest.approx([router + dispatch + ms for ms in branches])
    assert bundle.eager_ms() == pytest.approx(router + sum(branches) + (len(branches) - 1) * CONSTANTS["branch_overhead_us"].value / 1e3)
    kernels = [len(bundle.router) + len(branch) for branch in bundle.branches]
    saved = [(CONSTANTS["kernel_overhead_us"].value - CONSTANTS["cuda_graph_kernel_us"].value) * k / 1e3 - 2 * CONSTANTS["cuda_graph_launch_us"].value / 1e3
             for k in kernels]
    assert np.subtract(bundle.route_ms(), bundle.route_ms(cuda_graph=True)) == pytest.approx(saved)
