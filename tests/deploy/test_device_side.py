"""The commands `dpedge deploy` runs on the device, here: `dpedge device` (what deploy
checks), `dpedge engine` (TensorRT from the ONNX alone) and `dpedge profile --frames`
(validation windows carried in a file, no data or torch needed)."""

from __future__ import annotations

import importlib.metadata
import json

import numpy as np
import pytest

from dynaprune_edge.errors import DataError
from dynaprune_edge.runtime.frames import frames_path, load_frames, save_frames
from dynaprune_edge.runtime.manifest import read_manifest


def test_device_reports_what_deploy_checks(dpedge, tmp_path):
    result = dpedge("device", "--json", "--disk", tmp_path / "not" / "made" / "yet")
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["dpedge"] == importlib.metadata.version("dynaprune-edge")
    assert facts["l4t"] is None and facts["jetpack"] is None  # not a Jetson
    assert facts["onnxruntime"] == importlib.metadata.version("onnxruntime")
    assert isinstance(facts["free_bytes"], int) and facts["free_bytes"] > 0


@pytest.mark.slow
def test_engine_without_tensorrt_says_why_in_one_line_with_the_command_for_the_device(dpedge, model):
    """A pruned model is built as a bundle of engines, by dpedge on the device; one engine of
    the whole graph (--layout single) by the trtexec line printed."""
    result = dpedge("engine", model, "--precision", "fp16")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("error: no TensorRT engine built:") and line.endswith(
        "build the bundle on the Jetson, in the folder holding "
        "model.onnx and model.dpedge.json: dpedge engine model.onnx --precision fp16"
    )
    line = dpedge("engine", model, "--precision", "fp16", "--layout", "single").stderr.strip().splitlines()[-1]
    assert (
        line.startswith("error: no TensorRT engine built:") and "trtexec --onnx=model.onnx" in line and "--fp16" in line
    )
    assert line.count("trtexec --onnx") == 1


@pytest.mark.slow
def test_profile_runs_on_the_frames_file_alone_and_refuses_a_damaged_one(dpedge, model, tmp_path):
    manifest = read_manifest(model)
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(5, *manifest.input.shape[1:])).astype(np.float32)
    save_frames(frames_path(model), frames, "5 windows made up for this test")
    loaded, described = load_frames(frames_path(model), manifest)
    assert np.array_equal(loaded, frames) and described == "5 windows made up for this test"
    result = dpedge("profile", model, "--frames", frames_path(model), "--runs", "10", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["data"] == "5 windows made up for this test" and len(summary["samples"]) == 5

    (tmp_path / "bad.frames.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match="not a frames file written by dpedge"):
        load_frames(tmp_path / "bad.frames.npz", manifest)
    np.savez(
        tmp_path / "wrong.frames.npz",
        frames=frames[:, :, :1],
        described=np.array("one channel"),
        units=np.array("physical"),
    )
    damaged = dpedge("profile", model, "--frames", tmp_path / "wrong.frames.npz")
    assert damaged.returncode == 1 and damaged.stderr.strip().splitlines()[-1].startswith(
        f"error: {tmp_path / 'wrong.frames.npz'}: frames must have shape"
    )
    np.savez(tmp_path / "old.frames.npz", frames=frames, described=np.array("normalised, by an older dpedge"))
    old = dpedge("profile", model, "--frames", tmp_path / "old.frames.npz")
    assert old.returncode == 1 and old.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'old.frames.npz'}: frames in normalised units, written by an older dpedge; this one feeds physical "
        "units: write the file again (dpedge deploy does)"
    )
    both = dpedge("profile", model, "--frames", frames_path(model), "--data", "sample")
    assert both.returncode == 1 and "give one of them" in both.stderr
