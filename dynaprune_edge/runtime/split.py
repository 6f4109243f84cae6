"""The routed graph split into graphs of its own: the router, and one sub-network per
branch, for runtimes that should not see the branches they do not take.

TensorRT builds an ONNX `If` into an IIfConditional, and public measurements show it
running the layers of branches a sample does not take (docs/design.md, "Split
layout"). A host that runs the router's engine, reads the branch index and then enqueues
that branch's engine alone pays for one branch only. onnxruntime runs only the taken
branch of an `If`, so there the single graph and the split one are timed against each
other and the faster is kept.

The split graphs are cut out of the exported routed graph, node for node, rather than
lowered again: whatever the single graph computes for a sample, the router graph and the
branch it picks compute the same, by construction. The cut follows the graph's layout
(export/network.py): a chain of `If` nodes scoped `router/branch`, the k-th testing
`Equal(index, k)`, whose leaves are the branches in index order, possibly inside an
outer `If` (a width-routed graph's budget-1 shortcut, which a host takes itself). A
branch reads the graph input and what the router computed (nodes scoped `router/`); the
router outputs those tensors beside the branch index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.runtime.manifest import BRANCH, FLOPS, FORECAST

CHAIN_SCOPE = "router/branch/"
ROUTER_SCOPE = "router/"


@dataclass
class SplitGraphs:
    """The router graph (the routed graph's inputs → `branch` and the tensors the branches
    read, `handoff`) and one graph per branch index (the graph input, if it reads it, and
    its share of `handoff` → `forecast` and `flops`, as the single graph outputs them)."""

    router: onnx.ModelProto
    branches: list[onnx.ModelProto]
    handoff: list[str]
    bypass: onnx.ModelProto | None = None  # the other side of an outer If (a width-routed graph at budget 1): no router

    def branch_inputs(self, index: int) -> list[str]:
        return [i.name for i in self.branches[index].graph.input]


@dataclass
class _Level:
    """One graph on the way from the top-level graph to a branch: its non-`If` nodes and
    its initializers."""

    graph: onnx.GraphProto

    @property
    def nodes(self) -> list[onnx.NodeProto]:
        return [n for n in self.graph.node if n.op_type != "If"]


def _branches(node: onnx.NodeProto) -> tuple[onnx.GraphProto, onnx.GraphProto]:
    graphs = {a.name: a.g for a in node.attribute}
    return graphs["then_branch"], graphs["else_branch"]


def _ifs(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    return [n for n in graph.node if n.op_type == "If"]


def _chain_head(graph: onnx.GraphProto) -> tuple[list[tuple[onnx.GraphProto, onnx.NodeProto, int]], onnx.NodeProto]:
    """The path of (graph, If, side taken: 0 then, 1 else) from `graph` down to the graph
    holding the head of the branch chain, and that head."""
    ifs = _ifs(graph)
    chain = [n for n in ifs if n.name.startswith(CHAIN_SCOPE)]
    if len(chain) == 1 and len(ifs) == 1:
        return [], chain[0]
    if len(ifs) == 1:  # an outer If (the budget-1 shortcut): the chain lies on one side of it
        for side, sub in enumerate(_branches(ifs[0])):
            try:
                path, head = _chain_head(sub)
            except ConfigError:
                continue
            return [(graph, ifs[0], side), *path], head
    raise ConfigError(
        "not a routed dpedge graph: no chain of router/branch If nodes to split (export it again with dpedge export)"
    )


def _aliases(path, alias: dict[str, str]) -> None:
    """Each `If` output on `path` is the output of the side taken."""
    for _, node, side in path:
        chosen = _branches(node)[side]
        for out, value in zip(node.output, chosen.output):
            alias[out] = value.name


def _types(model: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """Every tensor's type, subgraphs' included (shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    types: dict[str, onnx.ValueInfoProto] = {}

    def walk(graph: onnx.GraphProto) -> None:
        for value in [*graph.input, *graph.output, *graph.value_info]:
            types.setdefault(value.name, value)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    walk(attribute.g)

    walk(inferred.graph)
    return types


def _typed(name: str, types: dict[str, onnx.ValueInfoProto], as_name: str | None = None) -> onnx.ValueInfoProto:
    if name not in types:
        raise ConfigError(f"cannot split the routed graph: no static type for tensor {name!r}")
    value = onnx.ValueInfoProto()
    value.CopyFrom(types[name])
    value.name = as_name or name
    return value


def _extract(
    levels: list[_Level],
    alias: dict[str, str],
    wanted: list[tuple[str, str]],
    stop: set[str],
    top: onnx.GraphProto,
    types: dict[str, onnx.ValueInfoProto],
    name: str,
    opset,
) -> tuple[onnx.ModelProto, list[str]]:
    """The graph computing `wanted` ((tensor, output name) pairs) from the nodes of
    `levels` (If outputs read through `alias`), the top-level graph's inputs, and the
    `stop` tensors, which become inputs; returns it and the `stop` tensors it reads."""

    def resolve(tensor: str) -> str:
        while tensor in alias:
            tensor = alias[tensor]
        return tensor

    producers = {out: node for level in levels for node in level.nodes for out in node.output}
    initializers = {i.name: i for level in levels for i in level.graph.initializer}
    graph_inputs = {i.name for i in top.input}
    nodes, emitted_nodes, seen, inputs, used_initializers = [], set(), set(), [], []

    def need(tensor: str) -> None:
        tensor = resolve(tensor)
        if not tensor or tensor in seen:
            return
        seen.add(tensor)
        if tensor in stop or tensor in graph_inputs:
            inputs.append(tensor)
            if tensor in initializers:  # an optional input: its default comes along
                used_initializers.append(initializers[tensor])
        elif tensor in initializers:
            used_initializers.append(initializers[tensor])
        elif tensor in producers:
            node = producers[tensor]
            for source in node.input:
                need(source)
            if id(node) not in emitted_nodes:  # a node of several outputs is reached once per output
                emitted_nodes.add(id(node))
                nodes.append(node)
        else:
            raise ConfigError(f"cannot split the routed graph: tensor {tensor!r} has no producer on the branch's path")

    for tensor, _ in wanted:
        need(tensor)
    emitted = []
    for node in nodes:  # post-order: every node after its producers
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.ClearField("input")
        copy.input.extend(resolve(i) if i else i for i in node.input)
        emitted.append(copy)
    outputs = []
    for tensor, out_name in wanted:
        source = resolve(tensor)
        if source != out_name:
            emitted.append(helper.make_node("Identity", [source], [out_name], name=f"split/{out_name}"))
        outputs.append(_typed(source, types, out_name))
    ordered_inputs = [i for i in [t.name for t in top.input] if i in inputs] + [
        i for i in inputs if i not in graph_inputs
    ]
    graph = helper.make_graph(emitted, name, [_typed(i, types) for i in ordered_inputs], outputs, used_initializers)
    model = helper.make_model(graph, opset_imports=opset, producer_name="dpedge")
    return model, [i for i in ordered_inputs if i not in graph_inputs]


def split_routed_graph(model: onnx.ModelProto) -> SplitGraphs:
    """The routed graph `model` (dpedge export, a pruned mode) as a router graph and one
    graph per branch (module doc). A dense or single-width graph has nothing to split:
    a one-line error."""
    top = model.graph
    path, head = _chain_head(top)
    types = _types(model)
    opset = list(model.opset_import)
    alias: dict[str, str] = {}
    _aliases(path, alias)
    outer = [_Level(top), *(_Level(_branches(node)[side]) for _, node, side in path)]

    # the chain: head If tests Equal(index, 0), its else side holds the next If, …
    conditions = {out: node for level in outer for node in level.nodes for out in node.output}
    links, node = [], head
    while True:
        links.append(node)
        _, other = _branches(node)
        if len(other.node) == 1 and other.node[0].op_type == "If" and other.node[0].name.startswith(CHAIN_SCOPE):
            node = other.node[0]
        else:
            break
    initializers = {i.name: i for level in outer for i in level.graph.initializer}
    index = None
    for position, link in enumerate(links):
        test = conditions.get(link.input[0])
        constant = initializers.get(test.input[1]) if test is not None and test.op_type == "Equal" else None
        if (
            constant is None
            or int(onnx.numpy_helper.to_array(constant)) != position
            or (index not in (None, test.input[0]))
        ):
            raise ConfigError("cannot split the routed graph: its branch chain does not test the branch index in order")
        index = test.input[0]

    stop = {out for level in outer for node in level.nodes if node.name.startswith(ROUTER_SCOPE) for out in node.output}
    final_outputs = [(o.name, o.name) for o in top.output if o.name in (FORECAST, FLOPS)]
    branches, handoff = [], []
    for position in range(len(links) + 1):
        # branch k: the else side of links 0…k−1, then the then side of link k; the last branch: every else side
        last = position == len(links)
        leaf_path = [(None, link, 1) for link in links[:position]] + ([] if last else [(None, links[position], 0)])
        leaf_alias = dict(alias)
        _aliases(leaf_path, leaf_alias)
        leaf = _Level(_branches(links[-1])[1] if last else _branches(links[position])[0])
        graph, reads = _extract(
            outer + [leaf], leaf_alias, final_outputs, stop, top, types, f"dpedge-branch{position}", opset
        )
        branches.append(graph)
        handoff.extend(r for r in reads if r not in handoff)
    router, _ = _extract(
        outer, alias, [(index, BRANCH), *((h, h) for h in handoff)], set(), top, types, "dpedge-router", opset
    )
    return SplitGraphs(router, branches, handoff, _bypass(top, path, types, opset))


def _bypass(top: onnx.GraphProto, path, types, opset) -> onnx.ModelProto | None:
    """The graph of the side of the outer `If` that does not lead to the router (at most
    one such If), computing forecast, FLOPs and branch from the graph inputs alone."""
    if not path:
        return None
    if len(path) > 1:
        raise ConfigError("cannot split the routed graph: more than one If above its branch chain")
    graph, node, side = path[0]
    other = _branches(node)[1 - side]
    alias: dict[str, str] = {}
    _aliases([(graph, node, 1 - side)], alias)
    wanted = [(o.name, o.name) for o in top.output if o.name in (FORECAST, FLOPS, BRANCH)]
    router_tensors = {out for n in graph.node if n.name.startswith(ROUTER_SCOPE) for out in n.output}
    model, reads = _extract(
        [_Level(top), _Level(other)], alias, wanted, router_tensors, top, types, "dpedge-bypass", opset
    )
    if reads:
        raise ConfigError(
            "cannot split the routed graph: the side of its outer If that skips the router reads the router's tensors"
        )
    return model


class SplitSessions:
    """The split layout on onnxruntime: one session for the router and one per branch;
    a sample runs the router, then the branch it picked, reading the router's handoff
    tensors. A width-routed model at budget 1 runs its widest branch alone, as the single
    graph does."""

    def __init__(self, graphs: SplitGraphs, open_session, trained_budget: float | None) -> None:
        """open_session: serialized ONNX bytes and a label → an onnxruntime session;
        trained_budget: a width-routed graph's, which the budget input defaults to."""
        self.router = open_session(graphs.router.SerializeToString(), "the split router")
        self.branches = [
            open_session(g.SerializeToString(), f"split branch {i}") for i, g in enumerate(graphs.branches)
        ]
        self.bypass = (
            None
            if graphs.bypass is None
            else open_session(graphs.bypass.SerializeToString(), "the split budget-1 graph")
        )
        self.bypass_inputs = [] if graphs.bypass is None else [i.name for i in graphs.bypass.graph.input]
        self.router_outputs = [o.name for o in graphs.router.graph.output]
        self.branch_inputs = [graphs.branch_inputs(i) for i in range(len(graphs.branches))]
        self.trained_budget = trained_budget

    def run(self, feeds: dict[str, np.ndarray], budget: float | None) -> tuple[np.ndarray, float, int]:
        """One sample's (forecast, FLOPs, branch); feeds: the single graph's inputs."""
        budget = self.trained_budget if budget is None else budget
        if self.bypass is not None and budget is not None and budget >= 1.0:
            forecast, flops, branch = self.bypass.run(
                [FORECAST, FLOPS, BRANCH], {name: feeds[name] for name in self.bypass_inputs}
            )
            return np.asarray(forecast, np.float32), float(flops), int(branch)
        outputs = self.router.run(self.router_outputs, feeds)
        branch, handoff = int(outputs[0]), dict(zip(self.router_outputs[1:], outputs[1:]))
        inputs = {name: handoff[name] if name in handoff else feeds[name] for name in self.branch_inputs[branch]}
        forecast, flops = self.branches[branch].run([FORECAST, FLOPS], inputs)
        return np.asarray(forecast, np.float32), float(flops), branch
