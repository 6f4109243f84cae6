"""A graph and its manifest are one pair, bound by the graph's SHA-256; and a graph may
read external data only from its own folder. Both are checked when the manifest is read,
before onnxruntime (or TensorRT) opens the graph."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import dynaprune_edge.runtime as rt
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.files import sha256_file
from dynaprune_edge.runtime.manifest import manifest_path, read_manifest

SHAPE = [1, 2, 1, 4, 4]
TWO = np.array(2, np.float32)


def write_pair(folder: Path, toy_manifest, location: str | None = None) -> Path:
    """model.onnx computing forecast = two·frames, its `two` stored in the graph or, with
    `location`, as external data at that location; and its manifest, bound to it (what a
    crafted pair looks like too: anyone can hash a file)."""
    two = numpy_helper.from_array(TWO, "two")
    if location is not None:
        two.ClearField("raw_data")
        two.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", str(TWO.nbytes))):
            two.external_data.add(key=key, value=value)
    nodes = [
        helper.make_node("Mul", ["frames", "two"], ["forecast"]),
        helper.make_node("ReduceSum", ["frames"], ["flops"], keepdims=0),
        helper.make_node("Constant", [], ["branch"], value=numpy_helper.from_array(np.array(0, np.int64))),
    ]
    graph = helper.make_graph(
        nodes,
        "toy",
        [helper.make_tensor_value_info("frames", TensorProto.FLOAT, SHAPE)],
        [
            helper.make_tensor_value_info("forecast", TensorProto.FLOAT, SHAPE),
            helper.make_tensor_value_info("flops", TensorProto.FLOAT, []),
            helper.make_tensor_value_info("branch", TensorProto.INT64, []),
        ],
        initializer=[two],
    )
    path = folder / "model.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    manifest = toy_manifest(SHAPE, mode="dense")
    manifest_path(path).write_text(replace(manifest, onnx_sha256=sha256_file(path)).to_json())
    return path


def frames() -> np.ndarray:
    return np.random.default_rng(0).random((2, *SHAPE[1:]), np.float32)


def test_a_bound_pair_loads_and_runs(tmp_path, toy_manifest):
    backend = rt.load(write_pair(tmp_path, toy_manifest))
    np.testing.assert_allclose(backend.run(frames()).forecast, 2 * frames())


def test_another_graph_beside_the_manifest_is_refused(tmp_path, toy_manifest):
    path = write_pair(tmp_path, toy_manifest)
    other = tmp_path / "other"
    other.mkdir()
    path.write_bytes(
        write_pair(other, toy_manifest, location="weights.bin").read_bytes()
    )  # a crash between the two writes
    with pytest.raises(ConfigError, match="model.onnx is not the graph model.dpedge.json describes .*re-export"):
        rt.load(path)


@pytest.mark.parametrize(
    "version, why",
    [
        (1, "does not bind the graph"),
        (2, "takes and returns normalised values"),
        (3, "outputs and fields as this dpedge no longer reads them"),
    ],
)
def test_a_manifest_of_an_older_dpedge_asks_for_a_re_export(tmp_path, toy_manifest, version, why):
    """Version 2 graphs took normalised frames: run as physical ones they would forecast
    silently wrong values, so they are refused rather than guessed at. Version 3 graphs
    named their chosen sub-network's output by the word format 4 replaced: refused in one
    line, not as a missing output or field."""
    path = write_pair(tmp_path, toy_manifest)
    values = json.loads(manifest_path(path).read_text())
    values["version"] = version
    manifest_path(path).write_text(json.dumps(values))
    with pytest.raises(
        ConfigError, match=f"manifest version {version} .*{why}.* re-export with dpedge export MODEL.pt"
    ) as refused:
        read_manifest(path)
    assert "\n" not in str(refused.value)


def test_external_data_inside_the_graphs_folder_is_read(tmp_path, toy_manifest):
    path = write_pair(tmp_path, toy_manifest, location="weights.bin")
    (tmp_path / "weights.bin").write_bytes(np.array(3, np.float32).tobytes())
    np.testing.assert_allclose(rt.load(path).run(frames()).forecast, 3 * frames())


@pytest.mark.parametrize("where", ["parent", "absolute", "symlink", "symlinked folder"])
def test_external_data_outside_the_graphs_folder_is_refused_before_onnxruntime_opens_it(tmp_path, toy_manifest, where):
    folder, outside = tmp_path / "model", tmp_path / "secret.bin"
    folder.mkdir()
    outside.write_bytes(np.array(7, np.float32).tobytes())  # a file the process can read but the model must not
    location = {
        "parent": "../secret.bin",
        "absolute": str(outside),
        "symlink": "weights.bin",
        "symlinked folder": "data/secret.bin",
    }[where]
    if where == "symlink":
        (folder / "weights.bin").symlink_to(outside)
    if where == "symlinked folder":
        (folder / "data").symlink_to(tmp_path)
    path = write_pair(folder, toy_manifest, location=location)
    with pytest.raises(ConfigError, match=r"tensor 'two' reads its data from .*outside the graph's folder: refused"):
        rt.load(path)


def test_the_cli_refuses_such_a_graph_in_one_line(dpedge, tmp_path, toy_manifest):
    path = write_pair(tmp_path, toy_manifest, location="/etc/hostname")
    result = dpedge("profile", path, "--report", tmp_path / "report", timeout=300)
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0
    assert "outside the graph's folder: refused" in result.stderr and not (tmp_path / "report").exists()
