"""Validation windows carried to a device in a file (NAME.frames.npz, written by `dpedge
deploy`): the device profiles and calibrates on the model's own data without torch, the
data readers or the data files. Plain arrays only, read with allow_pickle=False. The frames
are in the data's physical units, as the exported graphs take them; a file without that
mark (an older dpedge wrote normalised values) is refused rather than fed as physical."""

from __future__ import annotations

import tokenize
import zipfile
from pathlib import Path

import numpy as np

from dynaprune_edge.errors import DataError
from dynaprune_edge.files import atomic_write
from dynaprune_edge.runtime.base import check_frames
from dynaprune_edge.runtime.manifest import Manifest

FRAMES_SUFFIX = ".frames.npz"
UNITS = "physical"


def frames_path(onnx_path: Path) -> Path:
    """model.onnx → model.frames.npz (the dense twin model.dense.onnx shares it)."""
    return onnx_path.with_name(onnx_path.name.split(".")[0] + FRAMES_SUFFIX)


def save_frames(path: Path, frames: np.ndarray, described: str) -> None:
    """frames: (N, T, C, H, W) in the data's physical units; described: what they are, as
    the profile report says it."""

    def write(temporary: str) -> None:
        with open(temporary, "wb") as file:  # a file object: np.savez would append .npz to a name
            np.savez(
                file,
                frames=np.ascontiguousarray(frames, np.float32),
                described=np.array(described),
                units=np.array(UNITS),
            )

    atomic_write(path, write)


def load_frames(path: Path, manifest: Manifest) -> tuple[np.ndarray, str]:
    """The frames and their description, or a DataError saying what is wrong with the file."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            frames, described = stored["frames"], str(stored["described"])
            units = str(stored["units"]) if "units" in stored.files else "normalised"
    except FileNotFoundError:
        raise DataError(f"{path}: no such frames file") from None
    except (
        OSError,
        ValueError,
        KeyError,
        zipfile.BadZipFile,
        EOFError,
        SyntaxError,
        tokenize.TokenError,
    ) as error:  # a damaged header: the last two
        raise DataError(f"{path}: not a frames file written by dpedge ({error})") from None
    if units != UNITS:
        raise DataError(
            f"{path}: frames in {units} units, written by an older dpedge; this one feeds physical units: "
            "write the file again (dpedge deploy does)"
        )
    try:
        return check_frames(manifest, frames), described
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
