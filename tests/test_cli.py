"""The command line as a user meets it: help, one-line errors, artifacts, resume."""

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
import typer

from dynaprune_edge.cli import app
from dynaprune_edge.data import load_dataset
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.runtime import load
from dynaprune_edge.training import load_model
from tests.conftest import METRICS_KEYS, TINY


def all_commands(command, path=()):
    yield path, command
    if hasattr(command, "commands"):
        for name, sub in command.commands.items():
            yield from all_commands(sub, path + (name,))


def test_every_option_of_every_command_is_explained():
    for path, command in all_commands(typer.main.get_command(app)):
        assert command.help, f"dpedge {' '.join(path)} has no help"
        for param in command.params:
            if isinstance(param, typer.core.TyperOption):
                assert param.help, f"dpedge {' '.join(path)} {param.opts[0]} has no help"


def test_arch_help_names_every_size_option_of_every_backbone():
    from dataclasses import fields

    from dynaprune_edge.cli.options import ARCH_HELP
    from dynaprune_edge.models import BACKBONES

    for name in BACKBONES.names():
        listed = ARCH_HELP.split(f"{name}: ")[1].split(";")[0].rstrip(".").split(", ")
        assert listed == [f.name for f in fields(BACKBONES.get(name).Options)], name


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--out", "x", "--backbone", "resnet"], "unknown backbone 'resnet'; known: convlstm, simvp, vit"),
        (["train", "--out", "x", "--dataset", "mnist"], "unknown dataset 'mnist'"),
        (["train", "--out", "x", "--dataset", "knmi", "--data", "/nonexistent/radar"], "/nonexistent/radar"),
        (["train", "--out", "x", "--target-flops", "1.5"], "--budget must be in (0, 1]"),
        (
            ["train", "--out", "x", "--budget", "0.3", "--cost", "watts"],
            "--cost must be one of flops, ort-cpu, orin-emu",
        ),
        (
            ["train", "--out", "x", "--budget", "0.3", "--power-mode", "30W"],
            "--power-mode choose the Jetson AGX Orin that orin-emu emulates: add --cost orin-emu",
        ),
        (
            ["train", "--out", "x", "--budget", "0.3", "--cost", "orin-emu", "--power-mode", "10W"],
            "--power-mode on agx-orin-64gb must be one of",
        ),
        (["calibrate", "--cost", "flops"], "--cost must be ort-cpu or orin-emu"),
        (
            ["train", "--out", "x", "--budget", "0.3", "--cost-table", "t.json"],
            "--cost-table prices a measured cost target: add --cost ort-cpu",
        ),
        (["train", "--out", "x", "--budget", "0.3", "--activity-weight", "-1"], "--activity-weight must be ≥ 0"),
        (["train", "--out", "x", "--st-prune", "--prune-ratio", "1"], "--prune-ratio must be in [0, 1), got 1.0"),
        (["train", "--out", "x", "--st-prune", "--anneal", "-0.5"], "--anneal must be in [0, 1], got -0.5"),
        (["train", "--out", "x", "--st-prune", "--score", "entropy"], "--score must be one of complexity, loss, both"),
        (["train", "--out", "x", "--prune-ratio", "0.3"], "set up ST-Prune: add --st-prune"),
        (["train", "--out", "x", "--nproc", "1"], "--nproc must be ≥ 2 to launch processes"),
        (["train", "--out", "x", "--arch", "depth"], "--arch takes KEY=VALUE"),
        (["train", "--out", "x", "--arch", "depth=3"], "simvp has no option 'depth'"),
        (["info", "/nonexistent/model.pt"], "no such file"),
        (["train", "--out", "x", "--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
        (["train", "--out", "x", "--lr", "nan"], "--lr must be a finite number > 0, got nan"),
        (["train", "--out", "x", "--seed", "-1"], "--seed must be a whole number in [0, 2**32), got -1"),
        (["train", "--out", "x", "--seed", str(2**64)], "--seed must be a whole number in [0, 2**32)"),
        (["train", "--out", "x", "--distill", "nan"], "--distill must be a finite number ≥ 0"),
        (
            ["train", "--out", "x", "--budget", "0.5", "--activity-weight", "nan"],
            "--activity-weight must be a finite number",
        ),
        (
            ["train", "--out", "x", "--arch", "spatial_channels=-8"],
            "simvp option spatial_channels must be a whole number in [1, 4096], got -8",
        ),
        (
            ["train", "--out", "x", "--backbone", "vit", "--arch", "heads=0"],
            "vit option heads must be a whole number in [1, 4096], got 0",
        ),
        (["train", "--out", "x", "--size", "100000"], "taxibj: --size must be a whole number in [1, 2048], got 100000"),
        (
            ["train", "--out", "x", "--synthetic-frames", str(10**8)],
            "would take about 3052 GiB to generate (at most 4 GiB)",
        ),
        (["train", "--out", "x", "--init", "absent.pt"], "--init absent.pt: no such file"),
        (["train", "--out", "x", "--resume"], "--resume: x holds no resume.pt to continue from"),
        (["train", "--out", "x", "--resume", "--overwrite"], "choose one"),
        (["profile", "x.onnx", "--budget", "0"], "--budget must be in (0, 1], got 0.0"),
    ],
)
def test_bad_input_is_one_line_and_exit_1(dpedge, args, message, tmp_path):
    result = dpedge(*args, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert not (tmp_path / "x").exists(), "a failed command left an artifact"


@pytest.mark.slow
@pytest.mark.parametrize(
    "arch, message",
    [
        (["--arch", "spatial_channels=4096", "--arch", "temporal_channels=4096"], "parameters (at most 250,000,000)"),
        (
            ["--backbone", "convlstm", "--budget", "0.5", "--no-slimmable", "--arch", "patch_size=4095"],
            "would pad the 32×32 grid to 32760×32760",
        ),
    ],
    ids=["parameters", "padding"],
)
def test_a_model_too_large_to_build_is_refused_once_the_data_give_its_shape(dpedge, arch, message, tmp_path):
    """Counted on torch's meta device: before, these sizes allocated until the machine ran out."""
    result = dpedge("train", "--out", "x", "--synthetic-frames", "120", *arch, cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and lines[0].startswith("data: ") and lines[1:] == [lines[-1]], result.stderr
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["a file as --out", "a file above --out", "a run in --out"])
def test_a_training_folder_that_cannot_take_the_run_is_refused_before_any_work(dpedge, layout, tmp_path):
    """Without these checks the first save, an epoch later, failed with a traceback, or
    training silently overwrote the run already there."""
    (tmp_path / "file").write_text("mine")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.pt").write_bytes(b"an earlier run")
    out, message = {
        "a file as --out": ("file", "a file, not a folder"),
        "a file above --out": ("file/run", "is a file, not a folder"),
        "a run in --out": (
            "run",
            "holds a run (model.pt): it has no resume.pt to continue from: replace it with --overwrite",
        ),
    }[layout]
    result = dpedge("train", "--out", out, "--synthetic-frames", "120", cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "data:" not in result.stderr, "refused before reading data"
    assert (tmp_path / "file").read_text() == "mine" and (
        tmp_path / "run" / "model.pt"
    ).read_bytes() == b"an earlier run"


@pytest.mark.slow
def test_overwrite_replaces_the_run_in_the_folder_and_its_stale_metrics(dpedge, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.pt").write_bytes(b"an earlier run")
    (out / "metrics.json").write_text("{}")
    result = dpedge("train", *TINY, "--epochs", "1", "--out", out, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert load_model(out / "model.pt").metrics["epochs"] == 1
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1


@pytest.mark.slow
def test_export_to_a_folder_is_refused_before_building_anything(dpedge, tmp_path):
    (tmp_path / "taken.onnx").mkdir()
    result = dpedge("export", tmp_path / "model.pt", "-o", tmp_path / "taken.onnx")
    assert result.returncode == 1 and "taken.onnx: a folder, not a file" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_cap_that_admits_no_region_is_refused_before_training_and_says_what_leaves_room(dpedge, tmp_path):
    result = dpedge(
        "train",
        "--out",
        "x",
        "--budget",
        "0.02",
        "--no-slimmable",
        "--region-size",
        "32",
        "--synthetic-frames",
        "120",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]  # after the line describing the data it read
    assert last.startswith("error: a per-sample cap of 0.03 leaves no region to compute"), result.stderr
    # one 32×32 region is the whole frame; 16-channel layers in groups of 8 are at least half wide
    assert "one region at the narrowest widths 0.344 (of 1)" in last and "--region-size" in last
    assert "Traceback" not in result.stderr and not (tmp_path / "x").exists()


@pytest.mark.slow
def test_not_a_checkpoint_is_refused(dpedge, tmp_path):
    (tmp_path / "notes.pt").write_text("hello")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    for name in ("notes.pt", "other.pt"):
        result = dpedge("info", tmp_path / name)
        assert result.returncode == 1 and "not a dpedge model" in result.stderr, result.stderr


class CreatesAFile:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.slow
@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_malicious_pickle_is_refused_without_running(dpedge, writer, tmp_path):
    target = tmp_path / "pwned"
    payload = {"format": "dpedge-checkpoint", "version": 1, "kind": "model", "evil": CreatesAFile(target)}
    if writer == "torch":
        torch.save(payload, tmp_path / "model.pt")
    else:
        (tmp_path / "model.pt").write_bytes(pickle.dumps(payload))
    result = dpedge("info", tmp_path / "model.pt")
    assert result.returncode == 1 and "refused" in result.stderr, result.stderr
    assert not target.exists(), "loading the checkpoint ran code"
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_st_prune_trains_a_dense_model_on_fewer_windows_and_says_how_many(dpedge, tmp_path):
    out = tmp_path / "run"
    result = dpedge(
        "train",
        *TINY,
        "--epochs",
        "2",
        "--st-prune",
        "--prune-ratio",
        "0.8",
        "--score",
        "complexity",
        "--anneal",
        "0",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    windows = [epoch["samples_seen"] / (1 - epoch["pruned_fraction"]) for epoch in metrics["history"]]
    assert all(
        0.25 < epoch["pruned_fraction"] < 0.55 for epoch in metrics["history"]
    )  # R × the easy half, give or take the draw
    assert windows[0] == pytest.approx(windows[1]) and metrics["samples_seen"] < 2 * windows[0]


@pytest.mark.slow
def test_train_writes_a_self_contained_model_and_metrics(dpedge, tmp_path):
    out = tmp_path / "run"
    result = dpedge(
        "train",
        *TINY,
        "--epochs",
        "1",
        "--target-flops",
        "0.5",
        "--no-slimmable",
        "--activity-weight",
        "0.5",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    payload = torch.load(out / "model.pt", weights_only=True)
    assert payload["format"] == "dpedge-checkpoint"
    trained = load_model(out / "model.pt")
    x, _ = next(iter(torch.utils.data.DataLoader([(torch.zeros(4, 2, 32, 32), 0)], batch_size=1)))
    assert trained.model(x).prediction.shape == (1, 4, 2, 32, 32)
    assert trained.model_config.pruning.activity_weight == 0.5  # the router's prior as asked, in the file
    metrics = json.loads((out / "metrics.json").read_text())
    for key in METRICS_KEYS:
        assert key in metrics, key
    assert metrics["epochs"] == 1
    assert abs(metrics["flops_dense"] - metrics["flops_dense_fvcore"]) / metrics["flops_dense"] < 0.01
    assert "one multiply-add = one flop" in metrics["flops_convention"]
    assert not list(out.glob(".*.tmp")), "temporary files left behind"
    resume_state = dpedge("info", out / "resume.pt")
    assert resume_state.returncode == 1 and "a dpedge resume state, not a model" in resume_state.stderr
    one_width = dpedge("export", out / "model.pt", "--width", "0.5")
    assert (
        one_width.returncode == 1
        and "this one was not trained at every width (dpedge train --slimmable)" in one_width.stderr
    )
    assert len(one_width.stderr.strip().splitlines()) == 1 and not list(out.glob("*.onnx"))


@pytest.mark.slow
def test_a_slimmable_model_reports_each_width_level_and_exports_any_of_them(dpedge, tmp_path):
    out = tmp_path / "run"
    trained = dpedge("train", *TINY, "--epochs", "1", "--slimmable", "--out", out)
    assert trained.returncode == 0, trained.stderr
    info = dpedge("info", out / "model.pt")
    assert "width levels, each run alone" in info.stdout and "0.25" in info.stdout, info.stdout
    exported = dpedge("export", out / "model.pt", "--width", "0.5")
    assert exported.returncode == 0, exported.stderr
    manifest = json.loads((out / "model.w0.5.dpedge.json").read_text())
    ((branch,),) = [manifest["branches"]]
    assert branch["widths"] == load_model(out / "model.pt").model.level_groups(0.5)
    assert "the widest level" in exported.stdout and manifest["measured"]["dense_twin_ms"] > 0
    for args, message in (
        (["--width", "0.3"], "--width 0.3 is not a width level of this model: choose one of 0.25, 0.5, 0.75, 1"),
        (["--width", "0.5", "--dense"], "choose one"),
    ):
        refused = dpedge("export", out / "model.pt", *args, "-o", tmp_path / "refused.onnx")
        lines = refused.stderr.strip().splitlines()
        assert refused.returncode == 1 and len(lines) == 1 and message in lines[0], refused.stderr
        assert not (tmp_path / "refused.onnx").exists()


@pytest.mark.slow
def test_a_width_routed_model_takes_its_budget_at_run_time(dpedge, tmp_path):
    """dpedge train --slimmable --budget 0.5 → export (one graph, an optional budget input)
    → the runtime and dpedge profile at other budgets; budget 1 is the widest level."""
    out = tmp_path / "run"
    trained = dpedge(
        "train", *TINY, "--epochs", "1", "--slimmable", "--budget", "0.5", "--group-size", "4", "--out", out
    )
    assert trained.returncode == 0, trained.stderr
    assert "run-time budgets, one model" in trained.stdout, trained.stdout
    exported = dpedge("export", out / "model.pt")
    assert exported.returncode == 0, exported.stderr
    assert "at budget 1, max abs error" in exported.stderr and "width 0.25" in exported.stdout, exported.stdout
    manifest = json.loads((out / "model.dpedge.json").read_text())
    assert manifest["mode"] == "widths" and manifest["budget"]["trained"] == 0.5

    backend = load(out / "model.onnx")
    checkpoint = load_model(out / "model.pt")
    trained_model = checkpoint.model
    x = torch.stack([load_dataset(checkpoint.data_config).val[i][0] for i in range(8)])
    frames = checkpoint.normalizer.denormalize(x.numpy())  # the graph takes physical units
    default = backend.run(frames)
    backend.set_budget(0.5)
    assert np.array_equal(backend.run(frames).forecast, default.forecast), "omitted, the budget is the trained one"
    backend.set_budget(1.0)
    full = backend.run(frames)
    assert (full.branch == len(manifest["branches"]) - 1).all()
    widest = trained_model(x, width=len(trained_model.pruning.width_levels) - 1).prediction.detach().numpy()
    assert np.abs(checkpoint.normalizer.normalize(full.forecast) - widest).max() <= 1e-4, (
        "budget 1 is the widest level, within parity"
    )
    flops = []
    for budget in (0.1, 0.3, 0.7, 1.0):
        backend.set_budget(budget)
        flops.append(backend.run(frames).flops)
    assert (np.diff(np.stack(flops), axis=0) >= 0).all(), "a higher budget computed less for some sample"
    with pytest.raises(ConfigError, match=r"--budget must be in \(0, 1\], got 1.5"):
        backend.set_budget(1.5)

    profiled = dpedge("profile", out / "model.onnx", "--budget", "0.3", "--runs", "20", "--samples", "8", "--json")
    assert profiled.returncode == 0, profiled.stderr
    assert json.loads(profiled.stdout)["settings"]["budget"] == 0.3
    dense = dpedge("export", out / "model.pt", "--dense")
    assert dense.returncode == 0, dense.stderr
    refused = dpedge("profile", out / "model.dense.onnx", "--budget", "0.3", "--runs", "20", "--samples", "8")
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode == 1 and len(lines) == 1 and "fixed its budget when it was trained" in lines[0], (
        refused.stderr
    )


@pytest.mark.slow
def test_resume_after_a_killed_run_loses_at_most_one_epoch(dpedge, tmp_path):
    out = tmp_path / "run"
    args = ["train", *TINY, "--epochs", "4", "--target-flops", "0.5", "--out", out]
    process = subprocess.Popen(
        [sys.executable, "-m", "dynaprune_edge", *map(str, args)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while not (out / "resume.pt").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    state = torch.load(out / "resume.pt", weights_only=True)
    done = state["epoch"]
    assert 1 <= done < 4, "the run should have been killed mid-way"
    first_epoch = json.loads(state["history"])[0]

    result = dpedge("train", *args[1:], "--resume")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4]
    assert metrics["history"][0] == first_epoch, "resume must keep the completed epochs"

    changed = dpedge("train", *[a if a != "0.5" else "0.4" for a in args[1:]], "--resume")
    assert changed.returncode == 1 and "different model_config" in changed.stderr, changed.stderr


@pytest.mark.slow
def test_bench_latency_json_rows_carry_the_documented_keys(dpedge, tmp_path):
    """A minimal run (2 training steps): one JSON row per dataset, target and thread count,
    with the keys the README documents, and the figures consistent with each other."""
    result = dpedge(
        "bench",
        "latency",
        "--out",
        tmp_path,
        "--steps",
        "2",
        "--runs",
        "10",
        "--backbone",
        "simvp",
        "--target-flops",
        "0.5",
        "--threads",
        "1",
        "--json",
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [row["dataset"].split()[0] for row in rows] == ["taxibj", "nycbike", "knmi"]
    keys = {
        "backbone",
        "dataset",
        "budget",
        "threads",
        "dense_ms_p50",
        "sparse_ms_p50",
        "speedup",
        "flops_ratio",
        "efficiency",
        "overhead_share",
    }
    for row in rows:
        assert keys <= row.keys()
        assert row["runtime"]["backend"] == "ort" and row["runtime"]["threads"] == 1 and row["runtime"]["onnxruntime"]
        assert all(0 < row[key] < float("inf") for key in ("speedup", "efficiency", "dense_ms_p50", "sparse_ms_p50")), (
            row
        )  # NaN fails too
        assert 0 < row["overhead_share"] < 1 and 0 < row["router_share"] < 1 and 0 < row["flops_ratio"] <= 1.1
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["results"] == rows and written["benchmark"] == "latency"
    run = written["run"]  # where, when and from what code: what a page citing these rows names
    assert run["command"].startswith("dpedge bench latency ")
    assert abs(datetime.now(timezone.utc) - datetime.fromisoformat(run["date"])) < timedelta(hours=1)
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", run["commit"]), run["commit"]
    assert run["machine"]["cpu"] and run["machine"]["cores"] >= 1 and run["versions"]["onnxruntime"]


def test_bench_trtexec_reads_a_recorded_jetson_log(dpedge):
    log = Path(__file__).parent / "profiling" / "samples" / "trtexec_trt8502_jetson_orin_nano_fp16.log"
    result = dpedge("bench", "trtexec", log, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["tensorrt"] == "8.5.2" and summary["throughput_qps"] > 0
    assert summary["gpu_compute_ms"]["median"] > 0
    table = dpedge("bench", "trtexec", log)
    assert table.returncode == 0 and "gpu_compute_ms" in table.stdout and "throughput" in table.stdout
    missing = dpedge("bench", "trtexec", "nope.log")
    assert missing.returncode == 1 and missing.stderr.startswith("error: nope.log")


@pytest.mark.slow
def test_info_says_how_an_odd_grid_was_padded(dpedge, tmp_path):
    """A model of the 10×20 NYC bike grid (saved untrained: info reads the file, no data)."""
    from dynaprune_edge.data import SAMPLE, DataConfig, load_dataset
    from dynaprune_edge.masks import PruningConfig
    from dynaprune_edge.models import ForecastShape, ModelConfig, build_model
    from dynaprune_edge.training.checkpoint import atomic_save, model_payload

    data = load_dataset(DataConfig("nycbike", path=SAMPLE))
    config = ModelConfig("simvp", ForecastShape(4, 4, 2, 10, 20), {}, PruningConfig(budget=0.3))
    atomic_save(model_payload(build_model(config), config, data.config, data.normalizer, {}), tmp_path / "model.pt")
    result = dpedge("info", tmp_path / "model.pt")
    assert result.returncode == 0, result.stderr
    assert "grid 10×20 padded to 16×24" in result.stdout and "6 rows below, 4 columns right" in result.stdout


@pytest.mark.slow
def test_bench_layout_times_masks_and_widths(dpedge, tmp_path):
    """The micro-benchmark behind the exporter's blocked region masks runs from the command
    line: a row per masked shape (non-zero exit if the blocked mask did not zero exactly
    what the broadcast one does) and one per map for the widths."""
    result = dpedge("bench", "layout", "--runs", "2", "--json", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "results.json").read_text())["benchmark"] == "layout"
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    masks = [(r["channels"], r["height"], r["width"]) for r in rows if r["kind"] == "mask"]
    assert masks == [(16, 12, 20), (16, 64, 64), (32, 12, 20), (64, 16, 16)]
    widths = [r for r in rows if r["kind"] == "width"]
    assert [(r["height"], r["width"]) for r in widths] == [(12, 20), (64, 64)]
    assert all(r["time_share"]["64"] == 1.0 and r["flops_share"]["8"] == 1 / 64 for r in widths)


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    """The machine's refusals (ENOSPC on a Jetson's eMMC, EROFS, EACCES) are not dpedge
    bugs: the user reads which file and why, in one line, and exit code 1."""
    import errno

    from dynaprune_edge import cli, files

    def disk_full(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(files, "fsync_path", disk_full)
    monkeypatch.setattr(sys, "argv", ["dpedge", "train", *TINY, "--epochs", "1", "--out", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and last.endswith(": No space left on device") and ".model.pt." in last, last
    assert not list((tmp_path / "run").glob("*.pt")), "nothing half-written at a final name"
