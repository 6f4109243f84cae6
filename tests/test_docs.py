"""The documentation a user reads: the site builds with no warning (a broken link, anchor or
API reference fails it), the README stays a page a newcomer reads in minutes, and every
command of its quick start runs as written."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPOSITORY = Path(__file__).parents[1]
README = REPOSITORY / "README.md"
TINY = {"train": ["--epochs", "1"], "profile": ["--runs", "5", "--samples", "4"]}
"""What each quick-start command gets added: its settings made tiny, nothing else changed."""


def test_the_documentation_site_builds_in_strict_mode(tmp_path):
    built = subprocess.run(
        [str(Path(sys.executable).parent / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stderr
    assert "WARNING" not in built.stderr, built.stderr
    assert (tmp_path / "site" / "guides" / "own-model" / "index.html").is_file()


def test_the_readme_is_a_page_a_newcomer_reads_in_minutes():
    lines = README.read_text().splitlines()
    assert len(lines) <= 300, f"README.md has {len(lines)} lines: what is not essential belongs in docs/"
    assert (
        lines.index(
            "    make demo        # creates .venv, installs, then the demo below: a plot, a verdict and what to try next (5 min)"
        )
        < 40
    )


def quick_start() -> tuple[list[list[str]], str]:
    """The README quick start's command lines (continuations joined) and its Python snippet."""
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"((?:^    .*\n?)+)", section, flags=re.M)
    commands, python = [], ""
    for block in blocks:
        code = "\n".join(line[4:] for line in block.splitlines())
        if code.startswith("from "):
            python = code
            continue
        for line in code.replace("\\\n", " ").splitlines():
            command = line.split("  #", 1)[0].split()
            assert command[0] == "dpedge", line
            commands.append(command[1:])
    return commands, python


@pytest.mark.slow
def test_every_quick_start_command_runs_as_written_with_tiny_settings(dpedge, tmp_path, monkeypatch):
    """From a folder holding the examples, as a clone does. The deploy line names a Jetson
    this machine cannot reach: it must get as far as trying (one line naming the host)."""
    shutil.copytree(REPOSITORY / "examples", tmp_path / "examples")
    commands, python = quick_start()
    assert [c[0] for c in commands] == ["train", "export", "profile", "profile", "info", "deploy", "train", "export"]
    for command in commands:
        ran = dpedge(*command, *TINY.get(command[0], []), cwd=tmp_path)
        if command[0] == "deploy":
            assert ran.returncode == 1 and "orin.local" in ran.stderr.strip().splitlines()[-1], ran.stderr
            continue
        assert ran.returncode == 0, (command, ran.stderr[-2000:])
    frames = np.random.default_rng(0).uniform(0, 20, (2, 4, 2, 10, 20)).astype(np.float32)
    namespace = {"frames": frames}
    monkeypatch.chdir(tmp_path)
    exec(compile(python, "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.forecast.shape == (2, 4, 2, 10, 20) and result.flops.shape == (2,) and result.branch.shape == (2,)
