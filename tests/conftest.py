"""Scaffolding the test folders share, as fixtures: running `dpedge` as a user does, a
stand-in tensorrt and pycuda put into sys.modules, and the toy graphs that map frames to
forecast, flops and branch, with their manifests, small pruned models whose masks vary
from sample to sample, and a stand-in tegrastats that prints lines recorded on Jetsons."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from dynaprune_edge.files import sha256_file
from dynaprune_edge.runtime.manifest import Branch, Manifest, TensorSpec

# build(version, log) → the stand-ins for tensorrt and pycuda.driver; they append what they
# are asked to do to `log`.
TensorRTBuilder = Callable[[str, list], tuple[ModuleType, ModuleType]]
OUTPUTS = ("forecast", "flops", "branch")
TINY = [
    "--dataset",
    "taxibj",
    "--synthetic-frames",
    "120",
    "--batch-size",
    "8",
    "--arch",
    "spatial_channels=8",
    "--arch",
    "temporal_channels=16",
]
"""`dpedge train` options of a model that trains in seconds: a small SimVP on a short synthetic
TaxiBJ series."""
METRICS_KEYS = (
    "val_mae",
    "val_mse",
    "flops_dense",
    "flops_sparse_mean",
    "flops_ratio_mean",
    "data_kept_mean",
    "epochs",
    "steps",
    "train_seconds",
    "flops_convention",
    "history",
)
"""What every metrics.json holds, however the run was started."""
TEGRASTATS = (
    Path(__file__).parent / "profiling" / "samples" / "tegrastats"
)  # lines recorded on Jetsons; SOURCES.md says where from


@pytest.fixture(scope="session")
def dpedge() -> Callable[..., subprocess.CompletedProcess]:
    """dpedge(*args, cwd=None, env=None, path=None, timeout=600): the command line
    `python -m dynaprune_edge ARGS` in a subprocess, its output captured as text, as a user
    runs it. env: variables set over this process's; path: the only folders on PATH besides
    the interpreter's (so that no trtexec, tegrastats or stdbuf of this machine's is found)."""

    def run(*args, cwd=None, env=None, path=None, timeout=600) -> subprocess.CompletedProcess:
        variables = {**os.environ, **(env or {})}
        if path is not None:
            variables["PATH"] = os.pathsep.join([*map(str, path), str(Path(sys.executable).parent)])
        command = [sys.executable, "-m", "dynaprune_edge", *map(str, args)]
        return subprocess.run(command, capture_output=True, text=True, cwd=cwd, env=variables, timeout=timeout)

    return run


@pytest.fixture(scope="session")
def tegrastats_line() -> Callable[..., str]:
    """(file, line=0) → that recorded tegrastats line."""
    return lambda name, line=0: (TEGRASTATS / name).read_text().splitlines()[line]


@pytest.fixture
def fake_tegrastats() -> Callable[[Path, list[str], str], Path]:
    """make(folder, phases, stale) → folder, holding a `tegrastats --interval MS` stand-in
    whose n-th start prints `stale` at once (a reading from before the measured work
    began), then phases[n] (the last one for later starts) every interval until terminated."""

    def make(folder: Path, phases: list[str], stale: str) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "phases.json").write_text(json.dumps(phases))
        script = folder / "tegrastats"
        script.write_text(
            textwrap.dedent(f"""\
            #!{sys.executable}
            import json, sys, time
            from pathlib import Path
            here = Path(__file__).parent
            starts = here / "starts"
            count = int(starts.read_text()) if starts.exists() else 0
            starts.write_text(str(count + 1))
            phases = json.loads((here / "phases.json").read_text())
            interval = int(sys.argv[sys.argv.index("--interval") + 1]) / 1000
            print({stale!r}, flush=True)
            while True:
                time.sleep(interval)
                print(phases[min(count, len(phases) - 1)], flush=True)
            """)
        )
        script.chmod(0o755)
        return folder

    return make


def fake_tensorrt_modules(build: TensorRTBuilder, version: str) -> tuple[list, dict[str, ModuleType]]:
    """(log, modules): the tensorrt and pycuda that `build(version, log)` makes, with an
    Orin (compute 8.7) as pycuda's current device, by the names they take in sys.modules.
    A plain function, so that a child process can install them too (tests/test_kill.py)."""
    log: list = []
    trt, cuda = build(version, log)
    device = SimpleNamespace(name=lambda: "Orin", compute_capability=lambda: (8, 7))
    cuda.Context = SimpleNamespace(get_device=lambda: device)
    pycuda = ModuleType("pycuda")
    pycuda.driver = cuda
    return log, {
        "tensorrt": trt,
        "pycuda": pycuda,
        "pycuda.driver": cuda,
        "pycuda.autoinit": ModuleType("pycuda.autoinit"),
    }


@pytest.fixture
def install_fake_tensorrt(monkeypatch) -> Callable[[TensorRTBuilder, str], list]:
    """install(build, version) → log: `fake_tensorrt_modules(build, version)` stand in
    sys.modules for the rest of the test."""

    def install(build: TensorRTBuilder, version: str) -> list:
        log, modules = fake_tensorrt_modules(build, version)
        for name, module in modules.items():
            monkeypatch.setitem(sys.modules, name, module)
        return log

    return install


def make_toy_manifest(
    shape: Sequence[int], *, input_shape: Sequence[int] | None = None, outputs: Sequence[str] = OUTPUTS, **fields
) -> Manifest:
    """The manifest of a graph from frames (`input_shape`, default `shape`) to `outputs`:
    forecast (`shape`), flops and branch (scalars; any other name a float32 scalar).
    `fields` replace the toy values of the other fields."""
    specs = {
        "forecast": TensorSpec("forecast", list(shape), "float32"),
        "flops": TensorSpec("flops", [], "float32"),
        "branch": TensorSpec("branch", [], "int64"),
    }
    values = dict(
        backbone="toy",
        dataset="toy",
        mode="sliced",
        onnx="model.onnx",
        onnx_sha256="",
        mean=[0.0],
        std=[1.0],
        width_levels=[1.0],
        branches=[Branch([0, 0], 0, {}, 0.0), Branch([1, 16], 16, {}, 1.0)],
        dense_flops=1.0,
        flops_convention="toy",
        versions={},
    )
    values.update(fields)
    return Manifest(
        inputs=[TensorSpec("frames", list(shape if input_shape is None else input_shape), "float32")],
        outputs=[specs.get(name, TensorSpec(name, [], "float32")) for name in outputs],
        **values,
    )


def write_toy_graph_file(
    folder: Path, nodes: list, initializers: list, shape: Sequence[int], manifest: Manifest
) -> Path:
    """folder/model.onnx (opset 17, checked), whose `nodes` and `initializers` map frames
    (`shape`) to forecast (`shape`), flops and branch; `manifest` is written beside it,
    bound to the graph by its SHA-256 as `dpedge export` binds them."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, shape)],
        [
            helper.make_tensor_value_info("forecast", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("flops", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("branch", TensorProto.INT64, []),
        ],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path = folder / "model.onnx"
    onnx.save(model, path)
    path.with_name("model.dpedge.json").write_text(replace(manifest, onnx_sha256=sha256_file(path)).to_json())
    return path


ROUTED_SHAPE = [1, 2, 1, 4, 4]
ROUTED_OUT = [1, 1, 1, 4, 4]  # the forecast: one frame
ROUTED_BRANCHES = 4


def make_routed_graph(shortcut: bool):
    """A small graph of the exported layout: a router (the index is how many of the last
    frame's cells exceed 0.5, capped, and a mask it computes), then a chain of `If`s whose
    branches read the padded input, the router's mask and shared constants, each computing
    something else; with `shortcut`, the chain sits inside an outer `If` on the budget whose
    other side runs the widest branch without the router (a width-routed graph)."""
    import onnx

    from dynaprune_edge.export.graph import GraphBuilder, tensor_info
    from dynaprune_edge.export.routing import choose
    from dynaprune_edge.runtime.manifest import BRANCH, BUDGET, FLOPS, FORECAST, INPUT

    b = GraphBuilder("dpedge")
    x = b.op("Pad", INPUT, b.const(np.zeros(10, np.int64)), scope="input/pad", mode="constant")
    outputs = [tensor_info(FORECAST, ROUTED_OUT), tensor_info(FLOPS, []), tensor_info(BRANCH, [], np.int64)]
    host = b.branch("router") if shortcut else b
    last = host.op("Slice", x, host.const([1]), host.const([2]), host.const([1]), scope="router/fallback")
    hot = host.op(
        "Cast",
        host.op("Greater", last, host.const(np.float32(0.5)), scope="router/regions"),
        scope="router/regions",
        to=b.FLOAT,
    )
    count = host.op("ReduceSum", hot, scope="router/widths", keepdims=0)
    index = host.op(
        "Cast",
        host.op("Min", count, host.const(np.float32(ROUTED_BRANCHES - 1)), scope="router/widths"),
        scope="router/widths",
        to=b.INT64,
    )
    shared = b.const(np.float32(2.0), "shared")  # a top-level constant every branch reads

    def branch(builder: GraphBuilder, k: int, mask: str = hot) -> tuple[GraphBuilder, list[str]]:
        y = builder.op(
            "Add", builder.op("Mul", x, builder.const(np.float32(k + 1)), scope="compute"), mask, scope="compute"
        )
        y = builder.op("Mul", y, shared, scope="compute")
        forecast = builder.op("Slice", y, builder.const([1]), builder.const([2]), builder.const([1]), scope="compute")
        return builder, [forecast, builder.const(np.float32(10.0 * (k + 1)), "flops")]

    branches = [branch(host.branch(f"branch{k}"), k) for k in range(ROUTED_BRANCHES)]
    forecast, flops = choose(host, index, branches, outputs[:2])
    if not shortcut:
        chosen = index
    else:
        widest = b.branch("widest")
        widest_out = branch(widest, ROUTED_BRANCHES - 1, widest.const(np.float32(0)))[1]  # without the router, no mask
        full = b.op("GreaterOrEqual", BUDGET, b.const(np.float32(1)), scope="router/budget")
        forecast, flops, chosen = b.if_else(
            full,
            (widest, [*widest_out, widest.const(np.int64(ROUTED_BRANCHES - 1))]),
            (host, [forecast, flops, index]),
            outputs,
            scope="router/budget",
        )
    b.identity(forecast, FORECAST)
    b.identity(flops, FLOPS)
    b.identity(chosen, BRANCH)
    inputs = [tensor_info(INPUT, ROUTED_SHAPE)] + ([tensor_info(BUDGET, [])] if shortcut else [])
    if shortcut:
        b.initializers.append(onnx.numpy_helper.from_array(np.array(0.5, np.float32), BUDGET))
    return b.model(inputs, outputs, "a routed test graph")


def frames_reaching(branch: int, rng) -> np.ndarray:
    """Frames for `make_routed_graph` whose router picks `branch`."""
    frames = rng.random(ROUTED_SHAPE).astype(np.float32) * 0.5
    cells = rng.choice(16, size=branch, replace=False)
    frames[0, 1, 0].flat[cells] = 0.9
    return frames


def write_routed_export(folder: Path, width_routed: bool) -> tuple[Path, Manifest]:
    """(folder/model.onnx, its manifest): `make_routed_graph(width_routed)` and its manifest
    beside it, as `dpedge export` writes them."""
    import onnx

    path = folder / "model.onnx"
    onnx.save(make_routed_graph(width_routed), path)
    branches = [Branch([0, 0], 0, {}, 10.0 * (k + 1)) for k in range(ROUTED_BRANCHES)]
    manifest = make_toy_manifest(
        ROUTED_OUT,
        input_shape=ROUTED_SHAPE,
        mode="widths" if width_routed else "sliced",
        branches=branches,
        width_levels=[0.25, 0.5, 1.0],
        budget={"trained": 0.5, "cost_target": "flops"} if width_routed else {},
        onnx_sha256=sha256_file(path),
    )
    (folder / "model.dpedge.json").write_text(manifest.to_json())
    return path, manifest


@pytest.fixture(scope="session")
def routed_toy() -> SimpleNamespace:
    """A small routed graph of the exported layout: make(shortcut) builds it (`make_routed_graph`),
    frames(branch, rng) makes frames its router sends to `branch`, export(folder, width_routed)
    writes it with its manifest (`write_routed_export`); shape, out, branches."""
    return SimpleNamespace(
        make=make_routed_graph,
        frames=frames_reaching,
        export=write_routed_export,
        shape=ROUTED_SHAPE,
        out=ROUTED_OUT,
        branches=ROUTED_BRANCHES,
    )


@pytest.fixture
def toy_manifest() -> Callable[..., Manifest]:
    """`make_toy_manifest`."""
    return make_toy_manifest


@pytest.fixture
def write_toy_graph() -> Callable[..., Path]:
    """`write_toy_graph_file`."""
    return write_toy_graph_file


SIZES = {
    "simvp": {"spatial_channels": 16, "temporal_channels": 32, "translator_blocks": 2},
    "vit": {"dim": 64, "depth": 2},
    "convlstm": {"hidden_channels": 16},
}


def varied_data_config():
    from dynaprune_edge.data import DataConfig

    return DataConfig("taxibj", synthetic_frames=160)


def make_varied_model(tmp_path: Path, group_order: str = "scored", backbone: str = "simvp") -> Path:
    """A small model whose masks differ from sample to sample (an untrained generator
    keeps every region), with non-trivial normalisation parameters, saved as model.pt,
    trained (not at all) on `varied_data_config()`."""
    import torch

    from dynaprune_edge.data import load_dataset
    from dynaprune_edge.masks import PruningConfig
    from dynaprune_edge.models import ForecastShape, ModelConfig, build_model
    from dynaprune_edge.training.checkpoint import atomic_save, model_payload

    torch.manual_seed(0)
    data = load_dataset(varied_data_config())
    shape = ForecastShape(data.frames_in, data.frames_out, data.channels, data.height, data.width)
    config = ModelConfig(backbone, shape, SIZES.get(backbone, {}), PruningConfig(budget=0.3, group_order=group_order))
    model = build_model(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.1, 0.1)
        model.generator.importance.weight.normal_(0, 1.0)
        model.model_mask.width_bias.uniform_(-1.0, 1.0)
        model.eval()
        frames = torch.stack([data.train[i][0] for i in range(0, len(data.train), 4)])
        logits = model.generator(frames).logits
        model.generator.importance.bias -= logits.median()  # about half the regions kept, varying by sample
    path = tmp_path / "model.pt"
    atomic_save(model_payload(model, config, data.config, data.normalizer, {}), path)
    return path


@pytest.fixture(scope="session")
def varied_model() -> Callable[..., Path]:
    """`make_varied_model`."""
    return make_varied_model


@pytest.fixture(scope="session")
def varied_data():
    """The DataConfig the varied models are made on."""
    return varied_data_config()
