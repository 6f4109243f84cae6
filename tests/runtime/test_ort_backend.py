"""The onnxruntime backends on tiny hand-built graphs: per-sample outputs, input checks,
manifest/graph mismatches, missing providers, and no torch on the runtime path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import dynaprune_edge.runtime as rt
from dynaprune_edge.errors import ConfigError, DataError
from dynaprune_edge.files import sha256_file
from dynaprune_edge.runtime.manifest import Branch, Manifest, manifest_path

SHAPE = [1, 2, 1, 4, 4]


@pytest.fixture
def manifest(toy_manifest):
    def manifest(input_shape=SHAPE, outputs=("forecast", "flops", "branch")) -> Manifest:
        return toy_manifest(
            SHAPE,
            input_shape=input_shape,
            outputs=outputs,
            mode="dense",
            branches=[Branch([0, 0], 0, {}, 0.0), Branch([1, 16], 16, {}, 32.0)],
            dense_flops=32.0,
        )

    return manifest


@pytest.fixture
def write_model(manifest, write_toy_graph):
    def write_model(folder: Path, with_manifest: Manifest | None = None) -> Path:
        """forecast = 2·frames, flops = sum(frames), branch = 1 if that sum > 0 else 0."""
        nodes = [
            helper.make_node("Mul", ["frames", "two"], ["forecast"]),
            helper.make_node("ReduceSum", ["frames"], ["flops"], keepdims=0),
            helper.make_node("Greater", ["flops", "zero"], ["positive"]),
            helper.make_node("Cast", ["positive"], ["branch"], to=TensorProto.INT64),
        ]
        initializers = [
            numpy_helper.from_array(np.array(2, np.float32), "two"),
            numpy_helper.from_array(np.array(0, np.float32), "zero"),
        ]
        return write_toy_graph(folder, nodes, initializers, SHAPE, with_manifest or manifest())

    return write_model


@pytest.fixture
def model(tmp_path, write_model) -> Path:
    return write_model(tmp_path)


def frames(batch: int = 3) -> np.ndarray:
    values = np.random.default_rng(0).random((batch, *SHAPE[1:]), np.float32)
    values[1] *= -1
    return values


def test_run_gives_one_result_per_sample(model):
    backend = rt.load(model, "ort", threads=1)
    batch = frames()
    result = backend.run(batch)
    assert isinstance(result, rt.RunResult)
    assert result.forecast.dtype == np.float32 and result.forecast.shape == batch.shape
    np.testing.assert_allclose(result.forecast, 2 * batch, rtol=1e-6)
    np.testing.assert_allclose(result.flops, batch.sum(axis=(1, 2, 3, 4)), rtol=1e-5)
    assert result.branch.tolist() == [1, 0, 1]
    # float64 input is accepted and converted
    np.testing.assert_allclose(backend.run(batch.astype(np.float64)).forecast, result.forecast)


def test_describe_says_what_a_benchmark_row_needs(model):
    info = rt.load(model, "ort", threads=2).describe()
    assert info["backend"] == "ort" and info["providers"] == ["CPUExecutionProvider"]
    assert info["threads"] == 2 and info["model"] == str(model)
    assert info["onnxruntime"] and info["device"]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((3, 2, 1, 4, 5), np.float32), "shape"),
        (np.zeros((2, 1, 4, 4), np.float32), "shape"),
        (np.zeros((3, 2, 1, 4, 4), np.int32), "floating point"),
        (np.full((3, 2, 1, 4, 4), np.nan, np.float32), "non-finite"),
        (np.zeros((0, 2, 1, 4, 4), np.float32), "empty batch"),
        ([[0.0]], "numpy array"),
    ],
    ids=["wrong-size", "missing-batch-axis", "int", "nan", "empty", "list"],
)
def test_bad_frames_are_data_errors(model, bad, message):
    with pytest.raises(DataError, match=message):
        rt.load(model).run(bad)


def test_missing_manifest(model):
    model.with_name("model.dpedge.json").unlink()
    with pytest.raises(ConfigError, match="no manifest"):
        rt.load(model)


def test_missing_onnx(tmp_path):
    with pytest.raises(ConfigError, match="no such ONNX file"):
        rt.load(tmp_path / "absent.onnx")


def test_unreadable_onnx(model):
    model.write_bytes(b"not a protobuf")
    with pytest.raises(ConfigError, match="is not the graph model.dpedge.json describes"):
        rt.load(model)
    bound = json.loads(manifest_path(model).read_text()) | {"onnx_sha256": sha256_file(model)}  # a pair made to match
    manifest_path(model).write_text(json.dumps(bound))
    with pytest.raises(ConfigError, match="cannot load this model"):
        rt.load(model)


def test_manifest_input_shape_must_match_graph(tmp_path, write_model, manifest):
    path = write_model(tmp_path, manifest(input_shape=[1, 3, 1, 4, 4]))
    with pytest.raises(ConfigError, match=r"shape \[1, 2, 1, 4, 4\], its manifest says \[1, 3, 1, 4, 4\]"):
        rt.load(path)


def test_manifest_outputs_must_match_graph(tmp_path, write_model, manifest):
    path = write_model(tmp_path, manifest(outputs=("forecast", "flops", "sub_network")))
    with pytest.raises(ConfigError, match="graph outputs are"):
        rt.load(path)


def test_missing_onnxruntime_is_a_config_error(model, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(ConfigError, match=r"pip install 'dynaprune-edge\[export\]'"):
        rt.load(model)


def test_ort_cuda_without_cuda_provider(model):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(ConfigError, match="no CUDAExecutionProvider.*onnxruntime-gpu"):
        rt.load(model, "ort-cuda")


def test_unknown_backend_lists_the_known_ones(model):
    with pytest.raises(ConfigError, match="unknown backend 'tensorrtx'; known: .*ort, ort-cuda"):
        rt.load(model, "tensorrtx")


def test_threads_must_be_positive(model):
    with pytest.raises(ConfigError, match="threads"):
        rt.load(model, threads=0)


def test_runtime_path_never_imports_torch(model):
    code = f"""
import sys
import numpy as np
import dynaprune_edge.runtime as rt
import dynaprune_edge.profiling.latency as latency
backend = rt.load({str(model)!r}, "ort", threads=1)
result = backend.run(np.ones((2, 2, 1, 4, 4), np.float32))
assert result.branch.tolist() == [1, 1], result
latency.interleaved_latency([backend.run_one], np.ones((1, 2, 1, 4, 4), np.float32), runs=2)
heavy = sorted(m for m in ("torch", "fvcore") if m in sys.modules)
assert not heavy, heavy
"""
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
