"""`dpedge export`: the export, its table of branches, and the TensorRT engine where asked."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dynaprune_edge.cli.options import ModelBackbone, TrainedModel, register_own_backbone
from dynaprune_edge.cli.show import console
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.files import check_writable


def export(
    model: TrainedModel,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="ONNX file to write (default: MODEL's folder, model.onnx; model.dense.onnx with --dense). The "
            "manifest NAME.dpedge.json goes beside it.",
        ),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="Filters: 'gather' (any per-sample subset; weights gathered at run time), 'sliced' (constant "
            "weight slices per branch; models trained with --group-order ordered), 'auto' (the faster, measured)."
        ),
    ] = "auto",
    tiles: Annotated[
        str,
        typer.Option(
            help="Regions: which layers run on the kept regions' tiles: 'all', 'sparse' (in sub-networks computing at "
            "most half the regions), 'wide' (layers with ≥ 32 input channels), 'none' (whole maps, skipped regions "
            "masked); 'auto' measures them all."
        ),
    ] = "auto",
    levels: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Sub-networks compiled for samples that keep regions (plus a free one for samples that keep none).",
        ),
    ] = 8,
    dense: Annotated[
        bool, typer.Option("--dense", help="Export the same model with pruning off: the latency baseline.")
    ] = False,
    width: Annotated[
        float | None,
        typer.Option(
            help="A slimmable model's width level (e.g. 0.5; see `dpedge train --slimmable`), exported alone as a "
            "static network (every region, no router) and timed against the widest level."
        ),
    ] = None,
    trt: Annotated[
        bool,
        typer.Option(
            "--trt",
            help="Also build a TensorRT engine where tensorrt imports; elsewhere print the trtexec command for the "
            "device.",
        ),
    ] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="TensorRT engine in fp16.")] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="TensorRT engine in int8, calibrated on validation samples.")
    ] = False,
    jetpack: Annotated[
        str,
        typer.Option(
            help="JetPack of the target Jetson (names the engine in the trtexec command when TensorRT is not here): "
            "5.1, 6.0, 6.1 or 6.2."
        ),
    ] = "5.1",
    opset: Annotated[int, typer.Option(help="ONNX opset (17–21).")] = 17,
    backbone: ModelBackbone = None,
) -> None:
    """Compile a model into ONNX whose per-sample sub-networks skip the pruned filters and regions; parity-checked against PyTorch."""
    from dynaprune_edge.export.exporter import Exporter, ExportOptions
    from dynaprune_edge.export.tensorrt.names import check_jetpack
    from dynaprune_edge.flops import format_flops
    from dynaprune_edge.runtime.manifest import manifest_path

    register_own_backbone(backbone)

    if fp16 and int8:
        raise ConfigError("choose one of --fp16 and --int8")
    if (fp16 or int8) and not trt:
        raise ConfigError("--fp16 and --int8 set the TensorRT engine's precision: add --trt")
    options = ExportOptions(mode=mode, tiles=tiles, levels=levels, dense=dense, opset=opset, width=width)
    output = output or model.with_name(
        "model.dense.onnx" if dense else f"model.w{width:g}.onnx" if width is not None else "model.onnx"
    )
    if output.suffix != ".onnx":
        raise ConfigError(f"--output must end in .onnx, got {output.name}")
    check_writable(output, "--output", folder=False)
    check_writable(manifest_path(output), "--output's manifest", folder=False)
    if trt:
        check_jetpack(jetpack)  # before the export's minutes, not after
    exporter = Exporter(model, options, log=lambda line: print(line, file=sys.stderr))
    chosen, manifest, _ = exporter.run(output)
    table = Table(title=f"{manifest.backbone} on {manifest.dataset}: {chosen.mode} export, tiles {chosen.tiles}")
    measured = manifest.measured  # timed at export on 1 thread: a table for other threads predicts other figures
    predicted = (
        manifest.predicted.get("per_branch") if manifest.predicted.get("machine", {}).get("threads") == 1 else None
    )
    for column in (
        "branch",
        "computes",
        "tiles",
        "FLOPs",
        "FLOPs ratio",
        "max abs error",
        "measured ms",
        *(["predicted ms"] if predicted else []),
    ):
        table.add_column(column, justify="right")
    for index, branch in enumerate(manifest.branches):
        error, ms = chosen.parity.get(str(index)), measured["per_branch_ms"].get(str(index))
        table.add_row(
            str(index),
            manifest.computes(index),
            str(branch.tiles or "whole maps"),
            format_flops(branch.flops),
            f"{branch.flops / manifest.dense_flops:.3f}",
            "not reached" if error is None else f"{error:.1e}",
            "–" if ms is None else f"{ms:.3f}",
            *(
                [f"{predicted[index]:.3f}" + ("" if ms is None else f" ({100 * (predicted[index] / ms - 1):+.0f} %)")]
                if predicted
                else []
            ),
        )
    table.caption = "measured: mean over the validation samples that took the branch" + (
        "; predicted: the cost table's" if predicted else ""
    )
    console.print(table)
    baseline = "its dense twin" if width is None else "the widest level"
    twin = (
        f"; {baseline} {measured['dense_twin_ms']:.3f} ms ({measured['speedup']:.2f}× faster)"
        if "speedup" in measured
        else ""
    )
    console.print(
        f"measured on this machine (onnxruntime CPU, 1 thread, batch 1, validation samples): {measured['ms']:.3f} ms{twin}",
        soft_wrap=True,
    )
    console.print(f"wrote {output} and {manifest_path(output)}")
    if trt:
        from dynaprune_edge.export.tensorrt.build import build_or_explain

        precision = "fp16" if fp16 else "int8" if int8 else "fp32"
        samples = exporter.validation_frames()  # int8 calibration, and Polygraphy's inputs
        outcome = build_or_explain(output, manifest, precision, samples, None, jetpack=jetpack)
        if outcome.engine_path is None:
            console.print(f"no TensorRT engine built: {outcome.reason}", soft_wrap=True, markup=False)
        else:
            console.print(f"wrote {outcome.engine_path}; checked against onnxruntime: {outcome.polygraphy}")
            console.print(f"profile it with: {outcome.command}", soft_wrap=True, markup=False)
