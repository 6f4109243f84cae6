"""`dpedge profile`: a pruned export against its dense twin on real samples of its data,
measured (ort) or emulated (orin-emu), with a report whose figures say which they are."""

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from dynaprune_edge.bench.orin import RECORDED
from dynaprune_edge.cost.orin import Device
from dynaprune_edge.cost.roofline import BundleRoofline, GraphRoofline
from dynaprune_edge.export.exporter import Exporter, ExportOptions
from dynaprune_edge.profiling.report import DPI, FIGURE_INCHES, PLOTS
from dynaprune_edge.runtime import load
from dynaprune_edge.runtime.manifest import Branch
from dynaprune_edge.runtime.split import split_routed_graph
from tests.conftest import write_toy_graph_file

SMALL = ["--samples", "12", "--runs", "24"]
SAMPLES = Path(__file__).parent / "samples"  # recorded trtexec output, SOURCES.md says from where


@pytest.fixture(scope="module")
def exported(tmp_path_factory, varied_model) -> Path:
    """model.onnx of a model whose masks vary by sample, its branches on whole maps (so
    they differ in their filters alone), and its model.pt beside it (no dense twin yet)."""
    folder = tmp_path_factory.mktemp("profiled")
    checkpoint = varied_model(folder, group_order="ordered")
    Exporter(checkpoint, ExportOptions(mode="sliced", tiles="none", levels=4), log=lambda _: None).run(
        folder / "model.onnx"
    )
    return folder / "model.onnx"


def assert_real_plots(folder: Path) -> None:
    import matplotlib.image

    for name in PLOTS:
        image = matplotlib.image.imread(folder / name)
        assert image.shape[:2] == (FIGURE_INCHES[1] * DPI, FIGURE_INCHES[0] * DPI), name
        assert image[..., :3].std() > 0.05, f"{name} is blank"


@pytest.mark.slow
def test_ort_profile_measures_both_models_on_real_samples_and_writes_a_labelled_report(dpedge, exported, tmp_path):
    result = dpedge("profile", exported, *SMALL, "--report", tmp_path / "report", path=())
    assert result.returncode == 0, result.stderr
    assert (exported.parent / "model.dense.onnx").is_file(), "the dense twin was exported from model.pt"
    assert "measured" in result.stdout and "emulated" not in result.stdout
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["latency"]["kind"] == "measured" and report["latency"]["sparse"]["n"] >= 24
    assert len(report["samples"]) == 12 and sum(row["samples"] for row in report["branches"]) == 12
    assert "synthetic" in report["data"] and "taxibj" in report["data"]
    assert {"calm", "busy"} <= set(report["calm_vs_busy"])
    assert_real_plots(tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Latency figures are MEASURED" in text and "EMULATED" not in text
    assert all(f"]({name})" in text for name in PLOTS)


@pytest.mark.slow
def test_orin_emu_profile_is_labelled_emulated_everywhere(dpedge, exported, tmp_path):
    result = dpedge(
        "profile",
        exported,
        "--backend",
        "orin-emu",
        "--power-mode",
        "30W",
        *SMALL,
        "--json",
        "--report",
        tmp_path / "report",
        path=(),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # one object
    assert summary["latency"]["kind"] == "emulated" and "emulated" in summary["latency"]["label"]
    assert summary["backend"]["emulator"]["power_mode"] == "30W" and summary["backend"]["emulator"]["sms"] == 8
    assert all("sparse_emulated_ms" in row and "sparse_measured_ms" not in row for row in summary["samples"])
    reached = {str(row["branch"]) for row in summary["samples"]}
    assert set(summary["emulated_kernels"]["sparse"]) == reached and list(summary["emulated_kernels"]["dense"]) == ["0"]
    for row in summary["samples"]:  # each sample's latency is the sum of its branch's kernels
        route = summary["emulated_kernels"]["sparse"][str(row["branch"])]
        assert row["sparse_emulated_ms"] == pytest.approx(sum(k["ms"] for k in route))
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Latency figures are EMULATED" in text and "not measurements on a Jetson" in text
    assert "Emulated kernels" in text and "Emulator constants" in text
    assert_real_plots(tmp_path / "report")


def device_log(recorded: str, engine_stem: str) -> str:
    """A recorded trtexec log of a run on a Jetson, its command line replaced by the one
    `dpedge export --trt` prints for `engine_stem` (no public log of a dpedge engine exists;
    the figures stay the recorded ones)."""
    text = (SAMPLES / recorded).read_text()
    head, _, _ = text.rpartition("&&&& PASSED")
    return (
        head
        + f"&&&& PASSED TensorRT.trtexec [TensorRT v8502] # trtexec --loadEngine={engine_stem}.engine --warmUp=500 "
        f"--exportTimes={engine_stem}.times.json --separateProfileRun --dumpProfile --exportProfile={engine_stem}.profile.json\n"
    )


@pytest.mark.slow
def test_trtexec_runs_of_both_engines_are_reported_as_measured_beside_the_emulated_figures(dpedge, exported, tmp_path):
    """The dense engine's run (the Orin Nano log, with its per-layer profile beside it) and
    the pruned engine's (the AGX Xavier log): their figures land in the right rows, the
    measured speedup is theirs, and the emulator is checked on the dense twin."""
    dense_stem, sparse_stem = "model.dense.orin.trt8.5.2.fp16", "model.orin.trt8.5.2.fp16"
    (tmp_path / "dense.log").write_text(device_log("trtexec_trt8502_jetson_orin_nano_fp16.log", dense_stem))
    shutil.copy(RECORDED.with_suffix(".profile.json"), tmp_path / f"{dense_stem}.profile.json")
    (tmp_path / "sparse.log").write_text(device_log("trtexec_trt8400_jetson_agx_xavier.log", sparse_stem))
    result = dpedge(
        "profile",
        exported,
        "--backend",
        "orin-emu",
        *SMALL,
        "--trtexec-log",
        tmp_path / "sparse.log",
        "--dense-trtexec-log",
        tmp_path / "dense.log",
        "--json",
        "--report",
        tmp_path / "report",
        path=(),
    )
    assert result.returncode == 0, result.stderr
    on_device = json.loads(result.stdout)["trtexec"]
    assert (
        on_device["dense"]["engine"] == f"{dense_stem}.engine"
        and on_device["sparse"]["engine"] == f"{sparse_stem}.engine"
    )
    assert on_device["dense"]["summary"]["gpu_compute_ms"]["median"] == 10.1851  # the Orin Nano's
    assert on_device["sparse"]["summary"]["gpu_compute_ms"]["median"] == 0.388443  # the Xavier's
    assert (
        len(on_device["dense"]["layers"]) == 73 and on_device["sparse"]["layers"] is None
    )  # no profile beside that one
    assert on_device["speedup"] == pytest.approx(10.1851 / 0.388443)
    check = on_device["emulated_vs_measured"]["dense"]
    assert check["measured_ms"] == 10.1851 and check["measured_layers"] == 73 and check["emulated_kernels"] > 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Latency figures are EMULATED" in text and "trtexec runs: MEASURED" in text
    assert "10.185" in text and "measured speedup on the device" in text


def titan_rtx_log(engine_stem: str) -> str:
    """The log of the recorded TITAN RTX run (dynaprune_edge/bench/recorded/SOURCES.md), rebuilt from what
    TensorRT's engine explorer kept of it (its device information and GPU compute times,
    printed as trtexec prints them), with the command line `dpedge export --trt` prints for
    `engine_stem` (no public run of a dpedge engine exists; the figures stay the recorded ones)."""
    metadata = json.loads(RECORDED.with_suffix(".metadata.json").read_text())
    device, timed = metadata["device_information"], metadata["performance_summary"]
    gpu = dict(
        zip(
            ("min", "max", "mean", "median", "percentile(90%)", "percentile(95%)", "percentile(99%)"),
            timed["GPU Compute Time"],
        )
    )
    return "\n".join(
        [
            "[I] === Device Information ===",
            f"[I] Selected Device: {device['Selected Device']}",
            f"[I] Compute Capability: {device['Compute Capability']}",
            f"[I] SMs: {device['SMs']:g}",
            f"[I] Compute Clock Rate: {device['Compute Clock Rate']} GHz",
            f"[I] Memory Bus Width: {device['Memory Bus Width']:g} bits (ECC disabled)",
            f"[I] Memory Clock Rate: {device['Memory Clock Rate']} GHz",
            "[I] === Performance summary ===",
            f"[I] Throughput: {timed['Throughput']} qps",
            "[I] GPU Compute Time: " + ", ".join(f"{k} = {v} ms" for k, v in gpu.items()),
            f"&&&& PASSED TensorRT.trtexec [TensorRT v8400] # trtexec --loadEngine={engine_stem}.engine --separateProfileRun --dumpProfile "
            f"--exportProfile={engine_stem}.profile.json --profilingVerbosity=detailed --exportLayerInfo={engine_stem}.layers.json",
            "",
        ]
    )


@pytest.mark.slow
def test_a_run_on_a_desktop_gpu_is_scaled_to_the_orin_beside_the_first_principles_figure(dpedge, exported, tmp_path):
    from dynaprune_edge.bench.orin import recorded_calibration
    from dynaprune_edge.cost.calibration import scale_to_orin

    stem = "model.dense.titan.trt8.4.0.int8"
    (tmp_path / "titan.log").write_text(titan_rtx_log(stem))
    for kind in ("profile", "layers"):
        shutil.copy(RECORDED.with_suffix(f".{kind}.json"), tmp_path / f"{stem}.{kind}.json")
    result = dpedge(
        "profile",
        exported,
        "--backend",
        "orin-emu",
        "--precision",
        "int8",
        "--power-mode",
        "30W",
        *SMALL,
        "--dense-trtexec-log",
        tmp_path / "titan.log",
        "--json",
        "--report",
        tmp_path / "report",
        path=(),
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    on_device = summary["trtexec"]
    assert (
        on_device["dense"]["gpu"]["name"] == "NVIDIA TITAN RTX" and "emulated_vs_measured" not in on_device
    )  # not an Orin: no check
    calibrated = on_device["calibrated"]["dense"]
    assert calibrated["measured_on"] == "NVIDIA TITAN RTX" and calibrated["measured_ms"] == 0.351196
    assert calibrated["emulated_ms"] == pytest.approx(
        summary["latency"]["dense"]["mean"]
    )  # the first-principles figure beside
    profile, layer_info, gpu, measured_ms = recorded_calibration()
    expected = scale_to_orin(profile, layer_info, gpu, Device("agx-orin-64gb", "30W", "int8"), measured_ms)
    assert calibrated["calibrated_ms"] == pytest.approx(
        expected.orin_ms
    )  # the log's device, the files beside it, the chosen Orin
    assert calibrated["calibration"]["label"].startswith("EMULATED: measured on NVIDIA TITAN RTX")
    text = (tmp_path / "report" / "report.md").read_text()
    assert "EMULATED two ways" in text and "calibrated on NVIDIA TITAN RTX" in text


def routed_toy_graph(folder: Path, toy_manifest) -> Path:
    """frames (1, 1, 16, 64, 64) → a calm branch (one 16-filter convolution) where the
    frames' mean is ≤ 0, else a stormy one (a 256-filter convolution and one back to 16),
    as dpedge routes: branch = the branch taken, flops = what it executed."""
    shape = [1, 1, 16, 64, 64]

    def branch(name, widths):
        nodes, inits, x = [], [], "maps"
        for index, (cin, cout) in enumerate(zip(widths, widths[1:])):
            weight = numpy_helper.from_array(np.full((cout, cin, 3, 3), 0.01, np.float32), f"{name}_w{index}")
            inits.append(weight)
            nodes.append(
                helper.make_node(
                    "Conv", [x, weight.name], [f"{name}_y{index}"], name=f"{name}/conv{index}", pads=[1, 1, 1, 1]
                )
            )
            x = f"{name}_y{index}"
        flops = float(sum(64 * 64 * cin * cout * 9 for cin, cout in zip(widths, widths[1:])))
        inits += [
            numpy_helper.from_array(np.array(shape, np.int64), f"{name}_shape"),
            numpy_helper.from_array(np.float32(flops), f"{name}_flops"),
        ]
        nodes.append(helper.make_node("Reshape", [x, f"{name}_shape"], [f"{name}_out"], name=f"{name}/out"))
        nodes.append(helper.make_node("Identity", [f"{name}_flops"], [f"{name}_f"], name=f"{name}/flops"))
        outputs = [
            helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info(f"{name}_f", TensorProto.FLOAT, []),
        ]
        return helper.make_graph(nodes, name, [], outputs, initializer=inits), flops

    calm, calm_flops = branch("calm", [16, 16])
    stormy, stormy_flops = branch("stormy", [16, 256, 16])
    nodes = [
        helper.make_node("Reshape", ["frames", "maps_shape"], ["maps"], name="router/maps"),
        helper.make_node("ReduceMean", ["frames"], ["mean"], name="router/mean", keepdims=0),
        helper.make_node("Greater", ["mean", "zero"], ["busy"], name="router/busy"),
        helper.make_node("Cast", ["busy"], ["branch"], name="router/branch_index", to=TensorProto.INT64),
        helper.make_node("Equal", ["branch", "first"], ["calm_cond"], name="router/branch/Equal"),
        helper.make_node(
            "If", ["calm_cond"], ["forecast", "flops"], name="router/branch/If", then_branch=calm, else_branch=stormy
        ),
    ]
    inits = [
        numpy_helper.from_array(np.array([1, 16, 64, 64], np.int64), "maps_shape"),
        numpy_helper.from_array(np.float32(0), "zero"),
        numpy_helper.from_array(np.array(0, np.int64), "first"),
    ]
    manifest = toy_manifest(
        shape,
        branches=[Branch([0, 0], 0, {}, calm_flops), Branch([1, 1], 0, {}, stormy_flops)],
        dense_flops=stormy_flops,
    )
    return write_toy_graph_file(folder, nodes, inits, shape, manifest)


def test_the_emulator_follows_the_branch_each_sample_takes(tmp_path, toy_manifest):
    path = routed_toy_graph(tmp_path, toy_manifest)
    calm, stormy = np.full((1, 1, 16, 64, 64), -1.0, np.float32), np.full((1, 1, 16, 64, 64), 1.0, np.float32)
    device = Device("agx-orin-64gb", "MAXN", "fp16")
    backend = load(path, "orin-emu", 1, device)
    result = backend.run(np.concatenate([calm, stormy]))
    assert list(result.branch) == [0, 1]
    calm_ms, stormy_ms = (backend.emulated_ms(int(b)) for b in result.branch)
    assert (stormy_ms - calm_ms) * (result.flops[1] - result.flops[0]) > 0, (
        "the busier sample's branch executes more and must cost more"
    )
    # as the split bundle runs it: the router's kernels, the host dispatch, the stormy branch's two convolutions
    cut = split_routed_graph(onnx.load(path))
    routes = BundleRoofline(cut.router, cut.branches, device).routes
    assert [k.ops for k in routes[1]] == [["ReduceMean"], ["Greater", "Cast"], ["dispatch"], ["Conv"], ["Conv"]]
    assert stormy_ms == pytest.approx(sum(k.ms for k in routes[1]))
    lazy = GraphRoofline(onnx.load(path), device).routes  # the single graph as one engine, only the taken branch run
    assert [k.ops for k in lazy[1]] == [["ReduceMean"], ["Greater", "Cast", "Equal"], ["If"], ["Conv"], ["Conv"]]
    slower = [
        load(path, "orin-emu", 1, Device("agx-orin-64gb", mode, "fp16")).emulated_ms(1)
        for mode in ("MAXN", "30W", "15W")
    ]
    assert slower[0] < slower[1] < slower[2]


def test_orin_emu_routes_match_the_exported_branches(exported):
    backend = load(exported, "orin-emu", 1, Device("agx-orin-64gb", "MAXN", "fp16"))
    assert len(backend.route_ms) == len(backend.manifest.branches) >= 3
    assert backend.route_ms[0] < min(backend.route_ms[1:]), "the all-skipped branch (persistence) runs no backbone"


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.onnx"], "missing.onnx: no such file"),
        (["model.engine"], "is a TensorRT engine: profile it with --backend trt"),
        (["lonely.onnx"], "no manifest beside lonely.onnx"),
        (["model.onnx", "--runs", "0"], "--runs must be ≥ 1"),
        (["model.onnx", "--samples", "0"], "--samples must be ≥ 1"),
        (
            ["model.onnx", "--power-mode", "30W"],
            "--power-mode choose the Jetson AGX Orin that orin-emu emulates: add --backend orin-emu",
        ),
        (
            ["model.onnx", "--backend", "orin-emu", "--power-mode", "10W"],
            "--power-mode on agx-orin-64gb must be one of",
        ),
        (["model.onnx", "--backend", "trt"], "--backend trt runs a TensorRT engine"),
        (["model.onnx", "--backend", "tpu"], "unknown backend 'tpu'"),
        (["model.pt"], "export it first"),
        (["model.onnx", "--trtexec-log", "missing.log"], "cannot read trtexec log missing.log"),
        (["model.onnx", "--trtexec-log", "other.log"], "trtexec ran fp16.trt, not an engine of model.onnx"),
        (
            ["model.onnx", "--trtexec-log", "dense.log"],
            "trtexec ran model.dense.orin.trt8.5.2.fp16.engine, not an engine of model.onnx",
        ),
        (
            ["model.onnx", "--backend", "orin-emu", "--precision", "int8", "--dense-trtexec-log", "dense.log"],
            "pass --precision fp16",
        ),
        (
            ["model.onnx", "--backend", "orin-emu", "--precision", "int8", "--dense-trtexec-log", "titan.log"],
            "titan.log ran on NVIDIA TITAN RTX: to scale it to the Orin, the --exportProfile and --exportLayerInfo files",
        ),
        (["model.onnx", "--calibrate", "cuda"], "--calibrate takes cuda, with --backend orin-emu"),
        (
            ["model.engine", "--backend", "trt", "--power-mode", "MAXN"],
            "checks the Jetson's mode with `nvpmodel -q`, which is not installed here",
        ),
        (["model.onnx", "--backend", "orin-emu", "--calibrate", "cuda"], "trtexec is not on PATH"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(dpedge, exported, tmp_path, args, message):
    for name in ("model.onnx", "model.dpedge.json", "model.pt"):
        shutil.copy(exported.parent / name, tmp_path / name)
    shutil.copy(exported, tmp_path / "lonely.onnx")
    (tmp_path / "model.engine").write_bytes(b"not an engine")
    shutil.copy(
        SAMPLES / "trtexec_trt8502_jetson_orin_nano_fp16.log", tmp_path / "other.log"
    )  # it ran yolox's fp16.trt
    (tmp_path / "dense.log").write_text(
        device_log("trtexec_trt8502_jetson_orin_nano_fp16.log", "model.dense.orin.trt8.5.2.fp16")
    )
    (tmp_path / "titan.log").write_text(titan_rtx_log("model.dense.titan.trt8.4.0.int8"))  # without its profile beside
    result = dpedge("profile", *args, "--report", "report", cwd=tmp_path, path=())
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "report").exists() and not (tmp_path / "model.dense.onnx").exists()


@pytest.mark.slow
def test_the_demo_exports_profiles_and_reports_measured_and_emulated(dpedge, tmp_path, varied_model):
    from rich.console import Console

    from dynaprune_edge.bench.demo import profile_demo

    checkpoint = varied_model(tmp_path, group_order="ordered")
    assert dpedge("export", checkpoint, path=()).returncode == 0
    console = Console(record=True, width=200)
    profile_demo(checkpoint.with_name("model.onnx"), tmp_path / "report", console)
    printed = console.export_text()
    assert (
        "ort: model.onnx" in printed
        and "measured" in printed
        and "orin-emu: model.onnx" in printed
        and "emulated" in printed
    )
    for backend, label in (("ort", "MEASURED"), ("orin-emu", "EMULATED")):
        assert f"Latency figures are {label}" in (tmp_path / "report" / backend / "report.md").read_text()
        assert_real_plots(tmp_path / "report" / backend)
