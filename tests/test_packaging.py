"""The layout the user asked for survives packaging: one import root, and the light
packages (runtime, profiling) never pull in torch."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIGHT = ["dynaprune_edge.runtime", "dynaprune_edge.profiling", "dynaprune_edge.flops", "dynaprune_edge.export"]


def imports_without_torch(python_path: str) -> subprocess.CompletedProcess:
    code = (
        "import sys\n"
        f"sys.path.insert(0, {python_path!r})\n"
        + "".join(f"import {module}\n" for module in LIGHT)
        + "import dynaprune_edge.runtime as r\n"
        "print(r.__file__)\n"
        "assert 'torch' not in sys.modules and 'fvcore' not in sys.modules, 'torch imported'\n"
    )
    return subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    return next(out.glob("dynaprune_edge-*.whl"))


@pytest.mark.slow
def test_built_wheel_holds_every_subpackage(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path)
    packages = [p.relative_to(ROOT).as_posix() for p in (ROOT / "dynaprune_edge").rglob("__init__.py")]
    assert len(packages) > 10
    for package in packages:  # one missing from pyproject's list would install without it
        assert package in names, package
    assert any(n.startswith("dynaprune_edge/data/samples/knmi_radar_2010-08-26/") for n in names), "KNMI sample missing"
    result = imports_without_torch(str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(tmp_path)), "imported the repository, not the wheel"


def test_installed_runtime_and_profiling_do_not_import_torch():
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, dynaprune_edge.runtime, dynaprune_edge.flops; assert 'torch' not in sys.modules",
        ],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
