"""The sidecar `<model>.dpedge.json` that `dpedge export` writes beside every ONNX file:
what a runtime needs to feed the graph and read its outputs, without torch.

The graph runs one sample at a time (batch 1): each sample routes to its own sub-network.
Inputs are frames in the model's normalised units (`normalize` converts physical values).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dynaprune_edge.errors import ConfigError

FORMAT = "dpedge-onnx"
VERSION = 1

INPUT = "frames"  # (1, frames_in, channels, height, width) float32
FORECAST = "forecast"  # (1, frames_out, channels, height, width) float32
FLOPS = "flops"  # () float32: FLOPs the chosen sub-network executed for this sample
BUCKET = "bucket"  # () int64: index of the chosen sub-network in `Manifest.buckets`
KEPT_REGIONS = "kept_region_mask"
"""Inside a pruned graph (not an output): the router's (1, 1, grid_h, grid_w) float 0/1 map
of the regions the sample computes; `dpedge profile` reads it to draw the DataMask."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: list[int]
    dtype: str


@dataclass(frozen=True)
class Bucket:
    """One compiled sub-network: samples whose kept-region count lies in `regions`
    (inclusive) run it; its tiled layers compute `tiles` regions (0: it runs on whole
    maps, skipped regions masked) and every gate keeps `widths[gate]` filter groups."""

    regions: list[int]
    tiles: int
    widths: dict[str, int]
    flops: float


@dataclass(frozen=True)
class Manifest:
    backbone: str
    dataset: str
    mode: str  # "dense", "gather" or "bucketed"
    onnx: str  # file name of the graph, beside the manifest
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    mean: list[float]  # per channel, physical units
    std: list[float]
    width_levels: list[float]
    buckets: list[Bucket]
    dense_flops: float
    flops_convention: str
    versions: dict[str, str]
    parity: dict = field(default_factory=dict)  # max abs error vs PyTorch, per bucket
    predicted: dict = field(default_factory=dict)  # a measured cost model's latency per bucket (dynaprune_edge.cost)
    measured: dict = field(default_factory=dict)  # the export's own timing on its machine (export/exporter.py)
    data: dict = field(default_factory=dict)  # the training data's DataConfig: what `dpedge profile` feeds it
    gate_groups: dict = field(default_factory=dict)  # filter groups of each gate at full width (Bucket.widths's denominators)
    format: str = FORMAT
    version: int = VERSION

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    def normalize(self, frames: np.ndarray) -> np.ndarray:
        """Physical units → the graph's units (channel axis 2 of (B, T, C, H, W))."""
        mean, std = (np.asarray(v, np.float32)[:, None, None] for v in (self.mean, self.std))
        return ((frames - mean) / std).astype(np.float32)

    def denormalize(self, forecast: np.ndarray) -> np.ndarray:
        mean, std = (np.asarray(v, np.float32)[:, None, None] for v in (self.mean, self.std))
        return (forecast * std + mean).astype(np.float32)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, values: dict) -> "Manifest":
        if values.get("format") != FORMAT:
            raise ConfigError("not a dpedge export manifest (expected format 'dpedge-onnx')")
        if values.get("version") != VERSION:
            raise ConfigError(f"manifest version {values.get('version')} is not supported (this dpedge reads {VERSION})")
        values = dict(values)
        values["inputs"] = [TensorSpec(**t) for t in values["inputs"]]
        values["outputs"] = [TensorSpec(**t) for t in values["outputs"]]
        values["buckets"] = [Bucket(**b) for b in values["buckets"]]
        return cls(**values)


def manifest_path(onnx_path: Path) -> Path:
    """model.onnx → model.dpedge.json"""
    onnx_path = Path(onnx_path)
    return onnx_path.with_name(onnx_path.stem + ".dpedge.json")


def read_manifest(onnx_path: Path) -> Manifest:
    path = manifest_path(onnx_path)
    if not path.is_file():
        raise ConfigError(f"{path}: no manifest beside {Path(onnx_path).name} (was it written by `dpedge export`?)")
    try:
        return Manifest.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, KeyError) as error:
        raise ConfigError(f"{path}: malformed manifest ({error})") from None
