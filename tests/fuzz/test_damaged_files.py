"""Damaged files, one at a time: a valid command line (dpedge_fuzz.BASES) whose input file
is truncated, replaced by random bytes, a valid container of the right format holding the
wrong contents, or has bytes flipped, must end in exit status 1, one `error:` line, no
traceback and no file created or changed, before its expensive work starts. (That each
command line gets to its work with the files intact is checked in test_bad_options.py.)

A flipped byte is noticed for sure only where the file is bound to its reader by a hash
(the ONNX graph by its manifest): elsewhere (a zip's timestamp, an HDF5 file's free space,
the inside of a JSON string) it may leave a valid file, so flipped bytes must be refused
as above or taken as a valid file, never crash. A truncation keeps less than the whole
document: text formats lose at least their last non-blank character, a trtexec log its
first performance figure."""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.data_files import (
    ARRAYS,
    KNMI_FRAMES,
    identity_nodes,
    knmi_image,
    knmi_name,
    taxibj_arrays,
    write_knmi_frame,
    write_npz,
    write_t2m,
)
from tests.fuzz.dpedge_fuzz import (
    BASES,
    ENGINE,
    FRAMES,
    NAMES,
    TEXT,
    assert_refused,
    assert_refused_or_accepted,
    examples,
    run_dpedge,
    sandbox,
    snapshot,
)

pytestmark = pytest.mark.fuzz


@dataclass(frozen=True)
class Damage:
    """One way a file is damaged: `write(path)` puts the damaged file at `path`."""

    label: str
    write: Callable[[Path], None]

    def __repr__(self) -> str:
        return self.label


def as_bytes(label: str, content: bytes) -> Damage:
    return Damage(label, lambda path: path.write_bytes(content))


# ------------------------------------------------------------------------------ bytes


def truncations(valid: bytes, kept_at_most: int) -> st.SearchStrategy[Damage]:
    return st.integers(0, kept_at_most - 1).map(
        lambda kept: as_bytes(f"the first {kept} of {len(valid)} bytes", valid[:kept])
    )


def random_bytes() -> st.SearchStrategy[Damage]:
    return st.binary(max_size=4096).map(lambda junk: as_bytes(f"{len(junk)} random bytes {junk[:24]!r}", junk))


def flips(valid: bytes) -> st.SearchStrategy[Damage]:
    def flipped(changes: list[tuple[int, int]]) -> Damage:
        damaged = bytearray(valid)
        for offset, mask in changes:
            damaged[offset] ^= mask
        return as_bytes(
            "bytes flipped at " + ", ".join(f"{offset} (^{mask:#04x})" for offset, mask in changes), bytes(damaged)
        )

    change = st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255))
    return st.lists(change, min_size=1, max_size=8, unique_by=lambda c: c[0]).map(flipped)


# ------------------------------------------------------------------------------ wrong contents

JSON_KINDS = {
    "null": st.none(),
    "a boolean": st.booleans(),
    "a number": st.integers() | st.floats(allow_nan=False, allow_infinity=False),
    "a string": TEXT,
    "a list": st.lists(st.integers(), max_size=3),
    "an object": st.dictionaries(NAMES, st.integers(), max_size=3),
}


def json_kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {int: "a number", float: "a number", str: "a string", list: "a list", dict: "an object"}[type(value)]


def another_json_kind(value) -> st.SearchStrategy:
    """A JSON value of another kind than `value` (a number for a string, a list for a number...)."""
    return st.one_of(*(strategy for kind, strategy in JSON_KINDS.items() if kind != json_kind(value)))


def leaves(tree: dict, prefix: tuple = ()) -> list[tuple]:
    """The paths (key tuples) to the non-None, non-dict values of a nested dict."""
    found = []
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            found += leaves(value, (*prefix, key))
        elif value is not None:
            found.append((*prefix, key))
    return found


def changed(tree: dict, path: tuple, value=None, delete: bool = False) -> dict:
    """A copy of the JSON document `tree` with the value at `path` replaced (or deleted)."""
    copy = json.loads(json.dumps(tree))
    node = copy
    for key in path[:-1]:
        node = node[key]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return copy


def json_documents(
    valid: dict,
    write: Callable[[Path, dict], None],
    required: set[str],
    nested: dict[str, tuple] | None = None,
    lies: st.SearchStrategy | None = None,
    nullable: frozenset[tuple] = frozenset(),
) -> st.SearchStrategy[Damage]:
    """Valid JSON with wrong contents: a field of another JSON kind, a `required` field
    missing, an unknown field, not an object; `nested`: fields whose own fields get the
    same; `lies`: well-typed values that describe another file; `nullable`: the fields for
    which null is a valid value (not a damage)."""

    def of_another_kind(path: tuple) -> st.SearchStrategy[Damage]:
        node = valid
        for key in path:
            node = node[key]
        kinds = (
            another_json_kind(node).filter(lambda value: value is not None)
            if path in nullable
            else another_json_kind(node)
        )
        return kinds.map(
            lambda value: Damage(
                f"{'.'.join(map(str, path))} = {value!r}", lambda p: write(p, changed(valid, path, value))
            )
        )

    top = [(name,) for name in valid]
    inner = [(name, key) for name, keys in (nested or {}).items() for key in keys]
    damages = [
        st.sampled_from(top + inner).flatmap(of_another_kind),
        st.sampled_from(sorted(required)).map(
            lambda name: Damage(f"no {name}", lambda p: write(p, changed(valid, (name,), delete=True)))
        ),
        NAMES.filter(lambda name: name not in valid).map(
            lambda name: Damage(f"unknown field {name}", lambda p: write(p, {**valid, name: 1}))
        ),
        st.sampled_from([[], [valid], "manifest", 2, None]).map(
            lambda doc: Damage(f"the document {doc!r:.40}", lambda p: p.write_text(json.dumps(doc)))
        ),
    ]
    return st.one_of(*damages, *([lies] if lies is not None else []))


def write_json(path: Path, document) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


def manifest_damages(valid: bytes) -> st.SearchStrategy[Damage]:
    from dynaprune_edge.runtime.manifest import Manifest

    values = json.loads(valid)
    data_fields = tuple(key for key, value in values["data"].items() if value is not None)
    shape = values["inputs"][0]["shape"]
    other_shape = st.lists(st.integers(1, 64), min_size=len(shape), max_size=len(shape)).filter(lambda s: s != shape)
    lies = st.one_of(
        other_shape.map(
            lambda s: Damage(
                f"inputs[0].shape = {s} (another grid than the graph's)",
                lambda p: write_json(p, {**values, "inputs": [{**values["inputs"][0], "shape": s}]}),
            )
        ),
        NAMES.map(
            lambda key: Damage(
                f"data.{key} added", lambda p: write_json(p, {**values, "data": {**values["data"], key: 1}})
            )
        ),
    )
    optional = {
        field.name for field in fields(Manifest) if field.default is not MISSING or field.default_factory is not MISSING
    }
    required = set(values) - optional | {"format", "version"}  # those two have defaults, but must be the current ones
    nullable = frozenset(
        ("data", key) for key in data_fields if key != "name"
    )  # null: the family's default (DataConfig)
    return json_documents(values, write_json, required, {"data": data_fields}, lies, nullable)


def engine_meta_damages(valid: bytes) -> st.SearchStrategy[Damage]:
    """Only what dpedge checks before TensorRT opens the engine (its format and version, the
    file names beside it, the graph's hash): the device, TensorRT version and the engine's
    own hash are compared on the device, and this machine has no TensorRT."""
    values = json.loads(valid)
    not_file_names = st.sampled_from(
        ["", ".", "..", "../model.onnx", "/tmp/model.onnx", "sub/model.onnx"]
    ) | another_json_kind("")
    field = lambda name, strategy: strategy.map(
        lambda value: Damage(f"{name} = {value!r}", lambda p: write_json(p, {**values, name: value}))
    )
    return st.one_of(
        field("format", TEXT.filter(lambda t: t != values["format"]) | another_json_kind("")),
        field("version", st.integers().filter(lambda v: v != values["version"]) | another_json_kind(0)),
        field("onnx", not_file_names),
        field("manifest", not_file_names),
        field(
            "onnx_sha256",
            st.text("0123456789abcdef", min_size=64, max_size=64).filter(lambda h: h != values["onnx_sha256"])
            | another_json_kind(""),
        ),
        st.sampled_from(sorted(values)).map(
            lambda name: Damage(f"no {name}", lambda p: write_json(p, changed(values, (name,), delete=True)))
        ),
        NAMES.filter(lambda n: n not in values).map(
            lambda name: Damage(f"unknown field {name}", lambda p: write_json(p, {**values, name: 1}))
        ),
        st.sampled_from([[], "engine", 1, None]).map(
            lambda doc: Damage(f"the document {doc!r}", lambda p: write_json(p, doc))
        ),
    )


def torch_payloads(
    valid: bytes, checked: tuple[str, ...], semantic: list[tuple[str, tuple, object]]
) -> st.SearchStrategy[Damage]:
    """A torch.save dict (as dpedge writes them) with wrong contents: a field missing, a
    value of another type in one of the `checked` fields, a weight missing, unknown, of
    another shape or not a tensor, or one of the `semantic` values that cannot work."""
    import torch

    payload = torch.load(io.BytesIO(valid), weights_only=True)

    def saved(label: str, make: Callable[[], dict]) -> Damage:
        return Damage(label, lambda path: torch.save(make(), path))

    def replaced(path: tuple, value) -> dict:
        copy = {**payload}
        node = copy
        for key in path[:-1]:
            node[key] = dict(node[key])
            node = node[key]
        node[path[-1]] = value
        return copy

    def of_another_type(path: tuple) -> st.SearchStrategy[Damage]:
        node = payload
        for key in path:
            node = node[key]
        others = {
            str: [5, 1.5, ["simvp"], {"a": 1}, True],
            int: ["4", [4], {}, True, 4.5],
            float: ["0.5", [0.5], {}, True],
            list: ["0.5", 1.0, {}, ["a", "b"]],
            bool: ["yes", [True]],
        }.get(type(node), ["x", [1]])
        return st.sampled_from(others).map(
            lambda value: saved(f"{'.'.join(map(str, path))} = {value!r}", lambda: replaced(path, value))
        )

    paths = [path for name in checked for path in leaves({name: payload[name]})]
    weights = payload["state_dict"]
    names = sorted(
        name for name in weights if not name.endswith("num_batches_tracked")
    )  # torch fills that one in when missing
    tensor_names = [n for n in names if weights[n].ndim > 0]
    return st.one_of(
        st.sampled_from(["format", "version", "kind", *checked, "state_dict"]).map(
            lambda name: saved(f"no {name}", lambda: {k: v for k, v in payload.items() if k != name})
        ),
        st.sampled_from(paths).flatmap(of_another_type),
        st.sampled_from(semantic).map(lambda change: saved(change[0], lambda: replaced(change[1], change[2]))),
        st.sampled_from(names).map(
            lambda name: saved(
                f"state_dict without {name}",
                lambda: replaced(("state_dict",), {k: v for k, v in weights.items() if k != name}),
            )
        ),
        NAMES.map(
            lambda name: saved(
                f"state_dict with an unknown weight {name}",
                lambda: replaced(("state_dict",), {**weights, name: torch.zeros(2)}),
            )
        ),
        st.sampled_from(tensor_names).map(
            lambda name: saved(
                f"state_dict[{name}] of another shape",
                lambda: replaced(("state_dict", name), torch.zeros(weights[name].numel() + 1)),
            )
        ),
        st.sampled_from(names).map(
            lambda name: saved(f"state_dict[{name}] a string", lambda: replaced(("state_dict", name), "weights"))
        ),
    )


NAN = math.nan
MODEL_SEMANTIC = [
    ("normalizer.std = [0, 0]", ("normalizer", "std"), [0.0, 0.0]),
    ("normalizer.std = [-1, 1]", ("normalizer", "std"), [-1.0, 1.0]),
    ("normalizer.mean = [nan, 0]", ("normalizer", "mean"), [NAN, 0.0]),
    ("normalizer.mean of 3 channels", ("normalizer", "mean"), [0.0, 0.0, 0.0]),
    ("a normaliser of 3 channels for a 2-channel model", ("normalizer",), {"mean": [0.0] * 3, "std": [1.0] * 3}),
    ("model_config.shape.height = 0", ("model_config", "shape", "height"), 0),
    ("model_config.shape.channels = -2", ("model_config", "shape", "channels"), -2),
    ("model_config.pruning.budget = 2", ("model_config", "pruning", "budget"), 2.0),
    ("model_config.backbone = 'resnet'", ("model_config", "backbone"), "resnet"),
    ("data_config.name = 'mnist'", ("data_config", "name"), "mnist"),
    ("data_config.frames_in = 0", ("data_config", "frames_in"), 0),
    ("data_config.size = -1", ("data_config", "size"), -1),
    ("data_config.frames_in = 5, not the model's 4", ("data_config", "frames_in"), 5),
    ("metrics = [1, 2]", ("metrics",), [1, 2]),
]
RESUME_SEMANTIC = [
    ("step = -1", ("step",), -1),
    ("epoch = -1", ("epoch",), -1),
    ("epoch = 7, beyond --epochs 1", ("epoch",), 7),
    ("history = 'not json'", ("history",), "not json"),
    ("history = '{}' (not one entry per epoch)", ("history",), "{}"),
    ("history of 3 epochs after 1", ("history",), "[{}, {}, {}]"),
    ("optimizer = {}", ("optimizer",), {}),
    ("optimizer without its state", ("optimizer", "state"), None),
    ("optimizer without its param_groups", ("optimizer", "param_groups"), None),
    ("train_seconds = nan", ("train_seconds",), NAN),
    ("train_seconds = -5", ("train_seconds",), -5.0),
    ("model_config.options.spatial_channels = 9", ("model_config", "options", "spatial_channels"), 9),
    ("train_config.batch_size = 3", ("train_config", "batch_size"), 3),
]


def npz_file(label: str, arrays: dict) -> Damage:
    return Damage(label, lambda path: write_npz(path, arrays))


def taxibj_damages(valid: bytes) -> st.SearchStrategy[Damage]:
    arrays = taxibj_arrays()
    name = st.sampled_from(ARRAYS)

    def each(change: Callable[[np.ndarray], np.ndarray], label: str) -> st.SearchStrategy[Damage]:
        return name.map(lambda n: npz_file(f"{n} {label}", {**arrays, n: change(arrays[n])}))

    def poisoned(value: float) -> Callable[[np.ndarray], np.ndarray]:
        def poison(array: np.ndarray) -> np.ndarray:
            array = array.copy()
            array[0, 0, 0, 0, 0] = value
            return array

        return poison

    return st.one_of(
        name.map(lambda n: npz_file(f"no {n}", {k: v for k, v in arrays.items() if k != n})),
        name.map(lambda n: npz_file(f"{n} renamed", {(k + "_" if k == n else k): v for k, v in arrays.items()})),
        each(lambda a: a.reshape(a.shape[0], -1), "of rank 2"),
        each(lambda a: a[:, :3], "of 3 frames, not 4"),
        each(lambda a: np.concatenate([a, a[:, :, :1]], axis=2), "of 3 channels, not 2"),
        each(lambda a: a[:-1], "one window short of its pair"),
        each(lambda a: a[..., :-1], "one column narrower than its pair"),
        each(lambda a: a[:0], "of no windows"),
        each(lambda a: np.full(a.shape, "flow"), "of strings"),
        each(lambda a: a.astype(np.complex64) * 1j, "of complex numbers"),
        st.sampled_from([NAN, math.inf, -math.inf]).flatmap(lambda v: each(poisoned(v), f"holding {v}")),
        st.just(npz_file("one window of each", {k: v[:1] for k, v in arrays.items()})),
        st.just(
            Damage(
                "a single array (np.save), not an archive", lambda path: np.save(open(path, "wb"), arrays["X_train"])
            )
        ),
        st.just(
            Damage(
                "arrays of objects (a pickle inside)",
                lambda path: write_npz(path, {**arrays, "X_train": np.array([{}], dtype=object)}),
            )
        ),
    )


def frames_damages(valid: bytes) -> st.SearchStrategy[Damage]:
    with np.load(io.BytesIO(valid)) as stored:
        frames, described = stored["frames"], stored["described"]
    arrays = {"frames": frames, "described": described}
    changed_frames = lambda label, value: npz_file(label, {**arrays, "frames": value})
    return st.one_of(
        st.sampled_from(sorted(arrays)).map(lambda n: npz_file(f"no {n}", {k: v for k, v in arrays.items() if k != n})),
        st.lists(st.integers(1, 40), min_size=1, max_size=6)
        .filter(lambda s: tuple(s[1:]) != frames.shape[1:])
        .map(lambda s: changed_frames(f"frames of shape {tuple(s)}", np.zeros(s, np.float32))),
        st.sampled_from([np.int64, np.bool_, np.complex64]).map(
            lambda t: changed_frames(f"frames of {np.dtype(t)}", frames.astype(t))
        ),
        st.just(changed_frames("frames of strings", np.full(frames.shape, "x"))),
        st.sampled_from([NAN, math.inf]).map(
            lambda v: changed_frames(f"frames holding {v}", np.full(frames.shape, v, np.float32))
        ),
        st.just(changed_frames("an empty batch of frames", frames[:0])),
        st.just(changed_frames("frames of objects (a pickle inside)", np.array([{}], dtype=object))),
    )


KNMI_TARGET = "knmi/" + knmi_name(25)
"""The frame of the KNMI folder the tests damage (the sixth of twenty)."""


def knmi_damages(valid: bytes) -> st.SearchStrategy[Damage]:
    image = knmi_image(5)

    def frame(label: str, pixels: np.ndarray = image, **changes) -> Damage:
        return Damage(label, lambda path: write_knmi_frame(path, pixels, **changes))

    def renamed(label: str, name: str, start: str | None = None) -> Damage:
        def write(path: Path) -> None:
            path.unlink()
            write_knmi_frame(path.with_name(name), image, start=start)

        return Damage(label, write)

    def all_missing(path: Path) -> None:
        for index in range(KNMI_FRAMES):
            write_knmi_frame(path.parent / knmi_name(5 * index), np.full_like(image, 65535))

    not_a_formula = TEXT.filter(lambda t: "PV" not in t)
    return st.one_of(
        st.just(frame("no image1/image_data", image_path="image1/other")),
        st.just(frame("image_data of text", pixels=np.array([b"rain"] * 4))),
        st.sampled_from([(32,), (2, 32, 32), (0, 32), (32, 0)]).map(
            lambda s: frame(f"image_data of shape {s}", pixels=np.zeros(s, np.uint16))
        ),
        st.just(frame("an image of another size than the other frames", pixels=knmi_image(5, side=24))),
        st.just(frame("no calibration group", calibration=False)),
        st.just(frame("no calibration formula", formula=None)),
        not_a_formula.map(lambda f: frame(f"calibration formula {f!r}", formula=f)),
        st.sampled_from(["GEO=1e999*PV+0", "GEO=0.01*PV+1e999", "GEO=nan*PV"]).map(
            lambda f: frame(f"calibration formula {f!r}", formula=f)
        ),
        st.sampled_from([(0.5,), (b"missing",), (1.5, 2.5)]).map(lambda c: frame(f"missing-data codes {c}", codes=c)),
        st.just(frame("float pixels holding NaN", pixels=np.where(image == 65535, 65535, np.nan).astype(np.float32))),
        st.just(renamed("a frame named without its time, none inside", "radar_frame.h5")),
        st.sampled_from(["yesterday", "26-AUG-2010", "99-XXX-2010;00:00:00.000"]).map(
            lambda s: renamed(f"a frame named without its time, product_datetime_start {s!r}", "radar_frame.h5", s)
        ),
        st.just(renamed("two frames at the same time", "OTHER_" + knmi_name(20))),
        st.sampled_from([1, 2, 7, 13]).map(
            lambda m: renamed(f"a frame {m} min off the 5-minute steps", knmi_name(25 + m))
        ),
        st.just(Damage("every pixel of every frame out of the image", all_missing)),
    )


def t2m_damages(valid: bytes) -> st.SearchStrategy[Damage]:
    hours = np.arange(40)

    def nc(label: str, **changes) -> Damage:
        return Damage(label, lambda path: write_t2m(path, **changes))

    cube = lambda shape: np.full(shape, 280.0, np.float32)
    return st.one_of(
        st.just(nc("no variable t2m", variable="temperature")),
        st.sampled_from([(40, 8), (40, 8, 8, 2)]).map(
            lambda s: nc(f"t2m of shape {s}", values=cube(s), dims=("time", "lat", "lon", "level")[: len(s)])
        ),
        st.just(nc("t2m on dims (x, y, t)", dims=("x", "y", "t"), coordinates=("x", "y", "t"))),
        st.sampled_from(["time", "lat", "lon"]).map(
            lambda c: nc(f"no coordinate variable {c}", coordinates=tuple(n for n in ("time", "lat", "lon") if n != c))
        ),
        st.just(nc("a time without units", units=None)),
        st.sampled_from(["fortnights since the flood", "hours", "", "hours since yesterday"]).map(
            lambda u: nc(f"time units {u!r}", units=u)
        ),
        st.sampled_from(["martian", "", "julian-ish"]).map(lambda c: nc(f"calendar {c!r}", calendar=c)),
        st.sampled_from([NAN, math.inf]).map(
            lambda v: nc(f"t2m holding {v}", values=np.where(np.arange(40 * 64).reshape(40, 8, 8) == 77, v, 280.0))
        ),
        st.just(nc("t2m of strings", dtype=str)),
        st.just(nc("two steps at the same time", hours=np.concatenate([hours[:20], hours[19:39]]))),
        st.integers(21, 38).map(
            lambda gap: nc(f"a gap after hour {gap}", hours=np.concatenate([hours[:gap], hours[gap:] + 1]))
        ),
        st.integers(1, 3).map(lambda n: nc(f"{n} time steps", hours=hours[:n], values=cube((n, 8, 8)))),
        st.just(nc("time steps running backwards and irregular", hours=(hours**1.5)[::-1].copy())),
    )


def trtexec_damages(valid: bytes) -> st.SearchStrategy[Damage]:
    """The log with every figure of its performance summary replaced by `junk`: nothing is
    left to read (a negative, a word, a number beyond float range)."""
    text = valid.decode()
    start = text.index("=== Performance summary ===")
    summary = text[start:]

    def replaced(junk: str) -> Damage:
        damaged = re.sub(r"(?<=[=:] )\d+(\.\d+)?", junk, summary.split("Total Host")[0])
        return as_bytes(f"every summary figure {junk!r}", (text[:start] + damaged).encode())

    return st.sampled_from(["nan", "-5", "abc", "", "1e999", "1e400", "∞"]).map(replaced) | st.just(
        as_bytes("the summary's heading only", (text[:start] + "=== Performance summary ===\n").encode())
    )


@dataclass(frozen=True)
class FileKind:
    """A file the commands of `consumers` (BASES) read, at `target` in the sandbox."""

    target: str
    consumers: tuple[str, ...]
    contents: Callable[[bytes], st.SearchStrategy[Damage]]  # valid bytes → wrong contents
    hashed: bool = False  # every change is noticed (a hash binds the file)
    kept_at_most: Callable[[bytes], int] = len  # a truncation keeps fewer bytes than this

    def damages(self, corruption: str, valid: bytes) -> st.SearchStrategy[Damage]:
        return {
            "truncated": lambda: truncations(valid, self.kept_at_most(valid)),
            "random bytes": random_bytes,
            "wrong contents": lambda: self.contents(valid),
            "flipped bytes": lambda: flips(valid),
        }[corruption]()


def text_end(valid: bytes) -> int:
    return len(valid.rstrip())


def another_graph(write_toy_graph) -> Callable[[bytes], st.SearchStrategy[Damage]]:
    """A valid ONNX graph that is not the model's (frames → forecast, flops, branch on
    another grid), bound to the model's manifest by its hash as `dpedge export` binds them."""
    import onnx

    from dynaprune_edge.runtime.manifest import Manifest

    def graphs(valid: bytes) -> st.SearchStrategy[Damage]:
        own = [d.dim_value for d in onnx.load_from_string(valid).graph.input[0].type.tensor_type.shape.dim]

        def write(shape: list[int]) -> Callable[[Path], None]:
            def written(path: Path) -> None:
                manifest = Manifest.from_dict(json.loads(path.with_name("model.dpedge.json").read_text()))
                write_toy_graph(path.parent, identity_nodes(), [], shape, manifest)

            return written

        shapes = st.tuples(
            st.just(1), st.integers(1, 6), st.integers(1, 3), st.integers(1, 40), st.integers(1, 40)
        ).map(list)
        return shapes.filter(lambda s: s != own).map(
            lambda s: Damage(f"a graph of frames {s}, rehashed into the manifest", write(s))
        )

    return graphs


def kinds(write_toy_graph) -> dict[str, FileKind]:
    checked_model = ("model_config", "data_config", "normalizer")
    return {
        "model.pt": FileKind(
            "model.pt",
            ("info", "export", "calibrate"),
            lambda valid: torch_payloads(valid, checked_model, MODEL_SEMANTIC),
        ),
        "resume.pt": FileKind(
            "run/resume.pt",
            ("train --resume",),
            lambda valid: torch_payloads(
                valid, ("step", "epoch", "train_seconds", "history", "optimizer"), RESUME_SEMANTIC
            ),
        ),
        "TaxiBJ npz": FileKind("taxibj.npz", ("train taxibj.npz",), taxibj_damages),
        "frames npz": FileKind(FRAMES, ("profile --frames", "engine --frames"), frames_damages),
        "KNMI HDF5": FileKind(KNMI_TARGET, ("train knmi/",), knmi_damages),
        "WeatherBench netCDF": FileKind("t2m.nc", ("train t2m.nc",), t2m_damages),
        "manifest": FileKind(
            "model.dpedge.json", ("profile", "engine", "deploy"), manifest_damages, kept_at_most=text_end
        ),
        "ONNX": FileKind("model.onnx", ("profile", "engine", "deploy"), another_graph(write_toy_graph), hashed=True),
        "engine metadata": FileKind(
            ENGINE + ".json", ("profile --backend trt",), engine_meta_damages, kept_at_most=text_end
        ),
        "trtexec log": FileKind(
            "trtexec.log",
            ("bench trtexec",),
            trtexec_damages,
            kept_at_most=lambda valid: valid.index(b"Throughput: ") + len(b"Throughput: "),
        ),
    }


CORRUPTIONS = ("truncated", "random bytes", "wrong contents", "flipped bytes")
CASES = [
    pytest.param(kind, consumer, corruption, id=f"{kind} {corruption}, {consumer}")
    for kind, found in kinds(write_toy_graph=None).items()  # the cases' names only: no graph is written here
    for consumer in found.consumers
    for corruption in CORRUPTIONS
]


# write_toy_graph (tests/conftest.py) is a function-scoped fixture, but a pure function:
# nothing of it needs resetting between examples.
@pytest.mark.parametrize("kind, consumer, corruption", CASES)
@settings(examples, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_a_damaged_file_is_refused_in_one_line_before_any_work(
    kind, consumer, corruption, data, artifacts, fuzz_root, write_toy_graph
):
    found, base = kinds(write_toy_graph)[kind], BASES[consumer]
    with sandbox(fuzz_root, artifacts, base.files) as folder:
        target = folder / found.target
        damage = data.draw(found.damages(corruption, target.read_bytes()), label=f"{kind} ({corruption})")
        note(f"damage: {damage.label}")
        damage.write(target)
        before = snapshot(folder)
        outcome = run_dpedge(base.line(folder), folder)
        after = snapshot(folder)
    if corruption == "flipped bytes" and not found.hashed:
        assert_refused_or_accepted(outcome, before, after)
    else:
        assert_refused(outcome, before, after, not_because=base.fails_here)
