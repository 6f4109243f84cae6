"""Dyna-Pruner's mask generator: one importance field S drives both the DataMask (which
regions a sample computes) and the ModelMask (which filter groups it uses).

Synchronisation: each layer's width is a learned monotone function of the sample's kept
data fraction, so sparse inputs run narrow networks; which groups fill that width is
chosen per sample from generator features pooled with S as weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dynaprune_edge.flops import conv_flops, matmul_flops
from dynaprune_edge.layers.conv import MaskedBatchNorm2d, conv_output_size, fold_batch_norm
from dynaprune_edge.layers.state import GateSpec
from dynaprune_edge.masks.config import MaskMode, PruningConfig


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Forward the hard value exactly (soft − soft is 0 in floating point; hard + soft −
    soft is not), backpropagate through the soft one."""
    return (soft - soft.detach()) + hard


ACTIVITY_SCALE = 0.01
"""Change between input frames (in normalised units, i.e. 1 % of the data's standard
deviation) at which the activity prior adds log 2 to a region's logit."""


@dataclass
class ImportanceField:
    features: Tensor  # (B, F, h, w) generator features at region resolution
    logits: Tensor  # (B, h, w); S = sigmoid(logits)

    @property
    def scores(self) -> Tensor:
        return torch.sigmoid(self.logits)


class MaskGenerator(nn.Module):
    """Strided 3×3 convs over the stacked input frames, down to one pixel per region, plus
    an activity prior. Cheap by construction: its few channels see the input once, not
    once per frame.

    The activity prior: a skipped region outputs the last input frame (persistence), which
    is exact where the inputs do not change (an empty city block, dry radar) and wrong
    where they do, so a region's logit gets `activity_weight` × log(1 + a/ACTIVITY_SCALE),
    a = the largest change between consecutive input frames anywhere in it (0 for a still
    region). The learned term alone did not find this within a short run: measured on NYC
    bike traffic (2/3 of its regions empty in a window), the router at budget 0.3 kept
    empty and busy regions alike (26 % vs 25 %) and forecast worse than persistence; with
    the prior it keeps the busy ones first (docs/design.md, "The activity prior")."""

    def __init__(
        self, in_channels: int, region_size: int, channels: int, keep_bias: float, activity_weight: float
    ) -> None:
        super().__init__()
        steps = int(math.log2(region_size))
        layers: list[nn.Module] = []
        for step in range(steps):
            layers += [
                nn.Conv2d(in_channels if step == 0 else channels, channels, 3, 2, 1, bias=False),
                # plain BatchNorm, its statistics summed over processes when there are several
                MaskedBatchNorm2d(channels),
                nn.ReLU(),
            ]
        self.body = nn.Sequential(*layers)
        self.feature_channels = channels if steps else in_channels  # a region of one pixel: the frames themselves
        self.importance = nn.Conv2d(self.feature_channels, 1, 1)
        nn.init.zeros_(self.importance.weight)
        nn.init.constant_(self.importance.bias, keep_bias)  # start with every region kept
        self.region_size = region_size
        self.activity_weight = activity_weight

    def forward(self, x: Tensor) -> ImportanceField:
        features = self.body(x.flatten(1, 2))  # frames stacked as channels
        logits = self.importance(features)[:, 0]
        if self.uses_activity(x.shape[1]):
            logits = logits + self.activity_weight * self.activity(x)
        return ImportanceField(features, logits)

    def uses_activity(self, frames: int) -> bool:
        """Whether the prior applies: it needs two input frames to see a change."""
        return self.activity_weight != 0 and frames > 1

    def activity(self, x: Tensor) -> Tensor:
        """(B, h, w) log(1 + a/ACTIVITY_SCALE) of each region of the (B, T, C, H, W) frames."""
        change = (x[:, 1:] - x[:, :-1]).abs().flatten(1, 2)  # (B, (T−1)·C, H, W)
        largest = F.max_pool2d(change, self.region_size).amax(dim=1)
        return torch.log1p(largest / ACTIVITY_SCALE)

    def stages(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        """The body's (conv, BatchNorm) pairs; each is followed by a ReLU."""
        layers = list(self.body)
        return [(layers[i], layers[i + 1]) for i in range(0, len(layers), 3)]

    def flops(self, height: int, width: int) -> float:
        """Multiply-adds of its convolutions (the activity prior is element-wise, which the
        FLOPs convention does not count)."""
        total, size = 0.0, (height, width)
        for conv in [conv for conv, _ in self.stages()] + [self.importance]:
            size = conv_output_size(size, conv)
            kernel_h, kernel_w = conv.kernel_size
            total += conv_flops(conv.in_channels, conv.out_channels, kernel_h * kernel_w, size[0] * size[1])
        return total

    def lower(self, graph, frames: str, shape: tuple[int, ...]) -> tuple[str, str]:
        """The generator in the exported router, BatchNorm folded: (1, T, C, H, W) frames →
        (features (1, F, h, w), logits (1, 1, h, w))."""
        _, count, channels, height, width = shape
        scope = "router/generator"

        def conv(z: str, module: nn.Conv2d, norm: nn.BatchNorm2d | None) -> str:
            weight, bias = fold_batch_norm(module, norm)
            return graph.conv(z, graph.const(weight, "weight"), graph.const(bias, "bias"), module, scope)

        stacked = graph.op("Reshape", frames, graph.const([1, count * channels, height, width]), scope=scope)
        z = stacked
        for module, norm in self.stages():
            z = graph.op("Relu", conv(z, module, norm), scope=scope)
        logits = conv(z, self.importance, None)
        if self.uses_activity(count):
            logits = graph.op(
                "Add", logits, self.lower_activity(graph, stacked, count * channels, channels, scope), scope=scope
            )
        return z, logits

    def lower_activity(self, graph, stacked: str, planes: int, channels: int, scope: str) -> str:
        """`activity_weight` × `activity` as (1, 1, h, w), of the (1, T·C, H, W) stacked
        frames: frames 1..T−1 less frames 0..T−2 are two channel slices of it."""
        axis = graph.const([1])
        later = graph.op("Slice", stacked, graph.const([channels]), graph.const([planes]), axis, scope=scope)
        earlier = graph.op("Slice", stacked, graph.const([0]), graph.const([planes - channels]), axis, scope=scope)
        change = graph.op("Abs", graph.op("Sub", later, earlier, scope=scope), scope=scope)
        size = [self.region_size] * 2
        largest = graph.reduce(
            "ReduceMax", graph.op("MaxPool", change, scope=scope, kernel_shape=size, strides=size), 1, scope
        )
        scaled = graph.op("Div", largest, graph.const(np.float32(ACTIVITY_SCALE)), scope=scope)
        prior = graph.op("Log", graph.op("Add", scaled, graph.const(np.float32(1)), scope=scope), scope=scope)
        return graph.op("Mul", prior, graph.const(np.float32(self.activity_weight)), scope=scope)


def region_rank(logits: Tensor) -> Tensor:
    """(B, R) 0-based descending rank of each region's logit, ties broken by region order
    (the lower index first): the same integers in torch and in the exported router, even
    for the exactly equal logits of identical (e.g. all-dry) regions."""
    this, other = logits[:, :, None], logits[:, None, :]
    before = torch.ones(logits.shape[1], logits.shape[1], dtype=torch.bool, device=logits.device).tril(-1)
    return ((other > this) | ((other == this) & before)).sum(dim=-1)


class DataMask(nn.Module):
    """Regions whose importance logit reaches the keep threshold are computed, at most
    `max_regions` of them per sample (its best-scoring ones): the mean budget and the
    per-sample cap (masks/budget.py), both calibrated after each epoch and saved with the
    model. Gradients flow to S (straight-through). Soft masks (early training) ignore the
    cap: they keep every region partly.

    In training the threshold is 0 (S ≥ ½): the budget penalty then keeps teaching the
    generator to meet the budget by itself, which orders the regions (identical dry ones
    sink, since keeping them buys nothing); a calibrated threshold in training would meet
    the budget for it and silence the penalty (measured on KNMI: dry regions kept tied
    logits near the top). Evaluation, export and the budget's statistics use the
    calibrated threshold, like BatchNorm's running statistics."""

    def __init__(self, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = grid
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("max_regions", torch.tensor(self.regions, dtype=torch.int64))

    @property
    def regions(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def capped(self) -> bool:
        return int(self.max_regions) < self.regions

    def forward(self, field: ImportanceField, mode: MaskMode) -> Tensor:
        scores, logits = field.scores, field.logits
        threshold = 0.0 if self.training else self.threshold
        if mode.hard:
            keep = logits >= threshold
            if self.capped:
                keep &= region_rank(logits.flatten(1)).reshape(logits.shape) < self.max_regions
            mask = straight_through(keep.to(scores.dtype), scores)
        else:
            mask = torch.sigmoid((logits - threshold) / mode.temperature)
        return mask[:, None]  # (B, 1, h, w)

    def routing_margin(self, logits: Tensor) -> Tensor:
        """(B,) how near each sample is to keeping other regions: the least distance of a
        logit from the threshold and, where the cap binds, the gap between the last kept
        and the first dropped logit (exactly equal logits excepted: `region_rank` orders
        those alike everywhere). Two runtimes computing the logits a few ulps apart may
        route a sample of margin ~1e-6 either way, and both are right."""
        flat = logits.flatten(1)
        margin = (flat - self.threshold).abs().amin(dim=1)
        if self.capped:
            ranked = flat.sort(dim=1, descending=True).values
            last_kept, first_dropped = ranked[:, int(self.max_regions) - 1], ranked[:, int(self.max_regions)]
            gap = last_kept - first_dropped
            binds = (first_dropped >= self.threshold) & (gap > 0)
            margin = torch.where(binds, torch.minimum(margin, gap), margin)
        return margin

    def lower(self, graph, logits: str) -> tuple[str, str]:
        """In the exported router: (float 0/1 kept regions like `logits`, their () int64
        count), by the same rule as the hard-mask forward."""
        scope = "router/regions"
        keep = graph.op("GreaterOrEqual", logits, graph.const(self.threshold.numpy().astype(np.float32)), scope=scope)
        if self.capped:
            keep = graph.op("And", keep, self.lower_cap(graph, logits, scope), scope=scope)
        keep = graph.op("Cast", keep, scope=scope, to=graph.FLOAT)
        count = graph.op("Cast", graph.op("ReduceSum", keep, scope=scope, keepdims=0), scope=scope, to=graph.INT64)
        return keep, count

    def lower_cap(self, graph, logits: str, scope: str) -> str:
        """(1, 1, h, w) bool: the region is among the sample's `max_regions` best
        (`region_rank` in ONNX: pairwise comparisons, summed as floats, which TensorRT 8
        reduces where it does not reduce integers). `max_regions` is one constant here, so
        a later router can take the cap as a run-time input instead."""
        flat = graph.op("Reshape", logits, graph.const([1, -1]), scope=scope)
        this = graph.op("Unsqueeze", flat, graph.const([2]), scope=scope)  # (1, R, 1)
        other = graph.op("Unsqueeze", flat, graph.const([1]), scope=scope)  # (1, 1, R)
        regions = self.regions
        before = graph.const(np.tril(np.ones((regions, regions), dtype=bool), -1)[None])
        ahead = graph.op(
            "Or",
            graph.op("Greater", other, this, scope=scope),
            graph.op("And", graph.op("Equal", other, this, scope=scope), before, scope=scope),
            scope=scope,
        )
        rank = graph.op(
            "ReduceSum", graph.op("Cast", ahead, scope=scope, to=graph.FLOAT), graph.const([2]), scope=scope, keepdims=0
        )
        best = graph.op("Less", rank, graph.const(np.float32(int(self.max_regions))), scope=scope)
        return graph.op("Reshape", best, graph.const([1, 1, *self.grid]), scope=scope)


def soft_rank(scores: Tensor, temperature: float) -> Tensor:
    """Differentiable 0-based descending rank of each group: Σ_j σ((s_j − s_i)/τ)."""
    pairwise = torch.sigmoid((scores[:, None, :] - scores[:, :, None]) / temperature)
    return pairwise.sum(dim=-1) - 0.5  # drop the self-comparison σ(0)


def hard_rank(scores: Tensor) -> Tensor:
    return scores.argsort(dim=-1, descending=True).argsort(dim=-1).to(scores.dtype)


def groups_at_widths(gates: list[GateSpec], widths: Tensor) -> Tensor:
    """(..., gates) groups each gate keeps at (..., gates) widths: the nearest whole number
    of groups at or above the width's share, never fewer than one. One rounding for the
    ModelMask, a slimmable network's width levels and the cost tables' timed levels."""
    groups = torch.tensor([g.groups for g in gates], dtype=widths.dtype, device=widths.device)
    return torch.ceil(widths * groups - 1e-4).clamp_min(1)


WIDTH_BIAS = 1.5
"""Initial c_gate: with every region kept, every layer starts at full width (σ(3.5) ≈ 0.97)."""


class ModelMask(nn.Module):
    """Per sample and gate: width = σ(a·4(kept data fraction − ½) + c_gate), quantised to
    the configured width levels; the top-`width` groups by per-sample score are kept
    (never fewer than one), or the first ones when the group order is "ordered"."""

    def __init__(self, gates: list[GateSpec], feature_channels: int, config: PruningConfig) -> None:
        super().__init__()
        self.gates = gates
        scored = config.group_order == "scored"
        self.scorers = nn.ModuleDict({g.name: nn.Linear(feature_channels, g.groups) for g in gates if scored})
        self.width_bias = nn.Parameter(torch.full((len(gates),), WIDTH_BIAS))
        self.density_gain = nn.Parameter(torch.tensor(math.log(math.e - 1)))  # softplus → 1
        self.register_buffer("levels", torch.tensor(config.width_levels), persistent=False)

    def widths(self, data_kept: Tensor) -> Tensor:
        """(B, gates) continuous widths in (0, 1), rising with the kept data fraction."""
        centred = 4.0 * (data_kept - 0.5)
        return torch.sigmoid(F.softplus(self.density_gain) * centred[:, None] + self.width_bias)

    def quantise(self, widths: Tensor) -> Tensor:
        nearest = (widths[..., None] - self.levels).abs().argmin(dim=-1)
        return straight_through(self.levels[nearest], widths)

    def forward(self, field: ImportanceField, data_mask: Tensor, mode: MaskMode) -> tuple[dict[str, Tensor], Tensor]:
        weights = field.scores[:, None]
        pooled = (field.features * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3)).clamp_min(1e-6)
        widths = self.widths(data_mask.mean(dim=(1, 2, 3)))
        if mode.hard:
            widths = self.quantise(widths)
            kept = self.kept_groups(widths)
        masks = {}
        for index, gate in enumerate(self.gates):
            scores = self.group_scores(gate, pooled)
            target = widths[:, index : index + 1] * gate.groups
            if mode.hard:
                hard = (hard_rank(scores) < kept[:, index : index + 1]).to(scores.dtype)
                soft = torch.sigmoid(target - soft_rank(scores, 1.0) - 0.5)
                groups = straight_through(hard, soft)
            else:
                groups = torch.sigmoid((target - soft_rank(scores, mode.temperature) - 0.5) / mode.temperature)
            masks[gate.name] = groups.repeat_interleave(gate.group_size, dim=1)
        return masks, widths

    def kept_groups(self, widths: Tensor) -> Tensor:
        """(B, gates) groups each gate keeps at the given quantised widths."""
        return groups_at_widths(self.gates, widths.detach())

    def group_scores(self, gate: GateSpec, pooled: Tensor) -> Tensor:
        """(B, groups): higher is kept first. Ordered groups rank by position, the same
        for every sample."""
        if gate.name in self.scorers:
            return self.scorers[gate.name](pooled)
        return torch.arange(gate.groups, 0, -1, dtype=pooled.dtype, device=pooled.device).expand(pooled.shape[0], -1)

    def flops(self) -> float:
        return float(sum(matmul_flops(1, s.in_features, s.out_features) for s in self.scorers.values()))

    @torch.no_grad()
    def width_table(self, regions: int) -> np.ndarray:
        """(regions + 1, gates) groups each gate keeps when n = 0..regions regions are kept,
        computed by the same code (and the same float32 arithmetic) as the hard-mask
        forward: every width is a function of n alone, which is what lets the export
        compile one sub-network per range of n."""
        masks = torch.tril(torch.ones(regions + 1, regions), diagonal=-1)  # row n: n regions kept
        return self.kept_groups(self.quantise(self.widths(masks.mean(dim=1)))).to(torch.int64).numpy()

    def lower_scores(self, graph, features: str, logits: str) -> dict[str, str]:
        """In the exported router: each gate's (1, groups) per-sample group scores, its
        linear scorer of the generator features pooled with S = σ(logits) as weights."""
        scope = "router/groups"
        importance = graph.op("Sigmoid", logits, scope=scope)
        axes = graph.const([2, 3])
        pooled = graph.op(
            "Div",
            graph.op("ReduceSum", graph.op("Mul", features, importance, scope=scope), axes, scope=scope, keepdims=0),
            graph.op(
                "Max",
                graph.op("ReduceSum", importance, axes, scope=scope, keepdims=0),
                graph.const(np.float32(1e-6)),
                scope=scope,
            ),
            scope=scope,
        )
        scorers = [self.scorers[gate.name] for gate in self.gates]
        weight = np.concatenate([s.weight.detach().numpy().T for s in scorers], axis=1)
        bias = np.concatenate([s.bias.detach().numpy() for s in scorers])
        scores = graph.op("Gemm", pooled, graph.const(weight, "scorer"), graph.const(bias, "scorer"), scope=scope)
        split = graph.op(
            "Split", scores, graph.const([g.groups for g in self.gates]), scope=scope, outputs=len(self.gates), axis=1
        )
        split = split if isinstance(split, list) else [split]
        return {gate.name: name for gate, name in zip(self.gates, split)}
