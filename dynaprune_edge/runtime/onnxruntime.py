"""onnxruntime backends: `ort` (CPU) and `ort-cuda` (CUDA GPU, needs onnxruntime-gpu).

onnxruntime is imported inside functions: the core install (numpy, typer, rich) must be
able to import this package and list the backends without it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import numpy as np

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.hardware import cpu_model
from dynaprune_edge.runtime.base import Backend
from dynaprune_edge.runtime.manifest import BRANCH, FLOPS, FORECAST, LAYOUTS, Manifest, read_manifest

INSTALL_HINT = "pip install 'dynaprune-edge[export]' (or onnxruntime-gpu for CUDA)"


def import_onnxruntime() -> ModuleType:
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"onnxruntime is not installed: {INSTALL_HINT}") from None
    return onnxruntime


def session_options(threads: int | None, level: str = "ORT_ENABLE_ALL"):
    """Sequential execution on `threads` intra-op threads (None: onnxruntime's default,
    one per physical core); `level` names an onnxruntime GraphOptimizationLevel.

    Only errors are logged: the graph optimiser warns, once per fused node, that it cannot
    rename an outer-scope input inside the `If` branches ("Implicit input name … cannot be
    safely updated"), hundreds of lines per routed export that change nothing (it keeps
    the name, and parity is checked on the optimised graph)."""
    ort = import_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    return options


def onnx_file(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such ONNX file")
    return path


def open_session(path: Path | bytes, options, providers: list[str], label: str | None = None):
    """An InferenceSession of a file or of serialized bytes (named `label` in errors), or a
    ConfigError naming it when onnxruntime rejects it."""
    ort = import_onnxruntime()
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    rejected = (
        state.Fail,
        state.InvalidArgument,
        state.InvalidGraph,
        state.InvalidProtobuf,
        state.NotImplemented,
        state.EPFail,
    )
    try:
        return ort.InferenceSession(path if isinstance(path, bytes) else str(path), options, providers=providers)
    except rejected as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(f"{label or path}: onnxruntime {ort.__version__} cannot load this model: {message}") from None


def check_session(session, manifest: Manifest, path: Path) -> None:
    """The graph must take and return what its manifest promises; symbolic dimensions in
    the graph accept any size."""
    inputs = session.get_inputs()
    expected = manifest.input
    if len(inputs) != 1 or inputs[0].name != expected.name:
        names = ", ".join(i.name for i in inputs)
        raise ConfigError(f"{path}: graph inputs are [{names}], its manifest expects [{expected.name}]")
    shape = inputs[0].shape
    if len(shape) != len(expected.shape) or any(
        isinstance(dim, int) and dim != want for dim, want in zip(shape, expected.shape)
    ):
        raise ConfigError(f"{path}: graph input {expected.name} has shape {shape}, its manifest says {expected.shape}")
    if inputs[0].type != "tensor(float)":
        raise ConfigError(f"{path}: graph input {expected.name} is {inputs[0].type}, expected tensor(float)")
    outputs = sorted(o.name for o in session.get_outputs())
    promised = sorted(o.name for o in manifest.outputs)
    if outputs != promised or not {FORECAST, FLOPS, BRANCH} <= set(outputs):
        raise ConfigError(
            f"{path}: graph outputs are {outputs}, its manifest lists {promised} "
            f"(both must hold {FORECAST}, {FLOPS}, {BRANCH})"
        )


def split_sessions(path: Path, manifest: Manifest, open_graph):
    """The split layout of the graph at `path` (read, its manifest checked, by the caller)."""
    try:
        import onnx
    except ImportError:
        raise ConfigError("the split layout cuts the graph with onnx: pip install 'dynaprune-edge[export]'") from None
    from dynaprune_edge.runtime.split import SplitSessions, split_routed_graph

    return SplitSessions(split_routed_graph(onnx.load(str(path))), open_graph, manifest.trained_budget)


def gpu_model() -> str:
    """The Jetson board name (device tree) or the first GPU nvidia-smi lists."""
    jetson = Path("/proc/device-tree/model")
    if jetson.is_file():
        return jetson.read_text().strip("\x00\n ")
    try:
        names = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown CUDA device"
    return names.splitlines()[0].strip() if names.strip() else "unknown CUDA device"


class OrtBackend(Backend):
    name: ClassVar[str] = "ort"
    providers: ClassVar[list[str]] = ["CPUExecutionProvider"]

    def __init__(self, manifest: Manifest, session, path: Path, threads: int | None, split=None) -> None:
        super().__init__(manifest)
        self.session = session
        self.path = path
        self.threads = threads
        self.split = split  # runtime/split.py SplitSessions, or None: the graph as it is

    @property
    def layout(self) -> str:
        return "single" if self.split is None else "split"

    @classmethod
    def check_providers(cls, ort: ModuleType) -> None:
        """Fail before building a session whose providers this onnxruntime lacks."""

    @classmethod
    def load(cls, path: Path, threads: int | None = None, layout: str | None = None) -> OrtBackend:
        """layout: "single" or "split" (runtime/split.py); None: the manifest's (what the
        export measured faster)."""
        path = onnx_file(path)
        manifest = read_manifest(path)
        layout = manifest.layout if layout is None else layout
        if layout not in LAYOUTS:
            raise ConfigError(f"--layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        if layout == "split" and manifest.mode == "dense":
            raise ConfigError(
                f"{path.name} is a dense graph: there are no branches to split (--layout split is for pruned exports)"
            )
        ort = import_onnxruntime()
        cls.check_providers(ort)
        options = session_options(threads)
        session = open_session(path, options, cls.providers)
        check_session(session, manifest, path)
        split = None
        if layout == "split":
            split = split_sessions(
                path,
                manifest,
                lambda graph, label: open_session(graph, options, cls.providers, f"{path.name}, {label}"),
            )
        return cls(manifest, session, path, threads, split)

    def run_one(self, frames: np.ndarray) -> tuple[np.ndarray, float, int]:
        if self.split is not None:
            return self.split.run(self.inputs(frames), self.budget)
        forecast, flops, branch = self.session.run([FORECAST, FLOPS, BRANCH], self.inputs(frames))
        return np.asarray(forecast, np.float32), float(flops), int(branch)

    def device(self) -> str:
        return cpu_model()

    def describe(self) -> dict:
        return {
            "backend": self.name,
            "providers": self.session.get_providers(),
            "onnxruntime": import_onnxruntime().__version__,
            "threads": self.threads if self.threads is not None else "default",
            "layout": self.layout,
            "device": self.device(),
            "model": str(self.path),
        }


class OrtCudaBackend(OrtBackend):
    name: ClassVar[str] = "ort-cuda"
    # CPU stays as fallback: onnxruntime places shape arithmetic there by design.
    providers: ClassVar[list[str]] = ["CUDAExecutionProvider", "CPUExecutionProvider"]

    @classmethod
    def check_providers(cls, ort: ModuleType) -> None:
        available = ort.get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise ConfigError(
                f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (it has {', '.join(available)}); "
                "install onnxruntime-gpu instead of onnxruntime"
            )

    @classmethod
    def load(cls, path: Path, threads: int | None = None, layout: str | None = None) -> OrtCudaBackend:
        backend = super().load(path, threads, layout)
        # onnxruntime silently falls back to CPU when the CUDA libraries fail to load.
        if backend.session.get_providers()[0] != "CUDAExecutionProvider":
            raise ConfigError(
                "onnxruntime could not start its CUDA provider (CUDA/cuDNN libraries missing or "
                "mismatched with this onnxruntime-gpu build); its log above says which"
            )
        return backend

    def device(self) -> str:
        return gpu_model()
