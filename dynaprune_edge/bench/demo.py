"""`dpedge demo`: the product doing its job, in a few minutes on a laptop.

On the KNMI radar event bundled with dpedge: four static-width SimVPs (the curve to beat)
and one width-routed slimmable SimVP priced in this machine's onnxruntime milliseconds,
every model trained the same optimizer steps; its one artifact is measured at several
run-time budgets beside its width levels alone and the hindsight oracle, as `dpedge bench
pareto` does (dynaprune_edge.bench.pareto), pysteps' extrapolation nowcast beside them
where the `baselines` extra is installed, and the verdict says what to ship at each
latency. The routed artifact is then profiled at its trained budget, measured here and
emulated on the Jetson AGX Orin, with a report each under OUT/report/.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from dynaprune_edge.bench.common import report
from dynaprune_edge.bench.pareto import build, measure_dataset, pareto_table, plan, plot, write_verdict
from dynaprune_edge.data import SAMPLE, DataConfig, load_dataset

SIZE = 32
"""The radar frames downsampled by area means to 32×32 pixels (the family's default is 64):
a quarter of the work per step, so that five models train in a few minutes on 2 cores."""
THREADS = 1  # onnxruntime intra-op threads of every timing, as `bench pareto`'s default
RUNS = 100  # timed runs of each artifact (cycling over the validation windows)
REPEAT = 3  # each artifact run warm at its turn, as if it ran alone


def demo(out: Path, steps: int, console: Console) -> None:
    """Train, export, time and judge the demo's models (see the module doc)."""
    data = load_dataset(DataConfig("knmi", path=SAMPLE, size=SIZE))
    planned = plan(data.config.name, ["simvp"], budgets=[], costs=["ort-cpu"], large=False)
    built = [build(p, data, steps, out) for p in planned]
    points = measure_dataset(built, data, RUNS, THREADS, REPEAT)
    plot(points, out / "pareto-knmi.png")
    title = f"dpedge demo: KNMI radar, static-width SimVPs vs one width-routed SimVP ({steps} steps each, onnxruntime CPU, {THREADS} thread)"
    report(points, False, out, console, lambda rows: pareto_table(rows, title), benchmark="demo")
    write_verdict(points, out, console)
    routed = next(b for b in built if b.planned.routed)
    profile_demo(routed.onnx, out / "report", console)
    console.print(f"plot: {out / 'pareto-knmi.png'}; verdict: {out / 'verdict.txt'}", soft_wrap=True)
    console.print(
        f"next: `dpedge profile {routed.onnx} --budget 0.3` runs the same artifact at another budget; `dpedge bench pareto` "
        "compares on every dataset; docs/design.md says how the router decides",
        soft_wrap=True,
    )


def profile_demo(onnx_path: Path, reports: Path, console: Console) -> None:
    """Profile an export against its dense twin with ort (measured) and orin-emu (64 GB,
    MAXN, fp16; emulated), a report each in REPORTS/ort and REPORTS/orin-emu."""
    from dynaprune_edge import profile
    from dynaprune_edge.profiling.report import write_report

    for backend in ("ort", "orin-emu"):
        settings = profile.Settings(backend=backend, runs=RUNS)
        result = profile.run(onnx_path, settings)
        write_report(result, reports / backend, settings.as_dict())
        console.print(
            f"{backend}: {onnx_path.name} {result.sparse_ms.mean():.3f} ms, its dense twin {result.dense_ms.mean():.3f} ms "
            f"({result.speedup:.2f}×, {result.latency_kind}); report in {reports / backend}",
            soft_wrap=True,
        )
