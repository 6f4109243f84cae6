"""orin-emu calibrated on another NVIDIA GPU: per-layer times that TensorRT measured there,
scaled to the Jetson AGX Orin by the ratio of the two GPUs' roofline terms.

A first-principles roofline (dynaprune_edge.cost.roofline) has to guess how well each
kernel runs. A TensorRT profile measured on a desktop or cloud GPU knows it, for the very
kernels the engine runs, so scaling those times to the Orin is closer than guessing from
scratch. The inputs are what trtexec writes (`dpedge export --trt` prints the line):
- `--exportProfile`: per-layer average ms (trtexec's separate profiling run);
- `--exportLayerInfo` (with `--profilingVerbosity=detailed`): each layer's tensors, formats,
  weights and convolution parameters, from which its operations and bytes follow;
- the log's "=== Device Information ===": the GPU (compute capability, SMs, clocks, bus).

Per layer: work = max(operations / peak rate, bytes / bandwidth) on each GPU (tensor cores
for convolutions and matrix products at the layer's precision, CUDA cores for the rest),
and the measured time beyond the source GPU's per-layer fixed cost is multiplied by
work on the Orin / work on the source; the Orin's per-kernel overhead is added back. The
sustained share of peak is assumed equal on both GPUs (it cancels in the ratio). The
per-layer run is slower than the timed run (events between layers), so its times are
first scaled to sum to the timed run's median GPU compute time; the lightest layer's
share then stands for the source's fixed cost per layer (an estimate: no layer is free).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from dynaprune_edge.cost.orin import Device, constant
from dynaprune_edge.errors import ConfigError

TURING = "NVIDIA Turing GPU Architecture whitepaper (2018), Quadro RTX 6000 (72 SMs, 1770 MHz): 16.3 FP32 TFLOPS, 130.5 FP16 tensor TFLOPS, 261 INT8 TOPS; no TF32"
A100 = "NVIDIA A100 Tensor Core GPU Architecture whitepaper (2020), A100 (108 SMs, 1410 MHz): 19.5 FP32 TFLOPS, 156 TF32, 312 FP16 tensor TFLOPS, 624 INT8 TOPS"
GA102 = "NVIDIA Ampere GA102 GPU Architecture whitepaper (2020), RTX 3090 (82 SMs, 1695 MHz): 35.6 FP32 TFLOPS, 35.6 TF32, 142 FP16 tensor TFLOPS (FP16 accumulate), 284 INT8 TOPS"
ADA = "NVIDIA Ada GPU Architecture whitepaper (2022), RTX 4090 (128 SMs, 2520 MHz): 82.6 FP32 TFLOPS, 82.6 TF32, 330.3 FP16 tensor TFLOPS (FP16 accumulate), 660.6 INT8 TOPS"


@dataclass(frozen=True)
class SmRates:
    """Dense peak operations per SM per clock of one compute capability (each whitepaper's
    figure divided by its SMs × boost clock)."""

    fp32: float  # CUDA cores (2 per FMA)
    tf32: float | None  # tensor cores; None: fp32 matrix products run on the CUDA cores
    fp16: float
    int8: float
    source: str


SM_RATES = {
    "7.5": SmRates(128, None, 1024, 2048, TURING),
    "8.0": SmRates(128, 1024, 2048, 4096, A100),
    "8.6": SmRates(256, 256, 1024, 2048, GA102),
    "8.9": SmRates(256, 256, 1024, 2048, ADA),
}

_DEVICE_FIELD = re.compile(
    r"^(?:\[[^\]]*\]\s*)*(Selected Device|Compute Capability|SMs|(?:Application )?Compute Clock Rate|"
    r"Memory Bus Width|(?:Application )?Memory Clock Rate): (.+?)\s*$",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Gpu:
    """The GPU a trtexec run reports in its "=== Device Information ===" section."""

    name: str
    compute_capability: str
    sms: int
    clock_ghz: float
    bus_bits: int
    memory_clock_ghz: float

    @classmethod
    def from_fields(cls, fields: dict) -> Gpu:
        """From trtexec's field names ("Selected Device", "SMs", "Compute Clock Rate", …),
        values with or without their units, as the log prints them and as TensorRT's engine
        explorer stores them (`device_information` of its metadata JSON)."""

        def number(*names: str) -> float:
            for name in names:
                if name in fields:
                    found = re.match(r"\s*(\d+(?:\.\d+)?)", str(fields[name]))
                    if found:
                        return float(found.group(1))
            raise ConfigError(f"the trtexec device information has no {names[0]!r}")

        if "Selected Device" not in fields:
            raise ConfigError("the trtexec device information names no 'Selected Device'")
        capability = number("Compute Capability")
        return cls(
            str(fields["Selected Device"]),
            f"{capability:.1f}",
            int(number("SMs")),
            number("Compute Clock Rate", "Application Compute Clock Rate"),
            int(number("Memory Bus Width")),
            number("Memory Clock Rate", "Application Memory Clock Rate"),
        )

    @classmethod
    def from_trtexec_log(cls, text: str) -> Gpu | None:
        """The device of a trtexec log; None when the log was trimmed of that section."""
        fields = {name.removeprefix("Application "): value for name, value in _DEVICE_FIELD.findall(text)}
        return cls.from_fields(fields) if "Selected Device" in fields else None

    @property
    def is_orin(self) -> bool:
        return "orin" in self.name.lower()

    @property
    def rates(self) -> SmRates:
        if self.compute_capability not in SM_RATES:
            raise ConfigError(
                f"{self.name}: no peak rates for compute capability {self.compute_capability} "
                f"(known: {', '.join(SM_RATES)}); its profile cannot be scaled to the Orin"
            )
        return SM_RATES[self.compute_capability]

    def matrix_ops_per_second(self, precision: str) -> float:
        rates = self.rates
        per_clock = {"fp32": rates.tf32 or rates.fp32, "fp16": rates.fp16, "int8": rates.int8}[precision]
        return per_clock * self.sms * self.clock_ghz * 1e9

    def vector_ops_per_second(self) -> float:
        return self.rates.fp32 * self.sms * self.clock_ghz * 1e9

    def bytes_per_second(self) -> float:
        """Bus width × memory clock × 2: trtexec prints CUDA's memoryClockRate, half the
        data rate of GDDR/HBM (TITAN RTX: 384 bits × 7.001 GHz × 2 = 672 GB/s, its spec)."""
        return self.bus_bits / 8 * self.memory_clock_ghz * 1e9 * 2

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "compute_capability": self.compute_capability,
            "sms": self.sms,
            "clock_ghz": self.clock_ghz,
            "memory_gb_s": self.bytes_per_second() / 1e9,
        }


_VECTOR_WIDTH = re.compile(r"(Two|Four|Eight|Sixteen|Thirty-two) wide channel vectorized|channel % (\d+) == 0")
_WIDTHS = {"Two": 2, "Four": 4, "Eight": 8, "Sixteen": 16, "Thirty-two": 32}
_WEIGHT_BYTES = {"Int8": 1, "Half": 2, "Float": 4}
_REFORMAT = re.compile(r"^Reformatting CopyNode for (Input|Output) Tensor (\d+) to (.+)$")


def element_bytes(format_datatype: str) -> int:
    for token, size in (("Int8", 1), ("FP16", 2), ("Half", 2), ("Bool", 1)):
        if token in format_datatype:
            return size
    return 4  # FP32, Int32


def dimensions(tensor: dict) -> list[int]:
    """A layer-information tensor's dimensions (a 0 or -1 stands for 1)."""
    return [max(int(d), 1) for d in tensor.get("Dimensions", [])]


def tensor_bytes(tensor: dict) -> float:
    """Bytes a tensor occupies in its TensorRT format: vectorized formats pad the channel
    dimension to their vector width."""
    dims = dimensions(tensor)
    layout = tensor.get("Format/Datatype", "")
    width = _VECTOR_WIDTH.search(layout)
    if width and len(dims) > 1:
        vector = _WIDTHS[width.group(1)] if width.group(1) else int(width.group(2))
        dims[1] = math.ceil(dims[1] / vector) * vector
    return math.prod(dims) * element_bytes(layout)


def precision_of(layer: dict) -> str:
    layout = layer["Inputs"][0].get("Format/Datatype", "") if layer.get("Inputs") else ""
    return "int8" if "Int8" in layout else "fp16" if "FP16" in layout or "Half" in layout else "fp32"


@dataclass(frozen=True)
class LayerWork:
    """What one engine layer computes and moves, from its `--exportLayerInfo` entry."""

    ops: float
    bytes: float
    matrix: bool  # on the tensor cores (a convolution that is not depthwise)
    precision: str

    @classmethod
    def of(cls, layer: dict) -> LayerWork:
        moved = sum(tensor_bytes(t) for t in layer.get("Inputs", []) + layer.get("Outputs", []))
        for key in ("Weights", "Bias"):
            if isinstance(layer.get(key), dict):
                moved += layer[key].get("Count", 0) * _WEIGHT_BYTES.get(layer[key].get("Type"), 4)
        outputs = sum(math.prod(dimensions(t)) for t in layer.get("Outputs", []))
        if layer.get("ParameterType") == "Convolution" and layer.get("Inputs"):
            channels = int(layer["Inputs"][0]["Dimensions"][1])
            per_group = channels / max(int(layer.get("Groups", 1)), 1)
            ops = 2 * outputs * per_group * math.prod(layer.get("Kernel", [1]))
            return cls(ops, moved, per_group > 1, precision_of(layer))
        return cls(float(outputs), moved, False, precision_of(layer))

    def seconds(self, matrix_rate: float, vector_rate: float, bandwidth: float) -> float:
        return max(self.ops / (matrix_rate if self.matrix else vector_rate), self.bytes / bandwidth)


def layer_works(layer_info: dict) -> dict[str, LayerWork]:
    """Each layer's work by name, from `trtexec --exportLayerInfo` JSON, including the
    reformatting copies TensorRT inserts (named after the tensor of the layer they feed)."""
    layers = layer_info.get("Layers") if isinstance(layer_info, dict) else None
    if not isinstance(layers, list) or not layers:
        raise ConfigError("not a trtexec --exportLayerInfo JSON (expected {'Layers': [...]})")
    if not all(isinstance(layer, dict) for layer in layers):
        raise ConfigError(
            "the trtexec layer information lists names only: build the engine with --profilingVerbosity=detailed"
        )
    try:
        return {layer["Name"]: LayerWork.of(layer) for layer in layers}
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise ConfigError(f"malformed trtexec layer information ({type(error).__name__}: {error})") from None


def copy_work(name: str, layer_info: dict) -> LayerWork | None:
    """A "Reformatting CopyNode for Input Tensor k to LAYER": it reads and writes that tensor."""
    found = _REFORMAT.match(name)
    if not found:
        return None
    side, index, target = found.groups()
    for layer in layer_info["Layers"]:
        if layer["Name"] == target:
            tensors = layer.get("Inputs" if side == "Input" else "Outputs", [])
            if int(index) < len(tensors):
                tensor = tensors[int(index)]
                return LayerWork(
                    float(math.prod(dimensions(tensor))), 2 * tensor_bytes(tensor), False, precision_of(layer)
                )
    return None


@dataclass(frozen=True)
class ScaledLayer:
    name: str
    measured_ms: float  # on the source GPU, after scaling the per-layer run to the timed run
    ratio: float  # Orin work / source work (roofline terms)
    bound: str  # what bounds it on the Orin: compute, memory, or unknown (no layer info: bandwidth ratio)
    orin_ms: float

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "measured_ms": self.measured_ms,
            "ratio": self.ratio,
            "bound": self.bound,
            "orin_ms": self.orin_ms,
        }


@dataclass(frozen=True)
class Calibration:
    """A TensorRT profile measured on `gpu`, scaled to the Orin `device` (see the module doc)."""

    gpu: Gpu
    device: Device
    measured_ms: float  # the timed run's median GPU compute time on `gpu`
    layers: list[ScaledLayer]
    fixed_ms: float  # the source's per-layer fixed cost (the lightest layer)

    @property
    def orin_ms(self) -> float:
        return sum(layer.orin_ms for layer in self.layers)

    def as_dict(self) -> dict:
        return {
            "label": f"EMULATED: measured on {self.gpu.name}, scaled to the Orin by roofline ratios (orin-emu --calibrate)",
            "gpu": self.gpu.as_dict(),
            "device": self.device.describe(),
            "measured_ms": self.measured_ms,
            "source_fixed_ms_per_layer": self.fixed_ms,
            "orin_ms": self.orin_ms,
            "layers_without_info": sum(layer.bound == "unknown" for layer in self.layers),
            "layers": [layer.as_dict() for layer in self.layers],
        }


def scale_to_orin(profile: list[dict], layer_info: dict, gpu: Gpu, device: Device, measured_ms: float) -> Calibration:
    """`profile` (dynaprune_edge.profiling.trtexec.parse_layer_profile) measured on `gpu`,
    with its `--exportLayerInfo`, scaled to `device`; `measured_ms`: the median GPU compute
    time of the timed run."""
    if gpu.is_orin:
        raise ConfigError(f"{gpu.name} is an Orin: its trtexec figures are measurements, not a calibration")
    works = layer_works(layer_info)
    total = sum(layer["average_ms"] for layer in profile)
    if total <= 0 or measured_ms <= 0:
        raise ConfigError("the trtexec profile has no time in it")
    times = [(layer["name"], layer["average_ms"] * measured_ms / total) for layer in profile]
    fixed = min(t for _, t in times if t > 0)
    overhead_ms = constant("kernel_overhead_us") / 1000
    scaled = []
    for name, ms in times:
        work = works.get(name) or copy_work(name, layer_info)
        if work is None:
            ratio, bound = gpu.bytes_per_second() / device.bytes_per_second(), "unknown"
        else:
            orin = Device(device.module, device.power_mode, work.precision)
            source = work.seconds(
                gpu.matrix_ops_per_second(work.precision), gpu.vector_ops_per_second(), gpu.bytes_per_second()
            )
            compute = work.ops / (orin.matrix_ops_per_second() if work.matrix else orin.vector_ops_per_second())
            memory = work.bytes / orin.bytes_per_second()
            ratio, bound = max(compute, memory) / source, "compute" if compute >= memory else "memory"
        orin_ms = 0.0 if ms == 0 else overhead_ms + max(ms - fixed, 0.0) * ratio
        scaled.append(ScaledLayer(name, ms, ratio, bound, orin_ms))
    return Calibration(gpu, device, measured_ms, scaled, fixed)
