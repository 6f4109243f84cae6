"""`dpedge profile`'s measurement: a pruned export and its dense twin on the same real
samples, per sample (latency, FLOPs executed, the branch taken, how busy the input is),
and the summaries a user reads: latency statistics, speedup, branches, calm vs busy inputs.

Latency is measured (wall-clock, the two models taking turns on each sample) on every
backend but `orin-emu`, whose latency is the emulated Orin figure of the branch each
sample took; `Profile.latency_kind` says which, and every summary carries the label."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dynaprune_edge.cost.calibration import Calibration
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.profiling.latency import LatencyStats, interleaved_latency
from dynaprune_edge.profiling.power import PowerProfile
from dynaprune_edge.profiling.trtexec import TrtexecRun
from dynaprune_edge.runtime.base import Backend
from dynaprune_edge.runtime.manifest import KEPT_REGIONS, Manifest
from dynaprune_edge.runtime.onnxruntime import session_options

MEASURED = "measured"
EMULATED = "emulated"


def activity(frames: np.ndarray) -> np.ndarray:
    """How busy each sample's input is: the mean absolute change between consecutive input
    frames, in the data's physical units (what the router's activity prior also reads:
    calm inputs change little, storms and rush hours change a lot)."""
    if frames.shape[1] < 2:
        return np.abs(frames).mean(axis=(1, 2, 3, 4))
    return np.abs(np.diff(frames, axis=1)).mean(axis=(1, 2, 3, 4))


def region_masks(onnx_path: Path, frames: np.ndarray) -> np.ndarray | None:
    """(N, grid_h, grid_w) 0/1 regions each sample computes, read from the router's
    KEPT_REGIONS tensor of a copy of the graph that also outputs it, run by onnxruntime on
    the CPU; None for a graph without a router (dense), or where onnx or onnxruntime is not
    installed (a Jetson running only TensorRT)."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        return None
    model = onnx.load(str(onnx_path))
    if not any(KEPT_REGIONS in node.output for node in model.graph.node):
        return None
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(KEPT_REGIONS))
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"]
    )
    name = session.get_inputs()[0].name
    return np.stack([session.run([KEPT_REGIONS], {name: sample[None]})[0][0, 0] for sample in frames])


@dataclass
class Profile:
    backend: dict  # the sparse backend's describe()
    latency_kind: str  # MEASURED or EMULATED
    latency_label: str
    manifest: Manifest
    sparse_ms: np.ndarray  # per timed run (emulated: per sample)
    dense_ms: np.ndarray
    sample_sparse_ms: np.ndarray  # per sample: mean of its runs
    sample_dense_ms: np.ndarray
    flops: np.ndarray  # per sample, executed by the sparse graph
    dense_flops: float
    branch: np.ndarray  # per sample
    activity: np.ndarray  # per sample
    masks: np.ndarray | None  # (N, grid_h, grid_w) kept regions, when the graph exposes them
    frames: np.ndarray  # the samples, in the data's physical units (as the graph takes them)
    data: str  # where the samples come from
    kernels: dict = field(
        default_factory=dict
    )  # emulated only: "sparse"/"dense" → branch → its kernels (Kernel.as_dict)
    trtexec: dict[str, TrtexecRun] = field(default_factory=dict)  # "sparse"/"dense" → its engine's trtexec run
    calibrations: dict[str, Calibration] = field(
        default_factory=dict
    )  # orin-emu: those runs on another GPU, scaled to the Orin
    power: PowerProfile | None = None  # measured on the device, each model running alone (profiling.power)
    phases: list[dict] = field(default_factory=list)  # a TensorRT bundle: per sample, router, dispatch and branch ms

    @property
    def speedup(self) -> float:
        return float(self.dense_ms.mean() / self.sparse_ms.mean())

    def branches(self) -> list[dict]:
        """Per sub-network: what it computes and the samples that took it."""
        rows = []
        groups = self.manifest.gate_groups
        for index, spec in enumerate(self.manifest.branches):
            taken = self.branch == index
            rows.append(
                {
                    "branch": index,
                    "kept_regions": spec.regions,
                    "tiles": spec.tiles,
                    "flops": spec.flops,
                    "flops_ratio": spec.flops / self.dense_flops,
                    "kept_filter_share": {gate: spec.widths.get(gate, 0) / total for gate, total in groups.items()}
                    if index
                    else {},
                    "samples": int(taken.sum()),
                    "share": float(taken.mean()),
                    f"{self.latency_kind}_ms": float(self.sample_sparse_ms[taken].mean()) if taken.any() else None,
                    "activity_mean": float(self.activity[taken].mean()) if taken.any() else None,
                }
            )
        return rows

    def calm_vs_busy(self) -> dict:
        """The samples split at the median activity: what the calmer and the busier half cost."""
        threshold = float(np.median(self.activity))
        busy = self.activity > threshold
        halves = {}
        for name, chosen in (("calm", ~busy), ("busy", busy)):
            if not chosen.any():
                continue
            halves[name] = {
                "samples": int(chosen.sum()),
                "activity_mean": float(self.activity[chosen].mean()),
                "flops_ratio_mean": float(self.flops[chosen].mean() / self.dense_flops),
                f"{self.latency_kind}_ms_mean": float(self.sample_sparse_ms[chosen].mean()),
                "kept_regions_mean": None if self.masks is None else float(self.masks[chosen].sum(axis=(1, 2)).mean()),
                "branches": {str(b): int(n) for b, n in zip(*np.unique(self.branch[chosen], return_counts=True))},
            }
        return {
            "activity_threshold": threshold,
            "activity_unit": "mean |Δ| between input frames, physical units",
            **halves,
        }

    def on_device(self) -> dict:
        """The engines' trtexec runs beside this profile, measured on the GPU each log names
        (an Orin, or one the log leaves unnamed, taken as the Orin it was meant for); the
        measured speedup where both ran on the same GPU; and on orin-emu, for a run on an
        Orin the emulator's error (the dense twin's single route makes it the like-for-like
        check: trtexec feeds the pruned engine its own input, so it ran whichever branch
        that chose), for a run on another GPU its profile scaled to the Orin beside the
        first-principles prediction."""
        found = {
            "label": "MEASURED by trtexec on the GPU each run names (GPU compute time per inference, median), at trtexec's own "
            "input (random unless --loadInputs): the pruned engine ran the one branch that input chose",
            **{role: run.as_dict() for role, run in self.trtexec.items()},
        }
        runs = self.trtexec
        if {"sparse", "dense"} <= runs.keys() and runs["sparse"].device_name == runs["dense"].device_name:
            found["speedup"] = runs["dense"].gpu_ms["median"] / runs["sparse"].gpu_ms["median"]
        if self.latency_kind == EMULATED:
            taken = [float(self.sample_sparse_ms[self.branch == b].mean()) for b in np.unique(self.branch)]
            predicted = {
                "dense": {"emulated_ms": float(self.sample_dense_ms.mean())},
                "sparse": {"emulated_ms_range": [min(taken), max(taken)]},
            }
            checks, calibrated = {}, {}
            for role, run in runs.items():
                measured = run.gpu_ms["median"]
                if run.on_orin:
                    checks[role] = {**predicted[role], "measured_ms": measured}
                    if role == "dense":
                        (route,) = self.kernels["dense"].values()
                        checks[role].update(
                            error=predicted[role]["emulated_ms"] / measured - 1,
                            emulated_kernels=len(route),
                            measured_layers=None if run.layers is None else len(run.layers),
                        )
                else:
                    calibration = self.calibrations[role]
                    calibrated[role] = {
                        **predicted[role],
                        "calibrated_ms": calibration.orin_ms,
                        "measured_on": run.gpu.name,
                        "measured_ms": measured,
                        "calibration": calibration.as_dict(),
                    }
            if checks:
                found["emulated_vs_measured"] = checks
            if calibrated:
                found["calibrated"] = calibrated
        return found

    def summary(self) -> dict:
        sparse, dense = LatencyStats.from_samples(self.sparse_ms), LatencyStats.from_samples(self.dense_ms)
        return {
            "data": self.data,
            "backend": self.backend,
            "latency": {
                "kind": self.latency_kind,
                "label": self.latency_label,
                "unit": "ms per sample, batch 1",
                "sparse": asdict(sparse),
                "dense": asdict(dense),
                "speedup": self.speedup,
            },
            "flops": {
                "convention": self.manifest.flops_convention,
                "dense": self.dense_flops,
                "executed_mean": float(self.flops.mean()),
                "ratio_mean": float(self.flops.mean() / self.dense_flops),
                "ratio_max": float(self.flops.max() / self.dense_flops),
            },
            "branches": self.branches(),
            "calm_vs_busy": self.calm_vs_busy(),
            **({"emulated_kernels": self.kernels} if self.kernels else {}),
            **({"trtexec": self.on_device()} if self.trtexec else {}),
            **({"power": self.power.summary()} if self.power is not None else {}),
            **({"bundle_phases": phase_summary(self.phases, self.branch)} if self.phases else {}),
            "samples": [
                {
                    "sample": i,
                    "activity": float(a),
                    "branch": int(b),
                    "flops": float(f),
                    f"sparse_{self.latency_kind}_ms": float(s),
                    f"dense_{self.latency_kind}_ms": float(d),
                    **({} if self.masks is None else {"kept_regions": int(self.masks[i].sum())}),
                }
                for i, (a, b, f, s, d) in enumerate(
                    zip(self.activity, self.branch, self.flops, self.sample_sparse_ms, self.sample_dense_ms)
                )
            ],
        }


def phase_summary(phases: list[dict], branches: np.ndarray) -> list[dict]:
    """Per branch the samples took: the mean router, dispatch and branch ms of a bundle."""
    rows = []
    for branch in np.unique(branches):
        taken = [p for p, b in zip(phases, branches) if b == branch and p]
        if taken:
            rows.append(
                {
                    "branch": int(branch),
                    "samples": len(taken),
                    **{key: float(np.mean([p[key] for p in taken])) for key in taken[0]},
                }
            )
    return rows


def per_sample(ms: np.ndarray, samples: int) -> np.ndarray:
    """Mean of each sample's runs (run i is sample i mod `samples`)."""
    return np.array([ms[i::samples].mean() for i in range(samples)])


def profile(
    sparse: Backend,
    dense: Backend,
    frames: np.ndarray,
    runs: int,
    warmup: int,
    data: str,
    onnx_path: Path | None = None,
    advance: Callable[[], object] | None = None,
    repeat: int = 1,
) -> Profile:
    """Profile `sparse` against its dense twin on `frames` (N, T, C, H, W), graph units.
    Measured backends: at least `runs` timed runs of each (every sample at least once),
    interleaved, after `warmup` passes, each model running `repeat` times in a row at its
    turn and the last run timed (profiling.latency.interleaved_latency); emulated: each
    sample's branch's emulated latency.
    `onnx_path`: the sparse graph, to read the regions each sample kept."""
    if runs < 1:
        raise ConfigError(f"--runs must be ≥ 1, got {runs}")
    if warmup < 0:
        raise ConfigError(f"--warmup must be ≥ 0, got {warmup}")
    if sparse.emulated != dense.emulated:
        raise ConfigError("the model and its dense twin must be profiled on the same backend")
    result = sparse.run(frames)
    count = len(frames)
    phases: list[dict] = []
    if sparse.emulated:
        dense_branches = dense.run(frames).branch
        sample_sparse = np.array([sparse.emulated_ms(int(b)) for b in result.branch])
        sample_dense = np.array([dense.emulated_ms(int(b)) for b in dense_branches])
        sparse_ms, dense_ms = sample_sparse, sample_dense
        kind, label = EMULATED, sparse.describe()["latency"]
        kernels = {
            name: {str(b): [k.as_dict() for k in backend.roofline.routes[b]] for b in np.unique(branches)}
            for name, backend, branches in (("sparse", sparse, result.branch), ("dense", dense, dense_branches))
        }
        if advance is not None:
            advance()
    else:
        dense_ms, sparse_ms = interleaved_latency(
            [dense.run_one, sparse.run_one], frames, max(runs, count), repeat, warmup, advance
        )
        sample_sparse, sample_dense = per_sample(sparse_ms, count), per_sample(dense_ms, count)
        kind, kernels = MEASURED, {}
        if hasattr(
            sparse, "last_phases"
        ):  # TensorRT: one more pass for each sample's phases (a bundle's; none for one engine)
            for sample in frames:
                sparse.run_one(sample[None])
                phases.append(dict(sparse.last_phases))
        turns = "strict turns" if repeat == 1 else f"each timed after {repeat - 1} untimed runs of its own"
        label = f"measured: wall-clock per sample on {sparse.describe().get('device', 'this machine')}, batch 1, interleaved with the dense twin ({turns})"
    return Profile(
        backend=sparse.describe(),
        latency_kind=kind,
        latency_label=label,
        manifest=sparse.manifest,
        sparse_ms=np.asarray(sparse_ms),
        dense_ms=np.asarray(dense_ms),
        sample_sparse_ms=sample_sparse,
        sample_dense_ms=sample_dense,
        flops=result.flops,
        dense_flops=float(sparse.manifest.dense_flops),
        branch=result.branch,
        activity=activity(frames),
        masks=None if onnx_path is None else region_masks(onnx_path, frames),
        frames=frames,
        data=data,
        kernels=kernels,
        phases=phases if any(phases) else [],
    )
