"""model.pt and the resume state: written atomically, read without unpickling code.

Both files are plain `torch.save` dicts of tensors, numbers, strings and lists, so
`torch.load(path, weights_only=True)` reads them; anything that needs more (a pickle that
would import or call something) is refused before it can run.
"""

from __future__ import annotations

import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from dynaprune_edge.data import DATASETS, DataConfig, Normalizer
from dynaprune_edge.data.families import complete_config
from dynaprune_edge.errors import CheckpointError, DpedgeError
from dynaprune_edge.files import atomic_write
from dynaprune_edge.models import BACKBONES, DynaPruner, ModelConfig, build_model

FORMAT = "dpedge-checkpoint"
VERSION = 6
"""2: the DataMask holds its calibrated keep threshold and per-sample cap.
3: the pruning settings name their cost target (`budget`, `cost`, `cost_table`).
4: the mask generator's activity prior (`activity_weight`).
5: a dense model's grid is padded only to its backbone's strides (`models.region_side`).
6: a slimmable SimVP prunes its translator's residual stream (`SimVP`, one_width).
Version 5 files load, except a slimmable SimVP's (`older_problem`)."""


def older_problem(path: Path, kind: str, payload: dict) -> str | None:
    """Why a file of an older version cannot be read as this version's (None: it can)."""
    version = payload.get("version")
    if version != 5:
        return (
            f"{path}: {kind} version {version} is not supported (expected {VERSION}); train it again with this dpedge"
        )
    config = payload.get("model_config")
    pruning = config.get("pruning") if isinstance(config, dict) else None
    if isinstance(pruning, dict) and pruning.get("slimmable") and config.get("backbone") == "simvp":
        return (
            f"{path}: a slimmable SimVP of an older dpedge, whose width levels kept the translator's full residual stream: "
            "train it again with this dpedge (dpedge train --backbone simvp --slimmable ...)"
        )
    return None


def atomic_save(payload: dict, path: Path) -> None:
    atomic_write(path, lambda temporary: torch.save(payload, temporary))


def safe_load(path: Path, kind: str) -> dict:
    """A dpedge checkpoint of `kind` (read_tensors), its format and version checked."""
    payload = read_tensors(path, kind)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a dpedge {kind} (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        problem = older_problem(path, kind, payload)
        if problem:
            raise CheckpointError(problem)
    if payload.get("kind") != kind:
        raise CheckpointError(f"{path}: a dpedge {payload.get('kind')}, not a {kind}")
    return payload


def is_checkpoint(payload: object) -> bool:
    """Whether what read_tensors read is a dpedge checkpoint (else, e.g., a user's state dict)."""
    return isinstance(payload, dict) and payload.get("format") == FORMAT


def read_tensors(path: Path, kind: str):
    """torch.load with weights_only=True (tensors, numbers, strings and containers of them:
    nothing that runs code), every failure turned into one clear line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        with warnings.catch_warnings():  # torch's notes on foreign pickles: we refuse those anyway
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if not is_pickle(path, error):
            raise CheckpointError(f"{path}: not a dpedge {kind} (neither a torch zip nor a pickle)") from None
        raise CheckpointError(
            f"{path}: refused: loading it would run code or build objects that a dpedge "
            f"{kind} never holds (only tensors, numbers and strings are read)"
        ) from None
    except Exception as error:  # zip/pickle corruption surfaces as many types
        raise CheckpointError(f"{path}: not a dpedge {kind} ({type(error).__name__})") from None
    return payload


def is_pickle(path: Path, error: pickle.UnpicklingError) -> bool:
    """Whether torch's safe unpickler refused a pickle (one naming code or classes to build)
    rather than bytes of another kind, which it reports with the same exception: a torch
    zip or a binary pickle (protocol ≥ 2, opcode 0x80 first), or a text pickle naming a global."""
    with open(path, "rb") as file:
        start = file.read(2)
    return start == b"PK" or start[:1] == b"\x80" or "global" in str(error).lower()


def header(kind: str) -> dict:
    """The marker `safe_load` checks: format, version and kind ("model", "resume state")."""
    return {"format": FORMAT, "version": VERSION, "kind": kind}


@dataclass
class TrainedModel:
    """What `model.pt` holds: enough to rebuild and run the model with no other file."""

    model: DynaPruner
    model_config: ModelConfig
    data_config: DataConfig
    normalizer: Normalizer
    metrics: dict


def model_payload(
    model: DynaPruner,
    model_config: ModelConfig,
    data_config: DataConfig,
    normalizer: Normalizer,
    metrics: dict,
    data_fingerprint: str | None = None,
) -> dict:
    """data_fingerprint: the training data's (SpatioTemporalData.fingerprint), which a
    `--resume` compares with its resume.pt's before reading any data."""
    return {
        **header("model"),
        "model_config": model_config.to_dict(),
        "data_config": data_config.to_dict(),
        **({} if data_fingerprint is None else {"data_fingerprint": data_fingerprint}),
        "normalizer": normalizer.to_dict(),
        "state_dict": model.state_dict(),
        "metrics": metrics,
    }


def load_model(path: Path) -> TrainedModel:
    payload = safe_load(path, "model")
    try:
        model_config = ModelConfig.from_dict(payload["model_config"])
    except DAMAGED as error:
        raise damaged(path, "model", error) from None
    require_backbone(path, model_config.backbone)
    try:
        model = build_model(model_config)
        model.load_state_dict(payload["state_dict"])
        metrics = payload.get("metrics", {})
        if not isinstance(metrics, dict):
            raise TypeError(f"metrics are a {type(metrics).__name__}, not a dict")
        normalizer = Normalizer.from_dict(payload["normalizer"])
        if len(normalizer.mean) != model_config.shape.channels:
            raise ValueError(
                f"a normaliser of {len(normalizer.mean)} channels for a model of {model_config.shape.channels}"
            )
        data_config = DataConfig.from_dict(payload["data_config"])
        complete_config(
            data_config, DATASETS.get(data_config.name)
        )  # its values in range, for a family this dpedge knows
        shape = model_config.shape
        if (data_config.frames_in, data_config.frames_out) != (shape.frames_in, shape.frames_out):
            raise ValueError(
                f"data of {data_config.frames_in}→{data_config.frames_out} frames for a model of {shape.frames_in}→{shape.frames_out}"
            )
        return TrainedModel(model.eval(), model_config, data_config, normalizer, metrics)
    except DAMAGED as error:
        raise damaged(path, "model", error) from None


def require_backbone(path: Path, backbone: str) -> None:
    """A CheckpointError unless `backbone` (what the checkpoint records) is registered: a
    backbone of the user's own is registered by passing its file again (`--backbone
    PATH.py:Class`), since a checkpoint never names a file for dpedge to run."""
    if backbone not in BACKBONES.names():
        raise CheckpointError(
            f"{path} was trained with the backbone {backbone!r}, which is not built in: pass the file that defines it, "
            f"--backbone PATH.py:Class, as `dpedge train` was given it (a model.pt names no file to run)"
        )


DAMAGED = (KeyError, TypeError, ValueError, AttributeError, RuntimeError, DpedgeError)
"""What reading the fields of a checkpoint that passed `safe_load` raises when they are
wrong (missing, of another type, out of range): the file is damaged or crafted."""


def damaged(path: Path, kind: str, error: Exception) -> CheckpointError:
    """The one-line error for a checkpoint whose fields do not hold what dpedge wrote."""
    return CheckpointError(f"{path}: damaged dpedge {kind} ({type(error).__name__}: {error})".splitlines()[0])
