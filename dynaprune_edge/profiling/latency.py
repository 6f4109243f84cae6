"""Latency of an exported model: wall-clock statistics per sample through any backend, and
where onnxruntime spends its kernel time (router vs routed sub-networks).

numpy only; onnxruntime is imported inside functions (through the runtime helpers)."""

from __future__ import annotations

import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dynaprune_edge.errors import ConfigError, DataError
from dynaprune_edge.runtime.base import check_frames
from dynaprune_edge.runtime.manifest import read_manifest
from dynaprune_edge.runtime.onnxruntime import import_onnxruntime, onnx_file, open_session, session_options

KERNEL_SUFFIX = "_kernel_time"


@dataclass(frozen=True)
class LatencyStats:
    """Milliseconds; percentiles use numpy's default (linear interpolation)."""

    mean: float
    p50: float
    p90: float
    p99: float
    n: int

    @classmethod
    def from_samples(cls, ms: Sequence[float] | np.ndarray) -> LatencyStats:
        values = np.asarray(ms, np.float64).ravel()
        if values.size == 0:
            raise DataError("no latency samples to summarise")
        if not np.all(np.isfinite(values)):
            raise DataError("latency samples hold non-finite values")
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        return cls(float(values.mean()), float(p50), float(p90), float(p99), int(values.size))


def interleaved_latency(
    runners: Sequence[Callable[[np.ndarray], object]],
    frames: np.ndarray,
    runs: int,
    repeat: int = 1,
    warmup: int = 1,
    advance: Callable[[], object] | None = None,
) -> list[np.ndarray]:
    """Milliseconds per run of each runner (a callable on one (1, T, C, H, W) sample, batch 1
    as deployed), the runners taking turns on each sample so that machine noise hits them
    alike, cycling over `frames` for `runs` runs (run i is sample i mod len(frames)), after
    `warmup` untimed passes that visit every sample (and so every sub-network the samples
    reach); `advance()` after each timed run (a progress bar).

    repeat > 1: at its turn a runner runs that many times in a row on the sample and only the
    last run is timed, so every timed run starts from the caches its own graph left, as a
    deployed model running alone does. Strict turns (1) among many graphs time each one
    after the others evicted it: measured on the 8 candidates of a SimVP export, that made
    every one ~35 % slower and changed which was fastest."""
    if runs < 1:
        raise ConfigError(f"need runs ≥ 1, got {runs}")
    if repeat < 1:
        raise ConfigError(f"need repeat ≥ 1, got {repeat}")
    if warmup < 0:
        raise ConfigError(f"need warmup ≥ 0, got {warmup}")
    samples = [sample[None] for sample in frames]
    for _ in range(warmup):
        for sample in samples:
            for runner in runners:
                runner(sample)
    times = [np.empty(runs) for _ in runners]
    for index in range(runs):
        sample = samples[index % len(samples)]
        for runner, spent in zip(runners, times):
            for _ in range(repeat - 1):
                runner(sample)
            start = time.perf_counter()
            runner(sample)
            spent[index] = (time.perf_counter() - start) * 1e3
        if advance is not None:
            advance()
    return times


def node_time_shares(
    onnx_path: Path, samples: np.ndarray, threads: int | None, prefixes: Sequence[str]
) -> dict[str, float]:
    """Share of onnxruntime's (CPU) node kernel time spent in nodes whose name starts with
    each prefix, over `samples` run one at a time after one untimed warm-up run.

    Control flow: onnxruntime (verified with 1.32) traces the nodes inside an `If` branch as
    events of their own, *and* the `If` node's event spans them. Each node is therefore
    charged its self time (its span minus the spans nested in it), so nothing counts twice;
    a branch node is attributed by its own name and the `If` keeps only its overhead. Were
    a build to omit branch events, the `If` would be charged the whole branch instead.

    Names: the session runs at ORT_ENABLE_EXTENDED, not ALL. ALL adds the CPU NCHWc layout
    transform, which renames each Conv after its output tensor ("<output>_nchwc") and
    inserts anonymous Reorder nodes, so node-name prefixes would no longer find them;
    EXTENDED keeps the names (fused nodes keep the first node's name)."""
    path = onnx_file(onnx_path)
    manifest = read_manifest(path)
    batch = check_frames(manifest, samples)
    options = session_options(threads, level="ORT_ENABLE_EXTENDED")
    options.enable_profiling = True
    with tempfile.TemporaryDirectory(prefix="dpedge-profile-") as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = open_session(path, options, ["CPUExecutionProvider"])
        feed = manifest.input.name
        session.run(None, {feed: batch[:1]})
        for sample in batch:
            session.run(None, {feed: sample[None]})
        trace = json.loads(Path(session.end_profiling()).read_text())  # deleted with `tmp`
    times = node_self_times(trace)
    total = sum(times.values())
    if total <= 0:
        raise ConfigError(f"onnxruntime {import_onnxruntime().__version__} recorded no node kernel time for {path}")
    return {prefix: sum(t for name, t in times.items() if name.startswith(prefix)) / total for prefix in prefixes}


def node_self_times(trace: list[dict]) -> dict[str, float]:
    """Microseconds per node name in an onnxruntime profile, without the first run (warm-up).
    A node's self time excludes the extent of the nodes traced inside it (e.g. an `If`'s
    branch), from the first one's start to the last one's end: the gaps between a branch's
    nodes are the executor's and the profiler's per-node cost, no node's kernel time, as
    between top-level nodes. Charged to the `If` instead, they made it look like a third of
    a pruned ViT's time (measured: 420 µs of gaps between the 137 nodes of a 985 µs branch,
    while an `If` costs about 3 µs unprofiled)."""
    runs = sorted((e["ts"] + e["dur"]) for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run")
    warm = runs[0] if runs else 0
    threads: dict[tuple, list[dict]] = defaultdict(list)
    for event in trace:
        if event.get("cat") == "Node" and event.get("name", "").endswith(KERNEL_SUFFIX) and event["ts"] >= warm:
            threads[event["pid"], event["tid"]].append(event)
    times: dict[str, float] = defaultdict(float)

    def close(span: list) -> None:
        _, name, duration, first, last = span
        times[name] += duration - (0 if first is None else last - first)

    for events in threads.values():
        events.sort(key=lambda e: (e["ts"], -e["dur"]))
        open_spans: list[list] = []  # [end, name, duration, first nested start, last nested end] of the enclosing nodes
        for event in events:
            while open_spans and event["ts"] >= open_spans[-1][0]:
                close(open_spans.pop())
            end = event["ts"] + event["dur"]
            if open_spans:
                parent = open_spans[-1]
                parent[3] = event["ts"] if parent[3] is None else parent[3]
                parent[4] = end if parent[4] is None else max(parent[4], end)
            name = event["args"].get("node_name") or event["name"].removesuffix(KERNEL_SUFFIX)
            open_spans.append([end, name, event["dur"], None, None])
        while open_spans:
            close(open_spans.pop())
    return {name: max(t, 0.0) for name, t in times.items()}
