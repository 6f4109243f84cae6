"""`dpedge demo` and `dpedge bench …`: long runs that print comparison tables (not tests).
Each command checks its options and output folder, then hands over to its module in
dynaprune_edge.bench."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dynaprune_edge.cli.options import Backbones, Knmi, Steps, Threads, json_flag, out_folder
from dynaprune_edge.cli.show import console
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.files import check_writable

JsonRows = json_flag("one JSON object per row")


def demo(
    out: out_folder(
        "the demo's models, exports, plot, verdict and reports (models trained with the same settings are reused)"
    ) = Path("runs/demo"),
    steps: Steps = 300,
) -> None:
    """On the real KNMI radar sample: static-width SimVPs against one width-routed SimVP priced in this machine's milliseconds, its one artifact timed over run-time budgets; a plot, a table and a verdict."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import demo as run_demo

    run_demo.demo(out, steps, console)


def accuracy(
    out: out_folder("the benchmark's models") = Path("runs/bench-accuracy"),
    steps: Steps = 600,
    budget: Annotated[
        float, typer.Option("--budget", "--target-flops", help="FLOPs budget of the pruned models.")
    ] = 0.3,
    backbone: Backbones = None,
    knmi: Knmi = None,
    as_json: JsonRows = False,
) -> None:
    """For each backbone, on synthetic TaxiBJ, real New York bike traffic and the real KNMI radar set: dense vs pruned MAE, FLOPs ratio, data kept."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import accuracy
    from dynaprune_edge.bench.common import checked_knmi

    accuracy.bench(out, steps, budget, backbone or [], as_json, checked_knmi(knmi), console)


def latency(
    out: out_folder("the benchmark's models and exports (models trained with the same settings are reused)") = Path(
        "runs/bench-latency"
    ),
    steps: Steps = 300,
    budget: Annotated[
        list[float] | None,
        typer.Option(
            "--budget",
            "--target-flops",
            help="Budgets of the pruned models (ratios on their --cost target), repeatable (default: 0.3 and 0.5).",
        ),
    ] = None,
    threads: Annotated[
        list[int] | None,
        typer.Option(min=1, max=1024, help="onnxruntime intra-op threads, repeatable (default: 1 and 2)."),
    ] = None,
    backbone: Backbones = None,
    group_order: Annotated[
        str,
        typer.Option(
            help="Group order the models are trained with (see `dpedge train --help`); 'ordered' lets export compile "
            "constant-weight sub-networks."
        ),
    ] = "ordered",
    runs: Annotated[
        int,
        typer.Option(
            min=1, max=1000000, help="Timed runs of each model per row (cycling over the validation samples)."
        ),
    ] = 300,
    repeat: Annotated[
        int,
        typer.Option(
            min=1,
            max=100,
            help="Runs of each model in a row at its turn, only the last timed: 1 (strict turns, as the benchmark "
            "pages' tables) times each model after the others' runs; 3 times each warm, as a model running alone.",
        ),
    ] = 1,
    cost: Annotated[
        list[str] | None,
        typer.Option(
            help="Cost targets the models' budgets are priced on, repeatable: flops, ort-cpu (default: flops)."
        ),
    ] = None,
    knmi: Knmi = None,
    as_json: JsonRows = False,
) -> None:
    """Dense vs sparse export latency (onnxruntime CPU, batch 1) on synthetic TaxiBJ, real New York bike traffic and the real KNMI radar set."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import latency
    from dynaprune_edge.bench.common import checked_knmi

    latency.bench(
        out,
        steps,
        budget or [],
        threads or [],
        backbone or [],
        group_order,
        runs,
        repeat,
        as_json,
        checked_knmi(knmi),
        console,
        cost or [],
    )


def pareto(
    out: out_folder(
        "the models, exports, results.json and the plots (models trained with the same settings are reused)"
    ) = Path("runs/bench-pareto"),
    steps: Steps = 300,
    dataset: Annotated[
        list[str] | None,
        typer.Option(
            help="Datasets, repeatable: taxibj (synthetic), nycbike, knmi, weatherbench (real samples) (default: all)."
        ),
    ] = None,
    backbone: Backbones = None,
    budget: Annotated[
        list[float] | None,
        typer.Option(
            help="SimVP's region-pruned models' budgets, repeatable (default: 0.3 and 0.5; the width-routed model is "
            "trained at 0.5 and measured at 0.3–1)."
        ),
    ] = None,
    cost: Annotated[
        list[str] | None,
        typer.Option(
            help="Cost targets the budgets (and the width-routed models) are priced on, repeatable (default: flops "
            "and ort-cpu)."
        ),
    ] = None,
    large: Annotated[
        bool,
        typer.Option(
            help="Also a larger SimVP (32 spatial / 128 temporal channels) with its own static curve, on taxibj and "
            "knmi."
        ),
    ] = True,
    region_pruned: Annotated[
        bool,
        typer.Option(help="Also the region-pruned models (--no-slimmable) at --budget, besides the width-routed ones."),
    ] = True,
    threads: Threads = 1,
    runs: Annotated[
        int, typer.Option(min=1, max=1000000, help="Timed runs of each model (cycling over the validation samples).")
    ] = 200,
    repeat: Annotated[
        int,
        typer.Option(
            min=1,
            max=100,
            help="Runs of each model in a row at its turn, the last timed (3: each model warm, as if it ran alone).",
        ),
    ] = 3,
    knmi: Knmi = None,
    as_json: json_flag("one JSON object per point") = False,
) -> None:
    """Validation MAE vs measured latency: static-width SimVPs (and ConvLSTM, ViT) against Dyna-Pruner, per dataset, with a plot each."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import pareto
    from dynaprune_edge.bench.common import checked_knmi

    pareto.bench(
        out,
        steps,
        dataset or [],
        backbone or [],
        budget or [],
        cost or [],
        large,
        region_pruned,
        threads,
        runs,
        repeat,
        as_json,
        checked_knmi(knmi),
        console,
    )


def layout(
    out: out_folder("results.json") = Path("runs/bench-layout"),
    runs: Annotated[int, typer.Option(min=1, max=1000000, help="Timed runs of each graph.")] = 300,
    as_json: JsonRows = False,
) -> None:
    """What onnxruntime's blocked channel layout makes of pruned work on this CPU: region masks by their shape, and layer time against width (about a minute)."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import layout

    layout.bench(out, runs, as_json, console)


def training(
    out: out_folder("the runs and results.json") = Path("runs/bench-training"),
    epochs: Annotated[
        int, typer.Option(min=2, max=100000, help="Epochs of every run (full data, ST-Prune, InfoBatch-style alike).")
    ] = 10,
    frames: Annotated[
        list[int] | None,
        typer.Option(
            min=1,
            max=1000000,
            help="Synthetic TaxiBJ series lengths, repeatable (a small and a large set: where ST-Prune starts to pay).",
        ),
    ] = None,
    prune_ratio: Annotated[float, typer.Option(help="--prune-ratio of the ST-Prune and InfoBatch-style runs.")] = 0.5,
    anneal: Annotated[float, typer.Option(help="--anneal of both.")] = 0.125,
    easy_share: Annotated[float, typer.Option(help="--easy-share of both.")] = 0.5,
    knmi: Knmi = None,
    as_json: json_flag("one JSON object") = False,
) -> None:
    """ST-Prune against full-data training and an InfoBatch-style baseline (same seeds): wall-clock to the full-data model's validation MAE (within 1 %), final MAE, pruned fraction, samples seen, scoring overhead; and 1 vs 2 processes."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import training
    from dynaprune_edge.bench.common import checked_knmi
    from dynaprune_edge.training.sample_pruning import SamplePruning

    pruning = SamplePruning(
        ratio=prune_ratio, anneal=anneal, easy_share=easy_share
    )  # bad options fail now, not after the first run
    training.bench(out, epochs, frames or [600, 4000], pruning, checked_knmi(knmi), as_json, console)


def orin(
    out: out_folder("the reference networks' ONNX files (built once) and results.json") = Path("runs/bench-orin"),
    as_json: json_flag("the rows and summaries as one JSON object") = False,
) -> None:
    """The orin-emu emulator against published Jetson AGX Orin latencies of well-known networks (MLPerf, Ultralytics): published vs emulated ms, constants as they stand and fitted on marked rows."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import orin

    orin.bench(out, as_json, console)


def gpu_check(
    out: out_folder("the small model, its export, its engines and gpu-check.json") = Path("runs/gpu-check"),
    steps: Annotated[
        int,
        typer.Option(min=1, max=100000, help="Optimizer steps of the small width-routed SimVP (NYC bike sample data)."),
    ] = 200,
    device: Annotated[
        str,
        typer.Option(
            help="auto: TensorRT where it imports, else PyTorch on the CUDA GPU, else this CPU; cuda or cpu: the "
            "PyTorch proxy there."
        ),
    ] = "auto",
    runs: Annotated[int, typer.Option(min=1, max=100000, help="Timed runs of each graph or branch.")] = 200,
) -> None:
    """The split layout on this machine's GPU against the single routed graph, per branch, beside orin-emu's prediction (scripts/gpu_check.sh; a few minutes)."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import gpu_check

    gpu_check.check(out, steps, device, runs, console)


def trtexec(
    log: Annotated[
        Path,
        typer.Argument(
            help="The output of a trtexec run (e.g. the command `dpedge export --trt` prints, run on the Jetson)."
        ),
    ],
    as_json: json_flag("the summary as one JSON object") = False,
) -> None:
    """Read the performance summary of a trtexec run on the device: throughput, latency and GPU compute time."""
    from dynaprune_edge.profiling.trtexec import parse_trtexec_summary

    if not log.is_file():
        raise ConfigError(f"{log}: no such file")
    summary = parse_trtexec_summary(log.read_text(errors="replace"))
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(
        title=f"trtexec {summary.get('tensorrt', '(version not in the log)')}: {log.name}",
        caption="milliseconds, as trtexec measured them on its device",
    )
    timings = {name: stats for name, stats in summary.items() if isinstance(stats, dict)}
    statistics = list(dict.fromkeys(stat for stats in timings.values() for stat in stats))
    table.add_column("timing")
    for stat in statistics:
        table.add_column(stat, justify="right")
    for name, stats in timings.items():
        table.add_row(name, *(f"{stats[stat]:.4g}" if stat in stats else "–" for stat in statistics))
    console.print(table)
    if "throughput_qps" in summary:
        console.print(f"throughput {summary['throughput_qps']:.4g} qps")


def render(
    results: Annotated[
        Path, typer.Option(help="The folder of results files (BENCHMARK.json or BENCHMARK-LABEL.json, plots beside).")
    ] = Path("docs/bench/results"),
    page: Annotated[Path, typer.Option(help="The page to write.")] = Path("docs/benchmarks.md"),
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing: fail (exit 1) if PAGE is not what RESULTS render.")
    ] = False,
) -> None:
    """The benchmarks page, rendered from results files that the benchmarks wrote: tables, plots and where, when and from what code each ran."""
    from dynaprune_edge.bench.render import render_page, stale

    if check:
        problem = stale(results, page)
        if problem is not None:
            raise ConfigError(problem)
        console.print(f"{page} is what {results} renders")
        return
    check_writable(page, "--page", folder=False)
    render_page(results, page)
    console.print(f"wrote {page}")
