"""docs/benchmarks.md rendered from the benchmarks' results files: every figure from a file a
benchmark wrote, with where, when and from what code; the same page from the same files; a
bad file one line naming it; and the committed page what the committed results render."""

from __future__ import annotations

import ast
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from dynaprune_edge.bench import gpu_check, layout, orin, render, training
from dynaprune_edge.bench.accuracy import Comparison
from dynaprune_edge.bench.latency import LatencyRow
from dynaprune_edge.bench.pareto import ParetoPoint, judge, pareto_table
from dynaprune_edge.bench.results import BENCHMARKS, read_results, write_results
from dynaprune_edge.errors import DataError
from dynaprune_edge.training.sample_pruning import SamplePruning

REPOSITORY = Path(__file__).parents[2]
COMMAND = ["dpedge", "bench", "accuracy", "--steps", "600"]


@pytest.fixture
def docs(tmp_path, monkeypatch) -> Path:
    """tmp/docs with an empty bench/results/; sys.argv as the command line a run records."""
    monkeypatch.setattr(sys, "argv", COMMAND)
    (tmp_path / "docs" / "bench" / "results").mkdir(parents=True)
    return tmp_path / "docs"


def results_of(docs: Path) -> Path:
    return docs / "bench" / "results"


def write_accuracy(docs: Path) -> list[Comparison]:
    rows = [
        Comparison("simvp", "knmi (real)", "mm/5min", 0.02339, 0.02, 0.025, 0.311, 0.449, 0.45, 492.4),
        Comparison("vit", "taxibj (synthetic)", "flow", 0.02858, 0.04, 0.036, 0.305, 0.34, 0.33, 35.0),
    ]
    write_results([r.as_dict() for r in rows], results_of(docs), "accuracy.json", benchmark="accuracy")
    return rows


def pareto_points() -> list[ParetoPoint]:
    static = [
        ParetoPoint("nycbike (real)", "simvp", "static ×0.25", 0.008052, 0.069, None, 0.115, 0.117, 1.99, None, 10.0),
        ParetoPoint("nycbike (real)", "simvp", "static ×1", 0.005585, 1.0, None, 0.229, 0.257, 1.0, None, 12.0),
    ]
    routed = ParetoPoint(
        "nycbike (real)", "simvp", "routed 0.5 ort-cpu", 0.00706, 0.3, 0.41, 0.117, 0.15, 1.96, 0.1, 43.0
    )
    judge(routed, static)
    return [*static, routed]


def write_pareto(docs: Path) -> list[ParetoPoint]:
    points = pareto_points()
    write_results([p.as_dict() for p in points], results_of(docs), "pareto-nycbike.json", benchmark="pareto")
    return points


def write_latency(docs: Path) -> LatencyRow:
    row = LatencyRow(
        "simvp", "knmi (real)", 0.3, 1, "sliced/all", 7, 300, 3, 3.676, 3.98, 1.907, 2.169, 2.04, 0.116, 0.24,
        0.062, 0.036, 1.9, 2.1, "single", 0.01938, {"backend": "ort"}, "ort-cpu", 1.357, -0.24,
    )  # fmt: skip
    write_results([row.as_dict()], results_of(docs), "latency.json", benchmark="latency")
    return row


def write_layout(docs: Path) -> None:
    masked = [layout.MaskRow(16, 12, 20, 0.2081, 0.2467, 0.2253)]
    widths = [layout.WidthRow(12, 20, {8: 0.176, 16: 0.239, 64: 2.294})]
    write_results(layout.document(masked, widths, 300), results_of(docs), "layout.json", benchmark="layout")


def write_training(docs: Path) -> None:
    rows = [
        training.Row("taxibj", 2793, "SimVP dense", "ST-Prune", 0.0159, 0.0168, 87.5, 1.01, 87.2, 2.46, 0.51, 12200, 0.5, 145.0),
        training.Row("knmi", 45, "SimVP dense", "ST-Prune", 0.0321, 0.0231, None, None, None, None, 0.52, 300, 0.1, 20.0),
    ]  # fmt: skip
    processes = [
        {"processes": 1, "windows_per_second": 91.6, "train_seconds": 30.0},
        {"processes": 2, "windows_per_second": 43.2, "train_seconds": 60.0},
    ]
    pruning = SamplePruning(ratio=0.8, easy_share=0.8)
    document = training.document(rows, processes, 10, [480, 2880], pruning)
    write_results(document, results_of(docs), "training.json", benchmark="training")


def write_orin(docs: Path) -> None:
    rows = [
        orin.Row("resnet50", "int8", "MAXN", "check", 0.636, 0.851, 0.918, 56, 8.2, orin.MLPERF_V31),
        orin.Row("yolo11n", "fp16", "MAXN", "fit", 2.55, 2.432, 2.568, 152, 6.5, orin.ULTRALYTICS),
    ]
    calibrated = [
        {
            "power_mode": "MAXN",
            "first_principles_ms": 0.796,
            "kernels": 71,
            "calibrated_ms": 1.038,
            "layers": 73,
            "measured_on": "NVIDIA TITAN RTX",
            "measured_ms": 0.351,
        }
    ]
    write_results(orin.document(rows, (0.6, 1.0, 11.0), calibrated), results_of(docs), "orin.json", benchmark="orin")


def write_gpu_check(docs: Path) -> None:
    rows = [
        {
            "branch": 1,
            "computes": "width 0.25",
            "router_ms": 0.0712,
            "branch_ms": 0.4242,
            "split_ms": 0.5123,
            "orin_emulated_ms": 0.3311,
            "orin_emulated_cuda_graph_ms": 0.2109,
        }
    ]
    document = gpu_check.document("pytorch-cpu", f"{gpu_check.PROXY}, on this CPU", "cpu", rows, [])
    write_results(document, results_of(docs), "gpu-check.json", benchmark="gpu-check")


def section(page: str, title: str) -> str:
    """The text of the page's `## title` section."""
    return page.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_page_holds_each_files_figures_as_the_terminal_formats_them(docs):
    accuracy = write_accuracy(docs)
    points = write_pareto(docs)
    latency = write_latency(docs)
    write_layout(docs)
    write_training(docs)
    write_orin(docs)
    write_gpu_check(docs)
    page = render.render(results_of(docs), docs / "benchmarks.md")

    assert page.startswith("# Benchmarks\n") and "do not edit by hand" in page
    written = read_results(results_of(docs) / "accuracy.json").run
    text = section(page, render.KINDS["accuracy"].title)
    assert "### accuracy.json" in text
    assert f"`{' '.join(COMMAND)}`" in text and written["commit"] in text and " UTC" in text
    assert written["machine"]["cpu"] in text and "**Measured**" in text
    assert "| simvp | knmi (real) | 0.02339 | 0.02 | 0.025 | +25.0 % | 0.311 | 0.449 | 0.450 | 492 | mm/5min |" in text
    assert f"{100 * accuracy[1].relative_difference:+.1f} %" == "-10.0 %" and "| -10.0 % |" in text

    console = Console(width=400, record=True, file=io.StringIO())  # the terminal's cells, the page's cells
    console.print(pareto_table(points, "t"))
    terminal = console.export_text()
    text = section(page, render.KINDS["pareto"].title)
    for cell in ("0.00706", "0.117/0.150", "1.96×", "0.100 (-15 %)", "static ×0.25"):
        assert cell in terminal and cell in text, cell
    assert "routed 0.5 ort-cpu (MAE 0.00706 at 0.117 ms)" in text  # the verdict

    text = section(page, render.KINDS["latency"].title)
    assert f"{latency.speedup:.2f}×" in text and "| 0.3 ort-cpu |" in text and "1.357 (-24 %)" in text
    text = section(page, render.KINDS["layout"].title)
    assert "| 16 | 12×20 | 0.2081 | 0.2467 | 0.2253 | +19% | +8% |" in text
    assert "| 12×20 | 0.176 ms: 0.08 (0.02) |" in text and "| 64 ch |" in text
    text = section(page, render.KINDS["training"].title)
    assert "| knmi | 45 | SimVP dense | ST-Prune | 0.0321 | never | – | never | – |" in text
    assert "taxibj (2880 frames), SimVP dense, 1 epoch: 91.6 windows/s on 1 process, 43.2 on 2 (0.47×)" in text

    text = section(page, render.KINDS["orin"].title)
    assert "**Emulated" in text and "**Measured" not in text
    assert "| resnet50 | int8 | MAXN | check | 8.2 | 56 | 0.636 | 0.851 | +34 % | 0.918 | +44 % |" in text
    assert "(fitted on it)" in text and "MLPerf Inference v3.1" in text
    text = section(page, render.KINDS["gpu-check"].title)
    measured, emulated = text.split("Emulated:", 1)
    assert "0.4242" in measured and "0.3311" not in measured and "0.3311" in emulated and "0.4242" not in emulated


def test_a_benchmark_without_a_results_file_says_how_to_add_one(docs):
    write_accuracy(docs)
    page = render.render(results_of(docs), docs / "benchmarks.md")
    for name, kind in render.KINDS.items():
        not_run = f"Not run under the renderer yet: run `{kind.command} …`"
        assert (not_run in section(page, kind.title)) == (name != "accuracy"), name
    assert "copy its `results.json` to `docs/bench/results/pareto.json`" in page
    assert "copy its `gpu-check.json` to `docs/bench/results/gpu-check.json`" in page


def test_every_benchmark_that_writes_results_has_a_section_and_the_old_anchors_stay():
    assert set(render.KINDS) == set(BENCHMARKS)
    titles = [kind.title for kind in render.KINDS.values()]
    for linked in (  # other pages link to these anchors
        "Latency of the exported models",
        "Fewer training windows per epoch (`bench training`)",
        "The honest comparison: static widths against Dyna-Pruner (`bench pareto`)",
    ):
        assert linked in titles


def test_plots_beside_a_results_file_are_shown_and_a_stray_one_is_refused(docs):
    write_pareto(docs)
    (results_of(docs) / "pareto-nycbike.png").write_bytes(b"png")
    (results_of(docs) / "pareto-nycbike.routed.png").write_bytes(b"png")
    page = render.render(results_of(docs), docs / "benchmarks.md")
    assert "![pareto-nycbike](bench/results/pareto-nycbike.png)" in page
    assert "![pareto-nycbike: routed](bench/results/pareto-nycbike.routed.png)" in page
    (results_of(docs) / "pareto-knmi.png").write_bytes(b"png")
    with pytest.raises(DataError, match="pareto-knmi.png: a plot of no results file"):
        render.render(results_of(docs), docs / "benchmarks.md")


def test_rendering_is_deterministic_and_stale_says_when_the_page_differs(docs):
    write_accuracy(docs)
    write_orin(docs)
    page = docs / "benchmarks.md"
    assert render.stale(results_of(docs), page) == f"{page}: missing; `dpedge bench render` writes it"
    text = render.render_page(results_of(docs), page)
    assert page.read_text() == text == render.render(results_of(docs), page)
    assert render.stale(results_of(docs), page) is None
    page.write_text(text.replace("0.02339", "0.02"))
    assert "differs from what" in render.stale(results_of(docs), page)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("accuracy.json", "{not json", "not JSON"),
        ("accuracy.json", '{"results": []}', 'no "run" and "results" keys'),
        ("accuracy.json", '{"run": {}, "results": []}', 'no "benchmark" key'),
        ("accuracy.json", '{"benchmark": "nope", "run": {}, "results": []}', "unknown benchmark 'nope'"),
        ("orin.json", '{"benchmark": "accuracy", "run": {}, "results": []}', "name it accuracy.json or accuracy-LABEL"),
        ("orin-a.b.json", '{"benchmark": "orin", "run": {}, "results": []}', "name it orin.json or orin-LABEL"),
        (
            "orin.json",
            '{"benchmark": "orin", "run": {}, "results": {"rows": []}}',
            "not the results `dpedge bench orin`",
        ),
        ("pareto.json", '{"benchmark": "pareto", "run": {}, "results": [{"dataset": "x"}]}', "not the results"),
    ],
)
def test_a_bad_results_file_is_one_line_naming_it(docs, name, content, message):
    path = results_of(docs) / name
    path.write_text(content)
    with pytest.raises(DataError) as error:
        render.render(results_of(docs), docs / "benchmarks.md")
    assert str(error.value).startswith(f"{path}: ") and message in str(error.value)
    assert "\n" not in str(error.value)


def test_the_renderer_imports_neither_torch_nor_the_training_side():
    """It runs where only the docs are built: checked in its source (lazy imports too) and by
    rendering the committed results in a fresh interpreter."""
    for module in ("render", "tables", "results"):
        tree = ast.parse((REPOSITORY / "dynaprune_edge" / "bench" / f"{module}.py").read_text())
        names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        names |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        heavy = {
            n for n in names if n.split(".")[0] in ("torch", "matplotlib") or n.startswith("dynaprune_edge.training")
        }
        assert not heavy and "dynaprune_edge.bench.common" not in names, (module, heavy)
    code = (
        "import sys; from pathlib import Path; from dynaprune_edge.bench import render; "
        "render.render(Path('docs/bench/results'), Path('docs/benchmarks.md')); "
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith('dynaprune_edge.training')]; "
        "assert not loaded, loaded"
    )
    ran = subprocess.run([sys.executable, "-c", code], cwd=REPOSITORY, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr


def test_the_committed_page_is_what_the_committed_results_render():
    """docs/benchmarks.md edited by hand, or a results file added without rendering, fails
    here: run `dpedge bench render`."""
    assert render.stale(REPOSITORY / render.RESULTS, REPOSITORY / render.PAGE) is None


def test_each_committed_results_file_is_named_for_its_benchmark():
    for path in sorted((REPOSITORY / render.RESULTS).glob("*.json")):
        results = read_results(path)
        assert json.loads(path.read_text())["benchmark"] == results.benchmark


@pytest.mark.slow
def test_bench_layout_writes_a_results_file_the_page_renders(docs):
    console = Console(width=200, record=True, file=io.StringIO())
    layout.bench(results_of(docs), 1, False, console)
    assert f"rows in {results_of(docs) / 'results.json'}" in console.export_text()
    (results_of(docs) / "results.json").rename(results_of(docs) / "layout.json")
    text = section(render.render(results_of(docs), docs / "benchmarks.md"), render.KINDS["layout"].title)
    assert "### layout.json" in text and f"`{' '.join(COMMAND)}`" in text
    assert "| 64 | 16×16 |" in text and "| 64×64 |" in text and "1 timed runs of each graph" in text
