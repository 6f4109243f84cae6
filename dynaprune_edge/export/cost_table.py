"""Make a model's cost table (dynaprune_edge.cost.table): `dpedge calibrate`. `ort-cpu`
measures it with onnxruntime on this machine; `orin-emu` prices the very same graphs with
the Jetson AGX Orin roofline (dynaprune_edge.cost.roofline) instead of timing them, each
graph's time the route its sample takes, each layer's the kernels its nodes fuse into.

What is timed is what `dpedge export` emits: for each width level w (every gate keeping
that share of its groups) and each of a few kept-region counts n, the sub-network that
computes n regions with every layer on tiles, and the one with every layer on whole maps
(plus the dense export, the reference a budget is a ratio of), each in the complete
exported graph (router, `If`, fallback), batch 1, on onnxruntime's CPU provider with the
table's thread count. onnxruntime's profiler times every node; a node is charged to the
layer whose scope (`compute/<layer path>`) it carries, and the glue between layers (layout
reorders onnxruntime inserts, halo index arithmetic, the scatter of tiles back to a map)
to the layer that runs next. The fixed part is timed directly: the export run on a sample
that keeps no region (the router, the persistence branch, the run itself). Per timed graph
the layers' times are then scaled to add up, with the fixed part, to its wall-clock time.

A layer's tiles pay up to the largest measured n at which its tiled time, averaged over
the width levels, stayed below its whole-map time; that is its `tile_limit`.

A width-routed slimmable model's table times its branches instead (`measure_branches`):
the routed graph once per branch, its router made to send the sample there (persistence,
then each width level), each width level's graph alone, and the dense export. Summing
per-layer times does not price a static sub-network (see dynaprune_edge.cost.table).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from dynaprune_edge.cost.orin import Device
from dynaprune_edge.cost.roofline import GraphRoofline
from dynaprune_edge.cost.table import BranchTimes, CostTable, LayerTimes, machine_fingerprint
from dynaprune_edge.data import SpatioTemporalData
from dynaprune_edge.distributed import World
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.network import GRAPH_REVISION, build_graph, build_width_router_graph, frames_shape
from dynaprune_edge.export.plan import BranchPlan
from dynaprune_edge.export.regions import TilePolicy
from dynaprune_edge.files import atomic_write_text
from dynaprune_edge.layers import GatedConv2d
from dynaprune_edge.masks.budget import KEEP_ALL
from dynaprune_edge.models import DynaPruner, ModelConfig, build_model
from dynaprune_edge.models.base import evaluating
from dynaprune_edge.profiling.latency import interleaved_latency
from dynaprune_edge.progress import progress_bar
from dynaprune_edge.runtime.manifest import BRANCH, INPUT
from dynaprune_edge.runtime.onnxruntime import session_options
from dynaprune_edge.training import load_model
from dynaprune_edge.training.checkpoint import MODEL_FILE
from dynaprune_edge.training.run import RunSpec, model_config_for

COMPUTE = "compute/"
FIXED_SCOPES = ("compute/fallback", "compute/persistence")
CACHE_ENV = "DPEDGE_CACHE_DIR"


def architecture(config: ModelConfig) -> dict:
    """What a table is measured for: everything that shapes the exported sub-networks."""
    pruning = config.pruning
    return {
        "backbone": config.backbone,
        "options": dict(sorted(config.options.items())),
        "shape": dataclasses.asdict(config.shape),
        "region_size": pruning.region_size,
        "group_size": pruning.group_size,
        "width_levels": list(pruning.width_levels),
        "mode": export_mode(config),
        "graph_revision": GRAPH_REVISION,
    }


def export_mode(config: ModelConfig) -> str:
    """The sub-network kind `dpedge export --mode auto` emits for this model."""
    if config.pruning.routes_widths:
        return "widths"
    return "gather" if config.pruning.group_order == "scored" else "sliced"


def region_points(regions: int) -> list[int]:
    """Kept-region counts of the table: 0 (the all-skipped branch: no layer runs, nothing
    to time), then a few spread over 1..R, denser where budgets live."""
    return [0] + sorted({max(1, regions * k // 8) for k in (0, 1, 2, 4, 6)} | {regions})


def cache_path(config: ModelConfig, machine: dict) -> Path:
    """Where the table of this architecture on this machine (`fingerprint`) is kept between runs."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dpedge") / "cost-tables"
    key = json.dumps({"model": architecture(config), "machine": machine}, sort_keys=True)
    return root / f"{config.backbone}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def measurement_model(config: ModelConfig) -> DynaPruner:
    """The architecture with untrained weights (time does not depend on them), priced in
    FLOPs (it is what the table is made for) and, region-pruned, keeping every region, so
    that a sample takes the one branch each timed graph has (a width router is sent to
    each branch by `sending_to`)."""
    flops_priced = dataclasses.replace(
        config, pruning=dataclasses.replace(config.pruning, cost="flops", cost_table=None)
    )
    model = build_model(flops_priced).eval()
    if not config.pruning.routes_widths:
        model.data_mask.threshold.fill_(KEEP_ALL)
        model.data_mask.max_regions.fill_(model.regions)
    return model


@torch.no_grad()
def width_shares(model: DynaPruner, groups: dict[str, int]) -> dict[str, float]:
    """Each layer's width share (the ledger's) when every gate keeps `groups`."""
    shape = model.backbone.shape
    x = torch.zeros(1, shape.frames_in, shape.channels, shape.height, shape.width)
    masks = model.masks_keeping(torch.tensor([model.regions]), x, torch.tensor([[groups[g.name] for g in model.gates]]))
    with evaluating(model.backbone):
        model.backbone(x, masks)
    return {model.layer_names[layer]: float(use.width[0]) for layer, use in masks.ledger.layers.items()}


def layer_of(node: str) -> str | None:
    """The layer path a node's name carries (`compute/<path>/…`), if it is a layer's."""
    if not node.startswith(COMPUTE) or node.startswith(FIXED_SCOPES) or node.startswith("compute/scatter"):
        return None
    return node[len(COMPUTE) :].rsplit("/", 1)[0]


def attribute(events: list[dict], layers: list[str]) -> list[tuple[dict[str, float], dict[str, int]]]:
    """Per profiled run: microseconds and node counts per layer, and under "" all nodes'
    (onnxruntime profile events; an `If` node's time is its branch's, not counted twice)."""
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"), key=lambda e: e["ts"]
    )
    nodes = sorted(
        (
            e
            for e in events
            if e.get("cat") == "Node"
            and e["name"].endswith("_kernel_time")
            and e.get("args", {}).get("op_name") != "If"
        ),
        key=lambda e: e["ts"],
    )
    starts = np.array([run["ts"] for run in runs])
    times = [defaultdict(float) for _ in runs]
    counts = [defaultdict(int) for _ in runs]
    pending = [(0.0, 0)] * len(runs)
    for node in nodes:
        run = int(np.searchsorted(starts, node["ts"], side="right")) - 1
        if run < 0:
            continue
        times[run][""] += node["dur"]
        counts[run][""] += 1
        name = node["name"][: -len("_kernel_time")]
        layer = layer_of(name)
        if layer in layers:
            glue, glue_nodes = pending[run]
            times[run][layer] += node["dur"] + glue
            counts[run][layer] += 1 + glue_nodes
            pending[run] = (0.0, 0)
        elif not name.startswith(("router/", "input/", "output/", *FIXED_SCOPES)):
            glue, glue_nodes = pending[run]  # glue: charged to the layer that runs next
            pending[run] = (glue + node["dur"], glue_nodes + 1)
    return [(dict(t), dict(c)) for t, c in zip(times, counts)]


class GraphTimer:
    """`ort-cpu`: wall-clock and per-layer milliseconds of one exported graph, measured."""

    target = "ort-cpu"

    def __init__(self, frames: np.ndarray, threads: int, runs: int, warmup: int = 3) -> None:
        self.frames, self.threads, self.runs, self.warmup = frames, threads, runs, warmup

    @property
    def machine(self) -> dict:
        return machine_fingerprint(self.threads)

    def wall(self, graph: bytes) -> float:
        session = onnxruntime.InferenceSession(graph, session_options(self.threads), providers=["CPUExecutionProvider"])
        feed = {INPUT: self.frames}
        for _ in range(self.warmup):
            session.run(None, feed)
        times = []
        for _ in range(self.runs):
            started = time.perf_counter()
            session.run(None, feed)
            times.append(time.perf_counter() - started)
        return float(np.median(times)) * 1e3

    def walls(self, graphs: list[bytes], advance=None) -> list[float]:
        """Median milliseconds of each graph, timed together: they take turns on every run,
        each warm at its turn (three runs in a row, the last timed, as `bench pareto`
        times), so that the machine's noise hits them alike. advance(): after each run."""
        sessions = [
            onnxruntime.InferenceSession(g, session_options(self.threads), providers=["CPUExecutionProvider"])
            for g in graphs
        ]
        runners = [lambda sample, session=session: session.run(None, {INPUT: sample}) for session in sessions]
        times = interleaved_latency(runners, self.frames, self.runs, repeat=3, warmup=self.warmup, advance=advance)
        return [float(np.median(t)) for t in times]

    def layers(self, graph: bytes, layers: list[str], wall_ms: float) -> dict[str, float]:
        """Milliseconds of each layer. The profiler adds a few microseconds to every node
        (measured here: 2–4 µs on a 2-core EPYC, as much as a small node's own time), so
        each node is charged its profiled time less that overhead, estimated per graph as
        (profiled node total − unprofiled wall-clock) / nodes."""
        options = session_options(self.threads)
        with tempfile.TemporaryDirectory(prefix="dpedge-profile-") as scratch:
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(scratch) / "profile")
            session = onnxruntime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
            for _ in range(self.warmup + self.runs):
                session.run(None, {INPUT: self.frames})
            with open(session.end_profiling(), encoding="utf-8") as profile:
                events = json.load(profile)
        per_run = attribute(events, layers)[self.warmup :]
        total = np.median([times.get("", 0.0) for times, _ in per_run]) / 1e3
        nodes = np.median([counts.get("", 0) for _, counts in per_run])
        overhead = max(0.0, (total - wall_ms) / max(nodes, 1))
        return {
            layer: float(
                np.median(
                    [
                        max(0.0, times.get(layer, 0.0) / 1e3 - overhead * counts.get(layer, 0))
                        for times, counts in per_run
                    ]
                )
            )
            for layer in layers
        }


class EmulatedTimer:
    """`orin-emu`: the emulated Orin milliseconds of the route the sample takes through one
    exported graph, and of each layer in it (a kernel belongs to the layer its first node names;
    glue kernels between layers go to the layer that runs next, as `attribute` does)."""

    target = "orin-emu"
    runs = 1  # a roofline has no noise to average away

    def __init__(self, frames: np.ndarray, device: Device) -> None:
        self.frames, self.device = frames, device
        self._routes: dict[str, list] = {}

    @property
    def machine(self) -> dict:
        return self.device.fingerprint()

    def route(self, graph: bytes) -> list:
        key = hashlib.sha256(graph).hexdigest()
        if key not in self._routes:
            session = onnxruntime.InferenceSession(graph, session_options(1), providers=["CPUExecutionProvider"])
            branch = int(session.run([BRANCH], {INPUT: self.frames})[0])
            self._routes[key] = GraphRoofline(onnx.load_from_string(graph), self.device).routes[branch]
        return self._routes[key]

    def wall(self, graph: bytes) -> float:
        return sum(kernel.ms for kernel in self.route(graph))

    def walls(self, graphs: list[bytes], advance=None) -> list[float]:
        times = [self.wall(graph) for graph in graphs]
        if advance is not None:
            advance()  # its one "run"
        return times

    def layers(self, graph: bytes, layers: list[str], wall_ms: float) -> dict[str, float]:
        times, glue = dict.fromkeys(layers, 0.0), 0.0
        for kernel in self.route(graph):
            layer = layer_of(kernel.name)
            if layer in times:
                times[layer] += kernel.ms + glue
                glue = 0.0
            elif not kernel.name.startswith(("router/", "input/", "output/", *FIXED_SCOPES)):
                glue += kernel.ms
        return times


def timer_for(
    target: str, frames: np.ndarray, threads: int = 1, runs: int = 20, device: Device | None = None
) -> GraphTimer | EmulatedTimer:
    if target == "orin-emu":
        return EmulatedTimer(frames, device or Device.chosen())
    if target != "ort-cpu":
        raise ConfigError(f"cost target {target!r} has no table to make (flops needs none)")
    return GraphTimer(frames, threads, runs)


def measurement_frames(config: ModelConfig) -> np.ndarray:
    """Random frames of the model's input shape (time does not depend on values; every
    region is kept whatever they are, see measurement_model)."""
    shape = config.shape
    return np.random.default_rng(0).standard_normal(frames_shape(shape, shape.frames_in)).astype(np.float32)


def fingerprint(target: str, threads: int = 1, device: Device | None = None) -> dict:
    """What a table of `target` made now would be valid for."""
    return timer_for(target, np.zeros(1, np.float32), threads, 1, device).machine


def measure(
    config: ModelConfig,
    threads: int = 1,
    runs: int = 20,
    progress=None,
    target: str = "ort-cpu",
    device: Device | None = None,
) -> CostTable:
    """The cost table of `config`'s architecture on `target` (see the module doc):
    measured on this machine (ort-cpu) or emulated on `device` (orin-emu)."""
    if config.pruning.routes_widths:
        return measure_branches(config, timer_for(target, measurement_frames(config), threads, runs, device), progress)
    model = measurement_model(config)
    mode, levels, regions = export_mode(config), list(config.pruning.width_levels), model.regions
    points = region_points(regions)
    layers = list(model.layer_names.values())  # in the backbone's order
    timer = timer_for(target, measurement_frames(config), threads, runs, device)
    table = model.model_mask.width_table(regions)
    task = (
        None
        if progress is None
        else progress.add_task("measuring the cost table", total=len(levels) * (len(points) - 1) + 2)
    )

    def graph(plans, tiles) -> bytes:
        return build_graph(model, plans, mode if plans else "dense", table if plans else None, tiles)[
            0
        ].SerializeToString()

    def timed(plans, tiles) -> dict[str, float]:
        """ms per layer, scaled so that with the fixed part they add up to the wall-clock
        time: what the profile leaves unattributed (the router's region masks at each
        resolution, glue after the last layer) is spread over the layers by their share."""
        timed_graph = graph(plans, tiles)
        wall = timer.wall(timed_graph)
        per_layer = timer.layers(timed_graph, layers, wall)
        scale = max(0.0, wall - fixed_ms) / max(sum(per_layer.values()), 1e-9)
        if progress is not None:
            progress.advance(task)
        return {layer: ms * scale for layer, ms in per_layer.items()}

    dense_ms = timer.wall(graph(None, None))
    model.data_mask.threshold.fill_(float("inf"))  # no region kept: the router and the persistence branch alone
    fixed_ms = timer.wall(graph([BranchPlan(1, regions, model.level_groups(1.0), frozenset())], None))
    model.data_mask.threshold.fill_(KEEP_ALL)
    if progress is not None:
        progress.advance(task)
    shares = {layer: [] for layer in layers}
    tiled = {layer: [[0.0] * len(points) for _ in levels] for layer in layers}  # point 0 stays 0 ms
    whole = {layer: [0.0] * len(levels) for layer in layers}
    for i, level in enumerate(levels):
        groups = model.level_groups(level)
        for layer, share in width_shares(model, groups).items():
            shares[layer].append(share)
        for k, n in enumerate(points[1:], start=1):
            plan = [BranchPlan(1, n, groups, frozenset())]
            policy = TilePolicy() if n < regions else None  # all n regions: the whole map is the work
            per_layer = timed(plan, policy)
            for layer in layers:
                tiled[layer][i][k] = per_layer[layer]
                if n == regions:
                    whole[layer][i] = per_layer[layer]
    times = {}
    for layer in layers:
        times[layer] = LayerTimes(
            shares[layer], tiled[layer], whole[layer], tile_limit(model, layer, points, tiled[layer], whole[layer])
        )
    how = (
        "per-layer times: onnxruntime profiler node times less its per-node overhead, median over runs; glue charged to the next layer"
        if target == "ort-cpu"
        else "per-layer times: EMULATED Orin ms of the kernels each layer's nodes fuse into (orin-emu roofline); glue charged to the next layer"
    )
    notes = [
        how,
        "whole-map times: the branch computing every region on whole maps, skipped regions masked",
        "fixed_ms: wall-clock of the export when the sample keeps no region (router, persistence, the run)",
        "layer ms scaled per timed graph so that layers + fixed_ms = its wall-clock time",
        "inputs: random frames (time does not depend on values), every region kept",
    ]
    return CostTable(
        target=timer.target,
        machine=timer.machine,
        model=architecture(config),
        regions=regions,
        region_points=points,
        layers=times,
        fixed_ms=fixed_ms,
        dense_ms=dense_ms,
        runs=timer.runs,
        notes=notes,
    )


@torch.no_grad()
def sending_to(model: DynaPruner, branch: int) -> None:
    """Make the (untrained) width router of `model` send every sample to `branch`: its
    head predicts a near-zero error there and a large one elsewhere, at price 0."""
    router = model.width_router
    last = router.head[-1]
    last.weight.zero_()
    last.bias.fill_(30.0)
    last.bias[branch] = -30.0
    router.prices.zero_()


def measure_branches(config: ModelConfig, timer: GraphTimer | EmulatedTimer, progress=None) -> CostTable:
    """A width-routed model's table: each branch's graph timed whole (see the module doc)."""
    model = measurement_model(config)
    levels = len(config.pruning.width_levels)
    graphs = [build_graph(model, None, "dense", None)[0]] + [
        build_graph(model, None, "dense", None, width=level)[0] for level in range(levels)
    ]
    for branch in range(levels + 1):
        sending_to(model, branch)
        graphs.append(build_width_router_graph(model)[0])
    task = (
        None
        if progress is None
        else progress.add_task(f"timing the {len(graphs)} graphs of the branches", total=timer.runs)
    )

    def advance() -> None:
        if task is not None:
            progress.advance(task)

    times = timer.walls([graph.SerializeToString() for graph in graphs], advance)
    dense_ms, alone, routed = times[0], times[1 : levels + 1], times[levels + 1 :]
    how = (
        "EMULATED Orin ms of the route the sample takes (orin-emu roofline)"
        if timer.target == "orin-emu"
        else "onnxruntime wall-clock, median over runs, the graphs taking turns, each warm at its turn"
    )
    notes = [
        f"branch times: {how}; made non-decreasing in the width level (more width never costs less)",
        "persistence_ms, level_ms: the routed graph at a budget below 1, its router sending the sample to that branch",
        "alone_ms: each width level exported alone (dpedge export --width), no router",
        "inputs: random frames (time does not depend on values)",
    ]
    return CostTable(
        target=timer.target,
        machine=timer.machine,
        model=architecture(config),
        regions=model.regions,
        region_points=[],
        layers={},
        fixed_ms=routed[0],
        dense_ms=dense_ms,
        runs=timer.runs,
        notes=notes,
        branches=BranchTimes(
            routed[0], np.maximum.accumulate(routed[1:]).tolist(), np.maximum.accumulate(alone).tolist()
        ),
    )


def tile_limit(model: DynaPruner, layer: str, points: list[int], tiled: list[list[float]], whole: list[float]) -> int:
    """The most kept regions at which `layer`'s tiles pay (see the module doc). Layers whose
    tiles the export does not choose per layer: recurrent cells run on whole maps (0);
    token layers follow their branch (tiles whenever regions are skipped, R)."""
    module = next(m for m, name in model.layer_names.items() if name == layer)
    if not module.skips_regions_when_tiled:
        return 0
    if not isinstance(module, GatedConv2d):
        return model.regions
    on_tiles, on_maps = np.mean(tiled, axis=0), float(np.mean(whole))
    limit = 0
    for n, time_on_tiles in zip(points[1:], on_tiles[1:]):
        if n >= model.regions or time_on_tiles >= on_maps:
            break
        limit = n
    return limit


def cost_table(
    config: ModelConfig,
    threads: int = 1,
    runs: int = 20,
    progress=None,
    log=print,
    target: str = "ort-cpu",
    device: Device | None = None,
) -> CostTable:
    """The cached table of this architecture on `target` (this machine, or the emulated
    `device`), made (and cached) if there is none."""
    machine = fingerprint(target, threads, device)
    path = cache_path(config, machine)
    if path.exists():
        try:
            table = CostTable.from_json(path.read_text(encoding="utf-8"))
            table.check(machine, architecture(config))
            return table
        except ConfigError as error:
            log(f"cost table {path} is stale ({error}); making it again")
    where = (
        f"on this machine ({threads} thread(s))"
        if target == "ort-cpu"
        else f"emulated on {device or 'the default Orin'}"
    )
    log(f"making the {target} cost table of this {config.backbone} {where}; cached in {path}")
    table = measure(config, threads, runs, progress, target, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(table.to_json() + "\n", path)
    return table


def load_table(path: Path, config: ModelConfig, machine: dict) -> CostTable:
    """A table file given by the user, refused if made for another machine (`fingerprint`)
    or another model."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read cost table {path}: {error}") from error
    table = CostTable.from_json(text)
    table.check(machine, architecture(config))
    return table


def with_table(config: ModelConfig, table: CostTable) -> ModelConfig:
    """`config` pricing its budget with `table` (stored in the checkpoint with the model)."""
    pruning = dataclasses.replace(config.pruning, cost=table.target, cost_table=table.to_dict())
    return dataclasses.replace(config, pruning=pruning)


def priced_config(
    spec: RunSpec, data: SpatioTemporalData, resume_from: Path | None = None, world: World = World()
) -> ModelConfig:
    """The model a run trains: on a measured cost target, with its table: `--cost-table`,
    the one the interrupted run in `resume_from` trained with, or this machine's cached
    (else freshly measured) table. Under many processes rank 0 finds it and every rank gets
    that one."""
    config = model_config_for(spec, data)
    target = spec.pruning.cost
    if target == "flops" or not spec.pruning.enabled:
        return config

    def find() -> str:
        device = None if spec.device is None else Device(**spec.device)
        if spec.cost_table is not None:
            return load_table(Path(spec.cost_table), config, fingerprint(target, 1, device)).to_json()
        if resume_from is not None and (resume_from / MODEL_FILE).exists():
            return json.dumps(load_model(resume_from / MODEL_FILE).model_config.pruning.cost_table)
        with progress_bar() as progress:
            return cost_table(
                config, progress=progress, log=lambda line: print(line, file=sys.stderr), target=target, device=device
            ).to_json()

    return with_table(config, CostTable.from_json(world.from_main(find)))
