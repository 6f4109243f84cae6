"""The trtexec and polygraphy command lines: as given, and as `build_or_explain` prints them
where tensorrt does not import (it does not, here)."""

from __future__ import annotations

import importlib.util

import pytest

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.tensorrt.build import build_or_explain
from dynaprune_edge.export.tensorrt.commands import polygraphy_command, trtexec_command, trtexec_profile_command
from dynaprune_edge.export.tensorrt.names import calibration_cache_name
from dynaprune_edge.files import sha256_file

SHAPE = [1, 4, 1, 8, 8]
TENSORRT_HERE = importlib.util.find_spec("tensorrt") is not None

PROFILE = (
    "--warmUp=500 --iterations=500 --duration=0 --useSpinWait "
    "--exportTimes=model.orin.trt8.5.2.{p}.times.json --separateProfileRun --dumpProfile "
    "--exportProfile=model.orin.trt8.5.2.{p}.profile.json --profilingVerbosity=detailed "
    "--exportLayerInfo=model.orin.trt8.5.2.{p}.layers.json"
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
def test_without_tensorrt_the_outcome_is_the_trtexec_command_and_why(tmp_path, write_onnx, make_manifest):
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
def test_without_tensorrt_a_dynamic_graph_gets_shapes_and_jetpack_names_the_engine(tmp_path, write_onnx, make_manifest):
    onnx_path = write_onnx(tmp_path, dynamic=True)
    outcome = build_or_explain(onnx_path, make_manifest(), "fp32", None, tmp_path / "shared.cache", jetpack="6.1")
    assert "--saveEngine=model.orin.trt10.3.0.fp32.engine" in outcome.command
    assert "--timingCacheFile=shared.cache" in outcome.command
    assert "--shapes=frames:1x4x1x8x8" in outcome.command


@needs_no_tensorrt
def test_without_tensorrt_int8_says_whether_its_calibration_cache_exists(tmp_path, write_onnx, make_manifest):
    onnx_path = write_onnx(tmp_path)
    outcome = build_or_explain(onnx_path, make_manifest(), "int8", None, None)
    assert "--int8" in outcome.command and "--calib" not in outcome.command
    assert "int8 scales are placeholders" in outcome.reason
    calibration = calibration_cache_name("model", sha256_file(onnx_path), "8.5.2")
    (tmp_path / calibration).write_bytes(b"TRT-8502-EntropyCalibration2\n")
    outcome = build_or_explain(onnx_path, make_manifest(), "int8", None, None)
    assert f"--calib={calibration}" in outcome.command
    assert "placeholders" not in outcome.reason
