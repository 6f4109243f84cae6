"""`dpedge export`: model.pt → model.onnx + model.dpedge.json, parity-checked.

Nothing is written unless the graph passes onnx.checker and matches the PyTorch hard-mask
forward within PARITY_TOLERANCE on every sample checked."""

from __future__ import annotations

import contextlib
import hashlib
import tempfile
from dataclasses import dataclass, field
from functools import cached_property, partial
from importlib import metadata
from pathlib import Path

import numpy as np
import onnx
import torch

from dynaprune_edge.checks import is_number
from dynaprune_edge.cost.table import machine_fingerprint
from dynaprune_edge.data import DataConfig, SpatioTemporalData, load_dataset
from dynaprune_edge.errors import ConfigError, DataError
from dynaprune_edge.export.network import branch_flops, build_graph, build_width_router_graph, width_plan
from dynaprune_edge.export.parity import PARITY_TOLERANCE, check_graph, check_parity, reference
from dynaprune_edge.export.plan import BranchPlan, branch_plan, kept_region_counts, partition
from dynaprune_edge.export.regions import TilePolicy
from dynaprune_edge.files import atomic_write_bytes, atomic_write_text
from dynaprune_edge.flops import FLOPS_CONVENTION
from dynaprune_edge.profiling.latency import interleaved_latency
from dynaprune_edge.runtime.manifest import (
    BRANCH,
    BUDGET,
    FLOPS,
    FORECAST,
    INPUT,
    Branch,
    Manifest,
    TensorSpec,
    manifest_path,
)
from dynaprune_edge.runtime.onnxruntime import open_session, session_options
from dynaprune_edge.runtime.split import SplitSessions, split_routed_graph
from dynaprune_edge.training import load_model
from dynaprune_edge.training.checkpoint import TrainedModel

UNSEEN_SHARE = 0.25
TIMING_PASSES = 3
SPLIT_TOLERANCE = 1e-5
"""Largest difference allowed between the split layout's forecast and the single graph's,
in normalised units (the same nodes run on the same inputs: it is 0 in practice)."""
ROUTING_TIE = 1e-4
"""Logit margin below which a sample is left out of the parity check (DataMask.routing_margin)."""
PICKS_PER_COUNT = 2  # training samples per kept-region count in the parity check: one may be a tie
WARM_REPEATS = 3  # each candidate times its own warm run: see profiling.latency.interleaved_latency
MODES = ("gather", "sliced", "auto")
CHECKED_BUDGETS = (0.1, 0.3, 0.5, 0.7, 1.0)
"""Run-time budgets a width-routed export is parity-checked at (and its trained one): between
them, every branch the data reach."""
TILE_POLICIES: dict[str, TilePolicy | None] = {
    "all": TilePolicy(),
    "sparse": TilePolicy(max_fraction=0.5),
    "wide": TilePolicy(min_channels=32),
    "none": None,
}
"""--tiles: which layers of which sub-networks run on the kept regions' tiles (TilePolicy)."""


@dataclass(frozen=True)
class ExportOptions:
    mode: str = "auto"
    tiles: str = "auto"
    levels: int = 8  # branches for samples that keep ≥ 1 region (plus the free all-skipped one)
    dense: bool = False
    opset: int = 17
    parity_samples: int = 16  # validation samples checked (plus one per kept-region count seen in training)
    width: float | None = None  # a slimmable model's width level, exported alone as a static network

    def __post_init__(self) -> None:
        if self.width is not None and not (is_number(self.width) and 0 < self.width <= 1):
            raise ConfigError(f"--width must be a width level in (0, 1], got {self.width}")
        if self.width is not None and self.dense:
            raise ConfigError(
                "--width exports one width level of a slimmable model, --dense the model unpruned: choose one"
            )
        if self.mode not in MODES:
            raise ConfigError(f"--mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.tiles not in (*TILE_POLICIES, "auto"):
            raise ConfigError(f"--tiles must be one of {', '.join(TILE_POLICIES)} or auto, got {self.tiles!r}")
        if self.levels < 1:
            raise ConfigError(f"--levels must be ≥ 1, got {self.levels}")
        if not 17 <= self.opset <= 21:
            raise ConfigError(f"--opset must be between 17 and 21, got {self.opset}")


@dataclass
class Candidate:
    mode: str
    tiles: str
    onnx_model: onnx.ModelProto
    branches: list[Branch]
    latency_ms: dict[str, float] = field(
        default_factory=dict
    )  # per layout timed: "single", and "split" for a routed graph
    parity: dict = field(default_factory=dict)
    layout: str = "single"  # the faster, once timed


def export_data(trained: TrainedModel, model_path: Path) -> tuple[SpatioTemporalData, str]:
    """The data the model was trained on, or (if its files are gone) synthetic data of the
    same family and shape, with a note saying which."""
    try:
        return load_dataset(trained.data_config, recorded_in=str(model_path)), ""
    except DataError as error:
        config = DataConfig.from_dict({**trained.data_config.to_dict(), "path": None})
        return load_dataset(config), f"training data unavailable ({error}); parity uses synthetic {config.name} data"


def width_index(pruning, width: float) -> int:
    """The index of width level `width` of a slimmable model (ConfigError otherwise: the
    slices of a network not trained at every width were never networks of their own)."""
    if not pruning.slimmable:
        raise ConfigError(
            "--width exports one width level of a slimmable model: this one was not trained at every width "
            "(dpedge train --slimmable)"
        )
    levels = pruning.width_levels
    matches = [index for index, level in enumerate(levels) if abs(level - width) < 1e-9]
    if not matches:
        raise ConfigError(
            f"--width {width:g} is not a width level of this model: choose one of {', '.join(f'{w:g}' for w in levels)}"
        )
    return matches[0]


class Exporter:
    def __init__(
        self, model_path: Path, options: ExportOptions, log=print, data: SpatioTemporalData | None = None
    ) -> None:
        """data: the model's dataset, if the caller has it loaded already."""
        self.options = options
        self.log = log
        self.trained = load_model(model_path)
        self.backbone = self.trained.model_config.backbone
        self.trained.model.backbone.check_exportable()  # fail before reading data
        pruning = self.trained.model_config.pruning
        self.width = None if options.width is None else width_index(pruning, options.width)
        self.dense = options.dense or self.width is not None or not pruning.enabled
        self.routed = pruning.routes_widths and not self.dense
        if self.routed and (options.mode != "auto" or options.tiles != "auto"):
            raise ConfigError(
                "a width-routed model exports each width level as a static branch of its own: "
                "--mode and --tiles do not apply to it"
            )
        if not self.dense and options.mode == "sliced" and pruning.group_order == "scored":
            raise ConfigError(
                "--mode sliced compiles each sub-network with constant weights, which needs the same "
                "filters for every sample: train with --group-order ordered, or export with --mode gather"
            )
        if data is None:
            data, note = export_data(self.trained, model_path)
            if note:
                self.log(note)
        self.data = data

    @cached_property
    def train_counts(self) -> np.ndarray:
        """Kept-region count n of every training sample: the planner's histogram, and which
        branches the parity check must reach."""
        return kept_region_counts(self.trained.model, self.data.train)

    def modes(self) -> list[str]:
        if self.dense:
            return ["dense"]
        if self.options.mode != "auto":
            return [self.options.mode]
        return ["gather"] if self.trained.model_config.pruning.group_order == "scored" else ["sliced", "gather"]

    def tile_policies(self) -> list[str]:
        """auto: every policy, timed; but a model trained on a measured cost target already
        chose, per layer, where tiles pay (`Layer.tile_limit`): all layers may tile, each
        within its limit."""
        if self.dense:
            return ["none"]
        if self.options.tiles != "auto":
            return [self.options.tiles]
        return ["all"] if self.trained.model_config.pruning.cost != "flops" else list(TILE_POLICIES)

    def plans(self, table: np.ndarray, tiles: TilePolicy | None) -> list[BranchPlan]:
        """Branch plans for 1 ≤ n ≤ the cap's most regions, fit to the training histogram of n."""
        model = self.trained.model
        reachable = int(model.data_mask.max_regions)  # the router never keeps more
        if reachable == 0:
            raise ConfigError(
                "this model's cap admits no region (every sample falls back to persistence): retrain it with a higher --max-cost"
            )
        histogram = np.bincount(self.train_counts, minlength=reachable + 1).astype(float)
        # Later data may keep counts that training never did (the KNMI validation period is
        # wetter): a uniform quarter of the mass keeps unseen counts out of needlessly wide branches.
        histogram += UNSEEN_SHARE * histogram.sum() / len(histogram)
        gates = [g.name for g in model.gates]
        cost = lambda hi: branch_flops(model, branch_plan(table, gates, hi, hi), tiles)
        if self.options.levels == 1:
            ranges = [(1, reachable)]
        elif reachable < model.regions:
            ranges = partition(histogram, cost, self.options.levels)
        else:  # samples that keep everything get the plain dense network: no masks to apply
            ranges = partition(histogram[:reachable], cost, self.options.levels - 1) + [(reachable, reachable)]
        return [branch_plan(table, gates, lo, hi) for lo, hi in ranges]

    def dense_graph(self, width: int | None = None) -> tuple[onnx.ModelProto, list]:
        """The model with pruning off (the `--dense` export, and the twin a pruned export or
        a width level is timed against); with `width` (a level's index), that level of a
        slimmable model alone (`--width`)."""
        return build_graph(
            self.trained.model,
            None,
            "dense",
            None,
            opset=self.options.opset,
            width=width,
            normalizer=self.trained.normalizer,
        )

    def candidates(self) -> list[Candidate]:
        model = self.trained.model
        if self.dense:
            graph, costs = self.dense_graph(self.width)
            gates = (
                {g.name: g.groups for g in model.gates} if self.width is None else width_plan(model, self.width).groups
            )
            return [Candidate("dense", "none", graph, [Branch([0, model.regions], 0, gates, costs[0][0])])]
        if self.routed:
            graph, costs = build_width_router_graph(model, self.options.opset, self.trained.normalizer)
            levels = [width_plan(model, level).groups for level in range(len(model.pruning.width_levels))]
            branches = [Branch([0, 0], 0, {}, costs[0][0])] + [
                Branch([model.regions] * 2, 0, dict(g), flops) for g, (flops, _) in zip(levels, costs[1:])
            ]
            return [Candidate("widths", "none", graph, branches)]
        table = model.model_mask.width_table(model.regions)
        result = []
        for tiles in self.tile_policies():
            plans = self.plans(table, TILE_POLICIES[tiles])
            for mode in self.modes():
                graph, costs = build_graph(
                    model,
                    plans,
                    mode,
                    table,
                    TILE_POLICIES[tiles],
                    self.options.opset,
                    normalizer=self.trained.normalizer,
                )
                branches = [Branch([0, 0], 0, {}, costs[0][0])] + [
                    Branch([p.lo, p.hi], computed, dict(p.groups), flops)
                    for p, (flops, computed) in zip(plans, costs[1:])
                ]
                result.append(Candidate(mode, tiles, graph, branches))
        return result

    def parity_checks(self) -> list[tuple[np.ndarray, np.ndarray, str, dict]]:
        """(samples in physical units, as the graph takes them; PyTorch's forecasts of them
        in the model's normalised units, where check_parity compares; what they are; other
        inputs) for each parity check: one, or one per run-time budget of a width-routed
        model (CHECKED_BUDGETS and its trained one: every branch the data reach), without
        the samples within ROUTING_TIE of another branch there."""
        physical = self.trained.normalizer.denormalize
        if not self.routed:
            x, described = self.parity_inputs()
            return [(physical(x).numpy(), reference(self.trained, x, self.dense, self.width).numpy(), described, {})]
        val, train = self.data.val, self.data.train
        x = torch.stack(
            [val[i][0] for i in range(min(len(val), self.options.parity_samples))]
            + [
                train[int(i)][0]
                for i in np.linspace(0, len(train) - 1, min(len(train), self.options.parity_samples)).astype(int)
            ]
        )
        router = self.trained.model.width_router
        with torch.no_grad():
            predicted = self.trained.model.router_predictions(self.trained.model.pad(x))
        checks = []
        for budget in sorted({*CHECKED_BUDGETS, self.trained.model_config.pruning.budget}):
            clear = router.margins(predicted, budget) >= ROUTING_TIE
            kind = "synthetic" if self.data.is_synthetic else "real"
            tied = (
                f", {int((~clear).sum())} left out: within {ROUTING_TIE:g} of another branch" if not clear.all() else ""
            )
            described = f"{int(clear.sum())} {kind} {self.data.config.name} samples at budget {budget:g}{tied}"
            expected = reference(self.trained, x[clear], False, budget=budget).numpy()
            checks.append((physical(x[clear]).numpy(), expected, described, {BUDGET: np.array(budget, np.float32)}))
        return checks

    def parity_inputs(self) -> tuple[torch.Tensor, str]:
        """`parity_samples` validation samples, plus PICKS_PER_COUNT training samples per kept-region
        count seen in training, so that every branch the data reaches is checked; without
        the samples within ROUTING_TIE of another routing (onnxruntime's logits may round
        them to it, and that route is as right as PyTorch's)."""
        val, train = self.data.val, self.data.train
        picks = [val[i][0] for i in range(min(len(val), self.options.parity_samples))]
        if not self.dense:
            for n in np.unique(self.train_counts):
                picks.extend(train[int(i)][0] for i in np.flatnonzero(self.train_counts == n)[:PICKS_PER_COUNT])
        x = torch.stack(picks)
        kind = "synthetic" if self.data.is_synthetic else "real"
        if self.dense:
            return x, f"{len(x)} {kind} {self.data.config.name} samples"
        clear = self.trained.model.routing_margins(x) >= ROUTING_TIE
        tied = f" ({int((~clear).sum())} left out: within {ROUTING_TIE:g} of another route)" if not clear.all() else ""
        return x[clear], f"{int(clear.sum())} {kind} {self.data.config.name} samples{tied}"

    def validation_frames(self, limit: int = 64) -> np.ndarray:
        """Validation samples in physical units, as the graph takes them (auto's timing,
        int8 calibration, Polygraphy's inputs)."""
        val = self.data.val
        return self.trained.normalizer.denormalize(
            torch.stack([val[i][0] for i in range(min(len(val), limit))]).numpy()
        )

    def manifest(self, candidate: Candidate, onnx_name: str, onnx_sha256: str, measured: dict) -> Manifest:
        shape = self.trained.model.shape
        normalizer = self.trained.normalizer
        versions = {
            "dpedge": metadata.version("dynaprune-edge"),
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "opset": str(self.options.opset),
        }
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions["onnxruntime"] = metadata.version("onnxruntime")
        return Manifest(
            backbone=self.backbone,
            dataset=self.trained.data_config.name,
            mode=candidate.mode,
            onnx=onnx_name,
            onnx_sha256=onnx_sha256,
            inputs=[TensorSpec(INPUT, [1, shape.frames_in, shape.channels, shape.height, shape.width], "float32")],
            outputs=[
                TensorSpec(FORECAST, [1, shape.frames_out, shape.channels, shape.height, shape.width], "float32"),
                TensorSpec(FLOPS, [], "float32"),
                TensorSpec(BRANCH, [], "int64"),
            ],
            mean=normalizer.mean.tolist(),
            std=normalizer.std.tolist(),
            width_levels=list(self.trained.model_config.pruning.width_levels),
            branches=candidate.branches,
            dense_flops=branch_flops(self.trained.model, None, None),
            flops_convention=FLOPS_CONVENTION,
            versions=versions,
            parity={"tolerance": PARITY_TOLERANCE, "max_abs_error_per_branch": candidate.parity},
            predicted=self.predicted(candidate),
            measured=measured,
            data=self.trained.data_config.to_dict(),
            gate_groups={g.name: g.groups for g in self.trained.model.gates},
            budget=self.budget_record(),
            layout=candidate.layout,
        )

    def budget_record(self) -> dict:
        """A width-routed export's run-time budget: its input, the trained value, the cost
        target it is a ratio on, each branch's cost ratio there (router included) and each
        width level's alone."""
        if not self.routed:
            return {}
        model = self.trained.model
        return {
            "input": BUDGET,
            "trained": model.pruning.budget,
            "cost_target": model.cost_model.describe(),
            "branch_costs": model.width_router.costs.tolist(),
            "level_costs": model.level_costs(),
            "range": "(0, 1]; 1 runs the widest level, the router not run (its level_costs entry)",
        }

    def predicted(self, candidate: Candidate) -> dict:
        """Per branch, the latency the model's measured cost table predicts for it (the
        cost training charges a sample keeping the most regions of the branch); nothing
        for a FLOPs-priced model (its branches' FLOPs are the prediction)."""
        model = self.trained.model
        if self.dense or model.pruning.cost == "flops":
            return {}
        dense = model.cost_model.dense_cost(branch_flops(model, None, None))
        if self.routed:
            ratios = model.width_router.costs.tolist()
        else:
            ratios = model.cost_of_counts(torch.tensor([branch.regions[1] for branch in candidate.branches]))
        return {
            "target": model.cost_model.describe(),
            "machine": model.cost_model.machine(),
            "unit": model.cost_model.unit,
            "dense": dense,
            "per_branch": [float(r) * dense for r in ratios],
            "label": "predicted from the cost table, not measured",
        }

    def run(
        self, out: Path, timer=partial(interleaved_latency, repeat=WARM_REPEATS)
    ) -> tuple[Candidate, Manifest, list[Candidate]]:
        """Build, check, pick (auto: the fastest on validation samples), then write both files.

        Every candidate is checked (onnx.checker, then parity with PyTorch), then all are
        timed together by `timer` (profiling.latency.interleaved_latency: one sample at a
        time, the candidates taking turns, so machine noise hits them alike, each timing a
        warm run of its own) on one onnxruntime thread (on a machine with few cores the
        thread pool's wake-ups swamp the differences), `TIMING_PASSES` passes over the
        validation samples. A pruned model's dense twin (the same weights, no masks) takes
        its turns too, so the manifest records what the export measured against it
        (`measured`): whether skipping pays is a fact of this machine, not of the FLOPs."""
        candidates = self.candidates()
        checks = self.parity_checks()
        timed = self.validation_frames(self.options.parity_samples)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="dpedge-export-") as scratch:  # candidates, checked by path
            sessions, splits = [], []
            for index, candidate in enumerate(candidates):
                path = Path(scratch) / f"candidate{index}.onnx"
                onnx.save(candidate.onnx_model, path)
                check_graph(path, candidate.mode)
                sessions.append(open_session(path, session_options(1), ["CPUExecutionProvider"]))
                for x, expected, described, feeds in checks:
                    parity = check_parity(sessions[-1], x, expected, candidate.mode, self.trained.normalizer, feeds)
                    for branch, error in parity.items():  # the worst of every check
                        candidate.parity[branch] = max(error, candidate.parity.get(branch, 0.0))
                    self.log(
                        f"{candidate.mode}, tiles {candidate.tiles}: parity on {described}, max abs error {max(parity.values()):.2e}"
                    )
                if candidate.mode != "dense":
                    splits.append((candidate, self.split_layout(candidate, sessions[-1], checks)))
            timed_twin = not self.dense or self.width is not None  # a width slice is timed against the widest level
            if timed_twin:
                twin = Path(scratch) / "dense_twin.onnx"
                onnx.save(self.dense_graph()[0], twin)
                sessions.append(open_session(twin, session_options(1), ["CPUExecutionProvider"]))
            runners = [
                lambda sample, session=session: session.run([FORECAST], {INPUT: sample})
                for session in sessions[: len(candidates)]
            ]
            runners += [lambda sample, split=split: split.run({INPUT: sample}, None) for _, split in splits]
            runners += (
                [lambda sample, session=sessions[-1]: session.run([FORECAST], {INPUT: sample})] if timed_twin else []
            )
            times = timer(runners, timed, TIMING_PASSES * len(timed))
            by_layout = [(c, "single", ms) for c, ms in zip(candidates, times)] + [
                (c, "split", ms) for (c, _), ms in zip(splits, times[len(candidates) :])
            ]
            for candidate, layout, ms in by_layout:
                candidate.latency_ms[layout] = float(np.mean(ms))
                described = f", {layout} layout" if splits else ""
                self.log(
                    f"{candidate.mode}, tiles {candidate.tiles}{described}: {candidate.latency_ms[layout]:.2f} ms per validation sample"
                )
            chosen, layout, best_ms = min(by_layout, key=lambda entry: entry[0].latency_ms[entry[1]])
            chosen.layout = layout
            session = sessions[candidates.index(chosen)]
            branches = [int(session.run([BRANCH], {INPUT: sample[None]})[0]) for sample in timed]
            # the timer's run i is sample i mod len(timed) (interleaved_latency cycles over them)
            measured = self.measured(
                best_ms,
                np.resize(branches, len(best_ms)),
                times[-1] if timed_twin else None,
                len(timed),
                chosen.latency_ms,
            )
        if measured.get("speedup", 1.0) < 1.0 and self.width is None:
            self.log(
                f"warning: this export runs {measured['speedup']:.2f}× as fast as its dense twin here ({measured['ms']:.3f} vs "
                f"{measured['dense_twin_ms']:.3f} ms): what it skips does not pay on this machine; a model trained "
                "with --cost ort-cpu prices filters and regions in its milliseconds"
            )
        graph = chosen.onnx_model.SerializeToString()
        manifest = self.manifest(chosen, out.name, hashlib.sha256(graph).hexdigest(), measured)
        atomic_write_bytes(graph, out)
        atomic_write_text(
            manifest.to_json() + "\n", manifest_path(out)
        )  # last: the pair is complete once the manifest is
        return chosen, manifest, candidates

    def split_layout(self, candidate: Candidate, single, checks) -> SplitSessions:
        """The routed candidate split into a router graph and one graph per branch
        (runtime/split.py), checked to give the single graph's outputs on every parity
        sample: the cut must not change what is computed."""
        split = SplitSessions(
            split_routed_graph(candidate.onnx_model),
            lambda graph, label: open_session(graph, session_options(1), ["CPUExecutionProvider"], label),
            self.trained.model_config.pruning.budget if self.routed else None,
        )
        worst, std = 0.0, self.trained.normalizer.std.reshape(-1, 1, 1)  # compared in normalised units, as parity
        for x, _, _, feeds in checks:
            for sample in x:
                inputs = {INPUT: sample[None], **feeds}
                forecast, flops, branch = single.run([FORECAST, FLOPS, BRANCH], inputs)
                budget = float(feeds[BUDGET]) if BUDGET in feeds else None
                got, got_flops, got_branch = split.run(inputs, budget)
                if got_branch != int(branch) or abs(got_flops - float(flops)) > 1e-3 * max(1.0, abs(float(flops))):
                    raise ConfigError(
                        f"the split layout chose branch {got_branch} where the single graph chose {int(branch)}: "
                        "please report this with the model"
                    )
                worst = max(worst, float((np.abs(got - forecast) / std).max()))
        if worst > SPLIT_TOLERANCE:
            raise ConfigError(
                f"the split layout's forecast differs from the single graph's by {worst:.2e} (> {SPLIT_TOLERANCE:g}): "
                "please report this with the model"
            )
        self.log(
            f"{candidate.mode}, tiles {candidate.tiles}: split layout, max abs difference from the single graph {worst:.2e}"
        )
        return split

    @staticmethod
    def measured(
        ms: np.ndarray, branches: np.ndarray, twin_ms: np.ndarray | None, samples: int, layouts: dict[str, float]
    ) -> dict:
        """What the export's own timing found: the chosen graph's mean ms (overall and per
        branch the validation samples reached), each layout's mean ms, and, for a pruned
        model, its dense twin's."""
        result = {
            "label": f"measured at export: onnxruntime CPU, batch 1, {samples} validation samples × {TIMING_PASSES} passes"
            + ("" if twin_ms is None else ", interleaved with the dense twin"),
            "machine": machine_fingerprint(1),
            "ms": float(np.mean(ms)),
            "per_branch_ms": {str(b): float(np.mean(ms[branches == b])) for b in np.unique(branches)},
        }
        if len(layouts) > 1:
            result["layouts_ms"] = dict(layouts)
        if twin_ms is not None:
            result["dense_twin_ms"] = float(np.mean(twin_ms))
            result["speedup"] = result["dense_twin_ms"] / result["ms"]
        return result
