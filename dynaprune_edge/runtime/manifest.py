"""The sidecar `<model>.dpedge.json` that `dpedge export` writes beside every ONNX file:
what a runtime needs to feed the graph and read its outputs, without torch.

The manifest is bound to its graph by the graph's SHA-256 (written last, after the graph):
reading it checks the graph beside it, so a new graph beside an old manifest (a crash
between the two writes, a copy of one file only) is refused rather than run with the
wrong branches. Reading also refuses a graph whose external data would be read from
outside its folder, before onnxruntime or TensorRT opens it.

The graph runs one sample at a time (batch 1): each sample routes to its own sub-network.
It takes frames and returns forecasts in the data's physical units (mm/h, K, bikes): its
first nodes normalise with the training data's statistics and its last nodes undo it, so a
pipeline feeding it (a C++ one on a Jetson included) has nothing to re-implement. The
manifest records those statistics (`mean`, `std`) for reference.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from dynaprune_edge.checks import is_count, is_number
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.files import sha256_file

FORMAT = "dpedge-onnx"
VERSION = 4
OLDER_VERSIONS = {
    1: "does not bind the graph to it by hash",
    2: "has a graph that takes and returns normalised values, this dpedge physical units",
    3: "names its graph's outputs and fields as this dpedge no longer reads them",
}
"""Why a manifest of an earlier format cannot be run: version 2 bound the manifest to its
graph (onnx_sha256), 3 moved the graph to physical units, 4 renamed bucket to branch (the
`branch` output, `branches`, `per_branch`, mode `sliced`)."""

INPUT = "frames"  # (1, frames_in, channels, height, width) float32, physical units
FORECAST = "forecast"  # (1, frames_out, channels, height, width) float32, physical units
FLOPS = "flops"  # () float32: FLOPs the chosen sub-network executed for this sample
BRANCH = "branch"  # () int64: index of the chosen sub-network in `Manifest.branches`
BUDGET = "budget"
"""Optional input of a width-routed graph (mode "widths"): () float32, the mean cost ratio
to spend on the model's cost target, in (0, 1]; omitted, the trained budget."""
KEPT_REGIONS = "kept_region_mask"
"""Inside a pruned graph (not an output): the router's (1, 1, grid_h, grid_w) float 0/1 map
of the regions the sample computes; `dpedge profile` reads it to draw the DataMask."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: list[int]
    dtype: str


@dataclass(frozen=True)
class Branch:
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
    mode: str  # "dense", "gather", "sliced" or "widths" (a width router's branches, a run-time budget)
    onnx: str  # file name of the graph, beside the manifest
    onnx_sha256: str  # the graph file's SHA-256
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    mean: list[float]  # per channel, physical units: the statistics the graph normalises with inside
    std: list[float]
    width_levels: list[float]
    branches: list[Branch]
    dense_flops: float
    flops_convention: str
    versions: dict[str, str]
    parity: dict = field(default_factory=dict)  # max abs error vs PyTorch, per branch
    predicted: dict = field(default_factory=dict)  # a measured cost model's latency per branch (dynaprune_edge.cost)
    measured: dict = field(default_factory=dict)  # the export's own timing on its machine (export/exporter.py)
    data: dict = field(default_factory=dict)  # the training data's DataConfig: what `dpedge profile` feeds it
    gate_groups: dict = field(
        default_factory=dict
    )  # filter groups of each gate at full width (Branch.widths's denominators)
    budget: dict = field(
        default_factory=dict
    )  # mode "widths": the trained budget, its cost target, each branch's cost ratio
    layout: str = (
        "single"  # how onnxruntime runs a routed graph: as it is, or "split" (runtime/split.py), the faster at export
    )
    format: str = FORMAT
    version: int = VERSION

    @property
    def input(self) -> TensorSpec:
        return self.inputs[0]

    @property
    def trained_budget(self) -> float | None:
        """A width-routed graph's trained budget (what its `budget` input defaults to); None
        for the other modes."""
        return self.budget.get("trained") if self.mode == "widths" else None

    def computes(self, branch: int) -> str:
        """What sub-network `branch` computes, in words: a width level (or persistence) of a
        width-routed graph, or the range of kept-region counts routed to it."""
        if self.mode == "widths":
            return "persistence" if branch == 0 else f"width {self.width_levels[branch - 1]:g}"
        low, high = self.branches[branch].regions
        return f"{low}–{high} regions"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, values: object) -> Manifest:
        """A manifest from its JSON form, every field checked (manifests are files users are
        handed): a ConfigError naming the first field that is missing or cannot work."""
        if not isinstance(values, dict) or values.get("format") != FORMAT:
            raise ConfigError("not a dpedge export manifest (expected a JSON object of format 'dpedge-onnx')")
        version = values.get("version")
        if version in OLDER_VERSIONS:
            raise ConfigError(
                f"manifest version {version} (an older dpedge) {OLDER_VERSIONS[version]}: re-export with dpedge "
                "export MODEL.pt"
            )
        if version != VERSION:
            raise ConfigError(f"manifest version {version} is not supported (this dpedge reads {VERSION})")
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"unknown manifest fields: {', '.join(sorted(unknown))}")
        check = FieldCheck(values)
        for name in ("backbone", "dataset", "flops_convention"):
            check.text(name)
        check.choice("mode", MODES)
        if "layout" in values:
            check.choice("layout", LAYOUTS)
            if values["layout"] == "split" and values["mode"] == "dense":
                raise ConfigError("manifest field 'layout' is split, but a dense graph has no branches to split")
        check.text("onnx")
        if not is_file_name(values["onnx"]):
            raise ConfigError(f"manifest field 'onnx' must be a file name beside the manifest, got {values['onnx']!r}")
        check.text("onnx_sha256")
        if len(values["onnx_sha256"]) != 64 or set(values["onnx_sha256"]) - set("0123456789abcdef"):
            raise ConfigError("manifest field 'onnx_sha256' must be 64 hexadecimal digits")
        inputs, outputs = check.tensors("inputs", exactly=1), check.tensors("outputs")
        channels = inputs[0].shape[2] if len(inputs[0].shape) == 5 else None
        if channels is None:
            raise ConfigError(
                f"manifest input must be (1, frames, channels, height, width), got shape {inputs[0].shape}"
            )
        for name, positive in (("mean", False), ("std", True)):
            check.numbers(name, lengths=(1, channels), positive=positive)
        check.numbers("width_levels", positive=True, at_most=1.0)
        check.number("dense_flops", positive=True)
        for name in ("versions", "parity", "predicted", "measured", "data", "gate_groups", "budget"):
            check.mapping(name, required=name == "versions")
        check.data_record("data")
        if values["mode"] == "widths":
            check.budget_record("budget")
        return cls(**{**values, "inputs": inputs, "outputs": outputs, "branches": check.branches("branches")})


MODES = ("dense", "gather", "sliced", "widths")
LAYOUTS = ("single", "split")
"""A routed graph run as it is (its branches `If` nodes), or split into a router graph and
one graph per branch (runtime/split.py)."""
DATA_FIELDS = ("name", "path", "frames_in", "frames_out", "size", "synthetic_frames", "seed")
"""The fields of the training data's record (dynaprune_edge.data.DataConfig, which this
torch-free module cannot import; tests/runtime/test_manifest.py keeps the two equal)."""


def is_file_name(name: object) -> bool:
    """A plain file name (no folder, not . or ..): what a manifest or an engine's metadata may
    name, so that it always means a file beside it."""
    return isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name


class FieldCheck:
    """Type and range checks of a manifest's JSON fields, each failure one ConfigError."""

    def __init__(self, values: dict) -> None:
        self.values = values

    def get(self, name: str, kind: type | tuple[type, ...], what: str):
        if name not in self.values:
            raise ConfigError(f"manifest field {name!r} is missing")
        value = self.values[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"manifest field {name!r} must be {what}, got {json.dumps(value)[:80]}")
        return value

    def text(self, name: str) -> str:
        return self.get(name, str, "a string")

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.text(name)
        if value not in choices:
            raise ConfigError(f"manifest field {name!r} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def mapping(self, name: str, required: bool) -> None:
        if required or name in self.values:
            self.get(name, dict, "an object")

    def data_record(self, name: str) -> None:
        """The training data's record (DataConfig's fields): a text name, then a text path and
        whole numbers, each of them or null."""
        record = self.values.get(name) or {}
        unknown = sorted(set(record) - set(DATA_FIELDS))
        if unknown:
            raise ConfigError(
                f"manifest field {name!r} holds unknown fields {', '.join(map(repr, unknown))} (known: {', '.join(DATA_FIELDS)})"
            )
        for field_name, value in record.items():
            text = field_name in ("name", "path")
            if field_name == "name":
                fits = isinstance(value, str)
            else:  # None: the family's default (a path of None: synthetic data)
                fits = value is None or (isinstance(value, str) if text else is_count(value))
            if not fits:
                raise ConfigError(
                    f"manifest field {name}.{field_name} must be {'text' if text else 'a whole number ≥ 0'}, got {value!r}"
                )

    def budget_record(self, name: str) -> None:
        """A width-routed graph's budget record: the trained budget in (0, 1] and the text
        name of its cost target."""
        record = self.values.get(name) or {}
        trained, target = record.get("trained"), record.get("cost_target")
        if not (is_number(trained) and 0 < trained <= 1) or not isinstance(target, str):
            raise ConfigError(
                f"manifest field {name!r} of a width-routed graph must hold trained (a budget in (0, 1]) "
                f"and cost_target (text), got {json.dumps(record)[:80]}"
            )

    def number(self, name: str, positive: bool = False) -> float:
        value = self.get(name, (int, float), "a number")
        if not is_number(value) or (positive and value <= 0):
            raise ConfigError(
                f"manifest field {name!r} must be a finite{' positive' if positive else ''} number, got {value}"
            )
        return value

    def numbers(
        self, name: str, lengths: tuple[int, ...] | None = None, positive: bool = False, at_most: float | None = None
    ) -> list:
        value = self.get(name, list, "a list of numbers")
        if not value or (lengths is not None and len(value) not in lengths):
            expected = "non-empty" if lengths is None else " or ".join(map(str, sorted(set(lengths))))
            raise ConfigError(f"manifest field {name!r} must hold {expected} numbers, got {len(value)}")
        for number in value:
            if not is_number(number) or (positive and number <= 0) or (at_most is not None and number > at_most):
                bounds = (" > 0" if positive else "") + (f" and ≤ {at_most:g}" if at_most is not None else "")
                raise ConfigError(
                    f"manifest field {name!r} must hold finite numbers{bounds}, got {json.dumps(number)[:40]}"
                )
        return value

    def tensors(self, name: str, exactly: int | None = None) -> list[TensorSpec]:
        value = self.get(name, list, "a list of tensors")
        if not value or (exactly is not None and len(value) != exactly):
            raise ConfigError(
                f"manifest field {name!r} must list {exactly or 'at least one'} tensor(s), got {len(value)}"
            )
        specs = []
        for tensor in value:
            if (
                not isinstance(tensor, dict)
                or set(tensor) != {"name", "shape", "dtype"}
                or not isinstance(tensor["name"], str)
                or not isinstance(tensor["dtype"], str)
                or not isinstance(tensor["shape"], list)
                or not all(is_count(d, 1) for d in tensor["shape"])
            ):
                raise ConfigError(
                    f"manifest field {name!r}: each tensor is {{name, shape of positive integers, dtype}}, "
                    f"got {json.dumps(tensor)[:80]}"
                )
            specs.append(TensorSpec(**tensor))
        return specs

    def branches(self, name: str) -> list[Branch]:
        value = self.get(name, list, "a list of sub-networks")
        branches = []
        for branch in value:
            ok = isinstance(branch, dict) and set(branch) == {"regions", "tiles", "widths", "flops"}
            ok = (
                ok
                and isinstance(branch["regions"], list)
                and len(branch["regions"]) == 2
                and all(is_count(r) for r in branch["regions"])
                and branch["regions"][0] <= branch["regions"][1]
            )
            ok = ok and is_count(branch["tiles"])
            ok = (
                ok
                and isinstance(branch["widths"], dict)
                and all(isinstance(k, str) and is_count(v) for k, v in branch["widths"].items())
            )
            ok = ok and is_number(branch["flops"]) and branch["flops"] >= 0
            if not ok:
                raise ConfigError(
                    f"manifest field {name!r}: each sub-network is {{regions [low, high], tiles ≥ 0, widths "
                    f"{{gate: groups}}, flops ≥ 0}}, got {json.dumps(branch)[:80]}"
                )
            branches.append(Branch(**branch))
        return branches


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
        values = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ConfigError(f"{path}: malformed manifest ({str(error)[:120]})") from None
    try:
        manifest = Manifest.from_dict(values)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    if not onnx_path.is_file():
        raise ConfigError(f"{onnx_path}: no such file")
    if sha256_file(onnx_path) != manifest.onnx_sha256:
        raise ConfigError(
            f"{onnx_path.name} is not the graph {path.name} describes (its SHA-256 differs: another export's graph, "
            "or a write interrupted between the two): re-export, or copy both files together"
        )
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
        raise ConfigError(
            f"{onnx_path.name} may name external data files; checking where they are needs onnx: "
            "pip install 'dynaprune-edge[export]'"
        ) from None
    try:
        model = onnx.load(str(onnx_path), load_external_data=False)
    except Exception as error:  # noqa: BLE001 — protobuf's decode errors have no common base
        raise ConfigError(f"{onnx_path.name}: not a readable ONNX graph ({str(error).splitlines()[0][:200]})") from None
    folder = onnx_path.parent.resolve()
    for tensor in external_tensors(model.graph):
        location = next((entry.value for entry in tensor.external_data if entry.key == "location"), "")
        relative = Path(location)
        if (
            not location
            or relative.is_absolute()
            or ".." in relative.parts
            or not (folder / relative).resolve().is_relative_to(folder)
        ):
            raise ConfigError(
                f"{onnx_path.name}: tensor {tensor.name!r} reads its data from {location!r}, outside the graph's folder: refused"
            )


def external_tensors(graph) -> list:
    """Every tensor of the graph and its subgraphs (If branches) stored as external data."""
    from onnx import TensorProto

    found = [t for t in graph.initializer if t.data_location == TensorProto.EXTERNAL]
    for node in graph.node:
        for attribute in node.attribute:
            tensors = [attribute.t] if attribute.HasField("t") else list(attribute.tensors)
            found += [t for t in tensors if t.data_location == TensorProto.EXTERNAL]
            for subgraph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                found += external_tensors(subgraph)
    return found
