"""The `trt` backend without a GPU: engine metadata, refusal of engines built elsewhere,
TensorRT-version API selection, lazy imports, and load/run against a stand-in for the
TensorRT 8.x (bindings) and 10.x (tensor addresses) APIs and pycuda."""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from onnx import helper, numpy_helper

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.files import sha256_file
from dynaprune_edge.runtime import BACKENDS, load
from dynaprune_edge.runtime import tensorrt as runtime_trt
from dynaprune_edge.runtime.tensorrt import (
    EngineMeta,
    Target,
    TensorRTBackend,
    check_compatible,
    meta_path,
    read_meta,
    trt_api,
    write_meta,
)
from tests.trt_stand_ins import fake_device_memory, fake_libcuda

SHAPE = [1, 4, 1, 8, 8]
ENGINE = "model.orin.trt8.5.2.fp16.engine"
ORIN_85 = Target("Orin", "8.7", "8.5.2.2")
TENSORRT_HERE = importlib.util.find_spec("tensorrt") is not None


def make_meta(**changes) -> EngineMeta:
    meta = EngineMeta(
        device="Orin",
        compute_capability="8.7",
        trt_version="8.5.2.2",
        precision="fp16",
        onnx="model.onnx",
        onnx_sha256="0" * 64,
        manifest="model.dpedge.json",
        engine_sha256="0" * 64,
    )
    return replace(meta, **changes)


@pytest.fixture
def write_engine(toy_manifest, write_toy_graph):
    def write_engine(folder: Path, meta: EngineMeta | None = None, data: bytes = b"fake engine") -> Path:
        """An engine file, its metadata and the graph it was built from with its manifest,
        beside it; the metadata records that graph's SHA-256, as `dpedge engine` does."""
        manifest = toy_manifest(
            SHAPE,
            backbone="simvp",
            dataset="synthetic",
            width_levels=[0.5, 1.0],
            flops_convention="1 multiply-add = 1 FLOP",
        )
        graph = write_toy_graph(
            folder,
            [
                helper.make_node("Identity", ["frames"], ["forecast"]),
                helper.make_node("ReduceSum", ["frames"], ["flops"], keepdims=0),
                helper.make_node("Constant", [], ["branch"], value=numpy_helper.from_array(np.array(1, np.int64))),
            ],
            [],
            SHAPE,
            manifest,
        )
        engine = folder / ENGINE
        engine.write_bytes(data)
        if meta is not None:
            write_meta(engine, replace(meta, onnx_sha256=sha256_file(graph), engine_sha256=sha256_file(engine)))
        return engine

    return write_engine


# --- metadata ----------------------------------------------------------------------------


def test_metadata_round_trips_beside_the_engine(tmp_path):
    engine = tmp_path / ENGINE
    write_meta(engine, make_meta())
    assert meta_path(engine).name == ENGINE + ".json"
    assert read_meta(engine) == make_meta()
    assert [p.name for p in tmp_path.iterdir()] == [ENGINE + ".json"]


def test_missing_or_malformed_metadata_is_a_config_error(tmp_path):
    engine = tmp_path / ENGINE
    with pytest.raises(ConfigError, match=r"no metadata .*\.engine\.json beside it.*rebuild it with --trt"):
        read_meta(engine)
    meta_path(engine).write_text("{not json")
    with pytest.raises(ConfigError, match="malformed engine metadata"):
        read_meta(engine)
    meta_path(engine).write_text('{"format": "something-else"}')
    with pytest.raises(ConfigError, match="not a dpedge engine metadata file"):
        read_meta(engine)
    meta_path(engine).write_text('{"format": "dpedge-trt-engine", "version": 2, "device": "Orin"}')
    with pytest.raises(ConfigError, match="malformed engine metadata"):
        read_meta(engine)


@pytest.mark.parametrize(
    "field, value",
    [
        ("onnx", "../../etc/model.onnx"),
        ("onnx", "/tmp/model.onnx"),
        ("onnx", ""),
        ("manifest", "sub/model.dpedge.json"),
        ("onnx", ".."),
    ],
)
def test_metadata_naming_files_outside_the_engines_folder_is_refused(tmp_path, field, value):
    engine = tmp_path / ENGINE
    write_meta(engine, make_meta(**{field: value}))
    with pytest.raises(ConfigError, match=f"its '{field}' must be a file name beside the engine"):
        read_meta(engine)


def test_an_engine_beside_a_re_exported_graph_is_refused_with_the_rebuild_command(tmp_path, write_engine, monkeypatch):
    engine = write_engine(tmp_path, make_meta())
    graph = tmp_path / "model.onnx"
    graph.write_bytes(graph.read_bytes() + b" ")  # another export's bytes (its manifest would be rebound to it)
    monkeypatch.setattr(runtime_trt, "current_target", lambda: ORIN_85)
    with pytest.raises(
        ConfigError,
        match=r"built from another model.onnx than the one beside it .*dpedge engine model.onnx --precision fp16",
    ):
        TensorRTBackend.load(engine)
    graph.unlink()
    with pytest.raises(ConfigError, match="was built from model.onnx, which is not beside it"):
        TensorRTBackend.load(engine)


def test_an_engine_for_this_device_and_tensorrt_is_accepted():
    check_compatible(Path(ENGINE), make_meta(), ORIN_85)


@pytest.mark.parametrize(
    "current, built_for, here",
    [
        (
            Target("Orin", "8.7", "10.3.0"),
            "Orin (compute 8.7) with TensorRT 8.5.2.2",
            "Orin (compute 8.7) with TensorRT 10.3.0",
        ),
        (
            Target("NVIDIA GeForce RTX 3090", "8.6", "8.5.2.2"),
            "Orin (compute 8.7) with TensorRT 8.5.2.2",
            "NVIDIA GeForce RTX 3090 (compute 8.6) with TensorRT 8.5.2.2",
        ),
        (Target("Orin", "8.6", "8.5.2.2"), "Orin (compute 8.7)", "Orin (compute 8.6)"),
    ],
)
def test_an_engine_for_another_device_or_tensorrt_is_refused(current, built_for, here):
    with pytest.raises(ConfigError) as refused:
        check_compatible(Path(ENGINE), make_meta(), current)
    message = str(refused.value)
    assert f"{ENGINE} was built for {built_for}" in message
    assert f"this machine has {here}" in message
    assert "rebuild it here from model.onnx with --trt (precision fp16)" in message
    assert "\n" not in message


def test_load_refuses_a_mismatched_engine_before_touching_it(tmp_path, write_engine, monkeypatch):
    engine = write_engine(tmp_path, make_meta())
    monkeypatch.setattr(runtime_trt, "current_target", lambda: Target("Orin", "8.7", "8.6.2.3"))
    with pytest.raises(
        ConfigError, match=r"built for Orin \(compute 8.7\) with TensorRT 8.5.2.2, but this machine .* TensorRT 8.6.2.3"
    ):
        load(engine, backend="trt")


def test_load_refuses_an_engine_without_metadata(tmp_path, write_engine, monkeypatch):
    engine = write_engine(tmp_path)
    monkeypatch.setattr(runtime_trt, "current_target", lambda: ORIN_85)
    with pytest.raises(ConfigError, match="no metadata"):
        TensorRTBackend.load(engine)
    with pytest.raises(ConfigError, match="no such engine file"):
        TensorRTBackend.load(tmp_path / "absent.engine")


@pytest.mark.skipif(TENSORRT_HERE, reason="tensorrt is installed here")
def test_load_without_tensorrt_says_so_in_one_line(tmp_path, write_engine):
    engine = write_engine(tmp_path, make_meta())
    with pytest.raises(ConfigError) as refused:
        TensorRTBackend.load(engine)
    assert str(refused.value) == (
        "tensorrt is not installed here (No module named 'tensorrt'); the trt backend needs "
        "TensorRT, pycuda and a CUDA GPU (a Jetson with JetPack)"
    )


# --- API selection, registration, imports ------------------------------------------------


@pytest.mark.parametrize(
    "version, explicit_batch_flag, tensor_io",
    [("8.5.2.2", True, False), ("8.6.2.3", True, False), ("10.0.1.6", False, True), ("10.3.0", False, True)],
)
def test_api_follows_the_tensorrt_version(version, explicit_batch_flag, tensor_io):
    api = trt_api(version)
    assert (api.explicit_batch_flag, api.tensor_io) == (explicit_batch_flag, tensor_io)


@pytest.mark.parametrize(
    "version, message", [("8.4.3.1", "older than 8.5"), ("7.1.3", "older than 8.5"), ("ten", "cannot read")]
)
def test_unsupported_tensorrt_versions_are_refused(version, message):
    with pytest.raises(ConfigError, match=message):
        trt_api(version)


def test_trt_is_a_registered_backend():
    assert BACKENDS.get("trt") is TensorRTBackend


def test_importing_the_backend_imports_neither_torch_nor_tensorrt_nor_pycuda():
    code = (
        "import sys, dynaprune_edge.runtime.tensorrt; "
        "print([m for m in ('torch', 'tensorrt', 'pycuda', 'polygraphy', 'fvcore') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- load and run, against a stand-in for TensorRT and pycuda ----------------------------


def fake_modules(version: str, log: list, shape: list[int] = SHAPE) -> tuple[types.ModuleType, types.ModuleType]:
    """Device memory is a dict of byte arrays; the "engine" (built for frames of `shape`)
    computes forecast = 2·frames, flops = 123, branch = 1. Only the API of `version` exists on it: bindings before 10,
    tensor names from 10 (where int64 outputs stay int64; TensorRT 8 makes them int32).
    `install_fake_tensorrt` adds the device. The context enqueues through the stand-in CUDA
    driver `cuda.libcuda` (trt_stand_ins.fake_libcuda), labelled "engine"."""
    cuda, memory = fake_device_memory(log)
    cuda.libcuda = libcuda = fake_libcuda(log)

    tensor_io = int(version.split(".")[0]) >= 10
    tensors = [
        ("frames", True, tuple(shape), np.float32),
        ("forecast", False, tuple(shape), np.float32),
        ("flops", False, (), np.float32),
        ("branch", False, (), np.int64 if tensor_io else np.int32),
    ]

    class Context:
        def __init__(self) -> None:
            self.addresses: dict[str, int] = {}

        def compute(self, addresses: dict[str, int]) -> bool:
            frames = np.frombuffer(memory[addresses["frames"]].tobytes(), np.float32)
            for name, value in (("forecast", 2 * frames), ("flops", np.float32(123)), ("branch", 1)):
                dtype = next(t[3] for t in tensors if t[0] == name)
                memory[addresses[name]][:] = np.frombuffer(np.asarray(value, dtype).tobytes(), np.uint8)
            return True

    class Engine:
        def create_execution_context(self):
            return context

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.nptype = lambda dtype: dtype
    trt.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    engine = Engine()
    context = Context()
    if tensor_io:
        engine.num_io_tensors = len(tensors)
        engine.get_tensor_name = lambda i: tensors[i][0]
        engine.get_tensor_mode = lambda name: "input" if name == "frames" else "output"
        engine.get_tensor_shape = lambda name: next(t[2] for t in tensors if t[0] == name)
        engine.get_tensor_dtype = lambda name: next(t[3] for t in tensors if t[0] == name)
        context.set_tensor_address = lambda name, address: context.addresses.__setitem__(name, address)

        def execute_async_v3(stream_handle):
            log.append(("execute_async_v3", stream_handle))
            return libcuda.enqueue(stream_handle, "engine", functools.partial(context.compute, dict(context.addresses)))

        context.execute_async_v3 = execute_async_v3
    else:
        engine.num_bindings = len(tensors)
        engine.get_binding_name = lambda i: tensors[i][0]
        engine.binding_is_input = lambda i: tensors[i][1]
        engine.get_binding_shape = lambda i: tensors[i][2]
        engine.get_binding_dtype = lambda i: tensors[i][3]

        def execute_async_v2(bindings, stream_handle):
            log.append(("execute_async_v2", stream_handle))
            addresses = {t[0]: address for t, address in zip(tensors, bindings)}
            return libcuda.enqueue(stream_handle, "engine", functools.partial(context.compute, addresses))

        context.execute_async_v2 = execute_async_v2
    trt.Runtime = lambda logger: types.SimpleNamespace(
        deserialize_cuda_engine=lambda data: engine if data == b"fake engine" else None
    )
    return trt, cuda


@pytest.fixture
def fake_tensorrt(install_fake_tensorrt):
    return functools.partial(install_fake_tensorrt, fake_modules)


@pytest.mark.parametrize(
    "version, call", [("8.5.2.2", "execute_async_v2"), ("8.6.2.3", "execute_async_v2"), ("10.3.0", "execute_async_v3")]
)
def test_runs_a_batch_one_sample_at_a_time(tmp_path, write_engine, fake_tensorrt, version, call, monkeypatch):
    from dynaprune_edge.runtime import jetson

    monkeypatch.setattr(jetson, "query_nvpmodel", lambda: "NV Power Mode: MODE_30W\n2\n")
    log = fake_tensorrt(version)
    engine = write_engine(tmp_path, make_meta(trt_version=version))
    backend = load(engine, backend="trt")
    frames = np.random.default_rng(0).standard_normal((3, *SHAPE[1:])).astype(np.float32)
    result = backend.run(frames)
    np.testing.assert_array_equal(result.forecast, 2 * frames)
    assert result.forecast.dtype == np.float32
    assert result.flops.tolist() == [123.0] * 3 and result.branch.tolist() == [1] * 3
    assert log.count((call, 7)) == 3 and log.count("synchronize") == 3
    assert backend.describe() == {
        "backend": "trt",
        "device": "Orin",
        "compute_capability": "8.7",
        "tensorrt": version,
        "precision": "fp16",
        "power_mode": "30W",  # what nvpmodel -q says
        "threads": "n/a (GPU)",
        "layout": "single",
        "model": str(engine),
    }


@pytest.mark.parametrize("version", ["8.5.2.2", "10.3.0"])
def test_an_engine_of_other_shapes_than_its_manifest_is_refused_before_buffers_are_sized(
    tmp_path, write_engine, install_fake_tensorrt, version
):
    """Device buffers sized from a manifest that another --size re-export rewrote would let
    the engine write past them: the engine's own shapes are compared first."""
    install_fake_tensorrt(functools.partial(fake_modules, shape=[1, 4, 1, 16, 16]), version)
    engine = write_engine(tmp_path, make_meta(trt_version=version))
    with pytest.raises(
        ConfigError,
        match=r"the engine's tensors are not its manifest's: frames \[1, 4, 1, 16, 16\] \(manifest: \[1, 4, 1, 8, 8\]\)",
    ):
        load(engine, backend="trt")


def test_the_real_device_check_refuses_an_engine_of_another_tensorrt(tmp_path, write_engine, fake_tensorrt):
    fake_tensorrt("10.3.0")
    engine = write_engine(tmp_path, make_meta(trt_version="8.5.2.2"))
    with pytest.raises(ConfigError, match="with TensorRT 8.5.2.2, but this machine has Orin .* TensorRT 10.3.0"):
        TensorRTBackend.load(engine)


def test_an_engine_replaced_beside_its_metadata_is_refused(tmp_path, write_engine, fake_tensorrt):
    fake_tensorrt("8.5.2.2")
    engine = write_engine(tmp_path, make_meta())
    engine.write_bytes(b"another build")  # a build killed between the engine and its metadata
    with pytest.raises(
        ConfigError, match=r"is not the engine its metadata .* describes .*rebuild it with dpedge engine model.onnx"
    ):
        TensorRTBackend.load(engine)


def test_an_engine_tensorrt_cannot_read_is_a_config_error(tmp_path, write_engine, fake_tensorrt):
    fake_tensorrt("8.5.2.2")
    engine = write_engine(tmp_path, make_meta(), data=b"truncated")
    with pytest.raises(ConfigError, match="TensorRT 8.5.2.2 cannot deserialize this engine"):
        TensorRTBackend.load(engine)


def test_the_manifest_must_lie_beside_the_engine(tmp_path, write_engine, fake_tensorrt):
    fake_tensorrt("8.5.2.2")
    engine = write_engine(tmp_path, make_meta())
    (tmp_path / "model.dpedge.json").unlink()
    with pytest.raises(ConfigError, match="no manifest beside model.onnx"):
        TensorRTBackend.load(engine)


# --- CUDA graphs (--cuda-graph), against the stand-in CUDA driver -------------------------


@pytest.fixture
def stand_in_driver(monkeypatch):
    """The CUDA driver that runtime/tensorrt.py loads: the stand-in pycuda's (fake_libcuda)."""
    monkeypatch.setattr(runtime_trt, "load_libcuda", lambda: sys.modules["pycuda.driver"].libcuda)


@pytest.mark.parametrize("version", ["8.5.2.2", "10.3.0"])
def test_with_cuda_graph_the_engine_is_captured_once_then_each_sample_is_a_graph_launch(
    tmp_path, write_engine, fake_tensorrt, stand_in_driver, version
):
    log = fake_tensorrt(version)
    engine = write_engine(tmp_path, make_meta(trt_version=version))
    backend = load(engine, backend="trt", cuda_graph=True)
    assert [entry for entry in log if entry[0] in ("enqueue", "captured", "instantiate")] == [
        ("enqueue", "engine"),
        ("captured", "engine"),
        ("instantiate", ("engine",)),
    ], "one eager warm-up, then one capture"
    assert backend.describe()["cuda_graphs"] == {"engine": True} and "cuda_graph_notes" not in backend.describe()
    log.clear()
    frames = np.random.default_rng(1).standard_normal((3, *SHAPE[1:])).astype(np.float32)
    result = backend.run(frames)
    np.testing.assert_array_equal(result.forecast, 2 * frames)  # each replay read that sample's frames
    assert result.flops.tolist() == [123.0] * 3 and result.branch.tolist() == [1] * 3
    assert log.count(("graph launch", "engine")) == 3
    assert not [entry for entry in log if entry[0] in ("enqueue", "captured") or entry[0].startswith("execute")], (
        "no enqueue: replays only"
    )


@pytest.mark.parametrize("version", ["8.5.2.2", "10.3.0"])
def test_an_engine_that_cannot_be_captured_runs_eagerly_and_says_why(
    tmp_path, write_engine, fake_tensorrt, stand_in_driver, version
):
    log = fake_tensorrt(version)
    libcuda = sys.modules["pycuda.driver"].libcuda
    libcuda.refuse.add("engine")
    engine = write_engine(tmp_path, make_meta(trt_version=version))
    backend = load(engine, backend="trt", cuda_graph=True)
    assert not libcuda.capturing, "the stream is not left capturing"
    (note,) = backend.cuda_graph_notes
    assert note.startswith(
        f"{ENGINE}: engine: runs eagerly, its CUDA graph capture failed: TensorRT could not enqueue it while the stream was capturing"
    )
    described = backend.describe()
    assert described["cuda_graphs"] == {"engine": False} and described["cuda_graph_notes"] == [
        note.removeprefix(f"{ENGINE}: ")
    ]
    log.clear()
    frames = np.random.default_rng(2).standard_normal((2, *SHAPE[1:])).astype(np.float32)
    np.testing.assert_array_equal(backend.run(frames).forecast, 2 * frames)
    assert log.count(("enqueue", "engine")) == 2 and not [entry for entry in log if entry[0] == "graph launch"]


def test_without_the_drivers_graph_api_every_engine_runs_eagerly_and_says_why(
    tmp_path, write_engine, fake_tensorrt, monkeypatch
):
    fake_tensorrt("10.3.0")

    def no_libcuda():
        raise OSError("libcuda.so.1: cannot open shared object file")

    monkeypatch.setattr(runtime_trt, "load_libcuda", no_libcuda)
    engine = write_engine(tmp_path, make_meta(trt_version="10.3.0"))
    backend = load(engine, backend="trt", cuda_graph=True)
    assert backend.cuda_graph_notes == [
        f"{ENGINE}: engine: runs eagerly, no CUDA graph: the CUDA driver's graph API is not usable here "
        "(libcuda.so.1: cannot open shared object file)"
    ]
    assert backend.describe()["cuda_graphs"] == {"engine": False}
    assert backend.run(np.ones((1, *SHAPE[1:]), np.float32)).flops.tolist() == [123.0]


def test_without_cuda_graph_describe_is_unchanged_and_no_graph_is_made(
    tmp_path, write_engine, fake_tensorrt, stand_in_driver
):
    log = fake_tensorrt("10.3.0")
    backend = load(write_engine(tmp_path, make_meta(trt_version="10.3.0")), backend="trt")
    backend.run(np.ones((2, *SHAPE[1:]), np.float32))
    assert "cuda_graphs" not in backend.describe() and backend.cuda_graph_notes == []
    assert not [entry for entry in log if entry[0] in ("captured", "graph launch")]


def test_cuda_graph_is_refused_on_other_backends(tmp_path):
    with pytest.raises(
        ConfigError, match=r"--cuda-graph captures TensorRT engines into CUDA graphs \(--backend trt\), not ort"
    ):
        load(tmp_path / "model.onnx", backend="ort", cuda_graph=True)


@pytest.mark.parametrize("backend", ["ort", "orin-emu"])
def test_dpedge_profile_refuses_cuda_graph_off_trt_in_one_line(dpedge, tmp_path, backend):
    done = dpedge("profile", "model.onnx", "--backend", backend, "--cuda-graph", cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"error: --cuda-graph captures TensorRT engines into CUDA graphs, with --backend trt, not {backend}"
    ]


DRIVER_STUB = r"""
/* The CUDA driver functions runtime/tensorrt.py's CudaGraphDriver calls, with their C
   signatures (cuda.h): what ctypes passes must arrive as the driver reads it. */
typedef void *CUstream, *CUgraph, *CUgraphExec, *CUcontext;
static CUstream capturing = 0;
static int graphs_alive = 0;
int cuStreamBeginCapture_v2(CUstream stream, int mode) {
    if (capturing || mode != 1 /* CU_STREAM_CAPTURE_MODE_THREAD_LOCAL */) return 1;
    capturing = stream; return 0; }
int cuStreamEndCapture(CUstream stream, CUgraph *graph) {
    if (stream != capturing) return 400;
    capturing = 0; *graph = (CUgraph) 0x1234; graphs_alive++; return 0; }
int cuGraphInstantiateWithFlags(CUgraphExec *executable, CUgraph graph, unsigned long long flags) {
    if (graph != (CUgraph) 0x1234 || flags != 0) return 1;
    *executable = (CUgraphExec) 0x5678; return 0; }
int cuGraphLaunch(CUgraphExec executable, CUstream stream) {
    return executable == (CUgraphExec) 0x5678 && stream == (CUstream) 0x7fff12345678 ? 0 : 400; }
int cuGraphDestroy(CUgraph graph) { if (graph != (CUgraph) 0x1234) return 400; graphs_alive--; return 0; }
int cuGraphExecDestroy(CUgraphExec executable) { return 0; }
int cuCtxGetCurrent(CUcontext *context) { *context = (CUcontext) 0xC0; return 0; }
int cuGetErrorName(int code, const char **name) { *name = code == 400 ? "CUDA_ERROR_INVALID_HANDLE" : "CUDA_ERROR_UNKNOWN"; return 0; }
int stub_capturing(void) { return capturing != 0; }
int stub_graphs_alive(void) { return graphs_alive; }
"""


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler here")
def test_the_graph_calls_reach_a_c_driver_with_the_values_it_expects(tmp_path):
    """CudaGraphDriver against a compiled library with the driver's C signatures: the
    ctypes types, the out-parameters and a 64-bit stream handle survive the call."""
    import ctypes

    (tmp_path / "stub.c").write_text(DRIVER_STUB)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(tmp_path / "libstub.so"), str(tmp_path / "stub.c")], check=True)
    lib = ctypes.CDLL(str(tmp_path / "libstub.so"))
    driver = runtime_trt.CudaGraphDriver(lib)
    stream = types.SimpleNamespace(handle=0x7FFF12345678)
    with pytest.raises(
        runtime_trt.CudaGraphError, match="TensorRT could not enqueue it while the stream was capturing"
    ):
        driver.capture(stream, lambda: False)
    assert not lib.stub_capturing() and lib.stub_graphs_alive() == 0, "a refused capture is ended and its graph freed"
    graph = driver.capture(stream, lambda: True)
    assert graph.executable == 0x5678 and lib.stub_graphs_alive() == 0
    graph.launch(stream)
    with pytest.raises(runtime_trt.CudaGraphError, match="cuGraphLaunch returned CUDA_ERROR_INVALID_HANDLE"):
        graph.launch(types.SimpleNamespace(handle=5))
