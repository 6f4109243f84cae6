"""The TensorRT path's names and numbers: engine and cache file names, precisions, tolerances."""

from __future__ import annotations

import re

from dynaprune_edge.errors import ConfigError

PRECISIONS = ("fp32", "fp16", "int8")
# docs/design.md, "TensorRT and the Jetson AGX Orin". Names the engine in the trtexec
# command when TensorRT is not here to ask.
JETPACK_TENSORRT = {"5.1": "8.5.2", "6.0": "8.6.2", "6.1": "10.3.0", "6.2": "10.3.0"}
# The CUDA name of the Jetson AGX Orin's GPU (trtexec prints "Selected Device: Orin").
ORIN = "Orin"
# onnxruntime (fp32, CPU) vs the engine: (atol, rtol) per precision. `branch` is an integer,
# so a sample routed differently fails at any of these.
PARITY_TOLERANCES = {"fp32": (1e-4, 1e-3), "fp16": (1e-2, 1e-2), "int8": (5e-2, 5e-2)}


def device_slug(device: str) -> str:
    """ "Orin" → "orin", "NVIDIA GeForce RTX 3090" → "nvidia-geforce-rtx-3090"."""
    slug = re.sub(r"[^a-z0-9]+", "-", device.lower()).strip("-")
    if not slug:
        raise ConfigError(f"cannot name an engine after the device {device!r}")
    return slug


def short_version(trt_version: str) -> str:
    """major.minor.patch: "8.5.2.2" → "8.5.2" (the build number does not go into file names)."""
    return ".".join(trt_version.split(".")[:3])


def engine_name(onnx_stem: str, device: str, trt_version: str, precision: str) -> str:
    return f"{onnx_stem}.{device_slug(device)}.trt{short_version(trt_version)}.{precision}.engine"


def timing_cache_name(device: str, trt_version: str) -> str:
    """Timing caches hold per-kernel timings of one GPU and TensorRT, for any model: one
    file per device and version, shared by the models in a folder."""
    return f"{device_slug(device)}.trt{short_version(trt_version)}.timing.cache"


def calibration_cache_name(onnx_stem: str, onnx_sha256: str, trt_version: str) -> str:
    """INT8 scales of one graph; portable across GPUs, not across TensorRT versions. Named by
    the graph's content too: a re-export at the same path (other weights, other --size)
    must not build with the scales of the graph it replaced."""
    return f"{onnx_stem}.{onnx_sha256[:12]}.trt{short_version(trt_version)}.int8.calib"


def parity_tolerances(precision: str) -> tuple[float, float]:
    return PARITY_TOLERANCES[check_precision(precision)]


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"unknown precision {precision!r}; known: {', '.join(PRECISIONS)}")
    return precision


def check_jetpack(jetpack: str) -> str:
    if jetpack not in JETPACK_TENSORRT:
        raise ConfigError(f"unknown JetPack {jetpack!r}; known: {', '.join(JETPACK_TENSORRT)}")
    return jetpack
