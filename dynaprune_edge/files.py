"""Writing files so that no reader ever sees half of one, and naming their content by
hash. No torch here: the runtime (which goes onto the Jetson) writes engines with it too."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """`write(temporary)` to a file beside `path`, then rename it into place: a crash or an
    error leaves the old file (or none), never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(temporary, 0o666 & ~umask)  # mkstemp's 0600 would hide the file from other users
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks (engines and graphs can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write(path, lambda temporary: Path(temporary).write_text(text))


def atomic_write_bytes(data: bytes, path: Path) -> None:
    atomic_write(path, lambda temporary: Path(temporary).write_bytes(data))
