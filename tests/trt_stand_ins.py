"""Stand-ins for pycuda and TensorRT's builder that the TensorRT tests share: the device
memory of pycuda.driver as byte arrays, and a builder configuration that logs what it is
given. Imported by the test modules, and by the processes of tests/test_kill.py and
tests/deploy, which install them with `install_stand_ins`."""

from __future__ import annotations

import functools
import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np


def fake_device_memory(log: list) -> tuple[ModuleType, dict]:
    """(pycuda.driver as far as dpedge's runtime uses it, its device memory): device memory
    is a dict of byte arrays by address, allocations logged as ("alloc", address, nbytes);
    page-locked host buffers are numpy arrays; a stream's synchronize is logged. The caller
    adds what its stand-in needs besides (events, the current device)."""
    memory: dict[int, np.ndarray] = {}
    addresses = itertools.count(4096, 4096)
    cuda = ModuleType("pycuda.driver")

    def mem_alloc(nbytes):
        address = next(addresses)
        memory[address] = np.zeros(nbytes, np.uint8)
        log.append(("alloc", address, nbytes))
        return address

    def memcpy_htod_async(device, host, stream):
        memory[int(device)][:] = np.frombuffer(np.ascontiguousarray(host).tobytes(), np.uint8)

    def memcpy_htod(device, host):  # the int8 calibrator's: a batch may fill less than its buffer (int64 read as int32)
        data = np.frombuffer(np.ascontiguousarray(host).tobytes(), np.uint8)
        memory[int(device)][: data.size] = data

    def memcpy_dtoh_async(host, device, stream):
        host[...] = np.frombuffer(memory[int(device)].tobytes(), host.dtype).reshape(host.shape)

    cuda.mem_alloc, cuda.pagelocked_empty = mem_alloc, lambda size, dtype: np.empty(size, dtype)
    cuda.memcpy_htod_async, cuda.memcpy_dtoh_async, cuda.memcpy_htod = memcpy_htod_async, memcpy_dtoh_async, memcpy_htod
    cuda.Stream = lambda: SimpleNamespace(handle=7, synchronize=lambda: log.append("synchronize"))
    return cuda, memory


def fake_builder_config(log: list) -> type:
    """tensorrt's IBuilderConfig as far as dpedge's builder uses it: the workspace and the
    flags it is given logged, a timing cache serialized as the bytes it was made from +
    b"+timings"."""

    class Config:
        int8_calibrator = None

        def set_memory_pool_limit(self, pool, size):
            log.append(("workspace", size))

        def set_flag(self, flag):
            log.append(("flag", flag))

        def create_timing_cache(self, data):
            return SimpleNamespace(serialize=lambda: data + b"+timings")

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    return Config


TESTS = Path(__file__).parent


def load_test_module(relative: str) -> ModuleType:
    """The test module TESTS/relative, for the stand-ins it defines, loaded under a name of
    its own, apart from pytest's copy (whose module state the tests use)."""
    spec = importlib.util.spec_from_file_location(f"stand_ins_{Path(relative).stem}", TESTS / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def install_stand_ins(relative: str, version: str, tag: bytes = b"") -> ModuleType:
    """In a process of its own (tests/test_kill.py's cases, tests/deploy's devices): the
    tensorrt and pycuda that `fake_modules` of the test module TESTS/relative makes, put
    into sys.modules as tests/conftest.py's install_fake_tensorrt puts them (an Orin); the
    tensorrt stand-in is returned. With `tag`, every engine built but a bundle's router is
    marked with it, so that two builds of one graph differ as TensorRT's tactic choices make
    them, while the router (alike in both) keeps its file: an engine of bytes gets `tag`
    appended, an engine that is the ONNX it parsed (the bundle stand-in) gets it in its
    doc_string, so that it still runs."""
    _, modules = load_test_module("conftest.py").fake_tensorrt_modules(load_test_module(relative).fake_modules, version)
    sys.modules.update(modules)
    trt = modules["tensorrt"]
    build = trt.Builder.build_serialized_network

    def tagged(self, network, config):
        engine = bytes(build(self, network, config))
        graph = getattr(network, "graph", None)
        if graph is None:
            return engine + tag
        if graph.name == "dpedge-router":
            return engine
        import onnx

        model = onnx.load_from_string(engine)
        model.doc_string += tag.decode()
        return model.SerializeToString()

    if tag:
        trt.Builder.build_serialized_network = tagged
    return trt


def fake_libcuda(log: list) -> SimpleNamespace:
    """The CUDA driver's graph API as runtime/tensorrt.py's CudaGraphDriver calls it
    (ctypes out-parameters included), for stand-in engines that enqueue through its
    `enqueue(stream, label, work)`: eagerly `work` runs at once (logged ("enqueue", label));
    while the stream is capturing it is recorded (("captured", label)), and a graph launch
    runs what was recorded, reading device memory as it is then (("graph launch", label)).
    An engine whose label is in its `refuse` set cannot be captured: its enqueue returns False
    while capturing and the capture is invalidated, as TensorRT does with an engine holding
    work that stream capture does not allow."""
    capturing: dict[int, dict] = {}
    graphs: dict[int, list] = {}
    refuse: set[str] = set()
    handles = itertools.count(0x1000)
    names = {0: b"CUDA_SUCCESS", 901: b"CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", 400: b"CUDA_ERROR_INVALID_HANDLE"}

    def enqueue(stream: int, label: str, work) -> bool:
        capture = capturing.get(int(stream))
        if capture is None:
            log.append(("enqueue", label))
            return work()
        if label in refuse:
            log.append(("capture refused", label))
            capture["invalidated"] = True
            return False
        log.append(("captured", label))
        capture["work"].append((label, work))
        return True

    def begin(stream, mode):
        assert mode == 1, "captured in thread-local mode, as trtexec does"
        if int(stream) in capturing:
            return 400
        capturing[int(stream)] = {"work": [], "invalidated": False}
        return 0

    def end(stream, graph):
        capture = capturing.pop(int(stream), None)
        if capture is None:
            return 400
        if capture["invalidated"]:
            graph._obj.value = None
            return 901
        graph._obj.value = next(handles)
        graphs[graph._obj.value] = capture["work"]
        return 0

    def instantiate(executable, graph, flags):
        executable._obj.value = next(handles)
        graphs[executable._obj.value] = list(graphs[int(graph.value if hasattr(graph, "value") else graph)])
        log.append(("instantiate", tuple(label for label, _ in graphs[executable._obj.value])))
        return 0

    def launch(executable, stream):
        if int(stream) in capturing or executable not in graphs:
            return 400
        for label, work in graphs[executable]:
            log.append(("graph launch", label))
            work()
        return 0

    def destroy(graph):
        handle = int(graph.value if hasattr(graph, "value") else graph)
        return 0 if graphs.pop(handle, None) is not None else 400

    def error_name(code, name):
        name._obj.value = names.get(code, b"CUDA_ERROR_UNKNOWN")
        return 0

    def current_context(context):
        context._obj.value = 0xC0
        return 0

    # one object per name, as ctypes' functions are: the driver sets their argtypes and restype
    functions = {
        "cuStreamBeginCapture_v2": begin,
        "cuStreamEndCapture": end,
        "cuGraphInstantiateWithFlags": instantiate,
        "cuGraphLaunch": launch,
        "cuGraphDestroy": destroy,
        "cuGraphExecDestroy": destroy,
        "cuCtxGetCurrent": current_context,
        "cuGetErrorName": error_name,
    }
    return SimpleNamespace(
        **{name: functools.partial(f) for name, f in functions.items()},
        enqueue=enqueue,
        capturing=capturing,
        graphs=graphs,
        refuse=refuse,
    )
