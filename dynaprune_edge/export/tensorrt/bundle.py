"""A pruned graph built as a split bundle: one engine for its router and one per branch
(runtime/tensorrt.py, BundleMeta; docs/design.md, "Split layout"), checked against
onnxruntime through the runtime that runs it, and written so that a build killed at any
point leaves the previous bundle whole."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType

import numpy as np

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.tensorrt.calibrator import entropy_calibrator
from dynaprune_edge.export.tensorrt.commands import trtexec_profile_command
from dynaprune_edge.export.tensorrt.names import calibration_cache_name, engine_name, parity_tolerances
from dynaprune_edge.export.tensorrt.polygraphy import PARITY_SAMPLES
from dynaprune_edge.files import atomic_write_bytes, sha256_file
from dynaprune_edge.runtime.manifest import BRANCH, BUDGET, FLOPS, FORECAST, INPUT, Manifest, manifest_path
from dynaprune_edge.runtime.tensorrt import (
    BUNDLE_SUFFIX,
    BundleEngine,
    BundleExecution,
    BundleMeta,
    Target,
    TrtApi,
    trt_logger,
    write_bundle,
)

CHECKED_BUDGETS = (0.3, 1.0)  # besides the trained one: a width-routed bundle's router and its budget-1 engine


def bundle_name(onnx_stem: str, device: str, trt_version: str, precision: str) -> str:
    return engine_name(onnx_stem, device, trt_version, precision).removesuffix(".engine") + BUNDLE_SUFFIX


def split_graphs(onnx_path: Path):
    """The split graphs of the routed graph (runtime/split.py), the router's budget made an
    input without a default: TensorRT's parser would fold a default into the engine, and
    the budget is chosen at run time."""
    import onnx

    from dynaprune_edge.runtime.split import split_routed_graph

    graphs = split_routed_graph(onnx.load(str(onnx_path)))
    initializers = graphs.router.graph.initializer
    for index in reversed(range(len(initializers))):
        if initializers[index].name == BUDGET:
            del initializers[index]
    return graphs


def build_bundle(
    trt: ModuleType,
    cuda: ModuleType,
    api: TrtApi,
    target: Target,
    onnx_path: Path,
    manifest: Manifest,
    precision: str,
    frames: np.ndarray | None,
    build_engine,
) -> tuple[Path, str, str]:
    """Build every engine of the bundle (`build_engine(graph bytes, label, inputs, int8
    calibrator or None)`), check the bundle on the first of the validation `frames`, then
    write the engines (named by hash) and last the bundle file, and remove the engines of
    the bundle it replaced. Returns (bundle path, the check's verdict, the trtexec lines
    that time each engine on its own)."""
    graphs = split_graphs(onnx_path)
    parts = {"router": graphs.router, **{f"branch{i}": g for i, g in enumerate(graphs.branches)}}
    parts |= {"bypass": graphs.bypass} if graphs.bypass is not None else {}
    serialized = {role: graph.SerializeToString() for role, graph in parts.items()}
    calibrators = (
        int8_calibrators(trt, cuda, parts, serialized, onnx_path, target, frames, manifest.trained_budget)
        if precision == "int8"
        else {}
    )
    built = {}
    for role, graph in parts.items():
        inputs = {value.name: [d.dim_value for d in value.type.tensor_type.shape.dim] for value in graph.graph.input}
        built[role] = build_engine(serialized[role], f"{onnx_path.name} ({role})", inputs, calibrators.get(role))
    bundle = onnx_path.parent / bundle_name(onnx_path.stem, target.device, target.trt_version, precision)
    samples = None if frames is None else frames[:PARITY_SAMPLES]
    verdict = check_bundle(trt, cuda, api, built, onnx_path, manifest, precision, samples, bundle.name)
    if verdict.startswith("FAILED"):
        raise ConfigError(f"{bundle.name} not written: the bundle's outputs differ from onnxruntime's ({verdict})")
    prefix = bundle.name.removesuffix(BUNDLE_SUFFIX)
    engines = {}
    for role, data in built.items():
        digest = hashlib.sha256(data).hexdigest()
        file = f"{prefix}.{role}.{digest[:12]}.engine"
        atomic_write_bytes(data, onnx_path.parent / file)
        engines[role] = BundleEngine(role, file, digest)
    meta = BundleMeta(
        device=target.device,
        compute_capability=target.compute_capability,
        trt_version=target.trt_version,
        precision=precision,
        onnx=onnx_path.name,
        onnx_sha256=sha256_file(onnx_path),
        manifest=manifest_path(onnx_path).name,
        router=engines["router"],
        branches=[engines[f"branch{i}"] for i in range(len(graphs.branches))],
        bypass=engines.get("bypass"),
        handoff=list(graphs.handoff),
    )
    write_bundle(bundle, meta)  # last: the bundle is complete once this file names its engines
    kept = {engine.file for engine in meta.engines}
    for stale in onnx_path.parent.glob(f"{prefix}.*.engine"):  # the replaced bundle's engines, named by other hashes
        if stale.name not in kept:
            stale.unlink(missing_ok=True)
    commands = "; ".join(trtexec_profile_command(engine.file) for engine in meta.engines)
    return bundle, verdict, commands


def int8_calibrators(
    trt: ModuleType,
    cuda: ModuleType,
    parts: dict,
    serialized: dict[str, bytes],
    onnx_path: Path,
    target: Target,
    frames: np.ndarray | None,
    trained_budget: float | None,
) -> dict:
    """Each engine's int8 calibrator, with a calibration cache of its own beside the graph
    (named by that engine's graph: `calibration_cache_name`). A cache found is reused as
    is; the others calibrate on `frames`, each engine on the inputs it gets when the bundle
    runs them: the frames, the trained budget, and what the router hands on, computed by
    onnxruntime on the router's graph. Every branch calibrates on every frame, not only on
    those the router sends it at the trained budget: at another run-time budget it gets
    the others."""
    caches = {
        role: onnx_path.parent
        / calibration_cache_name(f"{onnx_path.stem}.{role}", hashlib.sha256(data).hexdigest(), target.trt_version)
        for role, data in serialized.items()
    }
    missing = [cache.name for cache in caches.values() if not cache.is_file()]
    if missing and frames is None:
        raise ConfigError(
            f"int8 needs calibration frames (real validation samples: dpedge engine --frames NAME.frames.npz, which "
            f"dpedge deploy copies) or a calibration cache for every engine of the bundle; missing {missing[0]}"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else "")
        )
    batches = bundle_calibration_inputs(parts, frames, trained_budget) if missing else {}
    return {role: entropy_calibrator(trt, cuda, batches.get(role), cache) for role, cache in caches.items()}


def bundle_calibration_inputs(
    parts: dict, frames: np.ndarray, trained_budget: float | None
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Per engine role, one dict of its inputs per frame (int8_calibrators)."""
    try:
        from dynaprune_edge.runtime.onnxruntime import open_session, session_options
    except ImportError as error:
        raise ConfigError(
            f"an int8 bundle calibrates its branch engines on what the router hands them, computed with onnxruntime, "
            f"which is not installed here ({error}): pip install onnxruntime, or build --layout single"
        ) from None
    router = parts["router"]
    session = open_session(router.SerializeToString(), session_options(1), ["CPUExecutionProvider"], "the split router")
    outputs = [value.name for value in router.graph.output]
    budget = (
        {BUDGET: np.array(trained_budget, np.float32)}
        if any(value.name == BUDGET for value in router.graph.input)
        else {}
    )
    batches: dict[str, list[dict[str, np.ndarray]]] = {role: [] for role in parts}
    for sample in frames:
        feeds = {INPUT: sample[None], **budget}
        known = feeds | dict(zip(outputs, session.run(outputs, feeds)))
        for role, graph in parts.items():
            batches[role].append({value.name: np.asarray(known[value.name]) for value in graph.graph.input})
    return batches


def check_bundle(
    trt,
    cuda,
    api: TrtApi,
    built: dict[str, bytes],
    onnx_path: Path,
    manifest: Manifest,
    precision: str,
    samples: np.ndarray | None,
    bundle_file: str,
) -> str:
    """The bundle, run as the trt backend runs it, against onnxruntime on the single graph:
    the same branch and forecasts within the precision's tolerance, on `samples` (real
    validation frames) at the trained budget and, for a width-routed graph, CHECKED_BUDGETS."""
    if samples is None:
        return "not checked: no validation frames to run (dpedge engine --frames NAME.frames.npz)"
    try:
        from dynaprune_edge.runtime.onnxruntime import open_session, session_options
    except ImportError as error:  # pragma: no cover - onnxruntime ships with the export extra
        return f"not checked: onnxruntime is not installed here ({error})"
    single = open_session(onnx_path, session_options(1), ["CPUExecutionProvider"])
    runtime = trt.Runtime(trt_logger(trt))
    engines = {role: runtime.deserialize_cuda_engine(data) for role, data in built.items()}
    execution = BundleExecution(trt, cuda, engines, manifest, api, onnx_path, manifest.trained_budget)
    budgets = [None] + (list(CHECKED_BUDGETS) if manifest.trained_budget is not None else [])
    atol, rtol = parity_tolerances(precision)
    worst, checked = 0.0, 0
    for budget in budgets:
        for sample in samples:
            feeds = {INPUT: sample[None]} | ({} if budget is None else {BUDGET: np.array(budget, np.float32)})
            expected, flops, branch = single.run([FORECAST, FLOPS, BRANCH], feeds)
            forecast, _, chosen = execution.run(sample[None], budget)
            if chosen != int(branch):
                return f"FAILED: sample {checked} took branch {chosen} in {bundle_file}, {int(branch)} on onnxruntime"
            if not np.allclose(forecast, expected, atol=atol, rtol=rtol):
                return f"FAILED: sample {checked}'s forecast differs by up to {float(np.abs(forecast - expected).max()):.3g} (atol {atol}, rtol {rtol})"
            worst = max(worst, float(np.abs(forecast - expected).max()))
            checked += 1
    return f"PASSED: onnxruntime vs {bundle_file} on {len(samples)} real inputs × {len(budgets)} budget(s), max abs error {worst:.2e}"
