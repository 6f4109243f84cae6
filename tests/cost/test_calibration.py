"""orin-emu calibrated on another GPU: a recorded TensorRT per-layer profile of an INT8
MobileNetV2 on a TITAN RTX (dynaprune_edge/bench/recorded/SOURCES.md), scaled to the Orin."""

from __future__ import annotations

from pathlib import Path

import pytest

from dynaprune_edge.bench.orin import recorded_calibration
from dynaprune_edge.cost.calibration import SM_RATES, Gpu, LayerWork, layer_works, scale_to_orin
from dynaprune_edge.cost.orin import Device
from dynaprune_edge.errors import ConfigError

PROFILE, LAYER_INFO, TITAN_RTX, TIMED_MEDIAN_MS = recorded_calibration()
SAMPLES = Path(__file__).parents[1] / "profiling" / "samples"


def orin(power_mode: str = "MAXN") -> Device:
    return Device("agx-orin-64gb", power_mode, "int8")


def test_the_recorded_gpu_has_its_published_rates():
    """TITAN RTX: 672 GB/s and 261 INT8 TOPS are NVIDIA's figures for it; they follow from
    the log's bus width and clocks and the Turing per-SM rates."""
    assert (TITAN_RTX.name, TITAN_RTX.compute_capability, TITAN_RTX.sms) == ("NVIDIA TITAN RTX", "7.5", 72)
    assert TITAN_RTX.bytes_per_second() / 1e9 == pytest.approx(672, rel=0.001)
    assert TITAN_RTX.matrix_ops_per_second("int8") / 1e12 == pytest.approx(261, rel=0.001)
    assert TITAN_RTX.matrix_ops_per_second("fp32") == TITAN_RTX.vector_ops_per_second()  # Turing has no TF32


@pytest.mark.parametrize(
    "lines, expected",
    [
        (
            [
                "[06/10/2021-07:04:39] [I] === Device Information ===",
                "[06/10/2021-07:04:39] [I] Selected Device: GeForce RTX 2080 Ti",
                "[06/10/2021-07:04:39] [I] Compute Capability: 7.5",
                "[06/10/2021-07:04:39] [I] SMs: 68",
                "[06/10/2021-07:04:39] [I] Compute Clock Rate: 1.65 GHz",
                "[06/10/2021-07:04:39] [I] Memory Bus Width: 352 bits (ECC disabled)",
                "[06/10/2021-07:04:39] [I] Memory Clock Rate: 7 GHz",
            ],
            Gpu("GeForce RTX 2080 Ti", "7.5", 68, 1.65, 352, 7.0),
        ),
        (
            [
                "[04/07/2025-23:59:33] [I] Selected Device: NVIDIA GeForce RTX 3070",
                "[04/07/2025-23:59:33] [I] Compute Capability: 8.6",
                "[04/07/2025-23:59:33] [I] SMs: 46",
                "[04/07/2025-23:59:33] [I] Memory Bus Width: 256 bits (ECC disabled)",
                "[04/07/2025-23:59:33] [I] Application Compute Clock Rate: 1.845 GHz",
                "[04/07/2025-23:59:33] [I] Application Memory Clock Rate: 7.001 GHz",
            ],  # TensorRT 10 prints application clocks
            Gpu("NVIDIA GeForce RTX 3070", "8.6", 46, 1.845, 256, 7.001),
        ),
    ],
)
def test_the_device_section_of_a_trtexec_log(lines, expected):
    assert (
        Gpu.from_trtexec_log("\n".join(["[I] === Model Options ===", *lines, "[I] TensorRT version: 8.4.1"]))
        == expected
    )


def test_a_log_without_a_device_section_names_no_gpu():
    orin_nano = (SAMPLES / "trtexec_trt8502_jetson_orin_nano_fp16.log").read_text()  # its poster kept the summary only
    assert Gpu.from_trtexec_log(orin_nano) is None


def test_every_layer_of_the_recorded_engine_is_priced():
    works = layer_works(LAYER_INFO)
    calibration = scale_to_orin(PROFILE, LAYER_INFO, TITAN_RTX, orin(), TIMED_MEDIAN_MS)
    assert len(calibration.layers) == 73 and all(layer.bound != "unknown" for layer in calibration.layers)
    assert sum(layer.measured_ms for layer in calibration.layers) == pytest.approx(
        TIMED_MEDIAN_MS
    )  # per-layer run → timed run
    first_conv = works[
        "features.0.0.weight + QuantizeLinear_8 + Conv_12 + PWN(Clip_16)"
    ]  # 3→32 channels, 3×3, stride 2, 112×112 out
    assert first_conv.ops == 2 * 32 * 112 * 112 * 3 * 9 and first_conv.matrix and first_conv.precision == "int8"
    assert (
        first_conv.bytes == 4 * 224 * 224 + 32 * 112 * 112 + 864 + 4 * 32
    )  # input padded to 4 channels; int8 weights, fp32 bias
    depthwise = works["features.1.conv.0.0.weight + QuantizeLinear_25 + Conv_29 + PWN(Clip_33)"]
    assert not depthwise.matrix  # one channel per group: CUDA cores


def test_memory_bound_layers_scale_with_bandwidth_and_lower_power_modes_cost_more():
    """At batch 1 the INT8 MobileNetV2 is memory-bound on both GPUs at MAXN: each layer's
    work scales by 672 / 204.8 GB/s. At 30W and 15W the Orin's compute shrinks with its SMs
    and clock (memory less so), layers turn compute-bound and the prediction grows."""
    maxn, watts30, watts15 = (
        scale_to_orin(PROFILE, LAYER_INFO, TITAN_RTX, orin(mode), TIMED_MEDIAN_MS) for mode in ("MAXN", "30W", "15W")
    )
    assert {layer.bound for layer in maxn.layers} == {"memory"}
    assert all(
        layer.ratio == pytest.approx(TITAN_RTX.bytes_per_second() / orin().bytes_per_second()) for layer in maxn.layers
    )
    assert any(layer.bound == "compute" for layer in watts15.layers)
    assert maxn.orin_ms < watts30.orin_ms < watts15.orin_ms


def test_a_compute_bound_layer_scales_with_the_tensor_core_peaks():
    big = {
        "Name": "conv",
        "ParameterType": "Convolution",
        "Kernel": [3, 3],
        "Groups": 1,
        "Inputs": [
            {
                "Dimensions": [1, 512, 64, 64],
                "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format",
            }
        ],
        "Outputs": [
            {
                "Dimensions": [1, 512, 64, 64],
                "Format/Datatype": "Thirty-two wide channel vectorized row major Int8 format",
            }
        ],
    }
    info = {"Layers": [big]}
    profile = [
        {"name": "Reformatting CopyNode for Input Tensor 0 to conv", "average_ms": 0.02},
        {"name": "conv", "average_ms": 1.0},
        {"name": "tiny", "average_ms": 0.01},
    ]
    calibration = scale_to_orin(profile, info, TITAN_RTX, orin(), 1.03)
    (copy, conv, tiny) = calibration.layers
    assert conv.bound == "compute" and conv.ratio == pytest.approx(
        TITAN_RTX.matrix_ops_per_second("int8") / orin().matrix_ops_per_second()
    )
    assert copy.bound == "memory"  # TensorRT's copy of conv's input: that tensor read and written
    assert copy.ratio == pytest.approx(TITAN_RTX.bytes_per_second() / orin().bytes_per_second())
    assert tiny.bound == "unknown"  # no layer information: scaled by the bandwidth ratio
    assert conv.orin_ms == pytest.approx(
        0.008 + (1.0 - 0.01) * conv.ratio
    )  # the Orin's kernel overhead + the work beyond the fixed cost
    assert LayerWork.of(big).ops == 2 * 512 * 64 * 64 * 512 * 9


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda gpu, info: (Gpu("Orin", "8.7", 16, 1.3, 256, 3.2), info),
            "is an Orin: its trtexec figures are measurements",
        ),
        (
            lambda gpu, info: (Gpu("NVIDIA H100", "9.0", 132, 1.98, 5120, 2.6), info),
            "no peak rates for compute capability 9.0",
        ),
        (
            lambda gpu, info: (gpu, {"Layers": ["conv1", "conv2"]}),
            "build the engine with --profilingVerbosity=detailed",
        ),
        (lambda gpu, info: (gpu, {"Bindings": []}), "not a trtexec --exportLayerInfo JSON"),
    ],
)
def test_what_cannot_be_scaled_is_refused(change, message):
    gpu, info = change(TITAN_RTX, LAYER_INFO)
    with pytest.raises(ConfigError, match=message):
        scale_to_orin(PROFILE, info, gpu, orin(), TIMED_MEDIAN_MS)


def test_the_per_sm_rates_reproduce_each_whitepaper_figure():
    """Each compute capability's rates times its reference GPU's SMs and boost clock give
    the whitepaper's TFLOPS (the source string names them)."""
    reference = {"7.5": (72, 1.77, 261), "8.0": (108, 1.41, 624), "8.6": (82, 1.695, 284), "8.9": (128, 2.52, 660.6)}
    for capability, (sms, ghz, int8_tops) in reference.items():
        assert SM_RATES[capability].int8 * sms * ghz / 1e3 == pytest.approx(int8_tops, rel=0.02)
        assert f"{int8_tops:g} INT8 TOPS" in SM_RATES[capability].source
