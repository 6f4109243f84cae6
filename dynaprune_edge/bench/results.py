"""A benchmark's results file: OUT/results.json (`bench gpu-check`: OUT/gpu-check.json).

    {"benchmark": "pareto", "run": {...provenance...}, "results": ...}

"benchmark" names the benchmark that wrote it (one of BENCHMARKS), so that a reader
(`bench/render.py`, which renders docs/benchmarks.md from such files) knows the shape of
"results" without parsing the command line; "run" says where, when and from what code the
results were measured. Torch-free: the renderer reads these files where no torch is installed."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from dynaprune_edge.errors import DataError
from dynaprune_edge.files import atomic_write_text

BENCHMARKS = ("demo", "accuracy", "training", "latency", "pareto", "layout", "orin", "gpu-check")
"""Every benchmark that writes a results file, by the name it records under "benchmark"."""
LABEL = re.compile(r"[A-Za-z0-9_-]+")
"""What may follow BENCHMARK- in a results file's name (no dot: NAME.PART.png names a plot)."""


def write_results(results, out: Path, name: str = "results.json", *, benchmark: str) -> None:
    """OUT/NAME: a benchmark's results under "results", its name (one of BENCHMARKS) under
    "benchmark", and under "run" where, when and from what code they were measured
    (`provenance`), which a page citing them names."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}: add it to BENCHMARKS (and to bench/render.py)")
    document = {"benchmark": benchmark, "run": provenance(), "results": results}
    atomic_write_text(json.dumps(document, indent=2) + "\n", out / name)


def provenance() -> dict:
    """The command line, the date (UTC), the dpedge commit, the machine, how busy it was and
    the libraries of this run. `load` is the machine's load average over the 15 minutes before
    the results were written: above the core count, other work shared the cores, and a
    measured figure of the run is slower than on a quiet machine (ratios of models timed
    together, by turns, less so)."""
    from dynaprune_edge.profiling.report import machine, versions

    return {
        "command": shlex.join(["dpedge", *sys.argv[1:]]),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": source_commit(),
        "machine": {**machine(), "cores": os.cpu_count()},
        "load": round(os.getloadavg()[2], 2) if hasattr(os, "getloadavg") else None,
        "versions": versions(),
    }


def source_commit() -> str | None:
    """The git commit of the dpedge checkout that runs ("-dirty" with uncommitted changes),
    or None for an installed copy: only the checkout holding this package is asked."""
    package = Path(__file__).resolve().parents[1]
    try:
        top = subprocess.run(
            ["git", "-C", str(package), "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=10
        )
        if top.returncode != 0 or Path(top.stdout.strip()) != package.parent:
            return None
        described = subprocess.run(
            ["git", "-C", str(package), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return described.stdout.strip() or None if described.returncode == 0 else None


@dataclass(frozen=True)
class Results:
    """One results file as read back: which benchmark wrote it, its run and its results."""

    path: Path
    benchmark: str
    run: dict
    results: object

    @property
    def name(self) -> str:
        """The file's name without .json: the benchmark, then optionally '-' and a label
        (pareto-nycbike.json, orin.json)."""
        return self.path.stem


def read_results(path: Path) -> Results:
    """PATH as written by `write_results`; a DataError naming the file (one line) if it is
    not JSON, not such a document, written by an unknown benchmark, or named for another
    benchmark than the one that wrote it (NAME.json must be BENCHMARK.json or
    BENCHMARK-LABEL.json)."""
    try:
        document = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a results file (not UTF-8 text)") from None
    except json.JSONDecodeError as error:
        raise DataError(f"{path}: not JSON ({error.msg} at line {error.lineno}, column {error.colno})") from None
    if not isinstance(document, dict) or not {"run", "results"} <= document.keys():
        raise DataError(f'{path}: not a dpedge results file (no "run" and "results" keys)')
    benchmark = document.get("benchmark")
    if benchmark is None:
        raise DataError(
            f'{path}: no "benchmark" key (written by a dpedge older than the renderer): rerun the benchmark'
        )
    if benchmark not in BENCHMARKS:
        raise DataError(f"{path}: unknown benchmark {benchmark!r}; known: {', '.join(BENCHMARKS)}")
    label = path.stem[len(benchmark) + 1 :] if path.stem.startswith(f"{benchmark}-") else None
    if path.stem != benchmark and not (label and LABEL.fullmatch(label)):
        raise DataError(
            f"{path}: written by `{benchmark}`: name it {benchmark}.json or {benchmark}-LABEL.json "
            "(LABEL of letters, digits, - and _)"
        )
    if not isinstance(document["run"], dict):
        raise DataError(f'{path}: "run" is not an object')
    return Results(path, benchmark, document["run"], document["results"])
