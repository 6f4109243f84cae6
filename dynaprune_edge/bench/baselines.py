"""The radar nowcast the field sets learned models against besides persistence: optical-flow
extrapolation as pysteps (the community library) computes it. A motion field is estimated
from the last two input frames (Proesmans' anisotropic diffusion, which needs neither
OpenCV nor tuned thresholds) and the last frame is advected along it, semi-Lagrangian, one
output frame per input step. A learned nowcaster that does not beat this has learnt less
than "rain moves on as it moved".

pysteps is optional (`pip install 'dynaprune-edge[baselines]'`): without it the
benchmarks go on without this reference and say so in one line."""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np
from rich.console import Console
from rich.markup import escape

RADAR = ("knmi", "sevir")
"""Families whose frames are radar images (rain, VIL): the data optical flow is made for."""
EXTRAPOLATION = "pysteps extrapolation (Proesmans)"
SKIPPED = "pysteps extrapolation baseline skipped: pysteps is not installed (pip install 'dynaprune-edge[baselines]')"
MAX_LEVELS = 6  # pysteps' default pyramid: 64×64 frames down to 2×2


def pysteps_methods():
    """pysteps' Proesmans motion and semi-Lagrangian extrapolation, or None (and one dim
    note on stderr) where pysteps is not installed. Imported here, not with the module: the
    dependency is optional. pysteps prints where it found its configuration file when
    imported, on stdout, which `--json` keeps for rows alone: that line is dropped."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from pysteps.extrapolation.semilagrangian import extrapolate
            from pysteps.motion.proesmans import proesmans
    except ImportError:
        Console(stderr=True).print(f"[dim]{escape(SKIPPED)}[/dim]", soft_wrap=True)  # escaped: [baselines] is no markup
        return None
    return proesmans, extrapolate


def nowcast(frames: np.ndarray, steps: int, methods) -> np.ndarray:
    """(T_in, H, W) physical frames → (steps, H, W). The frames go in in the data's own
    units (KNMI: mm/5min, no mm/h or dBR transform): Proesmans rescales its two frames to
    0–255 and the extrapolation interpolates linearly, so neither depends on the unit. The
    pyramid stops at 2 pixels, as pysteps' 6 levels do at 64×64: on smaller frames (8×8)
    6 levels make empty levels, on which pysteps' Cython aborts the process. Dry frames
    give a zero motion field, hence the last frame. Where a departure point lies outside
    the grid (inflow across the border) pysteps returns NaN: there the forecast is the last
    frame (persistence), which keeps it finite."""
    proesmans, extrapolate = methods
    last = frames[-1].astype(np.float64)
    levels = max(1, min(MAX_LEVELS, int(np.log2(min(last.shape)))))
    velocity = proesmans(frames[-2:].astype(np.float64), num_levels=levels, verbose=False)
    forecast = extrapolate(last, velocity, steps)
    return np.where(np.isfinite(forecast), forecast, last).astype(np.float32)


def extrapolation(frames: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Every window's nowcast, (N, T_in, C, H, W) physical frames → (N, steps, C, H, W),
    each channel advected by its own motion, and each window's wall-clock ms (motion and
    extrapolation, after one untimed warm-up window). Both steps run on one thread: pysteps
    offers no workers for them. None where pysteps is not installed (see pysteps_methods)."""
    methods = pysteps_methods()
    if methods is None:
        return None
    nowcast(frames[0, :, 0], steps, methods)  # warm-up: first calls load code and allocate
    forecasts, ms = [], []
    for window in frames:
        start = time.perf_counter()
        forecasts.append(np.stack([nowcast(window[:, c], steps, methods) for c in range(window.shape[1])], axis=1))
        ms.append(1e3 * (time.perf_counter() - start))
    return np.stack(forecasts), np.array(ms)
