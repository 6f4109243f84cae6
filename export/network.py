"""The whole exported graph: router (mask generator → kept regions, group scores, branch
index), one branch per sub-network, chosen by a chain of `If` nodes (0-D bool conditions,
as TensorRT's IIfConditional needs), and the persistence fallback for skipped regions.

No NonZero and no data-dependent TopK K anywhere: every shape inside a branch is static.
"""

from __future__ import annotations

import numpy as np
import onnx

from dynaprune_edge.export.backbones import lowering_for
from dynaprune_edge.export.graph import OPSET, GraphBuilder, tensor_info
from dynaprune_edge.export.lowering import BranchPlan, Feature, Routing, SubNetwork, TilePolicy, fold_batch_norm
from dynaprune_edge.models import DynaPruner
from dynaprune_edge.runtime.manifest import BUCKET, FLOPS, FORECAST, INPUT

class Router:
    """The mask generator and what the branches need from it, in the top-level graph."""

    def __init__(self, b: GraphBuilder, model: DynaPruner, x: Feature, scored: bool, width_table: np.ndarray) -> None:
        generator = model.generator
        _, frames, channels, height, width = x.shape
        scope = "router/generator"
        z = b.op("Reshape", x.name, b.const([1, frames * channels, height, width]), scope=scope)
        body = list(generator.body)
        for conv, norm in zip(body[0::3], body[1::3]):
            weight, bias = fold_batch_norm(conv, norm)
            z = b.op("Relu", b.op("Conv", z, b.const(weight, "weight"), b.const(bias, "bias"), scope=scope, kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4), scope=scope)
        features = z
        weight, bias = fold_batch_norm(generator.importance, None)
        logits = b.op("Conv", features, b.const(weight, "weight"), b.const(bias, "bias"), scope=scope, kernel_shape=[1, 1])
        scope = "router/regions"
        keep = b.op("Cast", b.op("GreaterOrEqual", logits, b.const(np.float32(0)), scope=scope), scope=scope, to=onnx.TensorProto.FLOAT)
        kept = b.op("Cast", b.op("ReduceSum", keep, scope=scope, keepdims=0), scope=scope, to=onnx.TensorProto.INT64)
        self.routing = Routing(
            shared=b,
            grid=model.grid,
            region_logits=b.op("Reshape", logits, b.const([1, -1]), scope=scope),
            keep=keep,
            kept_regions=kept,
            widths=width_table,
        )
        if scored:
            self.routing.group_scores = self.group_scores(b, model, features, logits)
        self.flops = generator.flops(height, width) + model.model_mask.flops()

    @staticmethod
    def group_scores(b: GraphBuilder, model: DynaPruner, features: str, logits: str) -> dict[str, str]:
        """Each gate's per-sample group scores: its linear scorer of the generator features
        pooled with S = σ(logits) as weights (ModelMask.forward)."""
        scope = "router/groups"
        importance = b.op("Sigmoid", logits, scope=scope)
        axes = b.const([2, 3])
        pooled = b.op(
            "Div",
            b.op("ReduceSum", b.op("Mul", features, importance, scope=scope), axes, scope=scope, keepdims=0),
            b.op("Max", b.op("ReduceSum", importance, axes, scope=scope, keepdims=0), b.const(np.float32(1e-6)), scope=scope),
            scope=scope,
        )
        scorers = [model.model_mask.scorers[gate.name] for gate in model.gates]
        weight = np.concatenate([s.weight.detach().numpy().T for s in scorers], axis=1)
        bias = np.concatenate([s.bias.detach().numpy() for s in scorers])
        scores = b.op("Gemm", pooled, b.const(weight, "scorer"), b.const(bias, "scorer"), scope=scope)
        split = b.op("Split", scores, b.const([g.groups for g in model.gates]), scope=scope, outputs=len(model.gates), axis=1)
        split = split if isinstance(split, list) else [split]
        return {gate.name: name for gate, name in zip(model.gates, split)}


def build_graph(
    backbone: str,
    model: DynaPruner,
    plans: list[BranchPlan] | None,
    mode: str,
    width_table: np.ndarray | None,
    tiles: TilePolicy | None = None,
    opset: int = OPSET,
) -> tuple[onnx.ModelProto, list[tuple[float, int]]]:
    """The exported graph and, per branch, the FLOPs it executes (router included) and the
    tiles its tiled layers compute (0: every layer runs on whole maps).

    plans None: the dense baseline (no router, every region and filter computed).
    tiles: which layers of which branches run on the kept regions' tiles; the others run
    on whole maps, masked (None: no tiles)."""
    shape = model.backbone.shape
    in_shape = (1, shape.frames_in, shape.channels, shape.height, shape.width)
    out_shape = [1, shape.frames_out, shape.channels, shape.height, shape.width]
    lower = lowering_for(backbone)
    b = GraphBuilder("dpedge", opset=opset)
    x = Feature(INPUT, in_shape)
    gate_order = [g.name for g in model.gates]
    outputs = [tensor_info(FORECAST, out_shape), tensor_info(FLOPS, []), tensor_info(BUCKET, [], np.int64)]
    if plans is None:
        net = SubNetwork(b, b, None, None, "dense", model.backbone.group_size, gate_order)
        y = lower(model.backbone, net, x)
        b.identity(y.name, FORECAST)
        b.identity(b.const(np.float32(net.flops), "flops"), FLOPS)
        b.identity(b.const(np.int64(0), "bucket"), BUCKET)
        return b.model([tensor_info(INPUT, list(in_shape))], outputs, "dpedge dense export"), [(net.flops, 0)]

    router = Router(b, model, x, scored=mode == "gather" and model.pruning.group_order == "scored", width_table=width_table)
    routing = router.routing
    scope = "router/fallback"
    last = b.op("Slice", x.name, b.const([shape.frames_in - 1]), b.const([shape.frames_in]), b.const([1]), scope=scope)
    full = routing.region_mask((shape.height, shape.width))
    region = b.op("Unsqueeze", full, b.const([0]), scope=scope)  # (1, 1, 1, H, W)
    fallback = b.op("Mul", b.op("Sub", b.const(np.float32(1)), region, scope=scope), last, scope=scope)

    branches: list[tuple[GraphBuilder, list[str]]] = []
    costs: list[tuple[float, int]] = []
    persistence = b.branch("persistence")
    branches.append((persistence, [persistence.op("Expand", last, persistence.const(out_shape), scope="compute/persistence"),
                                   persistence.const(np.float32(router.flops), "flops")]))
    costs.append((router.flops, 0))
    for index, plan in enumerate(plans, start=1):
        branch = b.branch(f"subnetwork{index}")
        net = SubNetwork(branch, b, routing, plan, mode, model.backbone.group_size, gate_order, tiles)
        y = lower(model.backbone, net, x)
        blended = branch.op("Add", branch.op("Mul", region, y.name, scope="compute/fallback"), fallback, scope="compute/fallback")
        total = router.flops + net.flops
        branches.append((branch, [blended, branch.const(np.float32(total), "flops")]))
        costs.append((total, plan.hi if net.tiling else 0))

    scope = "router/branch"
    bounds = b.const(np.array([0] + [p.hi for p in plans[:-1]], np.int64))  # branch i serves bounds[i−1] < n ≤ bounds[i]
    passed = b.op("Cast", b.op("Less", bounds, routing.kept_regions, scope=scope), scope=scope, to=onnx.TensorProto.FLOAT)
    bucket = b.op("Cast", b.op("ReduceSum", passed, scope=scope, keepdims=0), scope=scope, to=onnx.TensorProto.INT64)  # TensorRT 8 reduces floats only
    forecast, flops_out = choose(b, bucket, branches, outputs[:2])
    b.identity(forecast, FORECAST)
    b.identity(flops_out, FLOPS)
    b.identity(bucket, BUCKET)
    return b.model([tensor_info(INPUT, list(in_shape))], outputs, f"dpedge {mode} export"), costs


def choose(b: GraphBuilder, index: str, branches: list[tuple[GraphBuilder, list[str]]], types) -> list[str]:
    """The outputs of branches[index]: If(index == 0, branch 0, If(index == 1, …, last))."""
    conditions = [b.op("Equal", index, b.const(np.int64(i)), scope="router/branch") for i in range(len(branches) - 1)]
    chosen = branches[-1]
    for position in range(len(branches) - 2, -1, -1):
        host = b if position == 0 else b.branch(f"choose{position}")
        chosen = (host, host.if_else(conditions[position], branches[position], chosen, types, scope="router/branch"))
    return chosen[1]


def router_graph(model: DynaPruner, mode: str) -> onnx.ModelProto:
    """The router alone, as the exported graph runs it (mask generator, kept-region count,
    per-sample group scores in gather mode): timed against the whole graph, the share of
    latency that deciding what to compute costs."""
    shape = model.backbone.shape
    in_shape = (1, shape.frames_in, shape.channels, shape.height, shape.width)
    b = GraphBuilder("dpedge-router")
    regions = model.grid[0] * model.grid[1]
    router = Router(b, model, Feature(INPUT, in_shape), scored=mode == "gather" and model.pruning.group_order == "scored",
                    width_table=np.zeros((regions + 1, len(model.gates)), np.int64))
    outputs = {"kept_regions": router.routing.kept_regions, **router.routing.group_scores}
    for name, source in outputs.items():
        b.identity(source, name)
    return b.model([tensor_info(INPUT, list(in_shape))], [onnx.helper.make_empty_tensor_value_info(n) for n in outputs], "dpedge router")
