"""Reading trtexec's performance summary and TensorRT version from recorded real logs of
runs on Jetsons (samples/SOURCES.md says where each comes from)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from dynaprune_edge.bench.orin import RECORDED
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.profiling.trtexec import (
    parse_layer_profile,
    parse_trtexec_summary,
    trtexec_arguments,
    trtexec_version,
)

SAMPLES = Path(__file__).parent / "samples"


def test_parses_the_jetson_orin_nano_tensorrt_8_5_summary():
    summary = parse_trtexec_summary((SAMPLES / "trtexec_trt8502_jetson_orin_nano_fp16.log").read_text())
    assert summary["tensorrt"] == "8.5.2"
    assert summary["throughput_qps"] == 97.8649
    assert summary["latency_ms"] == {
        "min": 10.642,
        "max": 10.9861,
        "mean": 10.7971,
        "median": 10.7972,
        "p90": 10.9329,
        "p95": 10.949,
        "p99": 10.9744,
    }
    assert summary["gpu_compute_ms"] == {
        "min": 10.0343,
        "max": 10.3575,
        "mean": 10.1824,
        "median": 10.1851,
        "p90": 10.3206,
        "p95": 10.338,
        "p99": 10.356,
    }
    assert summary["enqueue_ms"]["p99"] == 2.15002
    assert summary["h2d_ms"]["median"] == 0.310486
    assert summary["d2h_ms"]["max"] == 0.312134


def test_parses_the_older_p99_only_summary_of_tensorrt_8_4():
    summary = parse_trtexec_summary((SAMPLES / "trtexec_trt8400_jetson_agx_xavier.log").read_text())
    assert summary["tensorrt"] == "8.4.0"
    assert summary["throughput_qps"] == 41087.7
    assert summary["gpu_compute_ms"] == {
        "min": 0.375977,
        "max": 0.403564,
        "mean": 0.388221,
        "median": 0.388443,
        "p99": 0.393188,
    }
    assert summary["latency_ms"]["p99"] == 0.420288


def test_parses_a_trimmed_tensorrt_10_summary_without_log_prefixes():
    summary = parse_trtexec_summary((SAMPLES / "trtexec_trt10_jetson_agx_thor_trimmed.log").read_text())
    assert summary == {
        "throughput_qps": 1.55139,
        "latency_ms": {
            "min": 634.412,
            "max": 684.747,
            "mean": 644.386,
            "median": 640.024,
            "p90": 664.195,
            "p95": 666.219,
            "p99": 684.747,
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


def test_the_command_line_names_the_engine_that_ran():
    xavier = trtexec_arguments((SAMPLES / "trtexec_trt8400_jetson_agx_xavier.log").read_text())
    assert xavier == {"loadEngine": "mnist16.trt", "batch": "16"}
    orin_nano = trtexec_arguments((SAMPLES / "trtexec_trt8502_jetson_orin_nano_fp16.log").read_text())
    assert orin_nano == {"onnx": "./yolox_s_leaky.onnx", "saveEngine": "./fp16.trt", "fp16": ""}
    assert trtexec_arguments((SAMPLES / "trtexec_trt10_jetson_agx_thor_trimmed.log").read_text()) == {}  # trimmed of it


def test_parses_a_recorded_per_layer_profile_in_execution_order():
    layers = parse_layer_profile(RECORDED.with_suffix(".profile.json").read_text())
    assert len(layers) == 73  # the {"count": 6610} header is not a layer
    assert layers[0] == {
        "name": "QuantizeLinear_2",
        "average_ms": 0.00474854,
        "median_ms": 0.004544,
        "percentage": 1.00949,
    }
    assert layers[1]["name"] == "features.0.0.weight + QuantizeLinear_8 + Conv_12 + PWN(Clip_16)"
    older = parse_layer_profile(
        '[{"count": 10}, {"name": "conv1", "timeMs": 2.0, "averageMs": 0.2, "percentage": 100}]'
    )
    assert older == [{"name": "conv1", "average_ms": 0.2, "percentage": 100.0}]  # TensorRT before 8.4: no medianMs


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not a trtexec --exportProfile JSON"),
        ('{"count": 3}', "expected a list of objects"),
        ('[{"count": 3}, 7]', "expected a list of objects"),
        ('[{"count": 3}, {"name": "conv1", "timeMs": 1.0}]', "'conv1' has no averageMs"),
        ('[{"count": 3}, {"name": "conv1", "averageMs": "fast"}]', "'conv1' has a time that is not a number"),
        ('[{"count": 3}]', "lists no layers"),
    ],
)
def test_a_malformed_layer_profile_is_refused(text, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_layer_profile(text)


def test_reading_trtexec_output_imports_neither_torch_nor_the_export_side():
    code = (
        "import sys, dynaprune_edge.profiling.trtexec; "
        "print([m for m in ('torch', 'fvcore', 'onnx', 'dynaprune_edge.export', 'dynaprune_edge.training') if m in sys.modules])"
    )
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
    )
