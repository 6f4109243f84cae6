"""`dpedge profile`: its options and its tables; the run is dynaprune_edge.profile's."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from dynaprune_edge.cli.options import (
    POWER_MODE_HELP,
    Module,
    Precision,
    Threads,
    TwinBackbone,
    json_flag,
    register_own_backbone,
)
from dynaprune_edge.cli.show import console
from dynaprune_edge.files import check_writable

if TYPE_CHECKING:
    from dynaprune_edge.profiling.session import Profile


def profile(
    model: Annotated[
        Path,
        typer.Argument(
            help="An exported MODEL.onnx (its manifest beside it), or a TensorRT MODEL...engine for --backend trt."
        ),
    ],
    backend: Annotated[
        str,
        typer.Option(
            help="ort (onnxruntime CPU), ort-cuda, trt (a TensorRT engine on its device) or orin-emu (Jetson AGX Orin "
            "latency emulated from a roofline; outputs from onnxruntime CPU)."
        ),
    ] = "ort",
    module: Module = None,
    power_mode: Annotated[
        str | None,
        typer.Option(
            help=POWER_MODE_HELP + " trt: the mode the Jetson must be in, checked with `nvpmodel -q` before timing."
        ),
    ] = None,
    precision: Precision = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Another copy of the model's training data (its family's format), or 'sample' for the bundled one. "
            "Default: what the manifest records."
        ),
    ] = None,
    samples: Annotated[
        int, typer.Option(max=100000, help="Validation windows to profile on, spread evenly over the split.")
    ] = 64,
    warmup: Annotated[int, typer.Option(max=1000, help="Untimed passes over the samples before timing.")] = 1,
    runs: Annotated[
        int,
        typer.Option(max=1000000, help="Timed runs of each model (cycling over the samples; at least one per sample)."),
    ] = 300,
    repeat: Annotated[
        int,
        typer.Option(
            max=100,
            help="Runs of each model in a row at its turn, the last timed: 1 (strict turns, as `bench latency`) times "
            "each after the other evicted it from the caches; 3 times it warm, as a model running alone.",
        ),
    ] = 1,
    threads: Threads = 1,
    trtexec_log: Annotated[
        Path | None,
        typer.Option(
            help="The log of a trtexec run of this model's engine (the line `dpedge export --trt` prints; the "
            "--exportProfile and --exportLayerInfo files it names are read when beside the log): reported beside, as "
            "measured on the GPU the log names; with orin-emu, a run on another GPU than an Orin is scaled to the Orin."
        ),
    ] = None,
    dense_trtexec_log: Annotated[
        Path | None,
        typer.Option(
            help="The same for the dense twin's engine: gives the measured speedup, and on orin-emu the emulator's "
            "error on this model."
        ),
    ] = None,
    calibrate: Annotated[
        str | None,
        typer.Option(
            help="orin-emu: 'cuda' builds and profiles both engines with trtexec on this machine's NVIDIA GPU and "
            "scales their per-layer times to the Orin, beside the first-principles figures (a --trtexec-log of a run "
            "on a desktop GPU is scaled the same way)."
        ),
    ] = None,
    frames: Annotated[
        Path | None,
        typer.Option(
            help="The validation windows in a NAME.frames.npz that `dpedge deploy` copied beside the model, instead of "
            "reading the data (a device without torch or the data files)."
        ),
    ] = None,
    power: Annotated[
        str,
        typer.Option(
            help="Power and energy per inference, read from the Jetson's rail monitors: tegrastats, jtop "
            "(jetson-stats), off, or auto (tegrastats where found, else jtop, else none; never on orin-emu)."
        ),
    ] = "auto",
    power_seconds: Annotated[
        float, typer.Option(help="Seconds each model runs alone, back to back, while its power is sampled.")
    ] = 5.0,
    idle_seconds: Annotated[
        float,
        typer.Option(
            help="Seconds of idle power sampled first, subtracted for the energy an inference adds (0: none)."
        ),
    ] = 3.0,
    power_interval: Annotated[
        int, typer.Option(max=60000, help="Milliseconds between rail readings (tegrastats --interval).")
    ] = 100,
    report: Annotated[
        Path | None, typer.Option(help="Write report.json, report.md and PNG plots into this folder.")
    ] = None,
    as_json: json_flag("everything as one JSON object") = False,
    budget: Annotated[
        float | None,
        typer.Option(
            help="A width-routed model's run-time budget (dpedge train --budget B, below 1): the mean cost ratio on its "
            "cost target, in (0, 1]; 1 runs the widest level. Default: the trained budget."
        ),
    ] = None,
    layout: Annotated[
        str | None,
        typer.Option(
            help="ort, ort-cuda: run a pruned export as one graph (single) or as a router graph then the chosen "
            "branch's graph (split). Default: what its export measured faster."
        ),
    ] = None,
    cuda_graph: Annotated[
        bool,
        typer.Option(
            "--cuda-graph",
            help="trt: capture each engine (the single engine, or the bundle's router, each branch and the bypass) into "
            "a CUDA graph once at load and launch that instead; an engine that cannot be captured runs eagerly, and a "
            "line says which and why.",
        ),
    ] = False,
    backbone: TwinBackbone = None,
) -> None:
    """Latency, FLOPs and branch per sample of an exported model against its dense twin, on real samples of its data: measured, or emulated for the Jetson AGX Orin."""
    from dynaprune_edge import profile as profiling

    register_own_backbone(backbone)

    settings = profiling.Settings(
        backend,
        module,
        power_mode,
        precision,
        data,
        samples,
        warmup,
        runs,
        repeat,
        threads,
        calibrate,
        None if frames is None else str(frames),
        power,
        power_seconds,
        idle_seconds,
        power_interval,
        budget,
        layout,
        cuda_graph,
    )
    settings.device()  # a bad module, power mode or precision fails before any work
    if report is not None:
        check_writable(report, "--report", folder=True)
    logs = {role: log for role, log in (("sparse", trtexec_log), ("dense", dense_trtexec_log)) if log is not None}
    result = profiling.run(model, settings, logs)
    if report is not None:
        from dynaprune_edge.profiling.report import write_report

        written = write_report(result, report, settings.as_dict())
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    if as_json:
        print(json.dumps({**result.summary(), "settings": settings.as_dict()}))
        return
    show_profile(result)


def show_profile(result: Profile) -> None:
    from dynaprune_edge.flops import format_flops
    from dynaprune_edge.profiling.session import EMULATED

    summary = result.summary()
    latency, flops, kind = summary["latency"], summary["flops"], result.latency_kind
    table = Table(
        title=f"{result.manifest.backbone} on {result.manifest.dataset}: {summary['backend']['backend']}, {kind} latency",
        caption=latency["label"],
    )
    for column in ("model", "mean ms", "p50", "p90", "p99", "n", "FLOPs/sample"):
        table.add_column(column, justify="left" if column == "model" else "right")
    layout = summary["backend"].get("layout")
    pruned = "pruned" if layout is None or result.manifest.mode == "dense" else f"pruned, {layout} layout"
    for name, stats, executed in (
        ("dense twin", latency["dense"], flops["dense"]),
        (pruned, latency["sparse"], flops["executed_mean"]),
    ):
        table.add_row(
            f"{name} ({kind})",
            *(f"{stats[k]:.3f}" for k in ("mean", "p50", "p90", "p99")),
            str(stats["n"]),
            format_flops(executed),
        )
    console.print(table)
    console.print(
        f"speedup ({kind}): {latency['speedup']:.2f}×; FLOPs {flops['ratio_mean']:.3f} of dense on average, "
        f"at most {flops['ratio_max']:.3f} ({flops['convention']})",
        soft_wrap=True,
    )
    branches = Table(title="branches the samples took")
    for column in ("branch", "computes", "FLOPs ratio", "samples", f"{kind} ms", "mean activity"):
        branches.add_column(column, justify="right")
    for row in summary["branches"]:
        ms, act = row[f"{kind}_ms"], row["activity_mean"]
        branches.add_row(
            str(row["branch"]),
            result.manifest.computes(row["branch"]),
            f"{row['flops_ratio']:.3f}",
            str(row["samples"]),
            "–" if ms is None else f"{ms:.3f}",
            "–" if act is None else f"{act:.4g}",
        )
    console.print(branches)
    split = summary["calm_vs_busy"]
    halves = Table(
        title=f"calm vs busy inputs (split at the median activity {split['activity_threshold']:.4g}: {split['activity_unit']})"
    )
    for column in ("half", "samples", "mean activity", "FLOPs ratio", f"{kind} ms", "kept regions"):
        halves.add_column(column, justify="right")
    for half in ("calm", "busy"):
        if half in split:
            row = split[half]
            halves.add_row(
                half,
                str(row["samples"]),
                f"{row['activity_mean']:.4g}",
                f"{row['flops_ratio_mean']:.3f}",
                f"{row[f'{kind}_ms_mean']:.3f}",
                "–" if row["kept_regions_mean"] is None else f"{row['kept_regions_mean']:.1f}",
            )
    console.print(halves)
    console.print(f"[dim]data: {result.data}[/dim]")
    if "bundle_phases" in summary:
        phases = Table(
            title="the TensorRT bundle, per branch: where a sample's time goes (mean ms)",
            caption="router and branch: their engines on the GPU (CUDA events); dispatch: the index read back and the choice, on the host",
        )
        for column in ("branch", "computes", "samples", "router", "dispatch", "branch engine", "total"):
            phases.add_column(column, justify="right")
        for row in summary["bundle_phases"]:
            phases.add_row(
                str(row["branch"]),
                result.manifest.computes(row["branch"]),
                str(row["samples"]),
                *(f"{row[key]:.3f}" for key in ("router_ms", "dispatch_ms", "branch_ms", "total_ms")),
            )
        console.print(phases)
    if result.trtexec:
        show_device_runs(summary["trtexec"])
    if result.power is not None:
        show_power(summary["power"])
    if kind == EMULATED:
        console.print(
            "[bold]emulated[/bold]: predicted by the orin-emu roofline, not measured on a Jetson (docs/orin-emulator.md)"
        )
        from dynaprune_edge.profiling.report import KERNEL_COLUMNS, kernel_rows

        kernels = Table(title="what the emulated time is made of (TensorRT kernels after fusion)")
        for column in KERNEL_COLUMNS:
            kernels.add_column(column, justify="left" if column == "model" else "right")
        for row in kernel_rows(summary["emulated_kernels"]):
            kernels.add_row(*row)
        console.print(kernels)


def show_power(power: dict) -> None:
    from dynaprune_edge.profiling.report import POWER_COLUMNS, power_notes, power_rows

    table = Table(title=f"power and energy: MEASURED by {power['meter']}", caption=power["label"])
    for column in POWER_COLUMNS:
        table.add_column(column, justify="left" if column == "phase" else "right")
    for row in power_rows(power):
        table.add_row(*row)
    console.print(table)
    for note in power_notes(power):
        console.print(note, soft_wrap=True, markup=False)


def show_device_runs(on_device: dict) -> None:
    from dynaprune_edge.profiling.report import DEVICE_COLUMNS, device_notes, device_rows

    table = Table(title="trtexec runs: MEASURED", caption=on_device["label"])
    for column in DEVICE_COLUMNS:
        table.add_column(column, justify="left" if column in ("engine of", "engine", "GPU") else "right")
    for row in device_rows(on_device):
        table.add_row(*row)
    console.print(table)
    for note in device_notes(on_device):
        console.print(note)
