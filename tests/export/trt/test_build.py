"""The TensorRT build path without a GPU: one-line refusals of bad input, lazy imports, and
the build against a stand-in for the TensorRT/pycuda API."""

from __future__ import annotations

import functools
import itertools
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from dynaprune_edge.errors import ConfigError, DataError
from dynaprune_edge.export.tensorrt.build import build_or_explain
from dynaprune_edge.export.tensorrt.commands import trtexec_profile_command
from dynaprune_edge.export.tensorrt.names import calibration_cache_name
from dynaprune_edge.files import sha256_file
from dynaprune_edge.runtime.tensorrt import read_meta
from tests.trt_stand_ins import fake_builder_config

SHAPE = [1, 4, 1, 8, 8]


def test_user_errors_are_one_line_config_errors(tmp_path, write_onnx, make_manifest):
    onnx_path = write_onnx(tmp_path)
    manifest = make_manifest()
    with pytest.raises(ConfigError, match="unknown precision 'tf32'"):
        build_or_explain(onnx_path, manifest, "tf32", None, None)
    with pytest.raises(ConfigError, match="no such ONNX file"):
        build_or_explain(tmp_path / "missing.onnx", make_manifest("missing.onnx"), "fp16", None, None)
    with pytest.raises(ConfigError, match="the manifest describes other.onnx, not model.onnx"):
        build_or_explain(onnx_path, make_manifest("other.onnx"), "fp16", None, None)
    with pytest.raises(ConfigError, match="unknown JetPack '4.6'"):
        build_or_explain(onnx_path, manifest, "fp16", None, None, jetpack="4.6")
    with pytest.raises(DataError, match=r"frames must have shape \(batch, 4, 1, 8, 8\)"):
        build_or_explain(onnx_path, manifest, "int8", np.zeros((3, 4, 1, 8, 9), np.float32), None)


def test_importing_the_builder_does_not_import_tensorrt_pycuda_or_polygraphy():
    code = (
        "import sys, dynaprune_edge.export.tensorrt.build, dynaprune_edge.export.tensorrt.calibrator, "
        "dynaprune_edge.export.tensorrt.commands, dynaprune_edge.export.tensorrt.names, "
        "dynaprune_edge.export.tensorrt.polygraphy; "
        "print([m for m in ('tensorrt', 'pycuda', 'polygraphy', 'torch') if m in sys.modules])"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )


# --- the build path, against a stand-in for TensorRT and pycuda --------------------------


class FakeHostMemory(bytes):
    """IHostMemory: bytes-like."""


def fake_modules(version: str, log: list) -> tuple[types.ModuleType, types.ModuleType]:
    """tensorrt and pycuda.driver as far as the builder uses them (`install_fake_tensorrt`
    adds the device); `log` records what it did. The fake build feeds the int8 calibrator like TensorRT does: cache first, else batches."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16", INT8="int8")
    trt.nptype = lambda dtype: dtype

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            log.append("calibrator")

    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    class Input:
        name, shape, dtype = "frames", tuple(SHAPE), np.float32

    class Network:
        num_inputs = 1

        def get_input(self, index):
            return Input()

    class Parser:
        num_errors = 0

        def __init__(self, network, logger) -> None:
            pass

        def parse_from_file(self, path):
            log.append(("parse", Path(path).name))
            return True

    class Builder:
        def __init__(self, logger) -> None:
            pass

        def create_network(self, flags):
            log.append(("network flags", flags))
            return Network()

        def create_builder_config(self):
            return fake_builder_config(log)()

        def build_serialized_network(self, network, config):
            calibrator = config.int8_calibrator
            if calibrator is not None:
                cached = calibrator.read_calibration_cache()
                log.append(("calibration cache read", cached))
                if cached is None:
                    while (batch := calibrator.get_batch(["frames"])) is not None:
                        log.append(("batch", batch))
                    calibrator.write_calibration_cache(FakeHostMemory(b"scales"))
            return FakeHostMemory(b"engine bytes")

    trt.Builder, trt.OnnxParser = Builder, Parser

    cuda = types.ModuleType("pycuda.driver")
    addresses = itertools.count(4096)
    cuda.mem_alloc = lambda nbytes: next(addresses)
    cuda.memcpy_htod = lambda device, host: log.append(("htod", device, float(host.sum())))
    return trt, cuda


@pytest.fixture
def fake_tensorrt(install_fake_tensorrt):
    return functools.partial(install_fake_tensorrt, fake_modules)


@pytest.mark.parametrize("version, flags", [("8.5.2.2", 1), ("10.3.0", 0)])
def test_builds_writes_engine_metadata_and_timing_cache(
    tmp_path, write_onnx, make_manifest, fake_tensorrt, version, flags
):
    log = fake_tensorrt(version)
    onnx_path = write_onnx(tmp_path)
    outcome = build_or_explain(onnx_path, make_manifest(), "fp16", None, None, workspace_mib=256)
    short = ".".join(version.split(".")[:3])
    engine = tmp_path / f"model.orin.trt{short}.fp16.engine"
    assert outcome.engine_path == engine and outcome.reason is None
    assert engine.read_bytes() == b"engine bytes"
    assert outcome.command == trtexec_profile_command(engine.name)
    assert outcome.polygraphy.startswith("not checked: polygraphy")  # not installed here, or fails on the stand-in
    assert ("network flags", flags) in log and ("flag", "fp16") in log and ("workspace", 256 << 20) in log
    assert (tmp_path / f"orin.trt{short}.timing.cache").read_bytes() == b"+timings"
    meta = read_meta(engine)
    assert (meta.device, meta.compute_capability, meta.trt_version, meta.precision) == ("Orin", "8.7", version, "fp16")
    assert (meta.onnx, meta.manifest) == ("model.onnx", "model.dpedge.json")
    assert meta.onnx_sha256 == sha256_file(onnx_path) and meta.engine_sha256 == sha256_file(engine)
    assert json.loads((tmp_path / f"{engine.name}.json").read_text())["format"] == "dpedge-trt-engine"
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_engine_whose_outputs_differ_from_onnxruntime_is_not_written(
    tmp_path, write_onnx, make_manifest, fake_tensorrt, monkeypatch
):
    from dynaprune_edge.export.tensorrt import build

    fake_tensorrt("8.5.2.2")
    monkeypatch.setattr(
        build, "polygraphy_check", lambda *args: "FAILED (polygraphy's log above lists the outputs that differ): …"
    )
    with pytest.raises(
        ConfigError,
        match=r"model.orin.trt8.5.2.fp16.engine not written: the engine's outputs differ from onnxruntime's",
    ):
        build_or_explain(write_onnx(tmp_path), make_manifest(), "fp16", None, None)
    assert not list(tmp_path.glob("*.engine*")) and not list(tmp_path.glob(".*.tmp"))


def test_the_timing_cache_is_loaded_before_and_saved_after_the_build(
    tmp_path, write_onnx, make_manifest, fake_tensorrt
):
    fake_tensorrt("8.5.2.2")
    cache = tmp_path / "shared.cache"
    cache.write_bytes(b"earlier")
    build_or_explain(write_onnx(tmp_path), make_manifest(), "fp32", None, cache)
    assert cache.read_bytes() == b"earlier+timings"


def test_int8_calibrates_on_the_frames_then_reuses_the_cache(tmp_path, write_onnx, make_manifest, fake_tensorrt):
    log = fake_tensorrt("8.6.2.3")
    onnx_path = write_onnx(tmp_path)
    frames = np.stack([np.full(SHAPE[1:], value, np.float32) for value in (1.0, 2.0, 3.0)])
    build_or_explain(onnx_path, make_manifest(), "int8", frames, None)
    assert ("flag", "int8") in log
    size = int(np.prod(SHAPE))
    assert [entry for entry in log if entry[0] == "htod"] == [("htod", 4096, size * v) for v in (1.0, 2.0, 3.0)]
    assert [entry for entry in log if entry[0] == "batch"] == [("batch", [4096])] * 3
    cache = tmp_path / calibration_cache_name("model", sha256_file(onnx_path), "8.6.2.3")
    assert cache.read_bytes() == b"scales"

    log.clear()
    build_or_explain(onnx_path, make_manifest(), "int8", None, None)
    assert ("calibration cache read", b"scales") in log and not [e for e in log if e[0] == "batch"]


def test_a_re_exported_graph_does_not_build_with_the_scales_of_the_one_it_replaced(
    tmp_path, write_onnx, make_manifest, fake_tensorrt
):
    fake_tensorrt("8.6.2.3")
    frames = np.stack([np.full(SHAPE[1:], 1.0, np.float32)])
    build_or_explain(write_onnx(tmp_path), make_manifest(), "int8", frames, None)
    replaced = write_onnx(tmp_path, dynamic=True)  # another graph at the same path
    with pytest.raises(ConfigError, match="int8 needs calibration frames"):
        build_or_explain(replaced, make_manifest(), "int8", None, None)


def test_int8_without_frames_or_cache_is_refused(tmp_path, write_onnx, make_manifest, fake_tensorrt):
    fake_tensorrt("10.3.0")
    with pytest.raises(
        ConfigError, match=r"int8 needs calibration frames .* model\.[0-9a-f]{12}\.trt10\.3\.0\.int8\.calib"
    ):
        build_or_explain(write_onnx(tmp_path), make_manifest(), "int8", None, None)


def test_tensorrt_older_than_8_5_is_refused(tmp_path, write_onnx, make_manifest, fake_tensorrt):
    fake_tensorrt("8.4.1.5")
    with pytest.raises(ConfigError, match=r"TensorRT 8.4.1.5 is older than 8.5 \(JetPack 5.1\)"):
        build_or_explain(write_onnx(tmp_path), make_manifest(), "fp16", None, None)
