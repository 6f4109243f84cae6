"""model.pt and the resume state: written atomically, read without unpickling code.

Both files are plain `torch.save` dicts of tensors, numbers, strings and lists, so
`torch.load(path, weights_only=True)` reads them; anything that needs more (a pickle that
would import or call something) is refused before it can run.

resume.pt's format (what `--resume` reads) lives here beside model.pt's, not in a module of
its own: both files carry the one marker and version (`header`) and are read by the one
`safe_load`, and a resume state is checked against the model.pt written with it
(training/run.py).
"""

from __future__ import annotations

import json
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from dynaprune_edge.checks import is_count, is_number
from dynaprune_edge.data import DATASETS, DataConfig, Normalizer
from dynaprune_edge.data.families import complete_config
from dynaprune_edge.errors import CheckpointError, DpedgeError
from dynaprune_edge.files import atomic_write
from dynaprune_edge.models import BACKBONES, DynaPruner, ModelConfig, build_model
from dynaprune_edge.training.sample_pruning import SampleScores

MODEL_FILE = "model.pt"
RESUME_FILE = "resume.pt"
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


RESUME_FIELDS = ("state_dict", "optimizer", "step", "epoch", "train_seconds", "history")
"""What `Trainer.restore` reads from resume.pt in any run (--st-prune adds its scores)."""


def resume_problem(payload: dict) -> str | None:
    """What is wrong with the fields of a resume state that `safe_load` read (None: nothing):
    checked before the data are read (training/run.py) and again when restoring."""
    missing = [name for name in RESUME_FIELDS if name not in payload]
    if missing:
        return f"no {', '.join(missing)}"
    step, epoch, seconds = payload["step"], payload["epoch"], payload["train_seconds"]
    if not (is_count(step) and is_count(epoch)):
        return f"step {step!r}, epoch {epoch!r}"
    if not (is_number(seconds) and seconds >= 0):
        return f"train_seconds {seconds!r}"
    optimizer = payload["optimizer"]
    if not (
        isinstance(optimizer, dict)
        and isinstance(optimizer.get("state"), dict)
        and isinstance(optimizer.get("param_groups"), list)
    ):
        return "its optimizer state has no state and param_groups"
    try:
        history = json.loads(payload["history"])
    except (TypeError, ValueError):
        return "its history is not JSON text"
    if not isinstance(history, list) or len(history) != epoch:
        return "its history is not one entry per epoch"
    return None


def resumed_differently(path: Path, mismatched: list[str]) -> CheckpointError:
    """The refusal of a --resume whose options or data are not the interrupted run's."""
    named = {"data_fingerprint": "data content (the files at the same path changed)"}
    return CheckpointError(
        f"{path}: was written with different {', '.join(named.get(key, key) for key in mismatched)}; "
        "resume with the same options and data, or train into a new --out directory"
    )


def resume_payload(
    identity: dict,
    model: DynaPruner,
    optimizer: torch.optim.Optimizer,
    step: int,
    epoch: int,
    train_seconds: float,
    scoring_seconds: float,
    history: list[dict],
    scores: SampleScores | None,
) -> dict:
    """What resume.pt holds after an epoch: what a resumed run must share with this one
    (identity: `Trainer._identity`), the network's and the optimizer's states, the counters,
    the history (JSON text) and --st-prune's sample scores."""
    return {
        **header("resume state"),
        **identity,
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "epoch": epoch,
        "train_seconds": train_seconds,
        "scoring_seconds": scoring_seconds,
        "history": json.dumps(history),
        **({"sample_scores": scores.state_dict()} if scores is not None else {}),
    }


def read_resume(path: Path, identity: dict) -> dict:
    """The resume state at `path` (`safe_load`), refused when the run that wrote it does not
    share `identity` with this one (`resumed_differently`); `Trainer.restore` reads its fields."""
    payload = safe_load(path, "resume state")
    mismatched = [key for key, value in identity.items() if payload.get(key) != value]
    if "data_config" in mismatched:  # other data options: of course other content
        mismatched.remove("data_fingerprint")
    if mismatched:
        raise resumed_differently(path, mismatched)
    return payload
