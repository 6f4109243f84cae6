"""The split layout: a routed graph cut into a router graph and one graph per branch
gives, for every branch, what the single graph gives."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.graph import GraphBuilder, tensor_info
from dynaprune_edge.export.routing import choose
from dynaprune_edge.runtime.manifest import BUCKET, BUDGET, FLOPS, FORECAST, INPUT
from dynaprune_edge.runtime.onnxruntime import open_session, session_options
from dynaprune_edge.runtime.split import SplitSessions, split_routed_graph

SHAPE = [1, 2, 1, 4, 4]
OUT = [1, 1, 1, 4, 4]  # the forecast: one frame
BRANCHES = 4


def routed_graph(shortcut: bool) -> onnx.ModelProto:
    """A small graph of the exported layout: a router (the index is how many of the last
    frame's cells exceed 0.5, capped, and a mask it computes), then a chain of `If`s whose
    branches read the padded input, the router's mask and shared constants, each computing
    something else; with `shortcut`, the chain sits inside an outer `If` on the budget whose
    other side runs the widest branch without the router (a width-routed graph)."""
    b = GraphBuilder("dpedge")
    x = b.op("Pad", INPUT, b.const(np.zeros(10, np.int64)), scope="input/pad", mode="constant")
    outputs = [tensor_info(FORECAST, OUT), tensor_info(FLOPS, []), tensor_info(BUCKET, [], np.int64)]
    host = b.branch("router") if shortcut else b
    last = host.op("Slice", x, host.const([1]), host.const([2]), host.const([1]), scope="router/fallback")
    hot = host.op("Cast", host.op("Greater", last, host.const(np.float32(0.5)), scope="router/regions"), scope="router/regions", to=b.FLOAT)
    count = host.op("ReduceSum", hot, scope="router/widths", keepdims=0)
    index = host.op("Cast", host.op("Min", count, host.const(np.float32(BRANCHES - 1)), scope="router/widths"), scope="router/widths", to=b.INT64)
    shared = b.const(np.float32(2.0), "shared")  # a top-level constant every branch reads

    def branch(builder: GraphBuilder, k: int, mask: str = hot) -> tuple[GraphBuilder, list[str]]:
        y = builder.op("Add", builder.op("Mul", x, builder.const(np.float32(k + 1)), scope="compute"), mask, scope="compute")
        y = builder.op("Mul", y, shared, scope="compute")
        forecast = builder.op("Slice", y, builder.const([1]), builder.const([2]), builder.const([1]), scope="compute")
        return builder, [forecast, builder.const(np.float32(10.0 * (k + 1)), "flops")]

    branches = [branch(host.branch(f"branch{k}"), k) for k in range(BRANCHES)]
    forecast, flops = choose(host, index, branches, outputs[:2])
    if not shortcut:
        chosen = index
    else:
        widest = b.branch("widest")
        widest_out = branch(widest, BRANCHES - 1, widest.const(np.float32(0)))[1]  # without the router, no mask
        full = b.op("GreaterOrEqual", BUDGET, b.const(np.float32(1)), scope="router/budget")
        forecast, flops, chosen = b.if_else(full, (widest, [*widest_out, widest.const(np.int64(BRANCHES - 1))]),
                                            (host, [forecast, flops, index]), outputs, scope="router/budget")
    b.identity(forecast, FORECAST)
    b.identity(flops, FLOPS)
    b.identity(chosen, BUCKET)
    inputs = [tensor_info(INPUT, SHAPE)] + ([tensor_info(BUDGET, [])] if shortcut else [])
    if shortcut:
        b.initializers.append(onnx.numpy_helper.from_array(np.array(0.5, np.float32), BUDGET))
    return b.model(inputs, outputs, "a routed test graph")


def sessions(graph: onnx.ModelProto, trained_budget: float | None):
    open_graph = lambda serialized, label: open_session(serialized, session_options(1), ["CPUExecutionProvider"], label)  # noqa: E731
    return open_graph(graph.SerializeToString(), "single"), SplitSessions(split_routed_graph(graph), open_graph, trained_budget)


def frames_reaching(branch: int, rng) -> np.ndarray:
    frames = rng.random(SHAPE).astype(np.float32) * 0.5
    cells = rng.choice(16, size=branch, replace=False)
    frames[0, 1, 0].flat[cells] = 0.9
    return frames


@pytest.mark.parametrize("shortcut", [False, True], ids=["region-routed", "width-routed"])
def test_every_branch_of_the_split_layout_gives_the_single_graphs_outputs(shortcut):
    graph = routed_graph(shortcut)
    onnx.checker.check_model(graph, full_check=True)
    single, split = sessions(graph, 0.5 if shortcut else None)
    rng = np.random.default_rng(0)
    for branch in range(BRANCHES):
        for _ in range(3):
            feeds = {INPUT: frames_reaching(branch, rng)}
            forecast, flops, bucket = single.run([FORECAST, FLOPS, BUCKET], feeds)
            ours = split.run(feeds, None)
            assert int(bucket) == branch == ours[2]
            assert np.abs(ours[0] - forecast).max() <= 1e-5 and ours[1] == pytest.approx(float(flops))


def test_a_width_routed_graph_at_budget_one_skips_the_router():
    graph = routed_graph(shortcut=True)
    single, split = sessions(graph, 0.5)
    cut = split_routed_graph(graph)
    assert cut.bypass is not None and [i.name for i in cut.bypass.graph.input] == [INPUT], "the budget-1 graph reads the frames only"
    assert not any(n.name.startswith("router/") for n in cut.bypass.graph.node)
    feeds = {INPUT: frames_reaching(0, np.random.default_rng(1))}  # the router would pick branch 0
    expected = single.run([FORECAST, FLOPS, BUCKET], {**feeds, BUDGET: np.array(1.0, np.float32)})
    forecast, flops, bucket = split.run(feeds, 1.0)
    assert bucket == int(expected[2]) == BRANCHES - 1 and np.array_equal(forecast, expected[0]) and flops == pytest.approx(float(expected[1]))


def test_a_branch_reads_only_the_router_tensors_it_needs():
    cut = split_routed_graph(routed_graph(shortcut=False))
    assert [o.name for o in cut.router.graph.output][0] == BUCKET
    for index in range(BRANCHES):
        inputs = cut.branch_inputs(index)
        assert INPUT in inputs and set(inputs) - {INPUT} <= set(cut.handoff)
        assert not any(n.name.startswith("router/") for n in cut.branches[index].graph.node), "no router work repeated in a branch"


def test_a_graph_without_branches_is_refused_in_one_line():
    b = GraphBuilder("dpedge")
    b.identity(INPUT, FORECAST)
    dense = b.model([tensor_info(INPUT, SHAPE)], [tensor_info(FORECAST, SHAPE)], "dense")
    with pytest.raises(ConfigError, match="not a routed dpedge graph"):
        split_routed_graph(dense)
