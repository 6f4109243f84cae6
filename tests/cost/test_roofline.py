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
        helper.make_graph(
            nodes,
            "g",
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
            initializer=[numpy_helper.from_array(np.zeros(s, np.float32), n) for n, s in initializers],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )


def conv_graph(cin=32, cout=96, side=40, extra=()) -> onnx.ModelProto:
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        *extra,
    ]
    out = nodes[-1].output[0]
    return graph(
        nodes, [("x", [1, cin, side, side])], [(out, [1, cout, side, side])], [("w", [cout, cin, 3, 3]), ("b", [cout])]
    )


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
    model = graph(
        [helper.make_node("MatMul", ["a", "w"], ["y"], name="mm")],
        [("a", [1, 256, 512])],
        [("y", [1, 256, 1024])],
        [("w", [512, 1024])],
    )
    (kernel,) = GraphRoofline(model, Device("agx-orin-64gb", "MAXN", "int8")).routes[0]
    ops = 2 * 256 * 1024 * 512
    moved = 256 * 512 + 512 * 1024 + 256 * 1024  # int8: one byte each
    tiles = 4 * 16  # 64 tiles: 4 full waves over 16 SMs
    compute = ops / (4096 * 16 * 1300e6 * 0.6 * (tiles / (4 * 16))) * 1e3
    memory = moved / (204.8e9 * 0.7) * 1e3
    assert kernel.operations == ops and kernel.bytes == moved
    assert kernel.ms == pytest.approx(max(compute, memory) + 8e-3)


def test_pointwise_ops_fuse_into_the_convolution_and_shape_ops_cost_nothing():
    fused = conv_graph(
        extra=[
            helper.make_node("Relu", ["y"], ["r"], name="relu"),
            helper.make_node("Reshape", ["r", "shape"], ["v"], name="view"),
            helper.make_node("Reshape", ["v", "back"], ["v2"], name="view_back"),
            helper.make_node("Add", ["v2", "x2"], ["z"], name="residual"),
        ]
    )
    fused.graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([1, 96, 1600], np.int64), "shape"),
            numpy_helper.from_array(np.array([1, 96, 40, 40], np.int64), "back"),
        ]
    )
    fused.graph.input.append(helper.make_tensor_value_info("x2", TensorProto.FLOAT, [1, 96, 40, 40]))
    device = Device("agx-orin-64gb", "MAXN", "fp16")
    (kernel,) = GraphRoofline(fused, device).routes[0]
    assert kernel.ops == ["Conv", "Relu", "Add"]
    alone = GraphRoofline(conv_graph(), device).routes[0][0]
    assert kernel.bytes == alone.bytes + 2 * 96 * 40 * 40  # the residual is read; y and r are never written

    apart = conv_graph(
        extra=[
            helper.make_node("Transpose", ["y"], ["t"], name="t", perm=[0, 1, 3, 2]),
            helper.make_node("Relu", ["t"], ["r"], name="relu"),
        ]
    )
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
        assert kernels["MAXN"].compute_ms / kernel.compute_ms == pytest.approx(
            spec.sms * spec.gpu_mhz / (top.sms * top.gpu_mhz) * utilisation
        )
        assert kernels["MAXN"].memory_ms / kernel.memory_ms == pytest.approx(spec.emc_mhz / top.emc_mhz)
    assert kernels["15W"].ms > kernels["30W"].ms > kernels["MAXN"].ms


def test_the_64gb_module_has_16_sms_and_the_32gb_module_14():
    assert Device("agx-orin-64gb", "MAXN", "fp16").sms == 16
    assert Device("agx-orin-32gb", "MAXN", "fp16").sms == 14
    assert Device("agx-orin-64gb", "MAXN", "fp16").matrix_ops_per_second() == pytest.approx(
        42.6e12, rel=0.01
    )  # the data sheet's dense FP16
    assert Device("agx-orin-64gb", "MAXN", "fp16").bytes_per_second() == pytest.approx(204.8e9)


def test_lower_precision_never_costs_more():
    model = conv_graph(cin=128, cout=256, side=64)
    ms = [GraphRoofline(model, Device("agx-orin-64gb", "MAXN", p)).routes[0][0].ms for p in ("fp32", "fp16", "int8")]
    assert ms[0] > ms[1] > ms[2]


@pytest.mark.parametrize(
    "module, mode, precision, message",
    [
        ("agx-orin-16gb", "MAXN", "fp16", "--module"),
        ("agx-orin-32gb", "50W", "fp16", "--power-mode on agx-orin-32gb must be one of MAXN, 40W, 30W, 15W"),
        ("agx-orin-64gb", "MAXN", "bf16", "--precision"),
    ],
)
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
    assert bundle.eager_ms() == pytest.approx(
        router + sum(branches) + (len(branches) - 1) * CONSTANTS["branch_overhead_us"].value / 1e3
    )
    kernels = [len(bundle.router) + len(branch) for branch in bundle.branches]
    saved = [
        (CONSTANTS["kernel_overhead_us"].value - CONSTANTS["cuda_graph_kernel_us"].value) * k / 1e3
        - 2 * CONSTANTS["cuda_graph_launch_us"].value / 1e3
        for k in kernels
    ]
    assert np.subtract(bundle.route_ms(), bundle.route_ms(cuda_graph=True)) == pytest.approx(saved)


def attention_graph(
    tokens=128, heads=4, head=64, mask=False, weights_out=False, scores_product=False, values_read=False
) -> onnx.ModelProto:
    """Self-attention on a packed QKV projection as PyTorch exports it: Split, per-head
    Reshape/Transpose, Q·Kᵀ, scale, optional mask, Softmax, ·V, heads merged back."""
    width = heads * head
    per_head, node = [1, tokens, heads, head], helper.make_node
    nodes = [
        node("Split", ["qkv", "sizes"], ["q", "k", "v"], name="split", axis=-1),
        node("Reshape", ["q", "per_head"], ["q4"], name="view_q"),
        node("Transpose", ["q4"], ["qh"], name="t_q", perm=[0, 2, 1, 3]),
        node("Reshape", ["k", "per_head"], ["k4"], name="view_k"),
        node("Transpose", ["k4"], ["kt"], name="t_k", perm=[0, 2, 3, 1]),
        node("Reshape", ["v", "per_head"], ["v4"], name="view_v"),
        node("Transpose", ["v4"], ["vh"], name="t_v", perm=[0, 2, 1, 3]),
        node("MatMul", ["qh", "kt"], ["scores"], name="qk"),
        node("Mul", ["scores", "scale"], ["scaled"], name="scale"),
    ]
    last = "scaled"
    if scores_product:  # a matrix product on the scores (dpedge's per-group heads summed into heads)
        nodes.append(node("MatMul", [last, "mix"], ["mixed"], name="mix"))
        last = "mixed"
    if mask:
        nodes.append(node("Add", [last, "mask"], ["masked"], name="mask"))
        last = "masked"
    nodes += [
        node("Softmax", [last], ["weights"], name="softmax", axis=-1),
        node("MatMul", ["weights", "vh"], ["context"], name="pv"),
        node("Transpose", ["context"], ["merged"], name="t_out", perm=[0, 2, 1, 3]),
        node("Reshape", ["merged", "flat"], ["out"], name="view_out"),
    ]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, tokens, width])]
    if weights_out:
        outputs.append(helper.make_tensor_value_info("weights", TensorProto.FLOAT, [1, heads, tokens, tokens]))
    if values_read:
        nodes.append(node("Relu", ["v4"], ["v_elsewhere"], name="elsewhere"))
        outputs.append(helper.make_tensor_value_info("v_elsewhere", TensorProto.FLOAT, per_head))
    inputs = [helper.make_tensor_value_info("qkv", TensorProto.FLOAT, [1, tokens, 3 * width])]
    if mask:
        inputs.append(helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, 1, tokens]))
    inits = [
        numpy_helper.from_array(np.array([width] * 3, np.int64), "sizes"),
        numpy_helper.from_array(np.array(per_head, np.int64), "per_head"),
        numpy_helper.from_array(np.array([1, tokens, width], np.int64), "flat"),
        numpy_helper.from_array(np.array(head**-0.5, np.float32), "scale"),
        numpy_helper.from_array(np.zeros((tokens, tokens), np.float32), "mix"),
    ]
    return helper.make_model(
        helper.make_graph(nodes, "attention", inputs, outputs, initializer=inits),
        opset_imports=[helper.make_opsetid("", 17)],
    )


@pytest.mark.parametrize("mask", [False, True], ids=["plain", "masked"])
def test_attention_is_one_kernel_that_never_writes_the_scores(mask):
    """TensorRT's MHA fusion in fp16: Q·Kᵀ, scale, mask, softmax and ·V run as one kernel
    that reads Q, K and V once and writes the merged heads; the split and the head
    transposes around it are no kernels; the tokens × tokens scores never reach memory."""
    tokens, heads, head = 128, 4, 64
    fused = GraphRoofline(
        attention_graph(tokens, heads, head, mask=mask), Device("agx-orin-64gb", "MAXN", "fp16")
    ).routes[0]
    assert len(fused) == 1
    (kernel,) = fused
    assert kernel.operations == 2 * 2 * heads * tokens * tokens * head  # the two products, a multiply-add counted as 2
    width = heads * head
    assert kernel.bytes == 2 * (
        3 * tokens * width + tokens * width + 1 + (tokens if mask else 0)
    )  # qkv, out, the scale (and mask)

    apart = GraphRoofline(
        attention_graph(tokens, heads, head, mask=mask), Device("agx-orin-64gb", "MAXN", "fp32")
    ).routes[0]
    scores = 4 * heads * tokens * tokens
    assert (
        len(apart) > 1 and next(k for k in apart if "Softmax" in k.ops).bytes >= 2 * scores
    )  # TF32 does not fuse: read and written


@pytest.mark.parametrize(
    "precision, explicit, head, fused",
    [
        ("fp16", False, 64, True),
        ("fp16", False, 8, False),
        ("fp16", False, 512, False),
        (
            "int8",
            False,
            64,
            False,
        ),  # dpedge's --int8 engines are calibrated implicitly: no MHA kernel (NVIDIA/TensorRT#4167)
        ("int8", True, 64, True),
        ("int8", True, 128, False),
        ("fp32", False, 64, False),
    ],
)
def test_attention_fuses_only_where_tensorrt_documents_it(precision, explicit, head, fused):
    model = attention_graph(tokens=64, heads=2, head=head)
    kernels = GraphRoofline(model, Device("agx-orin-64gb", "MAXN", precision), explicit_int8=explicit).routes[0]
    assert (len(kernels) == 1) is fused


@pytest.mark.parametrize("variant", ["weights_out", "scores_product"])
def test_attention_whose_scores_are_used_otherwise_stays_apart(variant):
    """Attention weights read beyond the block, or a matrix product on the scores (as
    dpedge's per-group heads do), need the scores in memory: no fused kernel."""
    kernels = GraphRoofline(attention_graph(**{variant: True}), Device("agx-orin-64gb", "MAXN", "fp16")).routes[0]
    assert ["Softmax"] in [k.ops for k in kernels]


def test_layout_ops_cost_nothing_only_where_the_fused_attention_alone_reads_them():
    kernels = GraphRoofline(attention_graph(values_read=True), Device("agx-orin-64gb", "MAXN", "fp16")).routes[0]
    assert [k.ops for k in kernels] == [
        ["Split"],
        ["MatMul", "Mul", "Softmax", "MatMul"],
        ["Relu"],
    ]  # V is read elsewhere: the split runs


def layernorm_graph(decomposed: bool, tokens=64, width=256) -> onnx.ModelProto:
    node = helper.make_node
    if decomposed:  # as dpedge's TokenNorm lowers it (ONNX LayerNormalization needs TensorRT ≥ 8.6)
        nodes = [
            node("ReduceMean", ["x"], ["mean"], name="mean", axes=[-1]),
            node("Sub", ["x", "mean"], ["centred"], name="centre"),
            node("Pow", ["centred", "two"], ["square"], name="square"),
            node("ReduceMean", ["square"], ["variance"], name="variance", axes=[-1]),
            node("Add", ["variance", "eps"], ["shifted"], name="eps"),
            node("Sqrt", ["shifted"], ["deviation"], name="sqrt"),
            node("Div", ["centred", "deviation"], ["normalised"], name="divide"),
            node("Mul", ["normalised", "gamma"], ["scaled"], name="gamma"),
            node("Add", ["scaled", "beta"], ["y"], name="beta"),
        ]
    else:
        nodes = [node("LayerNormalization", ["x", "gamma", "beta"], ["y"], name="ln", axis=-1)]
    inits = [
        numpy_helper.from_array(np.ones(width, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(width, np.float32), "beta"),
    ]
    if decomposed:
        inits += [
            numpy_helper.from_array(np.array(2.0, np.float32), "two"),
            numpy_helper.from_array(np.array(1e-5, np.float32), "eps"),
        ]
    graph_ = helper.make_graph(
        nodes,
        "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, tokens, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, tokens, width])],
        initializer=inits,
    )
    return helper.make_model(graph_, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("decomposed", [False, True], ids=["LayerNormalization", "primitive ops"])
def test_layernorm_is_one_kernel_reading_its_input_once(decomposed):
    tokens, width = 64, 256
    (kernel,) = GraphRoofline(
        layernorm_graph(decomposed, tokens, width), Device("agx-orin-64gb", "MAXN", "fp16")
    ).routes[0]
    constants = 2 if decomposed else 0  # the exponent and eps scalars
    assert kernel.bytes == 2 * (
        2 * tokens * width + 2 * width + constants
    )  # x in, y out, γ and β: no intermediate written


def test_bias_and_gelu_fuse_into_the_matrix_product_before_them():
    tokens, width, hidden = 64, 256, 1024
    node = helper.make_node
    nodes = [
        node("MatMul", ["x", "w"], ["h"], name="up"),
        node("Add", ["h", "b"], ["hb"], name="bias"),
        node("Div", ["hb", "root2"], ["z"], name="div"),
        node("Erf", ["z"], ["e"], name="erf"),
        node("Add", ["e", "one"], ["e1"], name="add1"),
        node("Mul", ["hb", "e1"], ["g"], name="mul"),
        node("Mul", ["g", "half"], ["y"], name="half"),
    ]
    inits = [
        numpy_helper.from_array(np.zeros((width, hidden), np.float32), "w"),
        numpy_helper.from_array(np.zeros(hidden, np.float32), "b"),
    ]
    inits += [
        numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("root2", 2**0.5), ("one", 1.0), ("half", 0.5))
    ]
    model = helper.make_model(
        helper.make_graph(
            nodes,
            "gelu",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, tokens, width])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, tokens, hidden])],
            initializer=inits,
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    (kernel,) = GraphRoofline(model, Device("agx-orin-64gb", "MAXN", "fp16")).routes[0]
    assert kernel.bytes == 2 * (
        tokens * width + width * hidden + hidden + tokens * hidden + 3
    )  # the pre-activation is never written
