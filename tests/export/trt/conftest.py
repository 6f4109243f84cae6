"""The stand-in graph and manifest that the TensorRT build tests export from."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from dynaprune_edge.files import sha256_file

SHAPE = [1, 4, 1, 8, 8]


@pytest.fixture
def make_manifest(toy_manifest):
    def make_manifest(onnx_name: str = "model.onnx"):
        return toy_manifest(
            SHAPE,
            backbone="simvp",
            dataset="synthetic",
            onnx=onnx_name,
            width_levels=[0.5, 1.0],
            flops_convention="1 multiply-add = 1 FLOP",
            mode="dense",
        )  # one engine: the stand-in has no branches

    return make_manifest


@pytest.fixture
def write_onnx(make_manifest):
    def write_onnx(folder: Path, dynamic: bool = False) -> Path:
        """A stand-in graph with the exported graph's input; only its file and input matter here."""
        dims = ["batch", *SHAPE[1:]] if dynamic else SHAPE
        graph = helper.make_graph(
            [helper.make_node("Identity", ["frames"], ["forecast"])],
            "stand_in",
            [helper.make_tensor_value_info("frames", TensorProto.FLOAT, dims)],
            [helper.make_tensor_value_info("forecast", TensorProto.FLOAT, dims)],
        )
        path = folder / "model.onnx"
        onnx.save(helper.make_model(graph), str(path))
        (folder / "model.dpedge.json").write_text(replace(make_manifest(), onnx_sha256=sha256_file(path)).to_json())
        return path

    return write_onnx
