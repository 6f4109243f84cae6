"""The Jetson the `trt` backend runs on: its nvpmodel power mode, read with `nvpmodel -q`
and checked against `--power-mode` before any timing (a figure measured at the boot
default, 30W, is half the speed of one at MAXN, and nothing in the numbers says so)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable

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
        raise ConfigError("--power-mode on the trt backend checks the Jetson's mode with `nvpmodel -q`, "
                          + ("which is not installed here" if output is None else "whose output names no mode"))
    if mode != requested:
        raise ConfigError(f"the Jetson runs nvpmodel mode {mode}, not {requested}: "
                          f"sudo nvpmodel -m {ids[requested]} && sudo jetson_clocks, then profile again")
    return mode
