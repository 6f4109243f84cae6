"""`dpedge train`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

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
    arch_sizes,
)
from dynaprune_edge.cli.show import console, show_metrics
from dynaprune_edge.errors import ConfigError


def train(
    out: Annotated[Path, typer.Option(help="Directory for model.pt, resume.pt and metrics.json.")],
    backbone: Backbone = "simvp",
    dataset: Dataset = "taxibj",
    data: Data = None,
    budget: Annotated[
        float,
        typer.Option(
            "--budget",
            "--target-flops",
            help="Mean cost ratio to train for, relative to the dense model on the --cost target (--target-flops: the "
            "same with FLOPs); 1.0 = dense baseline (pruning off).",
        ),
    ] = 1.0,
    cost: Annotated[
        str,
        typer.Option(
            help="What the budget is a ratio of: 'flops'; 'ort-cpu' (onnxruntime milliseconds on this machine, from a "
            "cost table measured once and cached; see `dpedge calibrate`); or 'orin-emu' (Jetson AGX Orin "
            "milliseconds, EMULATED; see --module, --power-mode, --precision)."
        ),
    ] = "flops",
    module: Module = None,
    power_mode: PowerMode = None,
    precision: Precision = None,
    cost_table: Annotated[
        Path | None,
        typer.Option(
            help="With --cost ort-cpu: a table written by `dpedge calibrate --out` (refused if measured on another "
            "machine or for another model)."
        ),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(
            help="Per-sample cap: no sample may cost more than this ratio of dense, in training and in the exported "
            "graph (default: 1.5 × --budget, at most 1)."
        ),
    ] = None,
    epochs: Annotated[int, typer.Option(min=1, max=100000, help="Passes over the training windows.")] = 10,
    batch_size: Annotated[int, typer.Option(min=1, max=65536, help="Windows per optimizer step.")] = 16,
    lr: Annotated[
        float, typer.Option(help="Peak learning rate (AdamW; warm-up then cosine, by optimizer steps).")
    ] = 2e-3,
    seed: Annotated[int, typer.Option(help="Seed for weights, shuffling and synthetic data.")] = 0,
    init: Annotated[
        Path | None,
        typer.Option(
            help="Start the backbone from a dense model.pt trained on the same data with the same backbone and sizes "
            "(a pruned model learns its masks from a network that already forecasts); for a plain PyTorch module of "
            "your own (--backbone PATH.py:Class), also from its own state dict."
        ),
    ] = None,
    distill: Annotated[
        float, typer.Option(help="Weight of the MSE to the --init model's forecast in the loss (distillation; 0: off).")
    ] = 0.0,
    frames_in: FramesIn = None,
    frames_out: FramesOut = None,
    size: Size = None,
    synthetic_frames: Annotated[
        int | None, typer.Option(help="Length of the synthetic series when --data is omitted (default: the family's).")
    ] = None,
    region_size: RegionSize = 8,
    group_size: GroupSize = None,
    group_order: GroupOrder = "ordered",
    activity_weight: Annotated[
        float,
        typer.Option(
            help="Weight of the router's activity prior: regions whose input frames do not change (where a skipped "
            "region's persistence is exact) are skipped first; 0 turns it off."
        ),
    ] = 1.0,
    slimmable: Slimmable = None,
    arch: Arch = None,
    resume: Annotated[
        bool, typer.Option(help="Continue an interrupted run in --out after its last completed epoch.")
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace the run already in --out (without it, a folder holding a model.pt or resume.pt is refused).",
        ),
    ] = False,
    st_prune: Annotated[
        bool,
        typer.Option(
            "--st-prune",
            help="ST-Prune: every epoch skips a random share of the easy training windows (scored by spatio-temporal "
            "complexity and running loss) and reweights the kept easy ones, so the expected gradient is the full-data "
            "one; the last --anneal share of epochs uses every window.",
        ),
    ] = False,
    prune_ratio: Annotated[
        float | None,
        typer.Option(
            help="--st-prune: probability that an easy window is skipped in an epoch, in [0, 1) (default 0.5)."
        ),
    ] = None,
    anneal: Annotated[
        float | None,
        typer.Option(
            help="--st-prune: the last share of the epochs, trained on every window, in [0, 1] (default 0.125)."
        ),
    ] = None,
    score: Annotated[
        str | None,
        typer.Option(help="--st-prune: what makes a window hard: complexity, loss (InfoBatch's) or both (default)."),
    ] = None,
    easy_share: Annotated[
        float | None,
        typer.Option(
            help="--st-prune: the lowest-scoring share of the windows that count as easy each epoch, in (0, 1] "
            "(default 0.5); about easy-share × prune-ratio of the windows are skipped."
        ),
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option(
            max=256,
            help="Train in N local processes (torchrun, DistributedDataParallel; gloo on CPU, nccl on GPUs); "
            "--batch-size stays the global batch. Across machines run torchrun yourself (docs/guides/st-prune.md).",
        ),
    ] = None,
) -> None:
    """Train one model; writes OUT/model.pt and OUT/metrics.json."""
    from dynaprune_edge.cost.orin import emulated_device
    from dynaprune_edge.data import DataConfig, load_dataset
    from dynaprune_edge.distributed import check_nproc, join_from_environment, launch, leave, peer_lost
    from dynaprune_edge.models import resolve_backbone
    from dynaprune_edge.training.config import TrainConfig
    from dynaprune_edge.training.run import RunSpec, check_run_folder, pruning_defaults, train_run
    from dynaprune_edge.training.sample_pruning import SamplePruning

    chosen = {
        k: v
        for k, v in (("ratio", prune_ratio), ("anneal", anneal), ("score", score), ("easy_share", easy_share))
        if v is not None
    }
    if chosen and not st_prune:
        raise ConfigError("--prune-ratio, --anneal, --score and --easy-share set up ST-Prune: add --st-prune")
    sample_pruning = SamplePruning(**chosen) if st_prune else None
    backbone = resolve_backbone(backbone)
    data_config = DataConfig(dataset, data, frames_in, frames_out, size, synthetic_frames, seed=seed)
    spec = RunSpec.create(
        backbone,
        data_config,
        budget,
        TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            init=None if init is None else str(init),
            distill=distill,
            sample_pruning=sample_pruning,
        ),
        arch_sizes(arch),
        {
            "region_size": region_size,
            "group_order": group_order,
            "max_cost": max_cost,
            "cost": cost,
            "activity_weight": activity_weight,
            **pruning_defaults(budget, slimmable, group_size),
        },
        None if cost_table is None else str(cost_table),
        emulated_device(cost == "orin-emu", "--cost", module, power_mode, precision),
    )
    for option, path in (("--init", init), ("--cost-table", cost_table)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{option} {path}: no such file")
    check_run_folder(out, resume, overwrite, spec.train)
    if nproc is not None:  # the options are checked: run this command in N processes
        check_nproc(nproc)
        load_dataset(data_config)  # bad data: one error here, not one from each process
        launch(nproc, without_option(sys.argv[sys.argv.index("train") + 1 :], "--nproc"))
        return
    world = join_from_environment()
    loaded = load_dataset(data_config)
    if world.main:
        print(f"data: {loaded.describe()}", file=sys.stderr)
    config = None
    if spec.pruning.cost != "flops":
        from dynaprune_edge.export.cost_table import priced_config

        config = priced_config(spec, loaded, out if resume else None, world)
    try:
        metrics = train_run(spec, out, resume=resume, data=loaded, config=config)
    except RuntimeError as error:
        if world.size > 1 and peer_lost(error):  # the launcher names the process that died, and why
            raise ConfigError(
                f"training process {world.rank} of {world.size} stopped: another process stopped answering"
            ) from None
        raise
    finally:
        leave()
    if world.main:
        show_metrics(metrics)
        console.print(f"wrote {out / 'model.pt'} and {out / 'metrics.json'}")


def without_option(arguments: list[str], option: str) -> list[str]:
    """`arguments` with `option VALUE` and `option=VALUE` taken out."""
    kept, skip = [], False
    for argument in arguments:
        if skip:
            skip = False
        elif argument == option:
            skip = True
        elif not argument.startswith(option + "="):
            kept.append(argument)
    return kept
