"""Type checks of values read from files a user was handed (JSON, checkpoints) or given as
options: Python's bool is an int, and NaN passes every comparison. No torch here: the
runtime that goes onto the Jetson checks manifests with them."""

from __future__ import annotations

import math


def is_count(value: object, least: int = 0) -> bool:
    """An integer ≥ least that JSON wrote as one (bool is an int in Python)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def is_number(value: object) -> bool:
    """A finite int or float (not a bool). Python ints are finite however large (numpy's
    isfinite would overflow on them)."""
    return not isinstance(value, bool) and (
        isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    )
