"""dpedge's one way of writing a file: never half-written, durable across a power cut, with
the permissions the user's umask gives, and without touching the process's umask."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dynaprune_edge import files


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "model.onnx"
    target.write_text("old")

    def fail(temporary):
        Path(temporary).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        files.atomic_write(target, fail)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_the_file_and_then_its_folder_are_flushed_around_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(descriptor):
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{descriptor}"))))
        real_fsync(descriptor)

    def rename(source, destination):
        events.append(("rename", Path(destination)))
        real_replace(source, destination)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", rename)
    target = tmp_path / "model.dpedge.json"
    files.atomic_write_text("{}", target)
    assert [kind for kind, _ in events] == ["fsync", "rename", "fsync"]
    assert events[0][1].parent == tmp_path and events[0][1].name.startswith(
        ".model.dpedge.json."
    )  # the temporary, before the rename
    assert events[1][1] == target and events[2][1] == tmp_path


def test_permissions_follow_the_umask_which_is_never_changed(tmp_path):
    """In a process with umask 027 (a subprocess: the umask is process-wide), os.umask made
    to fail proves dpedge never sets it, even to read it."""
    script = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "os.umask(0o027)\n"
        "def refuse(mask): raise AssertionError('os.umask called')\n"
        "os.umask = refuse\n"
        "from dynaprune_edge.files import atomic_write_bytes\n"
        "atomic_write_bytes(b'x', Path(sys.argv[1]))\n"
    )
    target = tmp_path / "engine"
    subprocess.run([sys.executable, "-c", script, str(target)], check=True)
    assert target.stat().st_mode & 0o777 == 0o640
