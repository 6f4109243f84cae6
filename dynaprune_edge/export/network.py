"""The whole exported graph: the router, one sub-network per branch plan (each an `If`
branch owning its weights) and the persistence fallback for skipped regions.

No NonZero and no data-dependent TopK K anywhere: every shape inside a branch is static.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from dynaprune_edge.data.base import Normalizer
from dynaprune_edge.export.graph import OPSET, Feature, GraphBuilder, tensor_info
from dynaprune_edge.export.plan import BranchPlan
from dynaprune_edge.export.regions import TilePolicy
from dynaprune_edge.export.routing import Branch, Routing, choose, route
from dynaprune_edge.export.subnetwork import SubNetwork
from dynaprune_edge.models import DynaPruner
from dynaprune_edge.runtime.manifest import BRANCH, BUDGET, FLOPS, FORECAST, INPUT

GRAPH_REVISION = 3
"""The operator patterns `build_graph` emits, numbered: a cost table times them, so one
measured for an earlier revision no longer prices what is exported (export/cost_table.py
refuses it and measures again). 2: whole-map region masks in the feature's blocked shape
(`RegionOps.blocked_region_mask`); 3: the width router in fewer operators
(`WidthRouter.lower`)."""


def frames_shape(shape, frames: int) -> tuple[int, ...]:
    return (1, frames, shape.channels, shape.height, shape.width)


def channel_constant(b: GraphBuilder, values: np.ndarray, hint: str) -> str:
    """Per-channel statistics broadcast over (1, T, C, H, W)."""
    return b.const(np.asarray(values, np.float32).reshape(1, 1, -1, 1, 1), hint)


def pad_input(b: GraphBuilder, model: DynaPruner, normalizer: Normalizer | None) -> Feature:
    """The frames the backbone and the router read: the graph input in physical units,
    normalised with the training data's statistics (`normalizer`; None: a graph that takes
    normalised frames, as the cost tables time), then DynaPruner.pad: zeros below and right
    of the user's frame where the grid is not what the regions and strides need. The
    normalisation is one pointwise kernel on TensorRT, outside the router's scope, so
    every engine of a split bundle takes the user's frames as they are."""
    frames = INPUT
    if normalizer is not None:
        centred = b.op("Sub", INPUT, channel_constant(b, normalizer.mean, "mean"), scope="input/normalise")
        frames = b.op("Div", centred, channel_constant(b, normalizer.std, "std"), scope="input/normalise")
    rows, columns = model.padding
    shape = frames_shape(model.backbone.shape, model.shape.frames_in)
    if not rows and not columns:
        return Feature(frames, shape)
    pads = b.const([0, 0, 0, 0, 0, 0, 0, 0, rows, columns], "pads")
    return Feature(b.op("Pad", frames, pads, scope="input/pad", mode="constant"), shape)


def crop_output(b: GraphBuilder, model: DynaPruner, forecast: str, normalizer: Normalizer | None) -> str:
    """DynaPruner.crop: the forecast at the user's grid, back in physical units (a scale
    and a shift: pointwise operations, which TensorRT fuses with their producer)."""
    if any(model.padding):
        shape = model.shape
        forecast = b.op(
            "Slice",
            forecast,
            b.const([0, 0]),
            b.const([shape.height, shape.width]),
            b.const([3, 4]),
            scope="output/crop",
        )
    if normalizer is None:
        return forecast
    scaled = b.op("Mul", forecast, channel_constant(b, normalizer.std, "std"), scope="output/denormalise")
    return b.op("Add", scaled, channel_constant(b, normalizer.mean, "mean"), scope="output/denormalise")


def output_types(model: DynaPruner) -> tuple[list[int], list[onnx.ValueInfoProto], list[onnx.ValueInfoProto]]:
    """(the padded forecast's shape, the branches' output types: forecast, FLOPs, branch,
    and the graph's, its forecast cropped to the user's grid)."""
    padded = list(frames_shape(model.backbone.shape, model.shape.frames_out))
    outputs = [tensor_info(FORECAST, padded), tensor_info(FLOPS, []), tensor_info(BRANCH, [], np.int64)]
    return (
        padded,
        outputs,
        [tensor_info(FORECAST, list(frames_shape(model.shape, model.shape.frames_out))), *outputs[1:]],
    )


def persistence_branch(
    b: GraphBuilder, x: Feature, out_shape: list[int], router_flops: float
) -> tuple[str, tuple[GraphBuilder, list[str]]]:
    """(the last input frame, the branch that outputs it as every forecast frame at the
    router's FLOPs): what a sample computing nothing forecasts."""
    last = b.op(
        "Slice", x.name, b.const([x.shape[1] - 1]), b.const([x.shape[1]]), b.const([1]), scope="router/fallback"
    )
    persistence = b.branch("persistence")
    outputs = [
        persistence.op("Expand", last, persistence.const(out_shape), scope="compute/persistence"),
        persistence.const(np.float32(router_flops), "flops"),
    ]
    return last, (persistence, outputs)


def scored(model: DynaPruner, mode: str) -> bool:
    """Whether each sample's own group scores choose its filters (gather mode, scored groups)."""
    return mode == "gather" and model.pruning.group_order == "scored"


def lower_backbone(
    model: DynaPruner, x: Feature, branch: Branch, mode: str, tiles: TilePolicy | None
) -> tuple[Feature, SubNetwork]:
    """The backbone's one forward on the (padded) frames `x`, emitted into `branch`:
    (forecast feature, the sub-network with the FLOPs it executes)."""
    net = SubNetwork(branch, model.backbone, mode, [g.name for g in model.gates], tiles)
    return model.backbone.program(net, x), net


def width_plan(model: DynaPruner, level: int) -> BranchPlan:
    """The static sub-network of a slimmable network's width level of index `level`: every
    region, every gate at that level's first groups, nothing masked."""
    groups = model.level_groups(model.pruning.width_levels[level])
    return BranchPlan(model.regions, model.regions, groups, frozenset())


def branch_flops(model: DynaPruner, plan: BranchPlan | None, tiles: TilePolicy | None) -> float:
    """FLOPs the backbone part of a branch executes (None: the dense baseline), from a
    throwaway lowering: the planner's cost, and the manifest's dense reference."""
    scratch = GraphBuilder("scratch")
    routing = None if plan is None else Routing(scratch, model.grid, "logits", "keep", "kept", np.zeros((1, 1)))
    x = Feature("frames", frames_shape(model.backbone.shape, model.shape.frames_in))
    _, net = lower_backbone(model, x, Branch(scratch, scratch, model.grid, routing, plan), "sliced", tiles)
    return net.flops


def build_graph(
    model: DynaPruner,
    plans: list[BranchPlan] | None,
    mode: str,
    width_table: np.ndarray | None,
    tiles: TilePolicy | None = None,
    opset: int = OPSET,
    width: int | None = None,
    normalizer: Normalizer | None = None,
) -> tuple[onnx.ModelProto, list[tuple[float, int]]]:
    """The exported graph and, per branch, the FLOPs it executes (router included) and the
    tiles its tiled layers compute (0: every layer runs on whole maps).

    plans None: the dense baseline (no router, every region and filter computed), or with
    `width` (a width level's index) that level's static slice of a slimmable network, its
    BatchNorm statistics folded in.
    tiles: which layers of which branches run on the kept regions' tiles; the others run
    on whole maps, masked (None: no tiles).
    normalizer: the training data's statistics, applied by the graph's first and last nodes
    so that it speaks physical units (the export); None: normalised units throughout."""
    shape = model.backbone.shape
    b = GraphBuilder("dpedge", opset=opset)
    x = pad_input(b, model, normalizer)
    out_shape, outputs, final = output_types(model)  # padded, until the crop at the end
    inputs = [tensor_info(INPUT, list(frames_shape(model.shape, model.shape.frames_in)))]
    if plans is None:
        plan = None if width is None else width_plan(model, width)
        with model.at_width(-1 if width is None else width):
            y, net = lower_backbone(
                model, x, Branch(b, b, model.grid, None, plan), "dense" if plan is None else "sliced", None
            )
        b.identity(crop_output(b, model, y.name, normalizer), FORECAST)
        b.identity(b.const(np.float32(net.flops), "flops"), FLOPS)
        b.identity(b.const(np.int64(0), "branch"), BRANCH)
        described = "dense" if width is None else f"width {model.pruning.width_levels[width]:g}"
        return b.model(inputs, final, f"dpedge {described} export"), [(net.flops, 0)]

    routing = route(b, model, x, scored(model, mode), width_table)
    router_flops = model.mask_flops()
    scope = "router/fallback"
    last, persistence = persistence_branch(b, x, out_shape, router_flops)
    full = routing.region_mask((shape.height, shape.width))
    region = b.op("Unsqueeze", full, b.const([0]), scope=scope)  # (1, 1, 1, H, W)
    fallback = b.op("Mul", b.op("Sub", b.const(np.float32(1)), region, scope=scope), last, scope=scope)

    branches: list[tuple[GraphBuilder, list[str]]] = [persistence]
    costs: list[tuple[float, int]] = [(router_flops, 0)]
    for index, plan in enumerate(plans, start=1):
        builder = b.branch(f"subnetwork{index}")
        y, net = lower_backbone(model, x, Branch(builder, b, model.grid, routing, plan), mode, tiles)
        blended = builder.op(
            "Add", builder.op("Mul", region, y.name, scope="compute/fallback"), fallback, scope="compute/fallback"
        )
        total = router_flops + net.flops
        branches.append((builder, [blended, builder.const(np.float32(total), "flops")]))
        costs.append((total, plan.hi if net.regions.used_tiles else 0))

    scope = "router/branch"
    bounds = b.const(
        np.array([0] + [p.hi for p in plans[:-1]], np.int64)
    )  # branch i serves bounds[i−1] < n ≤ bounds[i]
    passed = b.op("Cast", b.op("Less", bounds, routing.kept_regions, scope=scope), scope=scope, to=b.FLOAT)
    branch = b.op(
        "Cast", b.op("ReduceSum", passed, scope=scope, keepdims=0), scope=scope, to=b.INT64
    )  # TensorRT 8 reduces floats only
    forecast, flops_out = choose(b, branch, branches, outputs[:2])
    b.identity(crop_output(b, model, forecast, normalizer), FORECAST)
    b.identity(flops_out, FLOPS)
    b.identity(branch, BRANCH)
    return b.model(inputs, final, f"dpedge {mode} export"), costs


def build_width_router_graph(
    model: DynaPruner, opset: int = OPSET, normalizer: Normalizer | None = None
) -> tuple[onnx.ModelProto, list[tuple[float, int]]]:
    """A width-routed slimmable model's graph: its router (mask generator, width head, the
    price of the run-time `budget` input, whose default is the trained budget) chooses one
    branch per sample: persistence, or one width level as a static network (every region,
    that level's weight slices and BatchNorm statistics, constant weights of its own).
    Returns the graph and, per branch, the FLOPs it executes (router included); normalizer
    as in `build_graph`.

    At budget 1 every sample runs the widest level: an `If` on the budget runs it alone,
    without the router (its many small operators cost a fifth of a small model's latency on
    a CPU) or the chain of `If`s that picks a branch (about 15 µs on a 0.25 ms NYC bike
    SimVP in onnxruntime: 6 % of its latency). The widest level's weights are stored twice,
    once in that branch and once in the router's chain, each owning its constants."""
    b = GraphBuilder("dpedge", opset=opset)
    x = pad_input(b, model, normalizer)
    out_shape, outputs, final = output_types(model)
    # An input with an initializer of its name: optional at run time, the trained budget when omitted.
    b.initializers.append(numpy_helper.from_array(np.array(model.pruning.budget, np.float32), BUDGET))
    inputs = [tensor_info(INPUT, list(frames_shape(model.shape, model.shape.frames_in))), tensor_info(BUDGET, [])]
    levels = len(model.pruning.width_levels)

    def level_branch(
        builder: GraphBuilder, level: int, router_flops: float
    ) -> tuple[tuple[GraphBuilder, list[str]], float]:
        """Width level `level` as a static network in `builder`: ((builder, [forecast, FLOPs
        output]), the FLOPs it executes, router included)."""
        with model.at_width(level):
            y, net = lower_backbone(
                model, x, Branch(builder, b, model.grid, None, width_plan(model, level)), "sliced", None
            )
        flops = router_flops + net.flops
        return (builder, [y.name, builder.const(np.float32(flops), "flops")]), flops

    (widest, (widest_forecast, widest_flops)), _ = level_branch(b.branch("widest"), levels - 1, 0.0)
    router_flops = model.mask_flops()
    router = b.branch("router")
    features, logits = model.lower_importance(router, x.name, x.shape)
    branch = router.identity(
        model.width_router.lower(router, features, logits, BUDGET, model.regions),
        "routed_branch",
        scope="router/widths",
    )
    _, persistence = persistence_branch(router, x, out_shape, router_flops)
    branches, costs = [persistence], [(router_flops, 0)]
    for level in range(levels):
        lowered, flops = level_branch(router.branch(f"width{level}"), level, router_flops)
        branches.append(lowered)
        costs.append((flops, 0))
    routed_forecast, routed_flops = choose(router, branch, branches, outputs[:2])
    full = b.op("GreaterOrEqual", BUDGET, b.const(np.float32(1)), scope="router/budget")
    forecast, flops_out, chosen = b.if_else(
        full,
        (widest, [widest_forecast, widest_flops, widest.const(np.int64(levels), "widest")]),
        (router, [routed_forecast, routed_flops, branch]),
        outputs,
        scope="router/budget",
    )
    b.identity(crop_output(b, model, forecast, normalizer), FORECAST)
    b.identity(flops_out, FLOPS)
    b.identity(chosen, BRANCH)
    return b.model(inputs, final, "dpedge width-routed export"), costs


def router_graph(model: DynaPruner, mode: str, normalizer: Normalizer | None = None) -> onnx.ModelProto:
    """The router alone, as the exported graph runs it (mask generator, kept-region count,
    per-sample group scores in gather mode): timed against the whole graph, the share of
    latency that deciding what to compute costs."""
    b = GraphBuilder("dpedge-router")
    x = pad_input(b, model, normalizer)
    routing = route(b, model, x, scored(model, mode), np.zeros((model.regions + 1, len(model.gates)), np.int64))
    outputs = {"kept_regions": routing.kept_regions, **routing.group_scores}
    for name, source in outputs.items():
        b.identity(source, name)
    inputs = [tensor_info(INPUT, list(frames_shape(model.shape, model.shape.frames_in)))]
    return b.model(inputs, [onnx.helper.make_empty_tensor_value_info(n) for n in outputs], "dpedge router")
