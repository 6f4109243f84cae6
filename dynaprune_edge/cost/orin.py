"""The Jetson AGX Orin as a roofline: every constant the emulator (`orin-emu`) uses, with
its source, and the device a power mode, a module and a precision leave.

Nothing here is measured on an Orin. The figures are NVIDIA's published specifications
(data sheet, Jetson Linux power-mode tables); the two efficiency factors and the per-kernel
cost are modelling assumptions, marked as such in `CONSTANTS` (and in docs/orin-emulator.md,
which a test keeps equal to this table).
"""

from __future__ import annotations

from dataclasses import dataclass

from dynaprune_edge.errors import ConfigError

DATA_SHEET = "NVIDIA Jetson AGX Orin Series technical brief (2022)"
POWER_TABLE = (
    "NVIDIA's nvpmodel configurations nvpmodel_p3701_0000.conf (the 64 GB-class devkit module) and nvpmodel_p3701_0004.conf "
    "(32 GB), as mirrored in LineageOS/android_device_nvidia_concord: online TPCs (2 SMs each) and GPU/EMC clock caps; "
    "the uncapped MAXN GPU clocks (1.3 GHz, 930 MHz) are the published maxima of the 2048- and 1792-core GPUs"
)
TENSORRT_GUIDE = "NVIDIA TensorRT Developer Guide: Performance Best Practices (layer fusion) and Reduced Precision (TF32 on by default)"
ASSUMED = "assumption of this emulator (no published figure; docs/orin-emulator.md, 'Validation', says what checks it)"


@dataclass(frozen=True)
class Constant:
    name: str
    value: float
    unit: str
    source: str


@dataclass(frozen=True)
class PowerMode:
    """One nvpmodel mode of one module: the GPU SMs left online, their clock cap, the
    memory (EMC) clock cap, and its ID in the module's nvpmodel configuration (what
    `sudo nvpmodel -m ID` selects; `nvpmodel -q` prints the mode as MAXN or MODE_<name>)."""

    sms: int
    gpu_mhz: float
    emc_mhz: float
    nvpmodel_id: int


MODULES: dict[str, dict[str, PowerMode]] = {
    # Ampere GA10B: 8 TPCs = 16 SMs; LPDDR5, 256-bit, up to 3200 MHz (3199 in NVIDIA's MLPerf configurations)
    "agx-orin-64gb": {
        "MAXN": PowerMode(sms=16, gpu_mhz=1300, emc_mhz=3200, nvpmodel_id=0),
        "50W": PowerMode(sms=16, gpu_mhz=816, emc_mhz=3200, nvpmodel_id=3),
        "30W": PowerMode(sms=8, gpu_mhz=612, emc_mhz=3200, nvpmodel_id=2),  # nvpmodel's default mode
        "15W": PowerMode(sms=6, gpu_mhz=408, emc_mhz=2133, nvpmodel_id=1),
    },
    # one TPC fused off: 7 TPCs = 14 SMs
    "agx-orin-32gb": {
        "MAXN": PowerMode(sms=14, gpu_mhz=930, emc_mhz=3200, nvpmodel_id=0),
        "40W": PowerMode(sms=14, gpu_mhz=816, emc_mhz=3200, nvpmodel_id=3),
        "30W": PowerMode(sms=8, gpu_mhz=612, emc_mhz=3200, nvpmodel_id=2),
        "15W": PowerMode(sms=6, gpu_mhz=408, emc_mhz=2133, nvpmodel_id=1),
    },
}
DEFAULT_MODULE = "agx-orin-64gb"
PRECISIONS = ("fp32", "fp16", "int8")

CONSTANTS: dict[str, Constant] = {
    c.name: c
    for c in (
        Constant(
            "fp32_cuda_ops_per_sm_clock",
            256,
            "FLOP/clock/SM",
            f"{DATA_SHEET}: 128 CUDA cores per SM, one FMA (2 FLOP) each per clock; 2048 cores → 5.3 TFLOPS FP32 at 1.3 GHz",
        ),
        Constant(
            "tf32_tensor_ops_per_sm_clock",
            1024,
            "FLOP/clock/SM",
            f"{DATA_SHEET}: 4 third-generation tensor cores per SM; TF32 at half the FP16 rate (Ampere tensor core)",
        ),
        Constant(
            "fp16_tensor_ops_per_sm_clock",
            2048,
            "FLOP/clock/SM",
            f"{DATA_SHEET}: 170 sparse INT8 TOPS from the GPU → 85 dense INT8, 42.5 dense FP16 TFLOPS at 16 SMs × 1.3 GHz",
        ),
        Constant(
            "int8_tensor_ops_per_sm_clock",
            4096,
            "OP/clock/SM",
            f"{DATA_SHEET}: 85 dense INT8 TOPS (half the 170 sparse TOPS) at 16 SMs × 1.3 GHz",
        ),
        Constant(
            "memory_bytes_per_emc_clock",
            64.0,
            "byte/clock",
            f"{DATA_SHEET}: LPDDR5, 256-bit, 204.8 GB/s at 3200 MHz (64 bytes per EMC clock)",
        ),
        Constant(
            "compute_efficiency",
            0.6,
            "share of peak",
            f"{ASSUMED}: the share of peak tensor/CUDA-core rate a TensorRT kernel sustains on a layer large enough to fill the GPU",
        ),
        Constant(
            "memory_efficiency",
            0.7,
            "share of peak",
            f"{ASSUMED}: the share of the LPDDR5 peak a streaming kernel sustains",
        ),
        Constant(
            "kernel_overhead_us",
            8.0,
            "µs per kernel",
            f"{ASSUMED}: launch and scheduling cost of one TensorRT kernel on the Orin (a desktop GPU launches in ~6 µs, ~0.6 µs per node inside a CUDA graph)",
        ),
        Constant(
            "branch_overhead_us",
            20.0,
            "µs per If",
            f"{ASSUMED}: an IIfConditional reads its condition back to the host before it launches the taken branch",
        ),
        Constant(
            "dispatch_overhead_us",
            20.0,
            "µs per sample",
            f"{ASSUMED}: a split bundle's host dispatch: the branch index copied back (a few bytes), a stream synchronisation, then the branch engine's enqueue; the same round trip as branch_overhead_us",
        ),
        Constant(
            "cuda_graph_kernel_us",
            1.0,
            "µs per kernel",
            f"{ASSUMED}: one kernel's launch cost inside a captured CUDA graph (about 0.6 µs per node on a desktop GPU: see kernel_overhead_us)",
        ),
        Constant(
            "cuda_graph_launch_us",
            10.0,
            "µs per graph",
            f"{ASSUMED}: launching one captured CUDA graph (one per engine) from the host",
        ),
        Constant(
            "gemm_tile",
            64,
            "outputs per side",
            f"{ASSUMED}: the output tile one thread block of a TensorRT convolution/GEMM kernel computes (for wave quantisation)",
        ),
    )
}
"""Every number the emulator uses besides `MODULES` (the power-mode table's SM counts and
clocks); TensorRT's fusions as modelled are listed in dynaprune_edge.cost.roofline."""


def constant(name: str) -> float:
    return CONSTANTS[name].value


def emulated_device(
    emulating: bool,
    switch: str,
    module: str | None,
    power_mode: str | None,
    precision: str | None,
    device_sets: tuple = (),
) -> Device | None:
    """The Orin that --module, --power-mode and --precision choose, defaults filled in, where
    `emulating` (`switch` orin-emu: `--cost` or `--backend`); elsewhere None, and any of
    them given, but those in `device_sets` (what a real device sets for itself), is refused."""
    given = {"--module": module, "--power-mode": power_mode, "--precision": precision}
    if emulating:
        return Device.chosen(module, power_mode, precision)
    named = [option for option, value in given.items() if value is not None and option not in device_sets]
    if named:
        raise ConfigError(
            f"{', '.join(named)} choose the Jetson AGX Orin that orin-emu emulates: add {switch} orin-emu (a Jetson's own "
            "power mode is set with nvpmodel, an engine's precision by dpedge export --trt)"
        )
    return None


@dataclass(frozen=True)
class Device:
    """One Orin at one power mode and precision: the peak rates a roofline divides by."""

    module: str
    power_mode: str
    precision: str

    def __post_init__(self) -> None:
        if self.module not in MODULES:
            raise ConfigError(f"--module must be one of {', '.join(MODULES)}, got {self.module!r}")
        modes = MODULES[self.module]
        if self.power_mode not in modes:
            raise ConfigError(
                f"--power-mode on {self.module} must be one of {', '.join(modes)}, got {self.power_mode!r}"
            )
        if self.precision not in PRECISIONS:
            raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")

    @classmethod
    def chosen(cls, module: str | None = None, power_mode: str | None = None, precision: str | None = None) -> Device:
        """The Orin the options name, the default (64 GB, MAXN, fp16) for any they leave out."""
        return cls(
            DEFAULT_MODULE if module is None else module,
            "MAXN" if power_mode is None else power_mode,
            "fp16" if precision is None else precision,
        )  # "" is a wrong name, not the default

    @property
    def mode(self) -> PowerMode:
        return MODULES[self.module][self.power_mode]

    @property
    def sms(self) -> int:
        return self.mode.sms

    def matrix_ops_per_second(self) -> float:
        """Peak rate of convolutions and matrix products: tensor cores (TF32 for fp32, which
        TensorRT enables by default on Ampere)."""
        per_clock = {
            "fp32": "tf32_tensor_ops_per_sm_clock",
            "fp16": "fp16_tensor_ops_per_sm_clock",
            "int8": "int8_tensor_ops_per_sm_clock",
        }
        return constant(per_clock[self.precision]) * self.sms * self.mode.gpu_mhz * 1e6

    def vector_ops_per_second(self) -> float:
        """Peak rate of everything else (pointwise, reductions, data movement): CUDA cores.
        Ampere's GA10x CUDA cores run FP16 at the FP32 rate, so precision does not change it."""
        return constant("fp32_cuda_ops_per_sm_clock") * self.sms * self.mode.gpu_mhz * 1e6

    def bytes_per_second(self) -> float:
        return constant("memory_bytes_per_emc_clock") * self.mode.emc_mhz * 1e6

    def activation_bytes(self, matrix: bool) -> int:
        """Bytes per element of a floating-point tensor: int8 engines keep convolutions and
        matrix products (and what fuses into them) in int8, the rest in fp16."""
        if self.precision == "int8":
            return 1 if matrix else 2
        return 2 if self.precision == "fp16" else 4

    def fingerprint(self) -> dict:
        """What an orin-emu cost table is valid for (CostTable.machine): this device and
        this revision of the emulator."""
        from dynaprune_edge.cost.roofline import EMULATOR_REVISION

        return {
            "device": "Jetson AGX Orin (emulated)",
            "module": self.module,
            "power_mode": self.power_mode,
            "precision": self.precision,
            "emulator": EMULATOR_REVISION,
        }

    def describe(self) -> dict:
        mode = self.mode
        return {
            "module": self.module,
            "power_mode": self.power_mode,
            "precision": self.precision,
            "sms": mode.sms,
            "gpu_mhz": mode.gpu_mhz,
            "emc_mhz": mode.emc_mhz,
            "matrix_tops": self.matrix_ops_per_second() / 1e12,
            "vector_tflops": self.vector_ops_per_second() / 1e12,
            "memory_gb_s": self.bytes_per_second() / 1e9,
        }


def constants_markdown() -> str:
    """The constants and power-mode tables as markdown (docs/orin-emulator.md, report.md)."""
    lines = ["| constant | value | unit | source |", "|---|---|---|---|"]
    lines += [f"| `{c.name}` | {c.value:g} | {c.unit} | {c.source} |" for c in CONSTANTS.values()]
    lines += [
        "",
        f"Power modes ({POWER_TABLE}):",
        "",
        "| module | mode | nvpmodel ID | SMs | GPU MHz | memory MHz |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {module} | {name} | {m.nvpmodel_id} | {m.sms} | {m.gpu_mhz:g} | {m.emc_mhz:g} |"
        for module, modes in MODULES.items()
        for name, m in modes.items()
    ]
    return "\n".join(lines)
