"""The split layout: a routed graph cut into a router graph and one graph per branch
gives, for every branch, what the single graph gives."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.graph import GraphBuilder, tensor_info
from dynaprune_edge.runtime.manifest import BRANCH, BUDGET, FLOPS, FORECAST, INPUT
from dynaprune_edge.runtime.onnxruntime import open_session, session_options
from dynaprune_edge.runtime.split import SplitSessions, split_routed_graph


def sessions(graph: onnx.ModelProto, trained_budget: float | None):
    open_graph = lambda serialized, label: open_session(serialized, session_options(1), ["CPUExecutionProvider"], label)
    return open_graph(graph.SerializeToString(), "single"), SplitSessions(
        split_routed_graph(graph), open_graph, trained_budget
    )


@pytest.mark.parametrize("shortcut", [False, True], ids=["region-routed", "width-routed"])
def test_every_branch_of_the_split_layout_gives_the_single_graphs_outputs(routed_toy, shortcut):
    graph = routed_toy.make(shortcut)
    onnx.checker.check_model(graph, full_check=True)
    single, split = sessions(graph, 0.5 if shortcut else None)
    rng = np.random.default_rng(0)
    for branch in range(routed_toy.branches):
        for _ in range(3):
            feeds = {INPUT: routed_toy.frames(branch, rng)}
            forecast, flops, chosen = single.run([FORECAST, FLOPS, BRANCH], feeds)
            ours = split.run(feeds, None)
            assert int(chosen) == branch == ours[2]
            assert np.abs(ours[0] - forecast).max() <= 1e-5 and ours[1] == pytest.approx(float(flops))


def test_a_width_routed_graph_at_budget_one_skips_the_router(routed_toy):
    graph = routed_toy.make(shortcut=True)
    single, split = sessions(graph, 0.5)
    cut = split_routed_graph(graph)
    assert cut.bypass is not None and [i.name for i in cut.bypass.graph.input] == [INPUT], (
        "the budget-1 graph reads the frames only"
    )
    assert not any(n.name.startswith("router/") for n in cut.bypass.graph.node)
    feeds = {INPUT: routed_toy.frames(0, np.random.default_rng(1))}  # the router would pick branch 0
    expected = single.run([FORECAST, FLOPS, BRANCH], {**feeds, BUDGET: np.array(1.0, np.float32)})
    forecast, flops, branch = split.run(feeds, 1.0)
    assert (
        branch == int(expected[2]) == routed_toy.branches - 1
        and np.array_equal(forecast, expected[0])
        and flops == pytest.approx(float(expected[1]))
    )


def test_a_branch_reads_only_the_router_tensors_it_needs(routed_toy):
    cut = split_routed_graph(routed_toy.make(shortcut=False))
    assert [o.name for o in cut.router.graph.output][0] == BRANCH
    for index in range(routed_toy.branches):
        inputs = cut.branch_inputs(index)
        assert INPUT in inputs and set(inputs) - {INPUT} <= set(cut.handoff)
        assert not any(n.name.startswith("router/") for n in cut.branches[index].graph.node), (
            "no router work repeated in a branch"
        )


def test_a_graph_without_branches_is_refused_in_one_line(routed_toy):
    b = GraphBuilder("dpedge")
    b.identity(INPUT, FORECAST)
    dense = b.model([tensor_info(INPUT, routed_toy.shape)], [tensor_info(FORECAST, routed_toy.shape)], "dense")
    with pytest.raises(ConfigError, match="not a routed dpedge graph"):
        split_routed_graph(dense)
