"""Engine, timing-cache and calibration-cache names carry the device and the TensorRT version."""

from __future__ import annotations

import pytest

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.tensorrt.names import calibration_cache_name, device_slug, engine_name, timing_cache_name


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
    assert (
        engine_name("sim", "NVIDIA GeForce RTX 3090", "10.3.0", "int8")
        == "sim.nvidia-geforce-rtx-3090.trt10.3.0.int8.engine"
    )
    assert timing_cache_name("Orin", "8.6.2.3") == "orin.trt8.6.2.timing.cache"
    assert calibration_cache_name("model", "ab12" * 16, "10.3.0.30") == "model.ab12ab12ab12.trt10.3.0.int8.calib"
