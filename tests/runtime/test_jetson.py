"""The Jetson's power mode as `nvpmodel -q` prints it, checked against `--power-mode`
before a trt profile times anything."""

from __future__ import annotations

import pytest

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.runtime.jetson import current_power_mode, parse_nvpmodel


@pytest.mark.parametrize(
    "output, mode",
    [
        ("NV Power Mode: MAXN\n0\n", "MAXN"),
        ("NVPM WARN: fan mode is not set!\nNV Power Mode: MODE_30W\n2\n", "30W"),  # warnings come first on JetPack 5
        ("NV Power Mode: MODE_15W\n1", "15W"),
        ("nvpmodel: command failed\n", None),
    ],
)
def test_the_mode_is_read_in_dpedges_names(output, mode):
    assert parse_nvpmodel(output) == mode


def test_a_device_in_the_mode_asked_for_passes_and_one_in_another_is_refused_with_the_fix():
    assert current_power_mode("MAXN", lambda: "NV Power Mode: MAXN\n0\n") == "MAXN"
    with pytest.raises(
        ConfigError, match=r"runs nvpmodel mode 30W, not MAXN: sudo nvpmodel -m 0 && sudo jetson_clocks"
    ):
        current_power_mode("MAXN", lambda: "NV Power Mode: MODE_30W\n2\n")  # the boot default
    with pytest.raises(ConfigError, match=r"not 50W: sudo nvpmodel -m 3 "):
        current_power_mode("50W", lambda: "NV Power Mode: MODE_15W\n1\n")


def test_without_nvpmodel_a_requested_mode_cannot_be_checked_and_none_requested_is_fine():
    assert current_power_mode(None, lambda: None) is None
    assert current_power_mode(None, lambda: "NV Power Mode: MODE_15W\n1") == "15W"  # reported, not checked
    with pytest.raises(ConfigError, match="which is not installed here"):
        current_power_mode("MAXN", lambda: None)
    with pytest.raises(ConfigError, match="whose output names no mode"):
        current_power_mode("MAXN", lambda: "permission denied")
    with pytest.raises(ConfigError, match="--power-mode must be one of MAXN, 50W, 30W, 15W, 40W, got '10W'"):
        current_power_mode("10W", lambda: "NV Power Mode: MAXN\n0")
