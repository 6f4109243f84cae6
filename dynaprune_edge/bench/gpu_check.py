"""`dpedge bench gpu-check` (scripts/gpu_check.sh): what the split layout costs on a real
GPU, against the single routed graph, beside the emulator's prediction for the Orin.

It trains a small width-routed SimVP on the bundled NYC bike windows, exports it, then:
- where TensorRT imports: builds the single engine of the whole graph and the split bundle
  (export/tensorrt/bundle.py), times each through the `trt` backend per branch (the
  samples each branch took), the bundle also with each engine captured as a CUDA graph
  (`--cuda-graph`), checks them against onnxruntime, and prints the trtexec lines that
  time each engine on its own;
- where only PyTorch's CUDA build is there: a *PyTorch proxy*, not TensorRT: the trained
  router, and each width level as the static network of that width (the architecture
  `Backbone.scaled_options` gives, random weights: PyTorch's masked forward computes every
  width at full cost, and time depends on shapes, not values), run by PyTorch on the GPU,
  eagerly and as CUDA graphs, with the host dispatch (the branch index read back) between
  them, and what an `If` that ran every branch would cost;
- with `--device cpu`: the same proxy on this CPU (what the tests run).
Each row also carries the orin-emu predictions of that branch for the Jetson AGX Orin
(the bundle eager and with CUDA graphs), labelled emulated: the check is how the
emulator's error gets measured when a GPU is at hand.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from dynaprune_edge.bench.common import trained_model
from dynaprune_edge.bench.results import write_results
from dynaprune_edge.bench.tables import gpu_check_grid, rich_table
from dynaprune_edge.data import SAMPLE, DataConfig, load_dataset
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.exporter import Exporter, ExportOptions
from dynaprune_edge.masks import PruningConfig
from dynaprune_edge.models import BACKBONES, ModelConfig, build_model
from dynaprune_edge.training import load_model

PROXY = (
    "PyTorch proxy, not TensorRT: the router, and each width level as the static network of that width, run by PyTorch"
)


def measure(run: Callable[[], object], runs: int, sync: Callable[[], None]) -> float:
    """Median wall-clock ms of `run` followed by `sync` (the host's view: launches included)."""
    for _ in range(max(3, runs // 10)):
        run()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def as_cuda_graph(run: Callable[[], object]) -> Callable[[], object] | None:
    """`run` captured as a CUDA graph (PyTorch's recipe: warm up on a side stream, then
    capture), replayed by the callable returned; None where capture fails (a host sync or
    an allocation the capture does not allow)."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            run()
    except RuntimeError as error:
        print(
            f"note: CUDA graph capture not possible here ({str(error).splitlines()[0]}): eager times only",
            file=sys.stderr,
        )
        return None
    return graph.replay


@torch.no_grad()
def proxy_rows(
    model, config, frames: np.ndarray, device: str, runs: int, emulated: dict[str, list[float]]
) -> list[dict]:
    """Per branch (persistence, then each width level) of the width-routed `model` (its
    ModelConfig `config`) on one sample of `frames`: the router and the branch timed apart,
    eagerly and (on CUDA) as CUDA graphs, the host dispatch between them, and an `If` that
    ran every branch."""
    model = model.to(device).eval()
    padded = model.pad(torch.as_tensor(frames[:1], device=device))
    router = model.width_router
    price = router.price(model.pruning.budget)  # on the host: no read-back inside the timed router
    costs, allowed = router.costs.to(device), router.allowed().to(device)
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def route() -> torch.Tensor:
        score = model.router_predictions(padded) + price * costs
        return score.masked_fill(~allowed, float("inf")).argmin(dim=1)

    def static_run(width: float) -> Callable[[], object]:
        options = BACKBONES.get(config.backbone).scaled_options(config.options, width)
        pruning = PruningConfig(
            budget=1.0, group_size=config.pruning.group_size, region_size=config.pruning.region_size
        )
        static = build_model(ModelConfig(config.backbone, config.shape, options, pruning)).to(device).eval()
        masks = static.dense_masks(padded)  # made once: every run keeps everything
        return lambda: static.backbone(padded, masks)

    last = padded[:, -1:]
    branches: list[Callable[[], object]] = [lambda: last.expand(-1, model.shape.frames_out, -1, -1, -1).clone()]
    branches += [static_run(width) for width in model.pruning.width_levels]
    threads = torch.get_num_threads()
    torch.set_num_threads(
        1
    )  # on a CPU, one core, as dpedge's other CPU timings (a busy second core stalls two threads' barriers)
    try:
        router_ms = measure(route, runs, sync)
        dispatch_ms = max(
            measure(lambda: int(route()), runs, sync) - router_ms, 0.0
        )  # the index read back, and the wait for it
        graphs = [as_cuda_graph(run) for run in [route, *branches]] if cuda else []
        branch_ms = [measure(run, runs, sync) for run in branches]
    finally:
        torch.set_num_threads(threads)
    every = router_ms + sum(branch_ms)  # an If that runs every branch, whichever is taken
    rows = []
    for index, ms in enumerate(branch_ms):
        row = {
            "branch": index,
            "computes": "persistence" if index == 0 else f"width {model.pruning.width_levels[index - 1]:g}",
            "router_ms": router_ms,
            "dispatch_ms": dispatch_ms,
            "branch_ms": ms,
            "split_ms": router_ms + dispatch_ms + ms,
            "every_branch_ms": every,
        }
        if graphs and graphs[0] is not None and graphs[index + 1] is not None:
            router_graph_ms, graph_ms = measure(graphs[0], runs, sync), measure(graphs[index + 1], runs, sync)
            row |= {
                "router_graph_ms": router_graph_ms,
                "branch_graph_ms": graph_ms,
                "split_graph_ms": router_graph_ms + dispatch_ms + graph_ms,
            }
        rows.append(row | {key: values[index] for key, values in emulated.items()})
    return rows


def tensorrt_rows(
    onnx_path: Path, frames: np.ndarray, runs: int, emulated: dict[str, list[float]]
) -> tuple[list[dict], list[str]]:
    """Per branch: the single engine, the split bundle and the bundle as CUDA graphs timed
    through the trt backend on the samples that took that branch, and checked against
    onnxruntime on them; and the trtexec lines that time every engine on its own."""
    from dynaprune_edge.export.tensorrt.build import build_or_explain
    from dynaprune_edge.runtime import load, read_manifest

    manifest = read_manifest(onnx_path)
    single_engine = build_or_explain(onnx_path, manifest, "fp16", frames, None, layout="single")
    bundle = build_or_explain(onnx_path, manifest, "fp16", frames, None, layout="split")
    reference = load(onnx_path, "ort", 1, layout="single").run(frames)
    rows, commands = [], [single_engine.command, bundle.command]
    backends = {
        "single": load(single_engine.engine_path, "trt"),
        "split": load(bundle.engine_path, "trt"),
        "split_cuda_graph": load(bundle.engine_path, "trt", cuda_graph=True),
    }
    for note in backends["split_cuda_graph"].cuda_graph_notes:
        print(f"note: {note}", file=sys.stderr)
    forecasts = {name: backend.run(frames).forecast for name, backend in backends.items()}
    for branch in np.unique(reference.branch):
        took = reference.branch == branch
        row = {"branch": int(branch), "computes": manifest.computes(int(branch)), "samples": int(took.sum())}
        for name, backend in backends.items():
            taken = itertools.cycle(frames[took])
            row[f"{name}_ms"] = measure(
                lambda backend=backend, taken=taken: backend.run_one(next(taken)[None]), runs, lambda: None
            )
            row[f"{name}_max_abs_error"] = float(np.abs(forecasts[name][took] - reference.forecast[took]).max())
        rows.append(row | {key: values[int(branch)] for key, values in emulated.items()})
    return rows, commands


def emulated_ms(onnx_path: Path) -> dict[str, list[float]]:
    """orin-emu's split-bundle predictions per branch (Jetson AGX Orin 64 GB, MAXN, fp16):
    each engine launched eagerly, and as CUDA graphs."""
    from dynaprune_edge.runtime import load

    layouts = load(onnx_path, "orin-emu").layouts_ms
    return {
        "orin_emulated_ms": [float(ms) for ms in layouts["split bundle"]],
        "orin_emulated_cuda_graph_ms": [float(ms) for ms in layouts["split bundle, CUDA graphs"]],
    }


def tensorrt_here() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def check(out: Path, steps: int, device: str, runs: int, console: Console) -> dict:
    """`dpedge bench gpu-check`: train, export, measure (module doc); OUT/gpu-check.json."""
    if device not in ("auto", "cuda", "cpu"):
        raise ConfigError(f"--device must be auto, cuda or cpu, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: PyTorch sees no CUDA GPU here (a CPU-only torch build, or no driver)")
    trt = tensorrt_here() and device != "cpu"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    data = load_dataset(DataConfig("nycbike", path=SAMPLE))
    model_path = trained_model(
        "simvp", data, 0.5, steps, out / "model", cost="flops", group_size=4, region_size=4, slimmable=True
    )
    onnx_path = out / "model" / "model.onnx"
    Exporter(model_path, ExportOptions(), log=lambda line: print(line, file=sys.stderr), data=data).run(onnx_path)
    frames = np.stack([data.val[i][0].numpy() for i in range(min(len(data.val), 32))])
    emulated = emulated_ms(onnx_path)
    if trt:
        rows, commands = tensorrt_rows(
            onnx_path, data.normalizer.denormalize(frames), runs, emulated
        )  # the engines take physical units
        kind, label = "tensorrt", "TensorRT, measured through the trt backend (host wall-clock per sample)"
    else:
        trained = load_model(model_path)
        rows, commands = proxy_rows(trained.model, trained.model_config, frames, device, runs, emulated), []
        kind, label = (
            f"pytorch-{device}",
            f"{PROXY}, on {torch.cuda.get_device_name() if device == 'cuda' else 'this CPU'} (host wall-clock, median)",
        )
    result = document(kind, label, device, rows, commands)
    write_results(result, out, "gpu-check.json", benchmark="gpu-check")
    print_result(result, console)
    return result


def document(kind: str, label: str, device: str, rows: list[dict], commands: list[str]) -> dict:
    """What gpu-check.json holds: what was timed (`kind`, `label`), on what, its rows per
    branch, the trtexec lines and what the emulated columns are."""
    return {
        "kind": kind,
        "label": label,
        "torch": torch.__version__,
        "device": device,
        "rows": rows,
        "trtexec": commands,
        "emulated": "orin_emulated_ms, orin_emulated_cuda_graph_ms: orin-emu's split-bundle predictions (engines launched eagerly; "
        "as CUDA graphs) for a Jetson AGX Orin 64 GB, MAXN, fp16 (not this GPU; not measured)",
    }


def print_result(result: dict, console: Console) -> None:
    console.print(rich_table(gpu_check_grid(result["rows"], f"gpu-check: {result['label']}", result["emulated"])))
    for command in result["trtexec"]:
        console.print(f"time each engine on its own: {command}", soft_wrap=True, markup=False)
