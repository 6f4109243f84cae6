"""A cost table (`--cost ort-cpu`: measured; `--cost orin-emu`: emulated) and the cost model
that prices samples from it.

The table holds, per layer of one model architecture, the milliseconds onnxruntime spent
in that layer's nodes inside the exported sub-networks (dynaprune_edge.export.cost_table):
- `tiled_ms[w][k]`: the layer on the tiles of `region_points[k]` kept regions, at width
  level w (every gate keeping that share of its groups); point 0 is the all-skipped
  branch, where no layer runs (0 ms), and point R computes every region on whole maps;
- `whole_ms[w]`: the layer on whole maps, skipped regions computed and zeroed.
A layer's width axis is `width_share[w]`, the share of its FLOPs its kept filters make at
level w (1 at every level for a layer without gates). A sample whose layer keeps another
share is priced between the measured points (bilinear), so the price is differentiable in
both the width and the kept-region count. The tables are made non-decreasing along both
axes (a sample never costs less for keeping more; timing noise aside, it does not), which
makes the interpolation monotone.

"Skip only what pays": a layer's `tile_limit` is the most regions at which its tiles were
measured faster than its whole map; above it (and for every sample, if tiles never pay) the
layer runs on whole maps, in training (charged in full) and in the exported graph alike.

A width-routed slimmable model (masks/router.py) has few branches, each a whole static
network, so its table times each branch's graph itself (`branches`: `BranchTimes`) and has
no per-layer times: summing per-layer times of region-pruned graphs priced a NYC bike
SimVP's half-width level at 1.6× the dense model's milliseconds where it runs at 0.68×.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib import metadata

import numpy as np

from dynaprune_edge.cost.base import CostModel
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.hardware import cpu_model

FORMAT = 1


def machine_fingerprint(threads: int) -> dict:
    """What a measured table is only valid for: the CPU, its core count, the onnxruntime
    threads it was timed with and the onnxruntime version."""
    try:
        onnxruntime = metadata.version("onnxruntime")
    except metadata.PackageNotFoundError:
        onnxruntime = "not installed"
    return {"cpu": cpu_model(), "cores": os.cpu_count() or 1, "threads": int(threads), "onnxruntime": onnxruntime}


def hat_weights(x, points: np.ndarray) -> list:
    """Weights of the measured `points` (ascending) for x: piecewise-linear 'hat'
    functions that sum to 1 (x is clamped to the measured range)."""
    if len(points) == 1:
        return [x * 0 + 1]
    x = x.clip(float(points[0]), float(points[-1]))
    weights = []
    for i, point in enumerate(points):
        weight = x * 0 + 1
        if i > 0:
            weight = weight * ((x - points[i - 1]) / (point - points[i - 1])).clip(0.0, 1.0)
        if i < len(points) - 1:
            weight = weight * ((points[i + 1] - x) / (points[i + 1] - point)).clip(0.0, 1.0)
        weights.append(weight)
    return weights


def monotone(times: np.ndarray) -> np.ndarray:
    """Running maximum along every axis: more kept work never costs less."""
    for axis in range(times.ndim):
        times = np.maximum.accumulate(times, axis=axis)
    return times


@dataclass(frozen=True)
class LayerTimes:
    width_share: list[float]  # per width level, ascending
    tiled_ms: list[list[float]]  # [level][region point]
    whole_ms: list[float]  # [level]
    tile_limit: int  # most regions at which tiles pay (0: never)

    @cached_property
    def _axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(distinct width shares, tiled times, whole times) with equal shares merged."""
        shares = np.asarray(self.width_share, float)
        distinct = np.unique(shares)
        rows = [shares == s for s in distinct]
        tiled = np.stack([np.asarray(self.tiled_ms, float)[r].mean(axis=0) for r in rows])
        whole = np.array([np.asarray(self.whole_ms, float)[r].mean() for r in rows])
        return distinct, monotone(tiled), monotone(whole)

    def price(self, width, regions, region_points: np.ndarray):
        """ms for samples keeping `width` (share) and `regions` (count); a sample keeping
        no region takes the all-skipped branch, where no layer runs (point 0, 0 ms)."""
        shares, tiled, whole = self._axes
        width_weights = hat_weights(width, shares)
        on_maps = sum(w * t for w, t in zip(width_weights, whole)) * regions.clip(0.0, 1.0)
        if self.tile_limit == 0:
            return on_maps
        region_weights = hat_weights(regions, region_points)
        on_tiles = sum(
            wi * wk * float(tiled[i, k]) for i, wi in enumerate(width_weights) for k, wk in enumerate(region_weights)
        )
        tiles = regions <= self.tile_limit
        return on_tiles * tiles + on_maps * (1 - tiles * 1.0)


@dataclass(frozen=True)
class BranchTimes:
    """A width-routed model's branches, each timed as the exported graph runs it (router
    included: the routed graph on a sample that takes that branch)."""

    persistence_ms: float  # the router alone, the last frame repeated
    level_ms: list[float]  # router, then width level w (every region), per level, narrowest first
    alone_ms: list[float]  # width level w alone, no router: a `--width` export (the widest at budget 1)


@dataclass(frozen=True)
class CostTable:
    """One architecture's measured table on one machine. `model` names the architecture
    (backbone, sizes, frame shape, regions, groups, width levels, export mode): a table is
    never applied to another."""

    target: str
    machine: dict
    model: dict
    regions: int
    region_points: list[int]
    layers: dict[str, LayerTimes]
    fixed_ms: float  # router, glue between layers, the run itself
    dense_ms: float  # the dense export, no router
    runs: int
    format: int = FORMAT
    notes: list[str] = field(default_factory=list)
    branches: BranchTimes | None = None  # a width-routed model's table: its branches, no layers

    def to_dict(self) -> dict:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, values: dict) -> CostTable:
        try:
            if values.get("format") != FORMAT:
                raise ConfigError(
                    f"cost table format {values.get('format')!r}; this dpedge reads format {FORMAT}: measure it again (dpedge calibrate)"
                )
            layers = {name: LayerTimes(**times) for name, times in values["layers"].items()}
            branches = values.get("branches")
            return cls(
                **{**values, "layers": layers, "branches": None if branches is None else BranchTimes(**branches)}
            )
        except (KeyError, TypeError, AttributeError) as error:
            raise ConfigError(f"not a dpedge cost table ({error})") from error

    @classmethod
    def from_json(cls, text: str) -> CostTable:
        try:
            return cls.from_dict(json.loads(text))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ConfigError(f"not a dpedge cost table ({error})") from error

    def check(self, machine: dict, model: dict) -> None:
        """Refuse a table measured elsewhere (another CPU, thread count or onnxruntime; for
        orin-emu another module, power mode, precision or emulator revision) or for another
        architecture."""
        for key in sorted(set(self.machine) | set(machine)):
            if self.machine.get(key) != machine.get(key):
                raise ConfigError(
                    f"cost table made with {key} {self.machine.get(key)!r}, this run has {machine.get(key)!r}: "
                    f"make it for this one (dpedge calibrate --cost {self.target})"
                )
        if self.model != model:
            differ = sorted(k for k in set(self.model) | set(model) if self.model.get(k) != model.get(k))
            raise ConfigError(
                f"cost table measured for another model ({', '.join(differ)} differ): measure this one (dpedge calibrate)"
            )


class MeasuredCost(CostModel):
    """Milliseconds, from a `CostTable`."""

    unit = "ms"

    def __init__(self, table: CostTable) -> None:
        self.table = table
        self.name = table.target
        self._points = np.asarray(table.region_points, float)

    def layer_cost(self, layer, flops, width, regions):
        if layer not in self.table.layers:
            if self.table.branches is not None:
                raise ConfigError(
                    "this cost table times a width-routed model's branches, not its layers: it prices no region pruning"
                )
            raise ConfigError(f"cost table has no layer {layer!r}: measure this model again (dpedge calibrate)")
        return self.table.layers[layer].price(width, regions, self._points)

    def fixed_cost(self, router_flops):
        return self.table.fixed_ms

    def dense_cost(self, dense_flops):
        return self.table.dense_ms

    def branch_costs(self) -> tuple[list[float], list[float]] | None:
        branches = self.table.branches
        if branches is None:
            return None
        dense = self.table.dense_ms
        return [branches.persistence_ms / dense] + [ms / dense for ms in branches.level_ms], [
            ms / dense for ms in branches.alone_ms
        ]

    def tile_limit(self, layer):
        times = self.table.layers.get(layer)
        return None if times is None else times.tile_limit

    def machine(self) -> dict:
        return dict(self.table.machine)

    def describe(self) -> str:
        machine = self.table.machine
        if "cpu" not in machine:  # orin-emu: a device emulated, not a machine measured
            return f"{self.name} ({machine['device']}: {machine['module']}, {machine['power_mode']}, {machine['precision']}; emulated, not measured)"
        return f"{self.name} (measured on {machine['cpu']}, {machine['threads']} thread(s), onnxruntime {machine['onnxruntime']})"
