"""docs/benchmarks.md, rendered from the benchmarks' results files, so that no figure on the
page is typed by hand and none drifts from the run that produced it.

`render_page(RESULTS, PAGE)` reads every results file in docs/bench/results/ (one per
benchmark run, as `write_results` wrote it: bench/results.py), and writes the page: what each
benchmark compares (prose fixed here, no figures), then per results file its provenance
(command, machine, UTC date, dpedge commit; figures labelled measured or emulated), its
tables (the terminal's columns and number formats: bench/tables.py) and its plots.
`stale(RESULTS, PAGE)` says whether the committed page differs from what they render.

Naming: docs/bench/results/BENCHMARK.json or BENCHMARK-LABEL.json (pareto-nycbike.json,
orin.json), BENCHMARK being the "benchmark" the file records; its plots beside it as
NAME.png or NAME.PART.png (the run's OUT/pareto-nycbike.png copied as pareto-nycbike.png, a
run over several datasets' as pareto.knmi.png, pareto.nycbike.png, ...).

Torch-free: it imports neither torch nor the training side, and draws nothing."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from dynaprune_edge.bench import tables
from dynaprune_edge.bench.results import Results, read_results
from dynaprune_edge.errors import ConfigError, DataError
from dynaprune_edge.files import atomic_write_text
from dynaprune_edge.flops import FLOPS_CONVENTION

RESULTS = Path("docs/bench/results")
PAGE = Path("docs/benchmarks.md")
RENDER_COMMAND = "dpedge bench render"

MEASURED = "Measured"
EMULATED = "Emulated"


@dataclass(frozen=True)
class Kind:
    """How the page shows one benchmark's results files: its section title, how to run it,
    what it compares (no figures), and its files' tables (`body`)."""

    title: str
    command: str  # how to run it, as in "run `COMMAND …`"
    output: str  # the file it writes in OUT
    about: str
    body: Callable[[Results], list[str]]
    figures: str = MEASURED  # MEASURED or EMULATED, or a sentence for a benchmark with both


def escape(text: str) -> str:
    """`text` with the characters Markdown would read as markup escaped."""
    for character in "\\`*_[]<>|":
        text = text.replace(character, "\\" + character)
    return text


def markdown_table(grid: tables.Grid) -> list[str]:
    """The grid as a Markdown table, its title bold above it and its caption in italics below."""
    lines = [f"**{escape(grid.title)}**", ""] if grid.title else []
    lines.append("| " + " | ".join(escape(column) for column in grid.columns) + " |")
    lines.append("|" + "|".join("---" if column in grid.left else "---:" for column in grid.columns) + "|")
    lines.extend("| " + " | ".join(escape(cell) for cell in row) + " |" for row in grid.rows)
    if grid.caption:
        lines += ["", f"*{escape(grid.caption)}*"]
    return lines + [""]


def paragraph(text: str) -> list[str]:
    return [escape(text), ""]


def bullets(items: list[str]) -> list[str]:
    return [f"- {escape(item)}" for item in items] + [""]


def pareto_body(results: Results) -> list[str]:
    points = results.results
    lines = markdown_table(tables.pareto_grid(points))
    verdict = []
    for dataset in dict.fromkeys(p["dataset"] for p in points):
        verdict += tables.verdict([SimpleNamespace(**p) for p in points if p["dataset"] == dataset])
    if verdict:
        lines += ["Verdict (this machine, onnxruntime CPU, measured latencies):", "", *bullets(verdict)]
    return lines


def accuracy_body(results: Results) -> list[str]:
    return markdown_table(tables.accuracy_grid(results.results))


def latency_body(results: Results) -> list[str]:
    return markdown_table(tables.latency_grid(results.results))


def layout_body(results: Results) -> list[str]:
    result, settings = results.results, results.results["settings"]
    widths = result["widths"]
    widest = max(int(c) for c in widths[0]["ms"]) if widths else 0
    masks_title = tables.layout_masks_title(settings["layers"], settings["frames"])
    return [
        *markdown_table(tables.layout_masks_grid(result["masks"], masks_title)),
        *markdown_table(tables.layout_widths_grid(widths, tables.layout_widths_title(widest))),
        *paragraph(
            f"{settings['runs']} timed runs of each graph, the graphs taking turns; at its turn a graph runs "
            f"{settings['repeat']} times in a row, the last timed."
        ),
    ]


def training_body(results: Results) -> list[str]:
    result, settings = results.results, results.results["settings"]
    title = (
        f"{settings['epochs']} epochs, --prune-ratio {settings['prune_ratio']}, "
        f"--easy-share {settings['easy_share']}, --anneal {settings['anneal']}"
    )
    frames = settings.get("frames")
    return [
        *markdown_table(tables.training_grid(result["rows"], title)),
        *paragraph(
            f"Target: the full-data run's final validation MAE + {settings['tolerance']:.0%}. "
            + tables.training_processes_line(result["processes"], max(frames) if frames else None)
            + "."
        ),
    ]


ORIN_PAGE_CAPTION = "published: measured by the source (the sources below); emulated: predicted here, never measured"


def orin_body(results: Results) -> list[str]:
    result = results.results
    sources = dict.fromkeys(row["source"] for row in result["rows"])
    return [
        *markdown_table(tables.orin_grid(result["rows"], caption=ORIN_PAGE_CAPTION)),
        *bullets(tables.orin_summary_lines(result)),
        *paragraph(tables.orin_constants_line(result) + "."),
        *markdown_table(
            tables.orin_calibrated_grid(result["calibrated"], "MobileNetV2 INT8 on the Orin (64 GB), emulated two ways")
        ),
        "Sources of the published figures:",
        "",
        *bullets(list(sources)),
    ]


def gpu_check_body(results: Results) -> list[str]:
    result = results.results
    rows = result["rows"]
    columns = [key for key in rows[0] if key != "branch"]
    emulated = [key for key in columns if key.startswith("orin_emulated")]
    lines = [
        *paragraph(f"{MEASURED}: {result['label']}."),
        *markdown_table(tables.gpu_check_grid(rows, columns=[c for c in columns if c not in emulated])),
    ]
    if emulated:
        lines += [
            *paragraph(f"{EMULATED}: {result['emulated']}."),
            *markdown_table(tables.gpu_check_grid(rows, columns=["computes", *emulated])),
        ]
    if result["trtexec"]:
        lines += [
            "Each engine timed on its own by trtexec:",
            "",
            *(f"    {command}" for command in result["trtexec"]),
            "",
        ]
    return lines


KINDS: dict[str, Kind] = {
    "demo": Kind(
        "The demo (`dpedge demo`)",
        "dpedge demo",
        "results.json",
        "`dpedge demo` (what `make demo` runs) is `bench pareto` in small, on the real KNMI radar event "
        "bundled with dpedge, downsampled: four static-width SimVPs (the curve to beat) and one width-routed "
        "slimmable SimVP priced in this machine's onnxruntime milliseconds, every model trained the same "
        "optimizer steps. It exports them, times every artifact together on the validation windows (the "
        "routed one at several run-time budgets, and each of its width levels alone), prints the table and "
        "the verdict, and draws `OUT/pareto-knmi.png`. It then profiles the routed export, measured here and "
        "emulated on the Jetson AGX Orin, with a report each under `OUT/report/` (not on this page). The "
        "columns are those of `bench pareto`, below.",
        pareto_body,
    ),
    "pareto": Kind(
        "The honest comparison: static widths against Dyna-Pruner (`bench pareto`)",
        "dpedge bench pareto",
        "results.json",
        "Per dataset, static-width networks (every layer at a fraction of its width, dense, "
        "`Backbone.scaled_options`) against Dyna-Pruner: validation MAE against the *measured* latency of "
        "each exported artifact, all exports of a dataset timed together on its validation windows "
        "(onnxruntime CPU, batch 1, each model run warm at its turn). A dynamic network is only worth having "
        "where it lies below the static curve. Per family, besides the static curve: the region-pruned "
        "models at their budgets, priced in FLOPs and in this machine's milliseconds; a width-routed "
        "slimmable model per cost target, one artifact measured at several run-time budgets (*routed B "
        "COST*); its width levels each alone (*level ×W COST*: the slimmable network's own curve); and a "
        "hindsight oracle, per validation window the best static model under a mean-latency budget (what "
        "routing among them could reach; not a model anyone can run). Speedup and FLOPs are against the "
        "family's full-width dense model; *static MAE at same ms* is the static curve's MAE at the point's "
        "latency, linear between the static points around it, none outside their range (a pruned model "
        "faster than every static one is judged below the curve only when it is also more accurate than one "
        "of them). On radar data a reference nowcast besides persistence: pysteps' optical-flow "
        "extrapolation (`bench/baselines.py`, the `baselines` extra), a row of family *reference*, never a "
        "candidate of the verdict. The verdict names, for every range of latency targets, the most accurate "
        "artifact that fast and by how much it beats the best static one. The command draws "
        "`OUT/pareto-DATASET.png` per dataset.",
        pareto_body,
    ),
    "accuracy": Kind(
        "Dense against pruned accuracy (`bench accuracy`)",
        "dpedge bench accuracy",
        "results.json",
        "Each backbone trained twice the same optimizer steps on each dataset (synthetic TaxiBJ, the real "
        "New York bike traffic and the real KNMI radar event bundled with dpedge): dense, and pruned at the "
        "target FLOPs budget; compared on the validation split. Δ MAE: the pruned model's MAE against the "
        "dense one's; FLOPs: pruned/dense per sample, mask generator included, the validation mean and the "
        "costliest validation sample (at most the cap); data kept: the share of regions computed. Units: "
        "taxibj and nycbike flow on OpenSTL's [0, 1] scale, knmi mm/5min. " + FLOPS_CONVENTION + ". What "
        "the benchmark is judged by: [Design](design.md#what-the-benchmarks-judge).",
        accuracy_body,
    ),
    "latency": Kind(
        "Latency of the exported models",
        "dpedge bench latency",
        "results.json",
        "`dpedge bench latency`: for each backbone, dataset, cost target, budget and thread count, a model "
        "trained with ordered groups, exported sparse (`--mode auto --tiles auto`) and dense (`--dense`), "
        "both timed with onnxruntime on this CPU at batch 1, taking turns sample by sample over the "
        "validation windows so that machine noise hits them alike (`--repeat R`: each model R runs in a row "
        "at its turn, the last timed, as a model deployed alone). Speedup = mean dense / mean sparse "
        "latency; FLOPs ratio = mean FLOPs the sparse graph executed (its `flops` output) / dense; "
        "efficiency = speedup × FLOPs ratio (1: time falls exactly as FLOPs do). Overhead: the profiled "
        "share of kernel time in the router and routing nodes (mask generator, branch choice, index and "
        "weight gathers; onnxruntime's profiler adds a cost per node, which inflates these many small "
        "nodes); router: the router graph's own latency / the sparse latency; single/split: the sparse "
        "export run as one graph and split into router and branch graphs. With `--cost ort-cpu` the budget "
        "is priced in this machine's milliseconds (cost tables measured by the run itself), and *predicted* "
        "is the mean latency the model's cost table predicts for the branches the samples took, against the "
        "measured mean. Compare ratios across runs, not milliseconds; runs on more threads than cores, or on "
        "a shared machine, are noisy.",
        latency_body,
    ),
    "layout": Kind(
        "What onnxruntime's blocked layout makes of masks and widths (`bench layout`)",
        "dpedge bench layout",
        "results.json",
        "onnxruntime runs convolutions in a blocked channel layout (NCHWc: channels in blocks of 8 with "
        "AVX2, 16 with AVX-512) and keeps an elementwise node in it only when all its inputs are blocked "
        "tensors of one shape. Measured on chains of 3×3 convolutions + ReLU, the graphs taking turns, one "
        "thread. **Masks**: a whole-map layer zeroes the skipped regions with a Mul; a broadcast (1, 1, H, W) "
        "mask pays a layout change out and back around every masked layer, while the exporter shapes the "
        "mask as the feature (`RegionOps.blocked_region_mask`: Expand to the rows, then a 1×1 convolution of "
        "ones; exact, and the benchmark checks it zeroes what the broadcast one does). **Widths**: a layer's "
        "time falls with its width in steps of the block, not with its FLOPs; each cell is the chain's ms, "
        "its time as a share of the widest chain's and, in brackets, its FLOPs share. A model priced in ms "
        "learns these steps from its cost table; `--group-size` equal to the block keeps a FLOPs-priced "
        "model's widths to whole blocks.",
        layout_body,
    ),
    "training": Kind(
        "Fewer training windows per epoch (`bench training`)",
        "dpedge bench training",
        "results.json",
        "What [ST-Prune](guides/st-prune.md) (`--st-prune`) buys: SimVP dense and Dyna-Pruner trained the "
        "same epochs and seeds on full data, with ST-Prune, and with an InfoBatch-style baseline (the loss "
        "alone as score, the same ratio, easy share and annealing), on synthetic TaxiBJ at two sizes and on "
        "the bundled KNMI event. The target is the full-data run's final validation MAE plus the tolerance. "
        "Validation curves are noisy, so two times: *to target*, the training wall-clock (evaluation left "
        "out) up to the end of the first epoch that meets it; *to stay*, up to the epoch from which every "
        "later one does. A speedup is full data's time over the run's; *never*: the run did not reach the "
        "target. Pruned: the share of windows skipped over the run. Then the training throughput of 1 "
        "against 2 processes on the larger TaxiBJ set.",
        training_body,
    ),
    "orin": Kind(
        "orin-emu against published Jetson AGX Orin latencies (`bench orin`)",
        "dpedge bench orin",
        "results.json",
        "The networks with published Jetson AGX Orin latencies (MLPerf Inference ResNet-50 and BERT-Large, "
        "Ultralytics' YOLO11 at three precisions) built here with random weights, exported to ONNX and "
        "emulated by orin-emu on the same module, power mode and precision. Two passes, kept apart: the "
        "emulator's constants as they stand, on every row; and its three modelling constants (compute and "
        "memory efficiency, per-kernel overhead) fitted on the rows marked *fit* only, then scored on the "
        "*check* rows, which the fit never saw. Published: measured by each source; emulated: predicted, "
        "never measured. The emulator is deterministic: any machine gives the same figures. Then MobileNetV2 "
        "INT8 emulated two ways: from first principles, and from a TensorRT per-layer profile recorded on "
        "another GPU, scaled to the Orin. The model, constants and caveats: "
        "[orin-emu](orin-emulator.md#validation).",
        orin_body,
        figures=f"{EMULATED} (orin-emu: predicted, never measured; the published column was measured by each source)",
    ),
    "gpu-check": Kind(
        "The split bundle on a real GPU (`bench gpu-check`)",
        "scripts/gpu_check.sh",
        "gpu-check.json",
        "What the split layout costs on a real NVIDIA GPU, against the single routed graph (`dpedge bench "
        "gpu-check`, which `scripts/gpu_check.sh` runs): a small width-routed SimVP trained on the bundled "
        "NYC bike windows and exported; where TensorRT imports, the single engine and the split bundle (also "
        "with CUDA graphs) timed per branch through the `trt` backend and checked against onnxruntime; where "
        "only PyTorch's CUDA build is there, a PyTorch proxy (the router, and each width level as the static "
        "network of that width), not TensorRT. Every row also carries orin-emu's predictions of that branch "
        "for the Jetson AGX Orin, in a table of their own: emulated, never measured.",
        gpu_check_body,
        figures=f"{MEASURED} on this GPU (first table) and {EMULATED.lower()} for the Orin (second table)",
    ),
}


def described_date(date: str | None) -> str:
    try:
        return datetime.fromisoformat(date).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (TypeError, ValueError):
        return "an unknown date"


def provenance(results: Results, kind: Kind) -> list[str]:
    """Who ran what, where, when and from what code: one line."""
    run = results.run
    machine = run.get("machine") or {}
    versions = dict(run.get("versions") or {})
    dpedge = versions.pop("dynaprune-edge", None)
    commit = run.get("commit")
    code = "dpedge" + (f" {dpedge}" if dpedge else "") + (f" at commit {commit}" if commit else " (no git commit)")
    cores = f"{machine['cores']}-core " if machine.get("cores") else ""
    where = f"{cores}{machine.get('cpu') or 'unknown CPU'}" + (
        f" ({machine['platform']})" if machine.get("platform") else ""
    )
    libraries = ", ".join(f"{name} {version}" for name, version in sorted(versions.items()))
    if run.get("load") is not None:
        where += f", load average {run['load']:g} over its last 15 minutes"
    command = run.get("command") or "an unknown command"
    line = (
        f"**{escape(kind.figures)}** by `{command}`, {described_date(run.get('date'))}, on {escape(where)}; "
        f"{escape(code)}" + (f"; {escape(libraries)}" if libraries else "") + "."
    )
    return [line, ""]


def plots(results: Results, page: Path) -> tuple[list[str], list[Path]]:
    """Markdown images of NAME.png and NAME.*.png beside the results file, linked relative to
    the page; and those files."""
    folder, name = results.path.parent, results.name
    found = sorted(p for p in folder.glob("*.png") if p.stem == name or p.stem.startswith(f"{name}."))
    lines = []
    for path in found:
        part = path.stem[len(name) + 1 :]
        link = Path(os.path.relpath(path, page.parent)).as_posix()
        lines += [f"![{escape(name + (': ' + part if part else ''))}]({link})", ""]
    return lines, found


def section(results: Results, kind: Kind, page: Path) -> tuple[list[str], list[Path]]:
    try:
        body = kind.body(results)
    except (KeyError, TypeError, IndexError, ValueError, AttributeError, ZeroDivisionError) as error:
        raise DataError(
            f"{results.path}: not the results `{kind.command}` writes ({type(error).__name__}: {error})"
        ) from None
    images, used = plots(results, page)
    return [f"### {escape(results.path.name)}", "", *provenance(results, kind), *body, *images], used


HEADER = f"""# Benchmarks

<!-- Generated by `{RENDER_COMMAND}` from docs/bench/results/: do not edit by hand. -->

*This page is generated: `{RENDER_COMMAND}` writes it from the results files in
`docs/bench/results/`, and the tests fail when it differs from what they render. Do not edit
it by hand: to change what it shows, rerun a benchmark, copy its results file there and
render the page again.*

## Running the benchmarks

    dpedge demo                                  # what `make demo` runs: OUT/pareto-knmi.png, verdict.txt, report/
    dpedge bench accuracy [--json]               # long: dense vs pruned, every backbone (make bench-accuracy)
    dpedge bench latency [--json]                # long: dense vs sparse export latency (make bench-latency)
    dpedge bench pareto [--json]                 # long: static widths vs Dyna-Pruner, MAE vs measured ms, plots (make bench-pareto)
    dpedge bench layout [--json]                 # short: what onnxruntime's blocked layout makes of masks and widths here (make bench-layout)
    dpedge bench training                        # long: ST-Prune vs full data vs InfoBatch-style, 1 vs 2 processes (make bench-training)
    dpedge bench orin [--json]                   # short: orin-emu against published Jetson AGX Orin latencies (make bench-orin)
    dpedge bench trtexec trtexec.log [--json]    # the performance summary of a trtexec run on the device (no results file)
    scripts/gpu_check.sh                         # any NVIDIA GPU: split bundle vs single engine per branch (dpedge bench gpu-check)
    {RENDER_COMMAND}                          # this page, from docs/bench/results/

Each benchmark writes `OUT/results.json` (`bench gpu-check`: `OUT/gpu-check.json`): its rows
under `"results"`, its name under `"benchmark"`, and under `"run"` the command line, the date
(UTC), the dpedge commit (with `-dirty` for uncommitted changes), the machine (CPU, cores,
platform) and the library versions it ran with. To show a run here, copy that file to
`docs/bench/results/BENCHMARK.json`, or `BENCHMARK-LABEL.json` to keep several runs of one
benchmark (`pareto-nycbike.json`); copy its plots beside it as `NAME.png` or `NAME.PART.png`
(`OUT/pareto-nycbike.png` as `pareto-nycbike.png`); then run `{RENDER_COMMAND}`.

Every figure is labelled: **measured** (timed or scored by the command on the machine named)
or **emulated** (predicted by [orin-emu](orin-emulator.md) for the Jetson AGX Orin, never
measured).
"""


def render(results_dir: Path, page: Path = PAGE) -> str:
    """The page's text from every results file in `results_dir` (images linked relative to
    `page`'s folder). ConfigError if the folder is missing; DataError (one line, naming the
    file) for a file that is not a results file, or a plot that belongs to none."""
    if not results_dir.is_dir():
        raise ConfigError(f"{results_dir}: no such folder of results files")
    found: dict[str, list[Results]] = {name: [] for name in KINDS}
    for path in sorted(results_dir.glob("*.json")):
        results = read_results(path)
        found[results.benchmark].append(results)
    lines, used = [HEADER], set()
    for name, kind in KINDS.items():
        lines += [f"## {kind.title}", "", kind.about, ""]
        if not found[name]:
            lines += [
                f"Not run under the renderer yet: run `{kind.command} …` and copy its `{kind.output}` to "
                f"`docs/bench/results/{name}.json`.",
                "",
            ]
        for results in found[name]:
            text, images = section(results, kind, page)
            lines += text
            used.update(images)
    orphans = sorted(set(results_dir.glob("*.png")) - used)
    if orphans:
        raise DataError(f"{orphans[0]}: a plot of no results file (name it NAME.png or NAME.PART.png beside NAME.json)")
    return "\n".join(lines).rstrip("\n") + "\n"


def render_page(results_dir: Path = RESULTS, page: Path = PAGE) -> str:
    """Render the page from `results_dir` and write it to `page` (atomically); returns its text."""
    text = render(results_dir, page)
    atomic_write_text(text, page)
    return text


def stale(results_dir: Path = RESULTS, page: Path = PAGE) -> str | None:
    """None if `page` is what `results_dir` renders; otherwise why not, in one line."""
    text = render(results_dir, page)
    if not page.is_file():
        return f"{page}: missing; `{RENDER_COMMAND}` writes it"
    if page.read_text() != text:
        return f"{page} differs from what {results_dir} renders: edited by hand, or not rendered since; run `{RENDER_COMMAND}`"
    return None
