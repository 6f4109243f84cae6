"""Seeded synthetic stand-ins for each family, in physical units, labelled "synthetic".

They exist so that every command runs without downloads, and so that tests and benchmarks
exercise the property Dyna-Pruner depends on: structure that is *uneven* in space and time
(rush-hour hotspots, moving rain cells on a dry background, advected temperature anomalies).
Pure noise would make every region equally important and every mask pointless; a static
pattern would be solved by persistence. Each generator is a small physical caricature:
- city flows: daily (and weekly) rhythm, fixed hotspots with their own role, moving crowds;
- temperature: latitudinal gradient, diurnal cycle in local solar time, drifting anomalies;
- radar: elliptic rain cells carried by a common steering wind, growing and decaying.
All randomness comes from the `numpy.random.Generator` passed in, so a seed fixes the data.
"""

from __future__ import annotations

import numpy as np

STEPS_PER_DAY = 48  # TaxiBJ: one frame every 30 minutes


def _gaussian(x: np.ndarray, y: np.ndarray, centre_x, centre_y, sigma_x, sigma_y, angle=0.0) -> np.ndarray:
    """Elliptic Gaussian bumps; centre/sigma/angle broadcast against a leading axis.

    The exponent is floored at -20 (e^-20 ≈ 2e-9, invisible in any unit used here): far
    tails would otherwise underflow into float32 denormals, which make the arithmetic ~4×
    slower."""
    dx, dy = x - centre_x, y - centre_y
    cos, sin = np.cos(angle), np.sin(angle)
    along, across = dx * cos + dy * sin, -dx * sin + dy * cos
    return np.exp(np.maximum(-0.5 * ((along / sigma_x) ** 2 + (across / sigma_y) ** 2), -20.0))


def _wrapped(delta: np.ndarray, period: float) -> np.ndarray:
    """Shortest signed distance on a periodic axis (longitude, or a wrapping city grid)."""
    return (delta + period / 2) % period - period / 2


def _column(values: np.ndarray) -> np.ndarray:
    """(N,) parameters → (N, 1, 1) to broadcast against (H, W) grids."""
    return np.asarray(values, dtype=np.float32)[:, None, None]


def city_flows(frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(frames, 2, size, size) inflow/outflow on the OpenSTL [0, 1] scale, 30-min steps.

    Hotspots are business districts (inflow peaks in the morning, outflow in the evening),
    residential areas (the reverse) and stations (both, both times): inflow and outflow
    are correlated through the shared daily activity and the moving crowds, yet differ.
    """
    hours = (np.arange(frames) % STEPS_PER_DAY) / 2.0
    weekday = ((np.arange(frames) // STEPS_PER_DAY) % 7) < 5
    rush = np.where(weekday, 1.0, 0.35)
    morning = rush * np.exp(-0.5 * ((hours - 8.0) / 1.1) ** 2)
    evening = rush * np.exp(-0.5 * ((hours - 18.0) / 1.5) ** 2)
    daytime = np.clip(np.sin(np.pi * (hours - 6.0) / 17.0), 0.0, None) ** 1.5

    axis = np.linspace(0.0, 1.0, size, endpoint=False) + 0.5 / size
    y, x = np.meshgrid(axis, axis, indexing="ij")
    density = _gaussian(x, y, 0.5, 0.5, 0.3, 0.25) + 0.5 * _gaussian(x, y, 0.25, 0.7, 0.12, 0.12)

    count = 7
    roles = rng.permutation(np.arange(count) % 3)  # 0 business, 1 residential, 2 station
    spots = _gaussian(
        x,
        y,
        _column(rng.uniform(0.1, 0.9, count)),
        _column(rng.uniform(0.1, 0.9, count)),
        _column(rng.uniform(0.03, 0.07, count)),
        _column(rng.uniform(0.03, 0.07, count)),
    ) * _column(rng.uniform(0.25, 0.45, count))
    role_in = np.stack([morning, evening, morning + evening])  # (3, frames)
    role_out = np.stack([evening, morning, morning + evening])
    spot_in = np.einsum("kt,kij->tij", role_in[roles], spots)
    spot_out = np.einsum("kt,kij->tij", role_out[roles], spots)

    blobs = 4
    start_x, start_y = rng.uniform(0, 1, blobs), rng.uniform(0, 1, blobs)
    velocity = rng.uniform(-0.02, 0.02, (2, blobs))  # grid widths per 30 min
    steps = np.arange(frames)[:, None]
    centre_x = (start_x + velocity[0] * steps)[..., None, None]  # (frames, blobs, 1, 1)
    centre_y = (start_y + velocity[1] * steps)[..., None, None]
    crowds = _gaussian(_wrapped(x - centre_x, 1.0), _wrapped(y - centre_y, 1.0), 0, 0, 0.08, 0.08)
    crowds = 0.12 * crowds.sum(axis=1) * (0.3 + daytime)[:, None, None]

    common = 0.03 + 0.35 * density * (0.15 + daytime)[:, None, None] + crowds
    inflow = common + spot_in + rng.normal(0, 0.015, common.shape)
    outflow = 0.9 * common + spot_out + rng.normal(0, 0.015, common.shape)
    return np.clip(np.stack([inflow, outflow], axis=1), 0.0, 1.0).astype(np.float32)


def global_temperature(frames: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """(frames, 1, height, width) hourly 2 m temperature in K on a global lat/lon grid
    (latitudes ascending like WeatherBench's 5.625° files)."""
    lat = np.deg2rad(np.linspace(-90, 90, height, endpoint=False) + 90 / height)[:, None]
    lon_deg = (np.arange(width) * 360.0 / width)[None, :]
    lon = np.deg2rad(lon_deg)
    climate = 300.0 - 48.0 * np.sin(lat) ** 2 + 3.0 * np.cos(lat) * np.cos(2 * lon + rng.uniform(0, 6.3))

    hours = np.arange(frames, dtype=np.float64)[:, None, None]
    local_hour = (hours + lon_deg / 15.0) % 24.0
    diurnal = 5.0 * np.cos(lat) * np.cos(2 * np.pi * (local_hour - 15.0) / 24.0)

    # Anomalies live for a few days, drifting east like mid-latitude weather systems; each
    # life cycle restarts at a new place, with amplitude zero at the restart (no jumps).
    count, lifetime = 10, rng.uniform(72, 150, 10)
    phase = rng.uniform(0, 1, count) * lifetime
    age = (hours[..., 0] + phase) % lifetime  # (frames, count)
    cycle = ((hours[..., 0] + phase) // lifetime).astype(np.int64)
    cycles = int(cycle.max()) + 1
    start_lon = rng.uniform(0, 360, (cycles, count))
    start_lat = rng.uniform(-70, 70, (cycles, count))
    amplitude = rng.normal(0, 5.0, (cycles, count))
    speed = rng.uniform(0.4, 1.2, count)  # degrees of longitude per hour
    pick = (cycle, np.arange(count))
    centre_lon = (start_lon[pick] + speed * age)[..., None, None]
    centre_lat = (start_lat[pick] + 0.05 * age * np.sign(start_lat[pick]))[..., None, None]
    envelope = (np.sin(np.pi * age / lifetime) * amplitude[pick])[..., None, None]
    lat_deg = np.rad2deg(lat)
    blobs = envelope * _gaussian(_wrapped(lon_deg - centre_lon, 360.0), lat_deg - centre_lat, 0, 0, 22.0, 12.0)

    field = climate + diurnal + blobs.sum(axis=1) + rng.normal(0, 0.3, (frames, height, width))
    return field[:, None].astype(np.float32)


def rain_cells(frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """(frames, 1, size, size) rain intensity on a relative 0..~1 scale; most pixels exactly 0.

    Cells are born at random (also just upwind of the frame, so rain enters from the edge),
    move with a common steering wind plus a small own drift, and grow then decay over their
    lifetime. A threshold leaves the background dry, as in real radar composites.
    """
    scale = size / 64.0  # cell sizes and speeds are set for a 64-pixel, 5-minute frame
    heading = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(0.5, 1.2) * scale
    turn = rng.normal(0, 0.004, frames).cumsum()  # the steering wind veers slowly
    wind_x = np.cumsum(speed * np.cos(heading + turn))
    wind_y = np.cumsum(speed * np.sin(heading + turn))

    initial, per_frame = 8, 0.6
    births = np.concatenate(
        [rng.integers(-30, 0, initial), np.repeat(np.arange(frames), rng.poisson(per_frame, frames))]
    )
    count = len(births)
    lifetime = rng.uniform(15, 45, count)
    margin = 0.3 * size
    start_x = rng.uniform(-margin, size + margin, count) - np.interp(births, np.arange(frames), wind_x)
    start_y = rng.uniform(-margin, size + margin, count) - np.interp(births, np.arange(frames), wind_y)
    drift = rng.normal(0, 0.1 * scale, (2, count))
    sigma = rng.uniform(2.0, 6.0, count) * scale
    aspect = rng.uniform(1.0, 2.5, count)
    angle = rng.uniform(0, np.pi, count)
    peak = rng.lognormal(np.log(0.35), 0.5, count)

    pixels = np.arange(size, dtype=np.float32) + 0.5
    y, x = np.meshgrid(pixels, pixels, indexing="ij")
    field = np.zeros((frames, 1, size, size), dtype=np.float32)
    for t in range(frames):
        age = t - births
        alive = np.flatnonzero((age >= 0) & (age < lifetime))
        if len(alive) == 0:
            continue
        a = age[alive]
        centre_x = start_x[alive] + wind_x[t] + drift[0, alive] * a
        centre_y = start_y[alive] + wind_y[t] + drift[1, alive] * a
        strength = peak[alive] * np.sin(np.pi * a / lifetime[alive]) ** 1.5
        shape = _gaussian(
            x,
            y,
            _column(centre_x),
            _column(centre_y),
            _column(sigma[alive] * aspect[alive]),
            _column(sigma[alive]),
            _column(angle[alive]),
        )
        core = shape**4  # a convective core inside the broader stratiform shield
        field[t, 0] = np.einsum("k,kij->ij", strength, 0.6 * shape + 0.4 * core)
    return np.clip(field - 0.04, 0.0, None)
