"""The cost-model interface and its FLOPs implementation.

A sample's cost is the sum of its layers' costs plus a fixed part (the router, the run's
own overhead). A layer's cost depends on what the sample keeps there: `flops`, what the
layer's FLOPs formula counts under the masks; `width`, the share of the layer's FLOPs its
kept filters make at all positions; `regions`, the sample's count of kept regions. The
arithmetic is plain (+, ×, `clip`), so it runs on numpy values at export and on torch
tensors in training, where it is differentiable wherever the masks are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

COST_TARGETS = ("flops", "ort-cpu", "orin-emu")
"""--cost: what a budget is a ratio of: FLOPs, onnxruntime CPU milliseconds measured here,
or Jetson AGX Orin milliseconds emulated (dynaprune_edge.cost.roofline)."""


class CostModel(ABC):
    name: ClassVar[str]
    unit: ClassVar[str]

    @abstractmethod
    def layer_cost(self, layer: str, flops, width, regions):
        """Cost of layer `layer` (its path in the backbone) for one or many samples."""

    @abstractmethod
    def fixed_cost(self, router_flops: float) -> float:
        """Cost every sample of a pruned model pays whatever it keeps."""

    @abstractmethod
    def dense_cost(self, dense_flops: float) -> float:
        """Cost of the dense model (no router): what a budget is a ratio of."""

    def branch_costs(self) -> tuple[list[float], list[float]] | None:
        """A width-routed model's branches timed whole, as ratios to dense: (persistence,
        then each width level, router included; each width level alone). None: priced from
        the layers' costs (FLOPs, and the per-layer tables of region-pruned models)."""
        return None

    def tile_limit(self, layer: str) -> int | None:
        """The most kept regions at which `layer` runs on tiles (SBNet), above which it runs
        on whole maps and is charged in full; None: it tiles whenever regions are skipped."""
        return None

    def describe(self) -> str:
        return self.name

    def machine(self) -> dict:
        """Where the costs were measured (empty for a target that is computed, not measured)."""
        return {}


class FlopsCost(CostModel):
    name = "flops"
    unit = "FLOPs"

    def layer_cost(self, layer, flops, width, regions):
        return flops

    def fixed_cost(self, router_flops):
        return router_flops

    def dense_cost(self, dense_flops):
        return dense_flops


def cost_model(target: str, table: dict | None) -> CostModel:
    """The cost model a checkpoint's pruning settings name (`target`: checked by
    PruningConfig; `table`: a measured table's JSON)."""
    from dynaprune_edge.cost.table import CostTable, MeasuredCost
    from dynaprune_edge.errors import ConfigError

    if target == "flops":
        return FlopsCost()
    if table is None:
        raise ConfigError(f"cost target {target} needs its table (dpedge calibrate --cost {target})")
    return MeasuredCost(CostTable.from_dict(table))
