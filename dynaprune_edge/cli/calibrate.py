"""`dpedge calibrate`: a cost table measured (ort-cpu) or emulated (orin-emu), cached where
`dpedge train --cost` finds it, and shown."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dynaprune_edge.cli.options import (
    Arch,
    Backbone,
    Data,
    Dataset,
    FramesIn,
    FramesOut,
    GroupOrder,
    GroupSize,
    Module,
    PowerMode,
    Precision,
    RegionSize,
    Size,
    Slimmable,
    Threads,
    arch_sizes,
)
from dynaprune_edge.cli.show import console
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.files import check_writable


def calibrate(
    model: Annotated[
        Path | None,
        typer.Argument(
            help="A model.pt whose architecture to measure (else the architecture the options below describe, as "
            "`dpedge train` builds it)."
        ),
    ] = None,
    cost: Annotated[
        str,
        typer.Option(
            help="Cost target: ort-cpu (measured with onnxruntime's CPU provider here, batch 1) or orin-emu (Jetson "
            "AGX Orin, EMULATED; --module, --power-mode, --precision)."
        ),
    ] = "ort-cpu",
    module: Module = None,
    power_mode: PowerMode = None,
    precision: Precision = None,
    backbone: Backbone = "simvp",
    dataset: Dataset = "taxibj",
    data: Data = None,
    frames_in: FramesIn = None,
    frames_out: FramesOut = None,
    size: Size = None,
    region_size: RegionSize = 8,
    group_size: GroupSize = None,
    group_order: GroupOrder = "ordered",
    slimmable: Slimmable = None,
    arch: Arch = None,
    threads: Threads = 1,
    runs: Annotated[int, typer.Option(min=3, max=1000000, help="Timed runs of every sub-network.")] = 20,
    out: Annotated[
        Path | None, typer.Option(help="Also write the table here (JSON), for `dpedge train --cost-table`.")
    ] = None,
) -> None:
    """What each layer of a model costs on a target, on tiles and on whole maps, at every width level (a width-routed slimmable model: what each branch costs): the table `dpedge train --cost ort-cpu|orin-emu` prices samples with (ort-cpu: measured here; orin-emu: emulated)."""
    from dynaprune_edge.cost.orin import emulated_device
    from dynaprune_edge.data import DataConfig
    from dynaprune_edge.export.cost_table import cache_path, measure
    from dynaprune_edge.files import atomic_write_text
    from dynaprune_edge.models import resolve_backbone
    from dynaprune_edge.progress import progress_bar

    backbone = resolve_backbone(backbone)  # with MODEL: the backbone of your own it was trained with

    if cost not in ("ort-cpu", "orin-emu"):
        raise ConfigError(f"--cost must be ort-cpu or orin-emu, got {cost!r} (flops needs no table)")
    if out is not None:
        check_writable(out, "--out", folder=False)
    device = emulated_device(cost == "orin-emu", "--cost", module, power_mode, precision)  # as `dpedge train` takes it
    data_config = None if model else DataConfig(dataset, data, frames_in, frames_out, size)
    config = architecture_config(model, backbone, data_config, region_size, group_size, group_order, slimmable, arch)
    with progress_bar() as progress:
        table = measure(config, threads, runs, progress, cost, device)
    text = table.to_json() + "\n"
    cached = cache_path(config, table.machine)
    for path in [cached] + ([out] if out else []):
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(text, path)
    unit = "ms" if device is None else "EMULATED ms"
    where = (
        f"{table.machine['cpu']}, {threads} thread(s), onnxruntime {table.machine['onnxruntime']}"
        if device is None
        else f"the Jetson AGX Orin ({device.module}, {device.power_mode}, {device.precision})"
    )
    if table.branches is None:
        view = Table(
            title=f"{config.backbone} on {where}: {unit} per layer",
            caption=f"dense export {table.dense_ms:.3f} ms; fixed part of a pruned one (router, persistence, the run) {table.fixed_ms:.3f} ms",
        )
        for column in (
            "layer",
            "whole map",
            *(f"tiles n={n}" for n in table.region_points[1:-1]),
            "tiles pay up to n =",
        ):
            view.add_column(column, justify="right")
        for name, times in table.layers.items():
            view.add_row(
                name,
                f"{times.whole_ms[-1]:.3f}",
                *(f"{t:.3f}" for t in times.tiled_ms[-1][1:-1]),
                str(times.tile_limit) if times.tile_limit else "never",
            )
        scope = "at full width; "
    else:
        view = Table(
            title=f"width-routed {config.backbone} on {where}: {unit} per branch",
            caption=f"dense export {table.dense_ms:.3f} ms",
        )
        for column in ("branch", "with the router", "ratio to dense", "alone (--width)"):
            view.add_column(column, justify="right")
        view.add_row(
            "persistence",
            f"{table.branches.persistence_ms:.3f}",
            f"{table.branches.persistence_ms / table.dense_ms:.2f}",
            "",
        )
        for level, routed, alone in zip(config.pruning.width_levels, table.branches.level_ms, table.branches.alone_ms):
            view.add_row(f"width ×{level:g}", f"{routed:.3f}", f"{routed / table.dense_ms:.2f}", f"{alone:.3f}")
        scope = ""
    console.print(view)
    console.print(
        f"[dim]{scope}"
        + (
            f"measured (not predicted) on this machine, median of {runs} runs"
            if device is None
            else "emulated by the orin-emu roofline (docs/orin-emulator.md), not measured"
        )
        + "[/dim]"
    )
    console.print(f"wrote {cached}" + (f" and {out}" if out else ""))


def architecture_config(model, backbone, data_config, region_size, group_size, group_order, slimmable, arch):
    """The ModelConfig `dpedge calibrate` measures: a model.pt's, or the train options'."""
    from dynaprune_edge.data import load_dataset
    from dynaprune_edge.training import load_model
    from dynaprune_edge.training.config import TrainConfig
    from dynaprune_edge.training.run import RunSpec, model_config_for, pruning_defaults

    if model is not None:
        return load_model(model).model_config
    budget = 0.5  # any budget below 1: the table does not depend on it
    overrides = {
        "region_size": region_size,
        "group_order": group_order,
        **pruning_defaults(budget, slimmable, group_size),
    }
    spec = RunSpec.create(backbone, data_config, budget, TrainConfig(), arch_sizes(arch), overrides)
    return model_config_for(spec, load_dataset(data_config))
