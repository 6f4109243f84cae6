"""The session's valid files, made once: every fuzz example copies the ones its command
line needs into a sandbox of its own (dpedge_fuzz.sandbox) and damages the copies.

A model trained for one epoch with the tiny sizes (model.pt, and resume.pt and
metrics.json in run/), its export with its dense twin (model.onnx, model.dense.onnx and
their manifests), TensorRT engines of both with their metadata (the bytes are not an
engine: this machine has no TensorRT, and dpedge reads the metadata first), a frames file,
a recorded trtexec log, and small TaxiBJ, KNMI and WeatherBench datasets. About 10 s."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.data_files import taxibj_arrays, write_knmi_folder, write_npz, write_t2m
from tests.fuzz.dpedge_fuzz import ENGINES, FRAMES, PRUNED, SYNTHETIC, TINY, reached, run_dpedge

RECORDED_LOG = Path(__file__).parent.parent / "profiling" / "samples" / "trtexec_trt8502_jetson_orin_nano_fp16.log"


def dpedge_ok(folder: Path, *args: str) -> None:
    outcome = run_dpedge(args, folder, guarded=False)
    assert reached(outcome) == "exit 0", outcome.describe()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    from dynaprune_edge.files import sha256_file
    from dynaprune_edge.runtime.frames import save_frames
    from dynaprune_edge.runtime.manifest import read_manifest
    from dynaprune_edge.runtime.tensorrt import EngineMeta, write_meta

    folder = tmp_path_factory.mktemp("fuzz-artifacts")
    dpedge_ok(folder, "train", *SYNTHETIC, *PRUNED, *TINY, "--out", str(folder / "run"))
    shutil.copyfile(folder / "run" / "model.pt", folder / "model.pt")
    for twin in ([], ["--dense"]):
        dpedge_ok(
            folder, "export", str(folder / "model.pt"), "--mode", "sliced", "--tiles", "none", "--levels", "2", *twin
        )
    for engine, graph in zip(ENGINES[::2], ("model.onnx", "model.dense.onnx")):
        (folder / engine).write_bytes(b"a TensorRT engine of " + graph.encode())
        write_meta(
            folder / engine,
            EngineMeta(
                device="Orin",
                compute_capability="8.7",
                trt_version="8.5.2.2",
                precision="fp16",
                onnx=graph,
                onnx_sha256=sha256_file(folder / graph),
                manifest=graph.removesuffix(".onnx") + ".dpedge.json",
                engine_sha256=sha256_file(folder / engine),
            ),
        )
    shape = read_manifest(folder / "model.onnx").input.shape[1:]
    save_frames(folder / FRAMES, np.zeros((2, *shape), np.float32), "2 windows of zeros (fuzz tests)")
    shutil.copyfile(RECORDED_LOG, folder / "trtexec.log")
    write_npz(folder / "taxibj.npz", taxibj_arrays())
    write_knmi_folder(folder / "knmi")
    write_t2m(folder / "t2m.nc")
    return folder


@pytest.fixture(scope="session")
def fuzz_root(tmp_path_factory) -> Path:
    """Where the examples' sandboxes are made (each removed after its example)."""
    return tmp_path_factory.mktemp("fuzz-sandboxes")
