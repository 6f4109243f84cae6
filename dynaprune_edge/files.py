"""Writing files so that no reader ever sees half of one, and naming their content by
hash. No torch here: the runtime (which goes onto the Jetson) writes engines with it too."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from dynaprune_edge.errors import ConfigError


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """`write(temporary)` to a file beside `path`, then rename it into place: a crash or an
    error leaves the old file (or none), never a half-written one. Durable too: the file is
    fsynced before the rename and its folder after, so a power cut (a Jetson unplugged)
    cannot leave an empty file at the final name."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = create_beside(path)
    try:
        write(temporary)
        fsync_path(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_path(path.parent)


def create_beside(path: Path) -> str:
    """A new empty file `.NAME.<random>.tmp` beside `path`, created with mode 0666 so that
    the process's umask applies as it would to `path` itself (mkstemp's 0600 would hide the
    file from other users, and reading the umask means setting it, process-wide)."""
    for _ in range(100):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return str(temporary)
    raise FileExistsError(f"no free temporary name beside {path}")


def fsync_path(path: Path | str) -> None:
    """Flush a file's or a folder's content to the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def sha256_file(path: Path) -> str:
    """The file's SHA-256, read in 1 MiB blocks (engines and graphs can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_writable(path: Path, option: str, *, folder: bool) -> None:
    """ConfigError unless `path` can be written (a folder to write into if `folder`, else a
    file): checked before a command's work, which would otherwise end, minutes later, in
    an OSError at its first write."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        raise ConfigError(
            f"{option} {path}: a {'file' if folder else 'folder'}, not a {'folder' if folder else 'file'}"
        )
    existing = next(parent for parent in (path if folder else path.parent, *path.absolute().parents) if parent.exists())
    if not existing.is_dir():
        raise ConfigError(f"{option} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {path}: {existing} is not writable")


def atomic_write_text(text: str, path: Path) -> None:
    atomic_write(path, lambda temporary: Path(temporary).write_text(text))


def atomic_write_bytes(data: bytes, path: Path) -> None:
    atomic_write(path, lambda temporary: Path(temporary).write_bytes(data))
