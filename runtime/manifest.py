"""The sidecar `<model>.dpedge.json` that `dpedge export` writes beside every ONNX file:
what a runtime needs to feed the graph and read its outputs, without torch.

The manifest is bound to its graph by the graph's SHA-256 (written last, after the graph):
reading it checks the graph beside it, so a new graph beside an old manifest (a crash
between the two writes, a copy of one file only) is refused rather than run with the
wrong normaliser or buckets. Reading also refuses a graph whose external data would be
read from outside its folder, before onnxruntime or TensorRT opens it.

The graph runs one sample at a time (batch 1): each sample routes to its own sub-network.
Inputs are frames in the model's normalised units (`normalize` converts physical values).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.files import sha256_file

FORMAT = "dpedge-onnx"
VERSION = 2  # 2: onnx_sha256 binds the manifest to its graph

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
    onnx_sha256: str  # the graph file's SHA-256
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
        if values.get("version") == 1:
            raise ConfigError("manifest version 1 (an older dpedge) does not bind the graph to it by hash: re-export with "
                              "dpedge export MODEL.pt")
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
    """The manifest beside `onnx_path`, once the graph there is the one it describes (by
    SHA-256) and keeps its external data inside its folder."""
    onnx_path = Path(onnx_path)
    path = manifest_path(onnx_path)
    if not path.is_file():
        raise ConfigError(f"{path}: no manifest beside {onnx_path.name} (was it written by `dpedge export`?)")
    try:
        manifest = Manifest.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError, KeyError) as error:
        raise ConfigError(f"{path}: malformed manifest ({error})") from None
    if not onnx_path.is_file():
        raise ConfigError(f"{onnx_path}: no such file")
    if sha256_file(onnx_path) != manifest.onnx_sha256:
        raise ConfigError(f"{onnx_path.name} is not the graph {path.name} describes (its SHA-256 differs: another export's graph, "
                          "or a write interrupted between the two): re-export, or copy both files together")
    check_external_data(onnx_path)
    return manifest


EXTERNAL_LOCATION = b"location"  # the key of a tensor's external-data entry; absent from a graph without any


def check_external_data(onnx_path: Path) -> None:
    """Refuse a graph whose tensors name external data outside its folder: an absolute
    location, a `..`, or a path that resolves (through symlinks) elsewhere. Older
    onnxruntime releases followed such paths and read any file the process could (see
    pyproject.toml); this check runs whatever version is installed, and TensorRT's parser
    gets the same graph. A graph without external data is recognised from its bytes alone,
    so a device with onnxruntime but without onnx needs onnx only for graphs that have some."""
    if EXTERNAL_LOCATION not in onnx_path.read_bytes():
        return
    try:
        import onnx
    except ImportError:
        raise ConfigError(f"{onnx_path.name} may name external data files; checking where they are needs onnx: "
                          "pip install 'dynaprune-edge[export]'") from None
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 — protobuf's decode errors have no common base
        raise ConfigError(f"{onnx_path.name}: not a readable ONNX graph ({str(error).splitlines()[0][:200]})") from None
    folder = onnx_path.parent.resolve()
    for tensor in external_tensors(model.graph):
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        relative = Path(location)
        if not location or relative.is_absolute() or ".." in relative.parts or not (folder / relative).resolve().is_relative_to(folder):
            raise ConfigError(f"{onnx_path.name}: tensor {tensor.name!r} reads its data from {location!r}, outside the graph's folder: refused")


def external_tensors(graph) -> list:
    """Every tensor of the graph and its subgraphs (If branches) stored as external data."""
    from onnx import TensorProto

    found = [t for t in graph.initializer if t.data_location == TensorProto.EXTERNAL]
    for node in graph.node:
        for attribute in node.attribute:
            tensors = [attribute.t] if attribute.HasField("t") else list(attribute.tensors)
            found += [t for t in tensors if t.data_location == TensorProto.EXTERNAL]
            for subgraph in ([attribute.g] if attribute.HasField("g") else list(attribute.graphs)):
                found += external_tensors(subgraph)
    return found
