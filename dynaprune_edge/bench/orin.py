"""`dpedge bench orin`: the orin-emu roofline against published Jetson AGX Orin latencies.

Each published row names a well-known network, its precision, the device's power mode and
where the figure comes from. The network is built here (dynaprune_edge.bench.reference_models,
random weights: latency does not depend on them), exported to ONNX and emulated on the same
module, power mode and precision. The table shows published ms, emulated ms and the error.

Two passes, kept apart:
1. the emulator's constants as they stand (docs/orin-emulator.md), on every row;
2. the three modelling constants (compute and memory efficiency, per-kernel overhead) fitted
   on the rows marked `fit` only (least squares on log latency, a grid search), then
   reported on the rows marked `check` only, which the fit never saw.
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from dynaprune_edge.bench.results import write_results
from dynaprune_edge.bench.tables import (
    orin_calibrated_grid,
    orin_constants_line,
    orin_grid,
    orin_summary_lines,
    rich_table,
)
from dynaprune_edge.cost.calibration import Gpu, scale_to_orin
from dynaprune_edge.cost.orin import DEFAULT_MODULE, MODULES, Device, constant
from dynaprune_edge.cost.roofline import GraphRoofline
from dynaprune_edge.profiling.trtexec import parse_layer_info, parse_layer_profile

MLPERF_V31 = (
    "MLPerf Inference v3.1, closed, NVIDIA, system Orin_TRT (Jetson AGX Orin Developer Kit 64G, JetPack 5.1.1, TensorRT 8.5.2): "
    "mlcommons/inference_results_v3.1 closed/NVIDIA/results/Orin_TRT/resnet50/SingleStream/performance/run_1/mlperf_log_summary.txt, "
    "50th percentile latency 636 µs (p90 640 µs); INT8 as NVIDIA's MLPerf ResNet-50 engines are; MaxP system, no clock caps"
)
MLPERF_V31_BERT = (
    "MLPerf Inference v3.1, closed, NVIDIA, system Orin_TRT (Jetson AGX Orin Developer Kit 64G, JetPack 5.1.1, TensorRT 8.5.2): "
    "mlcommons/inference_results_v3.1 closed/NVIDIA/results/Orin_TRT/bert-99/SingleStream/performance/run_1/mlperf_log_summary.txt "
    "(135,443 queries of one SQuAD v1.1 sample each): min 3.273, p50 4.212, p90 5.705, p97 6.387, p99 6.487, p99.9 6.495, max 6.546 ms. "
    "BERT-Large, INT8 (bert-99 engines run in INT8 with NVIDIA's fused-attention QKVToContext and SkipLayerNorm plugins, "
    "unpadded variable sequence lengths: closed/NVIDIA/code/bert/tensorrt/README.md, as in inference_results_v4.0). "
    "Row: p99 against 384 tokens. Assumed: the latency grows with a sample's length, and at least 2.4 % of the 10,833 "
    "samples are full 384-token windows (SQuAD v1.1 dev has 10,570 questions; every window of a split context but its last "
    "is full), so p99 and p99.9 time 384-token samples; the plateau p99 6.487 / p99.9 6.495 ms agrees. Loadgen latency "
    "(includes the harness's copies); NVIDIA's Orin SingleStream config captures CUDA graphs (closed/NVIDIA/configs/bert/"
    "SingleStream/__init__.py in inference_results_v4.1: use_graphs = True; v3.1's assumed the same); MaxP system, no clock caps"
)
ULTRALYTICS = (
    "Ultralytics docs, guides/nvidia-jetson.md, 'NVIDIA Jetson AGX Orin Developer Kit (64GB)' (JetPack 6.2, TensorRT 10.3, "
    "Ultralytics 8.3.157): 'Inference time (ms/im)', batch 1, 640×640, without pre/post-processing; the power mode is not "
    "stated (the guide's set-up runs `nvpmodel -m 0` and `jetson_clocks`: MAXN assumed)"
)


@dataclass(frozen=True)
class Published:
    model: str  # a key of REFERENCE_MODELS
    precision: str
    ms: float
    role: str  # "fit": the fit may use it; "check": it never does
    source: str
    power_mode: str = "MAXN"
    module: str = DEFAULT_MODULE
    explicit_int8: bool = (
        False  # int8 quantized explicitly (Q/DQ, plugins), as NVIDIA's MLPerf BERT: its attention fuses
    )


YOLO_MS = {  # model: (fp32, fp16, int8) ms, from ULTRALYTICS
    "yolo11n": (3.93, 2.55, 2.18),
    "yolo11s": (6.52, 3.65, 2.81),
    "yolo11m": (12.53, 6.25, 4.69),
    "yolo11l": (16.11, 8.08, 6.12),
    "yolo11x": (28.50, 13.55, 9.40),
}
FIT_ROWS = {("yolo11n", "fp16"), ("yolo11m", "fp16"), ("yolo11x", "fp16")}  # small, middle and large, one precision
PUBLISHED = [
    Published("resnet50", "int8", 0.636, "check", MLPERF_V31),
    *(
        Published(model, precision, ms, "fit" if (model, precision) in FIT_ROWS else "check", ULTRALYTICS)
        for model, times in YOLO_MS.items()
        for precision, ms in zip(("fp32", "fp16", "int8"), times)
    ),
    Published("bert_large", "int8", 6.487, "check", MLPERF_V31_BERT, explicit_int8=True),
]

RECORDED = Path(__file__).parent / "recorded" / "trex_mobilenet_qat_titan_rtx"
"""A TensorRT per-layer profile of an INT8 MobileNetV2 measured on a TITAN RTX (recorded/SOURCES.md)."""

EFFICIENCIES = np.linspace(0.05, 1.0, 39)
OVERHEADS_US = np.linspace(0.0, 60.0, 61)


@dataclass
class Terms:
    """A row's emulated kernels reduced to what the fitted constants scale: per kernel the
    compute and memory time at efficiency 1, the kernel count and the If count."""

    compute_ms: np.ndarray
    memory_ms: np.ndarray
    kernels: int
    branches: int

    def ms(self, compute_efficiency: float, memory_efficiency: float, overhead_us: float) -> float:
        work = np.maximum(self.compute_ms / compute_efficiency, self.memory_ms / memory_efficiency).sum()
        return float(work + (self.kernels * overhead_us + self.branches * constant("branch_overhead_us")) / 1e3)


def terms(roofline: GraphRoofline) -> Terms:
    (route,) = roofline.routes  # the reference networks have no branches
    kernels = [k for k in route if k.ops != ["If"]]
    return Terms(
        compute_ms=np.array([k.compute_ms * constant("compute_efficiency") for k in kernels]),
        memory_ms=np.array([k.memory_ms * constant("memory_efficiency") for k in kernels]),
        kernels=len(kernels),
        branches=len(route) - len(kernels),
    )


@dataclass
class Row:
    model: str
    precision: str
    power_mode: str
    role: str
    published_ms: float
    emulated_ms: float  # with the constants as they stand
    fitted_ms: float | None  # with the constants fitted on the fit rows
    kernels: int
    gflops: float  # 2 × multiply-adds, as the peak rates count
    source: str

    @property
    def error(self) -> float:
        return self.emulated_ms / self.published_ms - 1

    @property
    def fitted_error(self) -> float | None:
        return None if self.fitted_ms is None else self.fitted_ms / self.published_ms - 1

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "error": self.error,
            "fitted_error": self.fitted_error,
            "label": "published: measured by the source; emulated: orin-emu",
        }


def exported(name: str, folder: Path) -> Path:
    """FOLDER/NAME.onnx, built and exported once (random weights)."""
    from dynaprune_edge.bench.reference_models import REFERENCE_MODELS, to_onnx

    path = folder / f"{name}.onnx"
    if not path.is_file():
        print(f"building and exporting {name}", file=sys.stderr)
        model, shape = REFERENCE_MODELS[name]()
        folder.mkdir(parents=True, exist_ok=True)
        to_onnx(model, shape, path)
    return path


def fit(rows: list[tuple[Published, Terms]]) -> tuple[float, float, float]:
    """(compute efficiency, memory efficiency, overhead µs) minimising the squared error of
    log latency over `rows` (a grid search: three parameters, a few rows)."""
    best, best_loss = (1.0, 1.0, 0.0), float("inf")
    for ce, me, ko in itertools.product(EFFICIENCIES, EFFICIENCIES, OVERHEADS_US):
        loss = sum(np.log(t.ms(ce, me, ko) / row.ms) ** 2 for row, t in rows)
        if loss < best_loss:
            best, best_loss = (float(ce), float(me), float(ko)), loss
    return best


def summary(errors: list[float]) -> dict:
    """Median absolute error and the worst ratio either way (target: ≤ 25 %, ≤ 2×)."""
    ratios = [1 + e for e in errors]
    return {
        "rows": len(errors),
        "median_abs_error": float(np.median(np.abs(errors))),
        "worst_ratio": float(max(max(r, 1 / r) for r in ratios)),
    }


def recorded_calibration() -> tuple[list[dict], dict, Gpu, float]:
    """RECORDED's profile, its layer information and the GPU its log named; the median
    GPU compute time of its timed run (trex keeps min, max, mean, median, p90, p95, p99)."""
    metadata = json.loads(RECORDED.with_suffix(".metadata.json").read_text())
    return (
        parse_layer_profile(RECORDED.with_suffix(".profile.json").read_text()),
        parse_layer_info(RECORDED.with_suffix(".layers.json").read_text()),
        Gpu.from_fields(metadata["device_information"]),
        metadata["performance_summary"]["GPU Compute Time"][3],
    )


def calibration_rows(out: Path) -> list[dict]:
    """MobileNetV2 INT8 on the 64 GB Orin at each power mode, EMULATED two ways: first
    principles (the roofline of the network built here) and RECORDED scaled to the Orin."""
    import onnx

    profile, layer_info, gpu, measured_ms = recorded_calibration()
    model = onnx.load(str(exported("mobilenet_v2", out)))
    rows = []
    for mode in MODULES[DEFAULT_MODULE]:
        device = Device(DEFAULT_MODULE, mode, "int8")
        roofline = GraphRoofline(model, device)
        rows.append(
            {
                "power_mode": mode,
                "first_principles_ms": sum(roofline.route_ms()),
                "kernels": len(roofline.routes[0]),
                "calibrated_ms": scale_to_orin(profile, layer_info, gpu, device, measured_ms).orin_ms,
                "layers": len(profile),
                "measured_on": gpu.name,
                "measured_ms": measured_ms,
            }
        )
    return rows


def document(rows: list[Row], fitted: tuple[float, float, float], calibrated: list[dict]) -> dict:
    """What results.json holds: the rows, the constants as they stand and fitted, the error
    summaries of each pass, and the `calibration_rows`."""
    names = ("compute_efficiency", "memory_efficiency", "kernel_overhead_us")
    return {
        "rows": [r.as_dict() for r in rows],
        "constants": {name: constant(name) for name in names},
        "fitted": dict(zip(names, fitted)),
        "as_is_all_rows": summary([r.error for r in rows]),
        "as_is_check_rows": summary([r.error for r in rows if r.role == "check"]),
        "fitted_check_rows": summary([r.fitted_error for r in rows if r.role == "check"]),
        "calibrated": calibrated,
    }


def bench(out: Path, as_json: bool, console: Console) -> list[Row]:
    import onnx

    models: dict[str, onnx.ModelProto] = {}
    evaluated = []
    for row in PUBLISHED:
        if row.model not in models:
            models[row.model] = onnx.load(str(exported(row.model, out)))
        roofline = GraphRoofline(
            models[row.model], Device(row.module, row.power_mode, row.precision), explicit_int8=row.explicit_int8
        )
        evaluated.append((row, roofline, terms(roofline)))
    fitted = fit([(row, t) for row, _, t in evaluated if row.role == "fit"])
    rows = [
        Row(
            row.model,
            row.precision,
            row.power_mode,
            row.role,
            row.ms,
            sum(roofline.route_ms()),
            t.ms(*fitted),
            t.kernels,
            sum(k.operations for k in roofline.routes[0] if k.matrix) / 1e9,
            row.source,
        )
        for row, roofline, t in evaluated
    ]
    result = document(rows, fitted, calibration_rows(out))
    write_results(result, out, benchmark="orin")
    if as_json:
        print(json.dumps(result))
        return rows
    console.print(
        rich_table(orin_grid(result["rows"], "orin-emu against published Jetson AGX Orin latencies (batch 1)"))
    )
    for line in orin_summary_lines(result):
        console.print(line)
    console.print(
        rich_table(
            orin_calibrated_grid(result["calibrated"], "MobileNetV2 INT8 on the Orin (64 GB), EMULATED two ways")
        )
    )
    console.print(orin_constants_line(result))
    console.print(f"[dim]rows in {out / 'results.json'}[/dim]")
    return rows
