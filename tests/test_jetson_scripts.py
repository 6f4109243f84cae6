"""jetson/: the device-side scripts. shellcheck-clean, each answers --help, and setup.sh
reads the L4T release, names the JetPack and refuses an unsupported one (the parts that
need no Jetson; nvpmodel, jetson_clocks and tegrastats are not here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dynaprune_edge.runtime.jetson import jetpack_of, parse_l4t_release

JETSON = Path(__file__).resolve().parent.parent / "jetson"
SCRIPTS = sorted(JETSON.glob("*.sh"))
# /etc/nv_tegra_release as JetPack 5.1.2 writes it (L4T R35.4.1), and JetPack 4.6.1's (R32.7.1)
R35_4_1 = "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023\n"
R32_7_1 = "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t186ref, EABI: aarch64, DATE: Sat Feb 19 17:07:00 UTC 2022\n"


def run(script: str, *args, env=None):
    return subprocess.run(
        ["bash", str(JETSON / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), **(env or {})},
    )


def test_the_three_scripts_are_there_and_shellcheck_clean():
    assert [s.name for s in SCRIPTS] == ["capture.sh", "clocks.sh", "setup.sh"]
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (Debian: apt install shellcheck; make system-deps installs it)")
    result = subprocess.run(["shellcheck", "--severity=style", *map(str, SCRIPTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
    for script in SCRIPTS:
        assert "set -euo pipefail" in script.read_text(), script.name


@pytest.mark.parametrize("script", ["setup.sh", "clocks.sh", "capture.sh"])
def test_each_script_explains_itself(script):
    result = run(script, "--help")
    assert result.returncode == 0 and result.stdout.startswith("Usage: jetson/" + script), result.stderr


def test_setup_names_the_jetpack_of_a_supported_release_and_refuses_others(tmp_path):
    (tmp_path / "r35").write_text(R35_4_1)
    supported = run("setup.sh", "--check", env={"NV_TEGRA_RELEASE": str(tmp_path / "r35")})
    assert supported.returncode == 0, supported.stderr
    assert "L4T:      R35.4.1" in supported.stdout and "JetPack:  5.1.2" in supported.stdout
    (tmp_path / "r32").write_text(R32_7_1)
    old = run("setup.sh", "--check", env={"NV_TEGRA_RELEASE": str(tmp_path / "r32")})
    assert old.returncode == 1 and "L4T R32.7.1 is not JetPack 5.1 or 6.x" in old.stderr
    absent = run("setup.sh", "--check", env={"NV_TEGRA_RELEASE": str(tmp_path / "none")})
    assert absent.returncode == 1 and "not a Jetson" in absent.stderr


def test_the_scripts_that_need_jetson_tools_say_so_here():
    assert "tegrastats not found" in run("capture.sh", "--", "true").stderr
    assert "nvpmodel not found" in run("clocks.sh", "MAXN").stderr
    assert run("capture.sh").returncode == 2


def test_dpedge_device_reads_the_same_release_as_setup():
    assert parse_l4t_release(R35_4_1) == "35.4.1" and jetpack_of("35.4.1") == "5.1.2"
    assert (
        parse_l4t_release("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64") == "36.4.3"
    )
    assert jetpack_of("36.4.3") == "6.2" and jetpack_of("36.9.0") == "6.x" and jetpack_of("32.7.1") == "unknown"
    assert parse_l4t_release("Ubuntu 22.04") is None
