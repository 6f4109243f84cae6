"""TensorRT backend `trt`: runs a serialized engine on the GPU it was built on.

Engines are not portable across devices or TensorRT versions (docs/design.md, "TensorRT
and the Jetson AGX Orin"), so every engine has a metadata file `<engine>.json` beside it
(device, compute capability, TensorRT version, precision, source ONNX and its sha256,
manifest) and `load` refuses an engine built for anything but this device and this
TensorRT.

A pruned graph is built as a bundle (`BundleMeta`): one engine for its router and one per
branch, cut from the graph by runtime/split.py, because TensorRT may run the layers of
every branch of an ONNX `If` (docs/design.md, "Split layout"). The bundle's metadata file
`<model>.<device>.trt<version>.<precision>.bundle.json` names each engine and its SHA-256;
engines are named by their hash, so a build interrupted at any point leaves the previous
bundle whole. All engines are deserialized once and their execution contexts share one
block of device memory, the size of the largest's need.

tensorrt and pycuda are imported inside functions only: this package must import, and
list its backends, where neither is installed. Supported TensorRT: 8.5 (JetPack 5.1),
8.6 (JetPack 6.0), 10.x (JetPack 6.1+); `trt_api` holds the differences between them.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import numpy as np

from dynaprune_edge.errors import ConfigError, DataError
from dynaprune_edge.files import atomic_write_text, sha256_file
from dynaprune_edge.runtime.base import Backend
from dynaprune_edge.runtime.jetson import current_power_mode
from dynaprune_edge.runtime.manifest import (
    BRANCH,
    BUDGET,
    FLOPS,
    FORECAST,
    INPUT,
    Manifest,
    is_file_name,
    read_manifest,
)

META_FORMAT = "dpedge-trt-engine"
META_VERSION = 2  # 2: engine_sha256 binds the metadata to its engine
OLDEST_TENSORRT = (8, 5)


class TensorRTUnavailable(ConfigError):
    """tensorrt, pycuda or a CUDA device is missing here; the message says which and why."""


@dataclass(frozen=True)
class Target:
    """What an engine is tied to: the GPU (name and compute capability) and TensorRT."""

    device: str
    compute_capability: str
    trt_version: str


@dataclass(frozen=True)
class EngineMeta:
    device: str
    compute_capability: str
    trt_version: str
    precision: str
    onnx: str  # file name of the source graph, beside the engine
    onnx_sha256: str
    manifest: str  # file name of the graph's manifest, beside the engine
    engine_sha256: str  # written after the engine: a new engine beside old metadata is refused
    format: str = META_FORMAT
    version: int = META_VERSION

    @property
    def target(self) -> Target:
        return Target(self.device, self.compute_capability, self.trt_version)


BUNDLE_FORMAT = "dpedge-trt-bundle"
BUNDLE_VERSION = 1
BUNDLE_SUFFIX = ".bundle.json"


@dataclass(frozen=True)
class BundleEngine:
    role: str  # "router", "bypass" (a width-routed graph's budget-1 graph) or "branchK"
    file: str  # beside the bundle file; named by its hash
    sha256: str


@dataclass(frozen=True)
class BundleMeta:
    """A split bundle (module doc): the target and source graph as EngineMeta, and its
    engines. Written after every engine: the bundle is complete once this file names them."""

    device: str
    compute_capability: str
    trt_version: str
    precision: str
    onnx: str
    onnx_sha256: str
    manifest: str
    router: BundleEngine
    branches: list[BundleEngine]
    bypass: BundleEngine | None
    handoff: list[str]  # the router's outputs the branches read
    format: str = BUNDLE_FORMAT
    version: int = BUNDLE_VERSION

    @property
    def target(self) -> Target:
        return Target(self.device, self.compute_capability, self.trt_version)

    @property
    def engines(self) -> list[BundleEngine]:
        return [self.router, *self.branches, *([self.bypass] if self.bypass else [])]


def is_bundle(path: Path) -> bool:
    return Path(path).name.endswith(BUNDLE_SUFFIX)


def write_bundle(path: Path, meta: BundleMeta) -> None:
    atomic_write_text(json.dumps(asdict(meta), indent=2) + "\n", path)


def read_bundle(path: Path) -> BundleMeta:
    """The bundle file's metadata, every field checked (a file users are handed)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such bundle file")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(values, dict) or values.get("format") != BUNDLE_FORMAT:
            raise ConfigError(f"{path}: not a dpedge engine bundle (expected format {BUNDLE_FORMAT!r})")
        if values.get("version") != BUNDLE_VERSION:
            raise ConfigError(
                f"{path}: bundle version {values.get('version')} is not supported (this dpedge reads {BUNDLE_VERSION})"
            )
        engine = lambda value: BundleEngine(**value) if value is not None else None
        meta = BundleMeta(
            **{
                **values,
                "router": engine(values["router"]),
                "branches": [engine(b) for b in values["branches"]],
                "bypass": engine(values.get("bypass")),
            }
        )
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError, AttributeError) as error:
        raise ConfigError(f"{path}: malformed engine bundle ({error})") from None
    named = [("onnx", meta.onnx), ("manifest", meta.manifest)] + [(e.role, e.file) for e in meta.engines]
    for field_name, name in named:
        if not is_file_name(name):
            raise ConfigError(f"{path}: its {field_name!r} must be a file name beside the bundle, got {name!r}")
    if not meta.branches or not all(isinstance(h, str) for h in meta.handoff):
        raise ConfigError(f"{path}: malformed engine bundle (no branches, or handoff not a list of names)")
    return meta


def rebuild_command(meta) -> str:
    return f"dpedge engine {meta.onnx} --precision {meta.precision}"


def bundle_engines(path: Path, meta: BundleMeta) -> dict[str, bytes]:
    """Each engine of the bundle by role, once every file is there and is the one the
    bundle names (by SHA-256): never a mix of two builds."""
    engines = {}
    for engine in meta.engines:
        file = Path(path).parent / engine.file
        if not file.is_file():
            raise ConfigError(
                f"{Path(path).name} lists {engine.file} ({engine.role}), which is not beside it: "
                f"copy the whole bundle, or rebuild it with {rebuild_command(meta)}"
            )
        data = file.read_bytes()
        if hashlib.sha256(data).hexdigest() != engine.sha256:
            raise ConfigError(
                f"{engine.file} is not the {engine.role} engine {Path(path).name} lists (its SHA-256 differs): "
                f"rebuild the bundle with {rebuild_command(meta)}"
            )
        engines[engine.role] = data
    return engines


def engine_bytes(path: Path, meta: EngineMeta) -> bytes:
    """A single engine's bytes, once they are the ones its metadata names (by SHA-256): a
    new engine beside the old metadata, or the reverse, is refused."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such engine file")
    serialized = path.read_bytes()
    if hashlib.sha256(serialized).hexdigest() != meta.engine_sha256:
        raise ConfigError(
            f"{path.name} is not the engine its metadata {meta_path(path).name} describes (a build interrupted "
            f"between the two, or a copy of one only): rebuild it with {rebuild_command(meta)}"
        )
    return serialized


def engine_files(path: Path) -> tuple[Path, EngineMeta | BundleMeta, Path, list[BundleEngine]]:
    """What an engine or a bundle is made of: (the path `load` takes, its metadata, the
    metadata's file, each engine file it names with its SHA-256). `path`: an `.engine`, its
    `.engine.json`, or a `.bundle.json`. A copy is whole once the engines are there and the
    metadata file, copied last, names them."""
    path = Path(path)
    if is_bundle(path):
        meta = read_bundle(path)
        return path, meta, path, meta.engines
    if path.name.endswith(".engine.json"):
        path = path.with_name(path.name.removesuffix(".json"))
    if path.suffix != ".engine":
        raise ConfigError(f"{path}: expected a TensorRT .engine, its .engine.json or a {BUNDLE_SUFFIX}")
    meta = read_meta(path)
    return path, meta, meta_path(path), [BundleEngine("engine", path.name, meta.engine_sha256)]


def check_engine(path: Path) -> dict:
    """`dpedge engine PATH --check`, what `dpedge deploy` runs on the device: the engine or
    bundle at `path` (engine_files), not deserialized, once it was built for this GPU and
    this TensorRT from the graph beside it and every engine file beside it is the one its
    metadata names (by SHA-256); else a ConfigError in one line that names the rebuild."""
    path, meta, metadata, engines = engine_files(path)
    checked_here(path, meta)
    if isinstance(meta, BundleMeta):
        bundle_engines(path, meta)
    else:
        engine_bytes(path, meta)
    return {
        "engine": str(path),
        "metadata": metadata.name,
        "layout": "split" if isinstance(meta, BundleMeta) else "single",
        "device": meta.device,
        "compute_capability": meta.compute_capability,
        "tensorrt": meta.trt_version,
        "precision": meta.precision,
        "onnx": meta.onnx,
        "engines": [asdict(engine) for engine in engines],
    }


class CudaGraphError(RuntimeError):
    """An engine's enqueue could not be captured into a CUDA graph; the message says why
    (the engine then runs eagerly)."""


CUDA_SUCCESS = 0
CAPTURE_THREAD_LOCAL = 1  # CU_STREAM_CAPTURE_MODE_THREAD_LOCAL, the mode trtexec --useCudaGraph captures in


def load_libcuda():
    """The CUDA driver library, which pycuda has loaded already (the one context it made
    current is the one the driver calls below run in)."""
    return ctypes.CDLL("libcuda.so.1")


class CudaGraphDriver:
    """Stream capture, instantiation and launch of CUDA graphs through the CUDA driver API
    (libcuda, by ctypes): no released pycuda wraps them (stream capture is only in its
    unmerged pull request 424), and the driver API is what pycuda's streams and context are
    made of, so its CUstream handles are passed as they are. cuGraphInstantiateWithFlags is
    in every CUDA that JetPack 5.1+ ships (11.4 and later)."""

    SIGNATURES: ClassVar[dict] = {
        "cuStreamBeginCapture_v2": [ctypes.c_void_p, ctypes.c_int],
        "cuStreamEndCapture": [ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p)],
        "cuGraphInstantiateWithFlags": [ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p, ctypes.c_ulonglong],
        "cuGraphLaunch": [ctypes.c_void_p, ctypes.c_void_p],
        "cuGraphDestroy": [ctypes.c_void_p],
        "cuGraphExecDestroy": [ctypes.c_void_p],
        "cuCtxGetCurrent": [ctypes.POINTER(ctypes.c_void_p)],
        "cuGetErrorName": [ctypes.c_int, ctypes.POINTER(ctypes.c_char_p)],
    }

    def __init__(self, lib) -> None:
        self.lib = lib
        for name, argtypes in self.SIGNATURES.items():
            function = getattr(lib, name)
            function.argtypes, function.restype = argtypes, ctypes.c_int

    def check(self, result: int, call: str) -> None:
        if result != CUDA_SUCCESS:
            name = ctypes.c_char_p()
            named = self.lib.cuGetErrorName(result, ctypes.byref(name)) == CUDA_SUCCESS and name.value
            raise CudaGraphError(f"{call} returned {name.value.decode() if named else f'CUDA error {result}'}")

    def capture(self, stream, enqueue: Callable[[], bool]) -> CudaGraph:
        """The instantiated graph of the work `enqueue` puts on `stream` (it returns False
        where TensorRT could not enqueue), or CudaGraphError. The capture is ended whatever
        happens: a stream left capturing would fail all later work on it."""
        self.check(self.lib.cuStreamBeginCapture_v2(stream.handle, CAPTURE_THREAD_LOCAL), "cuStreamBeginCapture")
        graph, enqueued, failure = ctypes.c_void_p(), False, None
        try:
            enqueued = enqueue()
        except Exception as error:  # noqa: BLE001 (TensorRT's binding raising mid-capture: reported, then eager)
            failure = f"the enqueue raised {type(error).__name__}: {error}"
        finally:
            ended = self.lib.cuStreamEndCapture(stream.handle, ctypes.byref(graph))
        try:
            if not enqueued:
                raise CudaGraphError(
                    failure or "TensorRT could not enqueue it while the stream was capturing (its log above says why)"
                )
            self.check(ended, "cuStreamEndCapture")
            executable = ctypes.c_void_p()
            self.check(self.lib.cuGraphInstantiateWithFlags(ctypes.byref(executable), graph, 0), "cuGraphInstantiate")
            return CudaGraph(self, executable.value)
        finally:
            if graph.value:
                self.lib.cuGraphDestroy(graph)  # the instantiated graph does not need it

    def destroy(self, executable: int) -> None:
        """Frees a graph while its context is still current (at exit pycuda's context is
        gone, and the graph with it)."""
        current = ctypes.c_void_p()
        if self.lib.cuCtxGetCurrent(ctypes.byref(current)) == CUDA_SUCCESS and current.value:
            self.lib.cuGraphExecDestroy(executable)


class CudaGraph:
    """One engine's enqueue, captured and instantiated: launched on the stream it was
    captured on, it reads and writes the device buffers bound when it was captured."""

    def __init__(self, driver: CudaGraphDriver, executable: int) -> None:
        self.driver, self.executable = driver, executable

    def launch(self, stream) -> None:
        self.driver.check(self.driver.lib.cuGraphLaunch(self.executable, stream.handle), "cuGraphLaunch")

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown the driver may be gone
            self.driver.destroy(self.executable)


def cuda_graph_driver() -> CudaGraphDriver:
    try:
        return CudaGraphDriver(load_libcuda())
    except (OSError, AttributeError) as error:
        raise CudaGraphError(f"the CUDA driver's graph API is not usable here ({error})") from None


@dataclass(frozen=True)
class TrtApi:
    """The calls that differ between the TensorRT releases dpedge supports."""

    major: int
    minor: int

    @property
    def explicit_batch_flag(self) -> bool:
        """Before 10, `create_network` needs EXPLICIT_BATCH; 10 deprecates it (always explicit)."""
        return self.major < 10

    @property
    def tensor_io(self) -> bool:
        """10 removed bindings: I/O by tensor name (num_io_tensors, set_tensor_address,
        execute_async_v3). 8.5/8.6 run with bindings (num_bindings, execute_async_v2)."""
        return self.major >= 10

    def execute(self, context, bindings: list[int], stream) -> bool:
        """Enqueue `context` on `stream`: by the tensor addresses set on it (10), or by
        `bindings` (8.5/8.6)."""
        if self.tensor_io:
            return context.execute_async_v3(stream.handle)
        return context.execute_async_v2(bindings, stream.handle)

    def context_without_memory(self, trt: ModuleType, engine):
        """An execution context whose scratch memory the caller provides (a bundle's
        engines share one block)."""
        if self.major >= 10:
            return engine.create_execution_context(trt.ExecutionContextAllocationStrategy.USER_MANAGED)
        return engine.create_execution_context_without_device_memory()

    def capture(self, driver: CudaGraphDriver, context, bindings: list[int], stream) -> CudaGraph:
        """`context`'s enqueue as a CUDA graph on `stream`: one eager enqueue first and a
        synchronisation (TensorRT sets up its state on the first enqueue after its shapes
        are set, which must not be captured: the "CUDA Graphs" section of its developer
        guide), then the same enqueue captured. CudaGraphError says why it could not be."""
        if not self.execute(context, bindings, stream):
            raise CudaGraphError("TensorRT could not enqueue it even eagerly (its log above says why)")
        stream.synchronize()
        return driver.capture(stream, lambda: self.execute(context, bindings, stream))

    @staticmethod
    def device_memory_size(engine) -> int:
        """The scratch memory a context of `engine` needs (device_memory_size_v2 from 10.1)."""
        size = getattr(engine, "device_memory_size_v2", None)
        return int(engine.device_memory_size if size is None else size)

    @staticmethod
    def set_device_memory(context, address: int, size: int) -> None:
        """set_device_memory(address, size) from 10.1; the device_memory property before."""
        if hasattr(context, "set_device_memory"):
            context.set_device_memory(address, size)
        else:
            context.device_memory = address


def trt_api(version: str) -> TrtApi:
    """The API to use for TensorRT `version` ("8.5.2.2", "10.3.0"), or a ConfigError for one
    dpedge does not support."""
    parts = version.split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        raise ConfigError(f"cannot read the TensorRT version {version!r}") from None
    if (major, minor) < OLDEST_TENSORRT:
        raise ConfigError(
            f"TensorRT {version} is older than 8.5 (JetPack 5.1), the oldest dpedge supports; upgrade JetPack"
        )
    return TrtApi(major, minor)


def meta_path(engine: Path) -> Path:
    """model.orin.trt8.5.2.fp16.engine → model.orin.trt8.5.2.fp16.engine.json"""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def write_meta(engine: Path, meta: EngineMeta) -> None:
    atomic_write_text(json.dumps(asdict(meta), indent=2) + "\n", meta_path(engine))


def read_meta(engine: Path) -> EngineMeta:
    path = meta_path(engine)
    if not path.is_file():
        raise ConfigError(
            f"{engine}: no metadata {path.name} beside it, so dpedge cannot tell which device and "
            "TensorRT version it was built for; rebuild it with --trt, which writes both"
        )
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        if values.get("format") != META_FORMAT:
            raise ConfigError(f"{path}: not a dpedge engine metadata file (expected format {META_FORMAT!r})")
        if values.get("version") == 1:
            raise ConfigError(
                f"{path}: metadata of an older dpedge, which did not bind the engine to it by hash: rebuild the engine"
            )
        if values.get("version") != META_VERSION:
            raise ConfigError(
                f"{path}: metadata version {values.get('version')} is not supported (this dpedge reads {META_VERSION})"
            )
        meta = EngineMeta(**values)
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError, AttributeError) as error:
        raise ConfigError(f"{path}: malformed engine metadata ({error})") from None
    for field_name in ("onnx", "manifest"):
        name = getattr(meta, field_name)
        if not is_file_name(name):
            raise ConfigError(f"{path}: its {field_name!r} must be a file name beside the engine, got {name!r}")
    return meta


def engine_graph(engine: Path, meta: EngineMeta) -> Path:
    """The ONNX the engine was built from, beside it, once its SHA-256 is the one the
    metadata recorded: an engine beside a re-exported graph (another --size, new weights)
    would be fed and read by the new graph's manifest, so it is refused."""
    graph = Path(engine).parent / meta.onnx
    if not graph.is_file():
        raise ConfigError(f"{Path(engine).name} was built from {meta.onnx}, which is not beside it")
    if sha256_file(graph) != meta.onnx_sha256:
        raise ConfigError(
            f"{Path(engine).name} was built from another {meta.onnx} than the one beside it (re-exported since?): "
            f"rebuild the engine here with {rebuild_command(meta)}"
        )
    return graph


def check_compatible(engine: Path, meta: EngineMeta, current: Target) -> None:
    """ConfigError unless the engine was built for this GPU with this TensorRT."""
    built = meta.target
    if (built.device, built.compute_capability, built.trt_version) == (
        current.device,
        current.compute_capability,
        current.trt_version,
    ):
        return
    raise ConfigError(
        f"{Path(engine).name} was built for {built.device} (compute {built.compute_capability}) with "
        f"TensorRT {built.trt_version}, but this machine has {current.device} (compute "
        f"{current.compute_capability}) with TensorRT {current.trt_version}; engines do not carry over "
        f"between devices or TensorRT versions: rebuild it here from {meta.onnx} with --trt "
        f"(precision {meta.precision})"
    )


def import_tensorrt() -> ModuleType:
    try:
        import tensorrt
    except ImportError as error:
        raise TensorRTUnavailable(f"tensorrt is not installed here ({error})") from None
    return tensorrt


def import_pycuda() -> ModuleType:
    """pycuda.driver, with a context on the first GPU (pycuda.autoinit)."""
    try:
        import pycuda.driver as cuda
    except ImportError as error:
        raise TensorRTUnavailable(f"pycuda is not installed here ({error})") from None
    try:
        import pycuda.autoinit  # noqa: F401
    # pycuda's driver errors (no device, no driver) derive from Exception only.
    except Exception as error:
        raise TensorRTUnavailable(f"no usable CUDA device here ({error})") from None
    return cuda


def current_target() -> Target:
    """This machine's GPU and TensorRT, or TensorRTUnavailable saying what is missing."""
    trt = import_tensorrt()
    cuda = import_pycuda()
    device = cuda.Context.get_device()
    major, minor = device.compute_capability()
    return Target(device.name(), f"{major}.{minor}", trt.__version__)


@functools.cache
def trt_logger(trt: ModuleType):
    """One logger for the process: TensorRT expects every builder and runtime to share it."""
    return trt.Logger(trt.Logger.WARNING)


@dataclass(frozen=True)
class IoTensor:
    name: str
    is_input: bool
    shape: tuple[int, ...]  # as the engine declares it; -1 marks a dynamic dimension
    dtype: np.dtype


def engine_io(trt: ModuleType, engine, api: TrtApi) -> list[IoTensor]:
    """The engine's inputs and outputs, in binding order for TensorRT < 10."""
    if api.tensor_io:
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        return [
            IoTensor(
                name,
                engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                tuple(engine.get_tensor_shape(name)),
                np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
            )
            for name in names
        ]
    return [
        IoTensor(
            engine.get_binding_name(i),
            engine.binding_is_input(i),
            tuple(engine.get_binding_shape(i)),
            np.dtype(trt.nptype(engine.get_binding_dtype(i))),
        )
        for i in range(engine.num_bindings)
    ]


def capture_engines(
    api: TrtApi, engines: dict[str, tuple[object, list[int]]], stream
) -> tuple[dict[str, CudaGraph], list[str]]:
    """(each engine's enqueue as a CUDA graph by role, a line for each engine that runs
    eagerly instead and why); `engines`: role → (context, bindings), captured in that order
    (a bundle's router first: its warm-up writes what the branches' warm-ups read)."""
    try:
        driver = cuda_graph_driver()
    except CudaGraphError as error:
        return {}, [f"{role}: runs eagerly, no CUDA graph: {error}" for role in engines]
    graphs, notes = {}, []
    for role, (context, bindings) in engines.items():
        try:
            graphs[role] = api.capture(driver, context, bindings, stream)
        except CudaGraphError as error:
            notes.append(f"{role}: runs eagerly, its CUDA graph capture failed: {error}")
            enqueued = api.execute(context, bindings, stream)  # the fallback, tried now rather than on the first sample
            stream.synchronize()
            if not enqueued:
                raise RuntimeError(
                    f"TensorRT could not enqueue the {role} engine after its CUDA graph capture failed ({error}); "
                    "run it without --cuda-graph"
                ) from None
    return graphs, notes


def clear_buffers(
    cuda: ModuleType, host: dict[str, np.ndarray], device: dict[str, object], stream, values: dict[str, float]
) -> None:
    """Every device buffer set to zero (or to `values`), before the warm-up enqueues of a
    capture: an engine run on whatever memory held could read indices out of range."""
    for name, buffer in host.items():
        buffer[...] = values.get(name, 0)
        if buffer.nbytes:
            cuda.memcpy_htod_async(device[name], buffer, stream)
    stream.synchronize()


class Execution:
    """An execution context with page-locked host and device buffers for every tensor,
    allocated once at the engine's own shapes (batch 1), which must be the manifest's: the
    frames copied in and the outputs copied out are checked against the manifest.

    Buffers take the engine's dtypes, which may differ from the manifest's: TensorRT 8
    turns the int64 `branch` output into int32. With `cuda_graph`, the enqueue is captured
    into a CUDA graph once (capture_engines), then launched instead; `graphs` is empty, and
    `graph_notes` says why, where it could not be."""

    def __init__(
        self,
        trt: ModuleType,
        cuda: ModuleType,
        engine,
        manifest: Manifest,
        api: TrtApi,
        path: Path,
        cuda_graph: bool = False,
    ) -> None:
        self.cuda = cuda
        self.engine = engine  # a context must not outlive its engine
        self.api = api
        self.context = engine.create_execution_context()
        self.stream = cuda.Stream()
        tensors = engine_io(trt, engine, api)
        specs = {spec.name: spec for spec in manifest.inputs + manifest.outputs}
        if sorted(t.name for t in tensors) != sorted(specs):
            raise ConfigError(
                f"{path}: engine tensors are {sorted(t.name for t in tensors)}, its manifest lists {sorted(specs)}"
            )
        self.inputs = [t.name for t in tensors if t.is_input]
        self.outputs = [t.name for t in tensors if not t.is_input]
        for tensor in tensors:  # a dynamic input runs at the manifest's shape (batch 1)
            if tensor.is_input and -1 in tensor.shape:
                self.context.set_input_shape(tensor.name, tuple(specs[tensor.name].shape))
        shapes = {t.name: tuple(self.context.get_tensor_shape(t.name)) if -1 in t.shape else t.shape for t in tensors}
        differ = [
            f"{name} {list(shape)} (manifest: {specs[name].shape})"
            for name, shape in shapes.items()
            if list(shape) != list(specs[name].shape)
        ]
        if differ:
            raise ConfigError(
                f"{path}: the engine's tensors are not its manifest's: {'; '.join(differ)}; rebuild the engine from the graph beside it"
            )
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, object] = {}  # pycuda DeviceAllocations
        for tensor in tensors:  # sized by the engine's own shapes: what it reads and writes
            shape = shapes[tensor.name]
            self.host[tensor.name] = cuda.pagelocked_empty(int(np.prod(shape)), tensor.dtype).reshape(shape)
            self.device[tensor.name] = cuda.mem_alloc(self.host[tensor.name].nbytes)
        self.bindings: list[int] = []
        if api.tensor_io:
            for tensor in tensors:
                self.context.set_tensor_address(tensor.name, int(self.device[tensor.name]))
        else:
            self.bindings = [int(self.device[t.name]) for t in tensors]
        self.cuda_graph = cuda_graph
        self.graphs: dict[str, CudaGraph] = {}
        self.graph_notes: list[str] = []
        if cuda_graph:
            clear_buffers(cuda, self.host, self.device, self.stream, {})
            self.graphs, self.graph_notes = capture_engines(api, {"engine": (self.context, self.bindings)}, self.stream)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda = self.cuda
        for name in self.inputs:
            np.copyto(self.host[name], feeds[name], casting="same_kind")
            cuda.memcpy_htod_async(self.device[name], self.host[name], self.stream)
        if "engine" in self.graphs:
            self.graphs["engine"].launch(self.stream)
            ok = True
        else:
            ok = self.api.execute(self.context, self.bindings, self.stream)
        for name in self.outputs:
            cuda.memcpy_dtoh_async(self.host[name], self.device[name], self.stream)
        self.stream.synchronize()
        if not ok:
            raise RuntimeError("TensorRT could not enqueue the engine (its log above says why)")
        return {name: self.host[name].copy() for name in self.outputs}


class BundleExecution:
    """A bundle's engines on one stream: the router, then the branch it picked, nothing
    else. Every tensor has one device buffer, so the branch reads the frames and the
    router's handoff tensors where the router left them; only the branch index comes back
    to the host between the two (a 4- or 8-byte copy and a stream synchronisation). The
    contexts share one scratch block, the largest engine's need: the bundle's memory is
    that of its largest branch, not the sum. Each sample's latency is split (`last_phases`):
    the router engine and the branch engine on the GPU (CUDA events on the stream), and the
    dispatch between them on the host (the index copied back, the synchronisation, the
    choice). With `cuda_graph`, each engine's enqueue is captured into a CUDA graph once
    at load (capture_engines) and launched instead of enqueued: the same copies, the same
    one branch per sample; an engine that cannot be captured runs eagerly (`graph_notes`)."""

    def __init__(
        self,
        trt: ModuleType,
        cuda: ModuleType,
        engines: dict[str, object],
        manifest: Manifest,
        api: TrtApi,
        path: Path,
        trained_budget: float | None,
        cuda_graph: bool = False,
    ) -> None:
        self.cuda, self.api = cuda, api
        self.engines = engines  # a context must not outlive its engine
        self.trained_budget = trained_budget
        self.stream = cuda.Stream()
        io = {role: engine_io(trt, engine, api) for role, engine in engines.items()}
        tensors: dict[str, IoTensor] = {}
        for role, listed in io.items():
            for tensor in listed:
                known = tensors.setdefault(tensor.name, tensor)
                if -1 in tensor.shape or known.shape != tensor.shape:
                    raise ConfigError(
                        f"{path.name}: the {role} engine's {tensor.name} is {list(tensor.shape)}, where the bundle needs "
                        f"{list(known.shape)} (static, the same in every engine): rebuild it"
                    )
        for spec in (manifest.input, next(o for o in manifest.outputs if o.name == FORECAST)):
            if spec.name not in tensors or list(tensors[spec.name].shape) != list(spec.shape):
                raise ConfigError(
                    f"{path.name}: the engines' {spec.name} is not the manifest's {spec.shape}: rebuild the bundle"
                )
        self.host = {
            name: cuda.pagelocked_empty(int(np.prod(t.shape)), t.dtype).reshape(t.shape) for name, t in tensors.items()
        }
        self.device = {name: cuda.mem_alloc(max(self.host[name].nbytes, 1)) for name in tensors}
        self.scratch_size = max(api.device_memory_size(engine) for engine in engines.values())
        self.scratch = cuda.mem_alloc(max(self.scratch_size, 1))
        self.contexts, self.bindings = {}, {}
        for role, engine in engines.items():
            context = api.context_without_memory(trt, engine)
            api.set_device_memory(context, int(self.scratch), self.scratch_size)
            if api.tensor_io:
                for tensor in io[role]:
                    context.set_tensor_address(tensor.name, int(self.device[tensor.name]))
            else:
                self.bindings[role] = [int(self.device[tensor.name]) for tensor in io[role]]
            self.contexts[role] = context
        self.router_inputs = [t.name for t in io["router"] if t.is_input]
        self.events = [cuda.Event() for _ in range(4)]  # router start/end, branch start/end on the stream
        self.last_phases: dict[str, float] = {}  # the last sample's (run) split of its latency
        self.cuda_graph = cuda_graph
        self.graphs: dict[str, CudaGraph] = {}
        self.graph_notes: list[str] = []
        if cuda_graph:  # the warm-ups read zero frames and the trained budget: a sample the router can route
            clear_buffers(
                cuda, self.host, self.device, self.stream, {BUDGET: 1.0 if trained_budget is None else trained_budget}
            )
            self.graphs, self.graph_notes = capture_engines(
                api,
                {role: (context, self.bindings.get(role, [])) for role, context in self.contexts.items()},
                self.stream,
            )

    def enqueue(self, role: str) -> None:
        if role in self.graphs:
            self.graphs[role].launch(self.stream)
            return
        if not self.api.execute(self.contexts[role], self.bindings.get(role, []), self.stream):
            raise RuntimeError(f"TensorRT could not enqueue the {role} engine (its log above says why)")

    def fetch(self, *names: str) -> None:
        for name in names:
            self.cuda.memcpy_dtoh_async(self.host[name], self.device[name], self.stream)
        self.stream.synchronize()

    def run(self, frames: np.ndarray, budget: float | None) -> tuple[np.ndarray, float, int]:
        """One sample's (forecast, FLOPs, branch) under `budget` (None: the trained one)."""
        budget = self.trained_budget if budget is None else budget
        np.copyto(self.host[INPUT], frames, casting="same_kind")
        self.cuda.memcpy_htod_async(self.device[INPUT], self.host[INPUT], self.stream)
        if "bypass" in self.contexts and budget is not None and budget >= 1.0:
            self.last_phases = {}  # one engine, no router: nothing to split
            self.enqueue("bypass")
            self.fetch(FORECAST, FLOPS, BRANCH)
            return self.host[FORECAST].astype(np.float32), float(self.host[FLOPS]), int(self.host[BRANCH])
        if BUDGET in self.router_inputs:
            self.host[BUDGET][...] = budget
            self.cuda.memcpy_htod_async(self.device[BUDGET], self.host[BUDGET], self.stream)
        router_start, router_end, branch_start, branch_end = self.events
        started = time.perf_counter()
        router_start.record(self.stream)
        self.enqueue("router")
        router_end.record(self.stream)
        self.fetch(BRANCH)
        routed = time.perf_counter()
        branch = int(self.host[BRANCH])
        if f"branch{branch}" not in self.contexts:
            raise DataError(f"the router chose branch {branch}, which the bundle does not hold: rebuild it")
        branch_start.record(self.stream)
        self.enqueue(f"branch{branch}")
        branch_end.record(self.stream)
        self.fetch(FORECAST, FLOPS)
        finished = time.perf_counter()
        router_gpu = router_start.time_till(router_end)
        self.last_phases = {
            "router_ms": router_gpu,
            "dispatch_ms": max((routed - started) * 1e3 - router_gpu, 0.0),
            "branch_ms": branch_start.time_till(branch_end),
            "total_ms": (finished - started) * 1e3,
        }
        return self.host[FORECAST].astype(np.float32), float(self.host[FLOPS]), branch


def checked_here(path: Path, meta: EngineMeta | BundleMeta) -> tuple[Target, Manifest]:
    """(this machine's target, the manifest of the graph the engine or bundle was built
    from), once TensorRT is here, the engine was built for this GPU and TensorRT, and its
    graph is the one beside it."""
    try:
        current = current_target()
    except TensorRTUnavailable as error:
        raise ConfigError(
            f"{error}; the trt backend needs TensorRT, pycuda and a CUDA GPU (a Jetson with JetPack)"
        ) from None
    check_compatible(path, meta, current)
    return current, read_manifest(engine_graph(path, meta))


class TensorRTBackend(Backend):
    """Loads `<model>.<device>.trt<version>.<precision>.engine`, or the `.bundle.json` of a
    pruned model's split bundle; its manifest is read from beside it (the ONNX file itself
    is not needed, but checked by hash when there). `threads` does not apply to a GPU.
    `cuda_graph`: each engine runs as a CUDA graph captured at load, where it can be
    (`cuda_graph_notes` says which engines could not, and why)."""

    name: ClassVar[str] = "trt"

    def __init__(
        self, manifest: Manifest, path: Path, meta: EngineMeta | BundleMeta, execution: Execution | BundleExecution
    ) -> None:
        super().__init__(manifest)
        self.path = path
        self.meta = meta
        self.execution = execution

    @classmethod
    def load(cls, path: Path, threads: int | None = None, cuda_graph: bool = False) -> TensorRTBackend:
        path = Path(path)
        if is_bundle(path):
            return cls.load_bundle(path, cuda_graph)
        if not path.is_file():
            raise ConfigError(f"{path}: no such engine file")
        meta = read_meta(path)
        current, manifest = checked_here(path, meta)
        trt, cuda = import_tensorrt(), import_pycuda()
        serialized = engine_bytes(path, meta)
        engine = trt.Runtime(trt_logger(trt)).deserialize_cuda_engine(serialized)
        if engine is None:
            raise ConfigError(
                f"{path}: TensorRT {trt.__version__} cannot deserialize this engine (truncated or corrupt?)"
            )
        return cls(
            manifest, path, meta, Execution(trt, cuda, engine, manifest, trt_api(current.trt_version), path, cuda_graph)
        )

    @classmethod
    def load_bundle(cls, path: Path, cuda_graph: bool = False) -> TensorRTBackend:
        meta = read_bundle(path)
        current, manifest = checked_here(path, meta)
        serialized = bundle_engines(path, meta)
        trt, cuda = import_tensorrt(), import_pycuda()
        runtime = trt.Runtime(trt_logger(trt))
        engines = {}
        for role, data in serialized.items():
            engines[role] = runtime.deserialize_cuda_engine(data)
            if engines[role] is None:
                raise ConfigError(
                    f"{path.name}: TensorRT {trt.__version__} cannot deserialize its {role} engine (truncated or corrupt?)"
                )
        return cls(
            manifest,
            path,
            meta,
            BundleExecution(
                trt, cuda, engines, manifest, trt_api(current.trt_version), path, manifest.trained_budget, cuda_graph
            ),
        )

    def set_budget(self, budget: float | None) -> None:
        """A bundle's router engine takes the budget as an input; a single engine does not
        (TensorRT's ONNX parser makes an input with a default, an initializer, a constant of
        the engine), so it runs the budget its graph was trained for."""
        if isinstance(self.execution, BundleExecution):
            super().set_budget(budget)
        elif budget is not None:
            raise ConfigError(
                "this single TensorRT engine runs a width-routed model at the budget it was trained for: build the "
                "split bundle (dpedge engine MODEL.onnx) to choose the budget at run time"
            )

    @property
    def last_phases(self) -> dict[str, float]:
        """A bundle's split of the last sample's latency (router, dispatch, branch ms); {}
        for a single engine."""
        return self.execution.last_phases if isinstance(self.execution, BundleExecution) else {}

    @property
    def cuda_graph_notes(self) -> list[str]:
        """With cuda_graph, one line for each engine that runs eagerly instead, and why."""
        return [f"{self.path.name}: {note}" for note in self.execution.graph_notes]

    def run_one(self, frames: np.ndarray) -> tuple[np.ndarray, float, int]:
        if isinstance(self.execution, BundleExecution):
            return self.execution.run(frames, self.budget)
        outputs = self.execution.run({self.manifest.input.name: frames})
        return outputs[FORECAST].astype(np.float32, copy=False), float(outputs[FLOPS]), int(outputs[BRANCH])

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "device": self.meta.device,
            "compute_capability": self.meta.compute_capability,
            "tensorrt": self.meta.trt_version,
            "precision": self.meta.precision,
            "power_mode": current_power_mode(None) or "unknown (no nvpmodel)",
            "threads": "n/a (GPU)",
            "layout": "split" if isinstance(self.execution, BundleExecution) else "single",
            "model": str(self.path),
            **(self.graph_description() if self.execution.cuda_graph else {}),
        }

    def graph_description(self) -> dict:
        """With cuda_graph: which engines run as CUDA graphs (by role; "engine" for a single
        engine) and, where one does not, why."""
        roles = self.execution.contexts if isinstance(self.execution, BundleExecution) else ["engine"]
        captured = {role: role in self.execution.graphs for role in roles}
        return {
            "cuda_graphs": captured,
            **({"cuda_graph_notes": self.execution.graph_notes} if self.execution.graph_notes else {}),
        }
