"""TensorRT engine building without a GPU: names, command lines, the path taken where
tensorrt is missing (it is, here), trtexec output parsing on recorded real logs, and the
build path against a stand-in for the TensorRT/pycuda API."""

from __future__ import annotations

import importlib.util
import itertools
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from dynaprune_edge.errors import ConfigError, DataError
from dynaprune_edge.export import tensorrt as export_trt
from dynaprune_edge.export.tensorrt import (
    build_or_explain,
    calibration_cache_name,
    device_slug,
    engine_name,
    parse_trtexec_summary,
    polygraphy_command,
    timing_cache_name,
    trtexec_command,
    trtexec_profile_command,
    trtexec_version,
)
from dynaprune_edge.runtime.manifest import Manifest, TensorSpec
from dynaprune_edge.runtime.tensorrt import read_meta

SAMPLES = Path(__file__).parent / "samples"
SHAPE = [1, 4, 1, 8, 8]
TENSORRT_HERE = importlib.util.find_spec("tensorrt") is not None


def make_manifest(onnx_name: str = "model.onnx") -> Manifest:
    return Manifest(
        backbone="simvp",
        dataset="synthetic",
        mode="bucketed",
        onnx=onnx_name,
        inputs=[TensorSpec("frames", SHAPE, "float32")],
        outputs=[
            TensorSpec("forecast", SHAPE, "float32"),
            TensorSpec("flops", [], "float32"),
            TensorSpec("bucket", [], "int64"),
        ],
        mean=[0.0],
        std=[1.0],
        width_levels=[0.5, 1.0],
        buckets=[],
        dense_flops=1.0,
        flops_convention="1 multiply-add = 1 FLOP",
        versions={},
    )


def write_onnx(folder: Path, dynamic: bool = False) -> Path:
    """A stand-in graph with the exported graph's input; only its file and input matter here."""
    dims = ["batch", *SHAPE[1:]] if dynamic else SHAPE
    graph = helper.make_graph(
        [helper.make_node("Identity", ["frames"], ["forecast"])],
        "stand_in",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("forecast", TensorProto.FLOAT, dims)],
    )
    path = folder / "model.onnx"
    onnx.save(helper.make_model(graph), str(path))
    (folder / "model.dpedge.json").write_text(make_manifest().to_json())
    return path


# --- names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "device, slug",
    [
        ("Orin", "orin"),
        ("NVIDIA GeForce RTX 3090", "nvidia-geforce-rtx-3090"),
        ("NVIDIA Jetson AGX Orin (64GB)", "nvidia-jetson-agx-orin-64gb"),
        ("  A100-SXM4-80GB ", "a100-sxm4-80gb"),
    ],
)
def test_device_slug(device, slug):
    assert device_slug(device) == slug


def test_device_slug_refuses_a_name_with_nothing_to_keep():
    with pytest.raises(ConfigError, match="cannot name an engine"):
        device_slug("  --  ")


def test_engine_and_cache_names_carry_device_and_tensorrt_version():
    assert engine_name("model", "Orin", "8.5.2.2", "fp16") == "model.orin.trt8.5.2.fp16.engine"
    assert engine_name("sim", "NVIDIA GeForce RTX 3090", "10.3.0", "int8") == "sim.nvidia-geforce-rtx-3090.trt10.3.0.int8.engine"
    assert timing_cache_name("Orin", "8.6.2.3") == "orin.trt8.6.2.timing.cache"
    assert calibration_cache_name("model", "10.3.0.30") == "model.trt10.3.0.int8.calib"


# --- command lines -----------------------------------------------------------------------

PROFILE = (
    "--warmUp=500 --iterations=500 --duration=0 --useSpinWait "
    "--exportTimes=model.orin.trt8.5.2.{p}.times.json --separateProfileRun --dumpProfile "
    "--exportProfile=model.orin.trt8.5.2.{p}.profile.json"
)


def command(precision: str, **options) -> str:
    options.setdefault("dynamic", False)
    options.setdefault("timing_cache", "orin.trt8.5.2.timing.cache")
    return trtexec_command(
        "model.onnx", f"model.orin.trt8.5.2.{precision}.engine", precision, "frames", SHAPE, **options
    )


def test_trtexec_fp32_command():
    assert command("fp32") == (
        "trtexec --onnx=model.onnx --saveEngine=model.orin.trt8.5.2.fp32.engine "
        "--timingCacheFile=orin.trt8.5.2.timing.cache --memPoolSize=workspace:1024 " + PROFILE.format(p="fp32")
    )


def test_trtexec_fp16_command_of_a_dynamic_graph_gives_the_shapes():
    assert command("fp16", dynamic=True, workspace_mib=2048) == (
        "trtexec --onnx=model.onnx --saveEngine=model.orin.trt8.5.2.fp16.engine --fp16 "
        "--timingCacheFile=orin.trt8.5.2.timing.cache --shapes=frames:1x4x1x8x8 "
        "--memPoolSize=workspace:2048 " + PROFILE.format(p="fp16")
    )


def test_trtexec_int8_command_reads_the_calibration_cache():
    assert command("int8", calibration_cache="model.trt8.5.2.int8.calib") == (
        "trtexec --onnx=model.onnx --saveEngine=model.orin.trt8.5.2.int8.engine --int8 "
        "--calib=model.trt8.5.2.int8.calib --timingCacheFile=orin.trt8.5.2.timing.cache "
        "--memPoolSize=workspace:1024 " + PROFILE.format(p="int8")
    )
    assert "--calib" not in command("int8")


def test_trtexec_command_quotes_paths_and_refuses_unknown_precisions():
    assert "'--onnx=my model.onnx'" in trtexec_command(
        "my model.onnx", "e.engine", "fp32", "frames", SHAPE, dynamic=False, timing_cache="t.cache"
    )
    with pytest.raises(ConfigError, match="unknown precision 'bf16'"):
        command("bf16")


def test_profile_and_polygraphy_commands():
    assert trtexec_profile_command("model.orin.trt8.5.2.fp16.engine") == (
        "trtexec --loadEngine=model.orin.trt8.5.2.fp16.engine " + PROFILE.format(p="fp16")
    )
    assert polygraphy_command("model.onnx", "model.orin.trt8.5.2.fp16.engine", "fp16") == (
        "polygraphy run model.onnx --onnxrt --save-inputs model.parity-inputs.json "
        "--save-outputs model.ort-outputs.json && polygraphy run model.orin.trt8.5.2.fp16.engine "
        "--model-type engine --trt --load-inputs model.parity-inputs.json "
        "--load-outputs model.ort-outputs.json --atol 0.01 --rtol 0.01"
    )


# --- where tensorrt does not import ------------------------------------------------------

needs_no_tensorrt = pytest.mark.skipif(TENSORRT_HERE, reason="tensorrt is installed here")


@needs_no_tensorrt
def test_without_tensorrt_the_outcome_is_the_trtexec_command_and_why(tmp_path):
    onnx_path = write_onnx(tmp_path)
    outcome = build_or_explain(onnx_path, make_manifest(), "fp16", None, None)
    assert outcome.engine_path is None
    assert outcome.command == (
        "trtexec --onnx=model.onnx --saveEngine=model.orin.trt8.5.2.fp16.engine --fp16 "
        "--timingCacheFile=orin.trt8.5.2.timing.cache --memPoolSize=workspace:1024 " + PROFILE.format(p="fp16")
    )
    assert outcome.reason == (
        "tensorrt is not installed here (No module named 'tensorrt'); build the engine on the Jetson, "
        f"in the folder holding model.onnx and model.dpedge.json: {outcome.command}"
    )
    assert "\n" not in outcome.reason
    assert outcome.polygraphy == "not checked: no engine was built here"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.dpedge.json", "model.onnx"]


@needs_no_tensorrt
def test_without_tensorrt_a_dynamic_graph_gets_shapes_and_jetpack_names_the_engine(tmp_path):
    onnx_path = write_onnx(tmp_path, dynamic=True)
    outcome = build_or_explain(onnx_path, make_manifest(), "fp32", None, tmp_path / "shared.cache", jetpack="6.1")
    assert "--saveEngine=model.orin.trt10.3.0.fp32.engine" in outcome.command
    assert "--timingCacheFile=shared.cache" in outcome.command
    assert "--shapes=frames:1x4x1x8x8" in outcome.command


@needs_no_tensorrt
def test_without_tensorrt_int8_says_whether_its_calibration_cache_exists(tmp_path):
    onnx_path = write_onnx(tmp_path)
    outcome = build_or_explain(onnx_path, make_manifest(), "int8", None, None)
    assert "--int8" in outcome.command and "--calib" not in outcome.command
    assert "int8 scales are placeholders" in outcome.reason
    (tmp_path / "model.trt8.5.2.int8.calib").write_bytes(b"TRT-8502-EntropyCalibration2\n")
    outcome = build_or_explain(onnx_path, make_manifest(), "int8", None, None)
    assert "--calib=model.trt8.5.2.int8.calib" in outcome.command
    assert "placeholders" not in outcome.reason


def test_user_errors_are_one_line_config_errors(tmp_path):
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


# --- trtexec output ----------------------------------------------------------------------


def test_parses_the_jetson_orin_nano_tensorrt_8_5_summary():
    summary = parse_trtexec_summary((SAMPLES / "trtexec_trt8502_jetson_orin_nano_fp16.log").read_text())
    assert summary["tensorrt"] == "8.5.2"
    assert summary["throughput_qps"] == 97.8649
    assert summary["latency_ms"] == {
        "min": 10.642, "max": 10.9861, "mean": 10.7971, "median": 10.7972,
        "p90": 10.9329, "p95": 10.949, "p99": 10.9744,
    }
    assert summary["gpu_compute_ms"] == {
        "min": 10.0343, "max": 10.3575, "mean": 10.1824, "median": 10.1851,
        "p90": 10.3206, "p95": 10.338, "p99": 10.356,
    }
    assert summary["enqueue_ms"]["p99"] == 2.15002
    assert summary["h2d_ms"]["median"] == 0.310486
    assert summary["d2h_ms"]["max"] == 0.312134


def test_parses_the_older_p99_only_summary_of_tensorrt_8_4():
    summary = parse_trtexec_summary((SAMPLES / "trtexec_trt8400_jetson_agx_xavier.log").read_text())
    assert summary["tensorrt"] == "8.4.0"
    assert summary["throughput_qps"] == 41087.7
    assert summary["gpu_compute_ms"] == {
        "min": 0.375977, "max": 0.403564, "mean": 0.388221, "median": 0.388443, "p99": 0.393188,
    }
    assert summary["latency_ms"]["p99"] == 0.420288


def test_parses_a_trimmed_tensorrt_10_summary_without_log_prefixes():
    summary = parse_trtexec_summary((SAMPLES / "trtexec_trt10_jetson_agx_thor_trimmed.log").read_text())
    assert summary == {
        "throughput_qps": 1.55139,
        "latency_ms": {
            "min": 634.412, "max": 684.747, "mean": 644.386, "median": 640.024,
            "p90": 664.195, "p95": 666.219, "p99": 684.747,
        },
    }


def test_the_last_summary_counts_and_a_log_without_one_is_refused():
    orin = (SAMPLES / "trtexec_trt8502_jetson_orin_nano_fp16.log").read_text()
    thor = (SAMPLES / "trtexec_trt10_jetson_agx_thor_trimmed.log").read_text()
    assert parse_trtexec_summary(orin + thor)["throughput_qps"] == 1.55139
    with pytest.raises(ConfigError, match="no '=== Performance summary ==='"):
        parse_trtexec_summary("[I] Engine built in 12.3 sec.\n&&&& PASSED TensorRT.trtexec [TensorRT v8502]")
    with pytest.raises(ConfigError, match="neither Throughput nor Latency"):
        parse_trtexec_summary("=== Performance summary ===\n[I] Total Host Walltime: 3.0 s\n")


@pytest.mark.parametrize(
    "text, version",
    [
        ("&&&& RUNNING TensorRT.trtexec [TensorRT v8502] # trtexec", "8.5.2"),
        ("&&&& PASSED TensorRT.trtexec [TensorRT v8601] # trtexec", "8.6.1"),
        ("&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec", "10.3.0"),
        ("&&&& PASSED TensorRT.trtexec [TensorRT v101300] [b35] # trtexec", "10.13.0"),
        ("[03/28/2024-07:10:12] [I] TensorRT version: 8.6.3", "8.6.3"),
        ("no version here", None),
    ],
)
def test_trtexec_version(text, version):
    assert trtexec_version(text) == version


def test_importing_the_builder_does_not_import_tensorrt_pycuda_or_polygraphy():
    code = (
        "import sys, dynaprune_edge.export.tensorrt; "
        "print([m for m in ('tensorrt', 'pycuda', 'polygraphy') if m in sys.modules])"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


# --- the build path, against a stand-in for TensorRT and pycuda --------------------------


class FakeHostMemory(bytes):
    """IHostMemory: bytes-like."""


def fake_modules(version: str, log: list) -> dict[str, types.ModuleType]:
    """tensorrt and pycuda as far as the builder uses them; `log` records what it did. The
    fake build feeds the int8 calibrator like TensorRT does: cache first, else batches."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16", INT8="int8")

    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            log.append("calibrator")

    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    class Input:
        name, shape = "frames", tuple(SHAPE)

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

    class TimingCache:
        def __init__(self, data: bytes) -> None:
            self.data = data

        def serialize(self):
            return FakeHostMemory(self.data + b"+timings")

    class Config:
        int8_calibrator = None

        def set_memory_pool_limit(self, pool, size):
            log.append(("workspace", size))

        def set_flag(self, flag):
            log.append(("flag", flag))

        def create_timing_cache(self, data):
            return TimingCache(data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Builder:
        def __init__(self, logger) -> None:
            pass

        def create_network(self, flags):
            log.append(("network flags", flags))
            return Network()

        def create_builder_config(self):
            return Config()

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
    device = types.SimpleNamespace(name=lambda: "Orin", compute_capability=lambda: (8, 7))
    cuda.Context = types.SimpleNamespace(get_device=lambda: device)
    pycuda = types.ModuleType("pycuda")
    pycuda.driver = cuda
    return {"tensorrt": trt, "pycuda": pycuda, "pycuda.driver": cuda, "pycuda.autoinit": types.ModuleType("pycuda.autoinit")}


@pytest.fixture
def fake_tensorrt(monkeypatch):
    def install(version: str) -> list:
        log: list = []
        for name, module in fake_modules(version, log).items():
            monkeypatch.setitem(sys.modules, name, module)
        return log

    return install


@pytest.mark.parametrize("version, flags", [("8.5.2.2", 1), ("10.3.0", 0)])
def test_builds_writes_engine_metadata_and_timing_cache(tmp_path, fake_tensorrt, version, flags):
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
    assert meta.onnx_sha256 == export_trt.sha256_file(onnx_path)
    assert json.loads((tmp_path / f"{engine.name}.json").read_text())["format"] == "dpedge-trt-engine"
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_timing_cache_is_loaded_before_and_saved_after_the_build(tmp_path, fake_tensorrt):
    fake_tensorrt("8.5.2.2")
    cache = tmp_path / "shared.cache"
    cache.write_bytes(b"earlier")
    build_or_explain(write_onnx(tmp_path), make_manifest(), "fp32", None, cache)
    assert cache.read_bytes() == b"earlier+timings"


def test_int8_calibrates_on_the_frames_then_reuses_the_cache(tmp_path, fake_tensorrt):
    log = fake_tensorrt("8.6.2.3")
    onnx_path = write_onnx(tmp_path)
    frames = np.stack([np.full(SHAPE[1:], value, np.float32) for value in (1.0, 2.0, 3.0)])
    build_or_explain(onnx_path, make_manifest(), "int8", frames, None)
    assert ("flag", "int8") in log
    size = int(np.prod(SHAPE))
    assert [entry for entry in log if entry[0] == "htod"] == [("htod", 4096, size * v) for v in (1.0, 2.0, 3.0)]
    assert [entry for entry in log if entry[0] == "batch"] == [("batch", [4096])] * 3
    assert (tmp_path / "model.trt8.6.2.int8.calib").read_bytes() == b"scales"

    log.clear()
    build_or_explain(onnx_path, make_manifest(), "int8", None, None)
    assert ("calibration cache read", b"scales") in log and not [e for e in log if e[0] == "batch"]


def test_int8_without_frames_or_cache_is_refused(tmp_path, fake_tensorrt):
    fake_tensorrt("10.3.0")
    with pytest.raises(ConfigError, match=r"int8 needs calibration frames .* model.trt10.3.0.int8.calib"):
        build_or_explain(write_onnx(tmp_path), make_manifest(), "int8", None, None)


def test_tensorrt_older_than_8_5_is_refused(tmp_path, fake_tensorrt):
    fake_tensorrt("8.4.1.5")
    with pytest.raises(ConfigError, match=r"TensorRT 8.4.1.5 is older than 8.5 \(JetPack 5.1\)"):
        build_or_explain(write_onnx(tmp_path), make_manifest(), "fp16", None, None)
