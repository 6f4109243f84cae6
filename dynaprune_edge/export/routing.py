"""Routing: what the router computes for a sample in the top-level graph (the mask
generator's regions and group scores), which sub-network it takes (a chain of `If` nodes on
0-D bool conditions, as TensorRT's IIfConditional needs), and the per-branch context its
sub-network is emitted in."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dynaprune_edge.export.graph import Feature, GraphBuilder
from dynaprune_edge.export.plan import BranchPlan
from dynaprune_edge.models import DynaPruner
from dynaprune_edge.runtime.manifest import KEPT_REGIONS


@dataclass
class Routing:
    """What the router computed for the sample, outside the branches: names of top-level
    tensors the branches read from the outer scope."""

    shared: GraphBuilder
    grid: tuple[int, int]
    region_logits: str  # (1, regions) importance logits, row-major regions
    keep: str  # (1, 1, grid_h, grid_w) float 0/1 kept regions
    kept_regions: str  # () int64 count of kept regions
    widths: np.ndarray  # (regions + 1, gates) kept groups per gate, for n = 0..R kept regions
    group_scores: dict[str, str] = field(default_factory=dict)  # gate → (1, groups); scored groups only
    _region_masks: dict[tuple[int, int], str] = field(default_factory=dict)

    @property
    def regions(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def width_table(self) -> str:
        """The kept-groups table as a top-level constant (only branches that mask use it)."""
        return self.shared.const(self.widths.astype(np.int64), "widths")

    def region_mask(self, size: tuple[int, int]) -> str:
        """(1, 1, H, W) kept-region mask at a feature resolution the grid divides."""
        if size not in self._region_masks:
            scale = [1.0, 1.0, size[0] / self.grid[0], size[1] / self.grid[1]]
            self._region_masks[size] = self.shared.op(
                "Resize",
                self.keep,
                "",
                self.shared.const(scale),
                scope="router/regions",
                mode="nearest",
                nearest_mode="floor",
                coordinate_transformation_mode="asymmetric",
            )
        return self._region_masks[size]


def route(b: GraphBuilder, model: DynaPruner, x: Feature, scored: bool, widths: np.ndarray) -> Routing:
    """The router in the top-level graph `b`: the mask generator (BatchNorm folded), the
    kept regions and their count, and (`scored`: per-sample group choice) each gate's
    group scores. Its cost is `model.mask_flops()`."""
    features, logits = model.lower_importance(b, x.name, x.shape)
    keep, kept = model.data_mask.lower(b, logits)
    keep = b.identity(keep, KEPT_REGIONS, scope="router/regions")
    region_logits = b.op("Reshape", logits, b.const([1, -1]), scope="router/regions")
    routing = Routing(
        shared=b, grid=model.grid, region_logits=region_logits, keep=keep, kept_regions=kept, widths=widths
    )
    if scored:
        routing.group_scores = model.model_mask.lower_scores(b, features, logits)
    return routing


@dataclass
class Branch:
    """One sub-network being emitted: the builder its nodes go to, the top-level graph it
    may read constants and router outputs from, the model's region grid, what the router
    computed (None: the dense export, which has no router) and what the branch computes
    (None: everything)."""

    builder: GraphBuilder
    shared: GraphBuilder
    grid: tuple[int, int]
    routing: Routing | None
    plan: BranchPlan | None
    _cache: dict[tuple, str] = field(default_factory=dict)

    @property
    def regions(self) -> int:
        return self.grid[0] * self.grid[1]

    def cached(self, key: tuple, make) -> str:
        """`make()` once per branch (index tensors shared by the layers that need them)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]


def choose(b: GraphBuilder, index: str, branches: list[tuple[GraphBuilder, list[str]]], types) -> list[str]:
    """The outputs of branches[index]: If(index == 0, branch 0, If(index == 1, …, last))."""
    conditions = [b.op("Equal", index, b.const(np.int64(i)), scope="router/branch") for i in range(len(branches) - 1)]
    chosen = branches[-1]
    for position in range(len(branches) - 2, -1, -1):
        host = b if position == 0 else b.branch(f"choose{position}")
        chosen = (host, host.if_else(conditions[position], branches[position], chosen, types, scope="router/branch"))
    return chosen[1]
