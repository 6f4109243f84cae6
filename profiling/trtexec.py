"""Reading trtexec's performance summary of a run on the device."""

from __future__ import annotations

import re

from dynaprune_edge.errors import ConfigError

_SUMMARY = "=== Performance summary ==="
_LOG_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s*)+")  # "[02/26/2024-10:43:06] [I] "
_NUMBER = r"(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_STAT = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=?\s*" + _NUMBER + r"\s*ms")
_TIMINGS = {
    "Latency": "latency_ms",
    "Enqueue Time": "enqueue_ms",
    "H2D Latency": "h2d_ms",
    "GPU Compute Time": "gpu_compute_ms",
    "D2H Latency": "d2h_ms",
}


def trtexec_version(text: str) -> str | None:
    """The TensorRT version a trtexec log names: "[TensorRT v8502]" → "8.5.2",
    "[TensorRT v100300]" → "10.3.0" (8.x packs it as major·1000, 10.x as major·10000)."""
    line = re.search(r"TensorRT version: (\d+\.\d+\.\d+)", text)
    if line:
        return line.group(1)
    packed = re.search(r"\[TensorRT v(\d+)\]", text)
    if not packed:
        return None
    number = int(packed.group(1))
    major, rest = divmod(number, 10000 if number >= 10000 else 1000)
    return f"{major}.{rest // 100}.{rest % 100}"


def parse_trtexec_summary(text: str) -> dict:
    """The last "=== Performance summary ===" of a trtexec log, so that a run on the device
    can be ingested: {"throughput_qps": float, "latency_ms": {...}, "gpu_compute_ms": {...},
    and, when the log has them, "enqueue_ms", "h2d_ms", "d2h_ms" and "tensorrt"}. Each timing
    is {"min", "max", "mean", "median", "p90", "p95", "p99"} in milliseconds, as far as the
    log gives them (older trtexec prints only p99). "Latency" is host latency: H2D + GPU
    compute + D2H."""
    start = text.rfind(_SUMMARY)
    if start < 0:
        raise ConfigError(
            "no '=== Performance summary ===' in this trtexec output (did the run finish? "
            "--skipInference and --buildOnly print none)"
        )
    summary: dict = {}
    version = trtexec_version(text)
    if version is not None:
        summary["tensorrt"] = version
    for raw in text[start + len(_SUMMARY):].splitlines():
        line = _LOG_PREFIX.sub("", raw.strip())
        if line.startswith("==="):
            break
        name, colon, rest = line.partition(":")
        if not colon:
            continue
        if name == "Throughput":
            throughput = re.match(r"\s*" + _NUMBER + r"\s*qps", rest)
            if throughput:
                summary["throughput_qps"] = float(throughput.group(1))
        elif name in _TIMINGS:
            stats = {
                (f"p{match.group(2)}" if match.group(2) else match.group(1)): float(match.group(3))
                for match in _STAT.finditer(rest)
            }
            if stats:
                summary[_TIMINGS[name]] = stats
    if "throughput_qps" not in summary and "latency_ms" not in summary:
        raise ConfigError("the trtexec performance summary holds neither Throughput nor Latency (truncated log?)")
    return summary
