"""The Jetson the `trt` backend runs on: its nvpmodel power mode, read with `nvpmodel -q`
and checked against `--power-mode` before any timing (a figure measured at the boot
default, 30W, is half the speed of one at MAXN, and nothing in the numbers says so); and
what the device has (`dpedge device`: L4T and JetPack, CUDA, TensorRT, free disk), which
`dpedge deploy` checks before copying (engines are built for one TensorRT version)."""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from dynaprune_edge.cost.orin import MODULES
from dynaprune_edge.errors import ConfigError

_MODE = re.compile(r"NV Power Mode:\s*(\S+)")


def parse_nvpmodel(text: str) -> str | None:
    """The mode `nvpmodel -q` prints ("NV Power Mode: MODE_30W", its ID on the next line),
    in dpedge's names: MAXN, 50W, 40W, 30W, 15W; None when the output names none."""
    found = _MODE.search(text)
    return None if found is None else found.group(1).removeprefix("MODE_")


def query_nvpmodel() -> str | None:
    """The output of `nvpmodel -q`; None where nvpmodel is not installed (not a Jetson)."""
    nvpmodel = shutil.which("nvpmodel")
    if nvpmodel is None:
        return None
    try:
        done = subprocess.run([nvpmodel, "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ConfigError(f"nvpmodel -q failed: {error}") from None
    return done.stdout + done.stderr


def current_power_mode(requested: str | None, query: Callable[[], str | None] | None = None) -> str | None:
    """The Jetson's power mode (None where nvpmodel is absent and none was requested);
    refuses, with the command that fixes it, a device not in the `requested` mode.
    `query`: what prints `nvpmodel -q` (default: running it)."""
    output = (query or query_nvpmodel)()
    mode = None if output is None else parse_nvpmodel(output)
    if requested is None:
        return mode
    ids = {name: power.nvpmodel_id for modes in MODULES.values() for name, power in modes.items()}
    if requested not in ids:
        raise ConfigError(f"--power-mode must be one of {', '.join(ids)}, got {requested!r}")
    if mode is None:
        raise ConfigError(
            "--power-mode on the trt backend checks the Jetson's mode with `nvpmodel -q`, "
            + ("which is not installed here" if output is None else "whose output names no mode")
        )
    if mode != requested:
        raise ConfigError(
            f"the Jetson runs nvpmodel mode {mode}, not {requested}: "
            f"sudo nvpmodel -m {ids[requested]} && sudo jetson_clocks, then profile again"
        )
    return mode


# L4T release → JetPack (NVIDIA's JetPack archive); others are named by their L4T major.
JETPACK_OF_L4T = {
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "36.2.0": "6.0 DP",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
}
SUPPORTED_L4T_MAJORS = ("35", "36")  # JetPack 5.1 and 6.x: the TensorRT 8.5–10.3 the engines are built with
_L4T = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)")


def parse_l4t_release(text: str) -> str | None:
    """ "# R35 (release), REVISION: 4.1, GCID: …" (/etc/nv_tegra_release) → "35.4.1"."""
    found = _L4T.search(text)
    if found is None:
        return None
    revision = found.group(2).split(".")
    return ".".join([found.group(1), *revision, *["0"] * (2 - len(revision))])


def jetpack_of(l4t: str) -> str:
    return JETPACK_OF_L4T.get(l4t) or {"35": "5.x", "36": "6.x"}.get(l4t.split(".")[0], "unknown")


def cuda_version(root: Path = Path("/usr/local/cuda")) -> str | None:
    """From the toolkit's version.json (CUDA ≥ 11.1) or version.txt (older)."""
    try:
        return json.loads((root / "version.json").read_text())["cuda"]["version"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        found = re.search(r"CUDA Version\s+([\d.]+)", (root / "version.txt").read_text())
        return None if found is None else found.group(1)
    except OSError:
        return None


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def tensorrt_version() -> str | None:
    """Installed by pip (tensorrt, tensorrt-cu12) or by JetPack's apt packages (no pip
    metadata there: the module says it)."""
    for name in ("tensorrt", "tensorrt-cu12", "tensorrt-cu11"):
        if (version := package_version(name)) is not None:
            return version
    try:
        import tensorrt
    except Exception:  # noqa: BLE001 — absent, or present without its CUDA libraries: not usable either way
        return None
    return getattr(tensorrt, "__version__", None)


def free_bytes(path: Path) -> int:
    """Free space for `path`, or for its nearest existing parent (a folder not made yet)."""
    path = Path(path).expanduser().absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free


def device_facts(disk: Path, release: Path = Path("/etc/nv_tegra_release")) -> dict:
    """What `dpedge device` reports and `dpedge deploy` checks before it copies anything."""
    try:
        l4t = parse_l4t_release(release.read_text(errors="replace"))
    except OSError:
        l4t = None
    nvpmodel = query_nvpmodel() if l4t else None
    return {
        "dpedge": package_version("dynaprune-edge"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "l4t": l4t,
        "jetpack": None if l4t is None else jetpack_of(l4t),
        "cuda": cuda_version(),
        "tensorrt": tensorrt_version(),
        "onnxruntime": package_version("onnxruntime") or package_version("onnxruntime-gpu"),
        "power_mode": None if nvpmodel is None else parse_nvpmodel(nvpmodel),
        "disk": str(disk),
        "free_bytes": free_bytes(disk),
    }
