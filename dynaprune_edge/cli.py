"""`dpedge`: the command line. Errors a user can cause print one line and exit 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from dynaprune_edge.errors import CheckpointError, ConfigError, DpedgeError
from dynaprune_edge.files import check_writable

app = typer.Typer(
    help="Train per-sample pruned spatio-temporal forecasters (Dyna-Pruner) and measure what they cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bench_app = typer.Typer(help="Benchmarks: long runs that print comparison tables (not tests).", no_args_is_help=True)
app.add_typer(bench_app, name="bench")
console = Console(width=None if sys.stdout.isatty() else 160)  # tables stay whole in logs and pipes

BACKBONE_HELP = (
    "Backbone: simvp (CNN), convlstm (RNN), vit (patch transformer), or one of your own: PATH.py:Class or package.module:Class "
    "(this imports that file, which runs its code as any Python import does: pass only files you trust; docs/guides/own-model.md)."
)
MODEL_BACKBONE_HELP = (
    "The backbone MODEL was trained with, where it is your own: the same PATH.py:Class or package.module:Class as `dpedge train "
    "--backbone` (this runs that file's code; a model.pt names no file to run)."
)
DATASET_HELP = "Dataset family: taxibj, nycbike, weatherbench, sevir or knmi."
DATA_HELP = (
    "Real data: a file, directory or glob in the family's format; 'sample' for the real sample "
    "bundled with dpedge (knmi, weatherbench, nycbike). Omitted: synthetic data of the family's shape."
)

ARCH_HELP = (
    "Backbone size KEY=VALUE, repeatable. simvp: spatial_channels, temporal_channels, "
    "translator_blocks; convlstm: patch_size, hidden_channels, num_layers, kernel_size; "
    "vit: patch_size, dim, depth, heads, head_dim, mlp_ratio."
)
SLIMMABLE_HELP = (
    "Train every width level (0.25, 0.5, 0.75, 1.0 of each pruned layer's groups) as a network of its own: each step trains the "
    "widest, the narrowest and two levels between (with four levels, all of them), the narrower ones distilled from the widest, with BatchNorm statistics per "
    "level; metrics.json reports each level's MAE and cost and `dpedge export --width W` compiles one. With --budget below 1, also a "
    "width router: per sample persistence or one width level, under a budget the export takes at run time (dpedge profile --budget). "
    "Default: on below --budget 1, off at 1 (the plain dense baseline). --no-slimmable below budget 1: Dyna-Pruner's region and filter "
    "masks instead, which run slower than dense on most targets (docs/design.md)."
)
GROUP_SIZE_HELP = "Filters pruned together (hardware alignment). Default: 4 for a slimmable network (four distinct widths of a 16-channel layer), else 8."

MODULE_HELP = "orin-emu: agx-orin-64gb (16 SMs, default) or agx-orin-32gb (14 SMs)."
POWER_MODE_HELP = "orin-emu: nvpmodel mode MAXN (default), 50W, 30W or 15W (64 GB); MAXN, 40W, 30W or 15W (32 GB)."
PRECISION_HELP = "orin-emu: fp32 (TF32 tensor cores, TensorRT's default), fp16 (default) or int8."


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


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    parsed = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--arch takes KEY=VALUE, got {pair!r}")
        parsed[key] = value
    return parsed


def register_own_backbone(spec: str | None) -> None:
    """--backbone of a command that loads a model.pt: the user's backbone imported and
    registered (torch only then: profile and deploy run on devices without it)."""
    if spec is not None:
        from dynaprune_edge.models import resolve_backbone

        resolve_backbone(spec)


@app.command()
def train(
    out: Annotated[Path, typer.Option(help="Directory for model.pt, resume.pt and metrics.json.")],
    backbone: Annotated[str, typer.Option(help=BACKBONE_HELP)] = "simvp",
    dataset: Annotated[str, typer.Option(help=DATASET_HELP)] = "taxibj",
    data: Annotated[str | None, typer.Option(help=DATA_HELP)] = None,
    budget: Annotated[
        float,
        typer.Option(
            "--budget",
            "--target-flops",
            help="Mean cost ratio to train for, relative to the dense model on the --cost target (--target-flops: the same with FLOPs); 1.0 = dense baseline (pruning off).",
        ),
    ] = 1.0,
    cost: Annotated[
        str,
        typer.Option(
            help="What the budget is a ratio of: 'flops'; 'ort-cpu' (onnxruntime milliseconds on this machine, from a cost table measured once and cached; see `dpedge calibrate`); or 'orin-emu' (Jetson AGX Orin milliseconds, EMULATED; see --module, --power-mode, --precision)."
        ),
    ] = "flops",
    module: Annotated[str | None, typer.Option(help=MODULE_HELP)] = None,
    power_mode: Annotated[str | None, typer.Option(help=POWER_MODE_HELP)] = None,
    precision: Annotated[str | None, typer.Option(help=PRECISION_HELP)] = None,
    cost_table: Annotated[
        Path | None,
        typer.Option(
            help="With --cost ort-cpu: a table written by `dpedge calibrate --out` (refused if measured on another machine or for another model)."
        ),
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(
            help="Per-sample cap: no sample may cost more than this ratio of dense, in training and in the exported graph (default: 1.5 × --budget, at most 1)."
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
            help="Start the backbone from a dense model.pt trained on the same data with the same backbone and sizes (a pruned model learns its masks from a network that already forecasts); for a plain PyTorch module of your own (--backbone PATH.py:Class), also from its own state dict."
        ),
    ] = None,
    distill: Annotated[
        float, typer.Option(help="Weight of the MSE to the --init model's forecast in the loss (distillation; 0: off).")
    ] = 0.0,
    frames_in: Annotated[int | None, typer.Option(help="Input frames (default: the family's).")] = None,
    frames_out: Annotated[int | None, typer.Option(help="Frames to forecast (default: the family's).")] = None,
    size: Annotated[
        int | None,
        typer.Option(
            help="Frame height in pixels: the data are area-resampled down to it (default: the family's); any size, the model pads its grid internally."
        ),
    ] = None,
    synthetic_frames: Annotated[
        int | None, typer.Option(help="Length of the synthetic series when --data is omitted (default: the family's).")
    ] = None,
    region_size: Annotated[int, typer.Option(min=1, max=4096, help="DataMask region side in pixels (power of 2).")] = 8,
    group_size: Annotated[int | None, typer.Option(min=1, max=4096, help=GROUP_SIZE_HELP)] = None,
    group_order: Annotated[
        str,
        typer.Option(
            help="Which filter groups fill a layer's width: 'ordered' (always the first, DS-Net; export compiles constant-weight sub-networks, the fast ones) or 'scored' (each sample's best; export gathers weights at run time, often slower than dense)."
        ),
    ] = "ordered",
    activity_weight: Annotated[
        float,
        typer.Option(
            help="Weight of the router's activity prior: regions whose input frames do not change (where a skipped region's persistence is exact) are skipped first; 0 turns it off."
        ),
    ] = 1.0,
    slimmable: Annotated[bool | None, typer.Option("--slimmable/--no-slimmable", help=SLIMMABLE_HELP)] = None,
    arch: Annotated[list[str], typer.Option(help=ARCH_HELP)] = [],
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
            help="ST-Prune: every epoch skips a random share of the easy training windows (scored by spatio-temporal complexity and running loss) and reweights the kept easy ones, so the expected gradient is the full-data one; the last --anneal share of epochs uses every window.",
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
            help="--st-prune: the lowest-scoring share of the windows that count as easy each epoch, in (0, 1] (default 0.5); about easy-share × prune-ratio of the windows are skipped."
        ),
    ] = None,
    nproc: Annotated[
        int | None,
        typer.Option(
            max=256,
            help="Train in N local processes (torchrun, DistributedDataParallel; gloo on CPU, nccl on GPUs); --batch-size stays the global batch. Across machines run torchrun yourself (README).",
        ),
    ] = None,
) -> None:
    """Train one model; writes OUT/model.pt and OUT/metrics.json."""
    from dynaprune_edge.cost.orin import emulated_device
    from dynaprune_edge.data import DataConfig, load_dataset
    from dynaprune_edge.distributed import check_nproc, join_from_environment, launch, leave, peer_lost
    from dynaprune_edge.models import resolve_backbone
    from dynaprune_edge.training.run import RunSpec, check_run_folder, pruning_defaults, train_run
    from dynaprune_edge.training.sample_pruning import SamplePruning
    from dynaprune_edge.training.trainer import TrainConfig

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
        parse_assignments(arch),
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


def show_metrics(metrics: dict) -> None:
    from dynaprune_edge.flops import format_flops

    console.print(
        f"{metrics['backbone']} on {metrics['dataset']}: val MAE {metrics['val_mae']:.4g} {metrics['unit']}, "
        f"MSE {metrics['val_mse']:.4g}; FLOPs {format_flops(metrics['flops_sparse_mean'])} of "
        f"{format_flops(metrics['flops_dense'])} dense (ratio {metrics['flops_ratio_mean']:.3f}), "
        f"data kept {metrics['data_kept_mean']:.3f}; {metrics['epochs']} epochs in {metrics['train_seconds']:.0f} s"
    )
    if "max_cost" in metrics:

        def spread(c: dict) -> str:
            return f"mean {c['mean']:.3f}, p10/p50/p90 {c['p10']:.3f}/{c['p50']:.3f}/{c['p90']:.3f}, max {c['max']:.3f}"

        console.print(
            f"cost ratio on {metrics['cost_target']} (budget {metrics['budget']}, cap {metrics['max_cost']:.3f}): "
            + "; ".join(f"{split} {spread(cost)}" for split, cost in metrics["cost"].items())
        )
    if "widths" in metrics:
        show_widths(metrics["widths"], metrics["unit"])
    if "budgets" in metrics:
        show_budgets(metrics["budgets"], metrics["unit"], metrics["cost_target"])
    console.print(f"[dim]{metrics['flops_convention']}[/dim]")


def show_widths(rows: list[dict], unit: str) -> None:
    """A slimmable network's width levels, each alone as a static network."""
    table = Table(title="width levels, each run alone", caption=f"every region, no router; MAE in {unit}")
    tested = all("test_mae" in row for row in rows)
    for column in ("width", "FLOPs ratio", "val MAE", *(["test MAE"] if tested else [])):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row['width']:g}",
            f"{row['flops_ratio']:.3f}",
            f"{row['val_mae']:.5g}",
            *([f"{row['test_mae']:.5g}"] if tested else []),
        )
    console.print(table)


def show_budgets(rows: list[dict], unit: str, target: str) -> None:
    """A width-routed model at several run-time budgets: one network, one knob."""
    table = Table(
        title="run-time budgets, one model",
        caption=f"cost: mean ratio to dense on {target}, router included; MAE in {unit}; "
        "share: the validation windows each branch took (persistence, then each width level)",
    )
    for column in ("budget", "cost", "FLOPs ratio", "val MAE", "share per branch"):
        table.add_column(column, justify="right")
    for row in rows:
        shares = " ".join(f"{share:.2f}" for share in row["branch_share"])
        table.add_row(
            f"{row['budget']:g}", f"{row['cost']:.3f}", f"{row['flops_ratio']:.3f}", f"{row['val_mae']:.5g}", shares
        )
    console.print(table)


@app.command()
def info(
    model: Annotated[Path, typer.Argument(help="A model.pt written by `dpedge train`.")],
    backbone: Annotated[str | None, typer.Option(help=MODEL_BACKBONE_HELP)] = None,
) -> None:
    """Show how a model was built and trained, and its validation metrics."""
    from dynaprune_edge.training import load_model

    register_own_backbone(backbone)
    trained = load_model(model)
    config = trained.model_config.to_dict()
    if config["pruning"].get("cost_table"):  # hundreds of numbers: say what it is instead
        table = config["pruning"]["cost_table"]
        timed = (
            f"{len(table['branches']['level_ms']) + 1} branches"
            if table.get("branches")
            else f"{len(table['layers'])} layers"
        )
        config["pruning"]["cost_table"] = f"{trained.model.cost_model.describe()}, {timed}"
    console.print_json(
        json.dumps(
            {
                "model": config,
                "layers": trained.model.backbone.prunable_layers(),
                "data": trained.data_config.to_dict(),
                "normalizer": trained.normalizer.to_dict(),
            }
        )
    )
    network = trained.model
    rows, columns = network.padding
    if rows or columns:
        shape, padded = network.shape, network.backbone.shape
        console.print(
            f"grid {shape.height}×{shape.width} padded to {padded.height}×{padded.width} inside the model "
            f"({rows} rows below, {columns} columns right, for "
            + (f"its {network.region_size}-pixel regions and " if network.pruning.enabled else "")
            + f"the {trained.model_config.backbone} strides): padding is kept out of the loss, the metrics and the "
            "forecasts, and regions of padding alone are never computed"
        )
    if trained.metrics:
        try:
            show_metrics(trained.metrics)
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise CheckpointError(
                f"{model}: damaged dpedge model (its metrics: {type(error).__name__}: {error})"
            ) from None


@app.command()
def export(
    model: Annotated[Path, typer.Argument(help="A model.pt written by `dpedge train`.")],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="ONNX file to write (default: MODEL's folder, model.onnx; model.dense.onnx with --dense). The manifest NAME.dpedge.json goes beside it.",
        ),
    ] = None,
    mode: Annotated[
        str,
        typer.Option(
            help="Filters: 'gather' (any per-sample subset; weights gathered at run time), 'bucketed' (constant weight slices per sub-network; ordered-group models), 'auto' (the faster, measured)."
        ),
    ] = "auto",
    tiles: Annotated[
        str,
        typer.Option(
            help="Regions: which layers run on the kept regions' tiles: 'all', 'sparse' (in sub-networks computing at most half the regions), 'wide' (layers with ≥ 32 input channels), 'none' (whole maps, skipped regions masked); 'auto' measures them all."
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
            help="A slimmable model's width level (e.g. 0.5; see `dpedge train --slimmable`), exported alone as a static network (every region, no router) and timed against the widest level."
        ),
    ] = None,
    trt: Annotated[
        bool,
        typer.Option(
            "--trt",
            help="Also build a TensorRT engine where tensorrt imports; elsewhere print the trtexec command for the device.",
        ),
    ] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="TensorRT engine in fp16.")] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="TensorRT engine in int8, calibrated on validation samples.")
    ] = False,
    jetpack: Annotated[
        str,
        typer.Option(
            help="JetPack of the target Jetson (names the engine in the trtexec command when TensorRT is not here): 5.1, 6.0, 6.1 or 6.2."
        ),
    ] = "5.1",
    opset: Annotated[int, typer.Option(help="ONNX opset (17–21).")] = 17,
    backbone: Annotated[str | None, typer.Option(help=MODEL_BACKBONE_HELP)] = None,
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
        manifest.predicted.get("per_bucket") if manifest.predicted.get("machine", {}).get("threads") == 1 else None
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
    for index, bucket in enumerate(manifest.buckets):
        error, ms = chosen.parity.get(str(index)), measured["per_bucket_ms"].get(str(index))
        table.add_row(
            str(index),
            manifest.computes(index),
            str(bucket.tiles or "whole maps"),
            format_flops(bucket.flops),
            f"{bucket.flops / manifest.dense_flops:.3f}",
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


@app.command()
def calibrate(
    model: Annotated[
        Path | None,
        typer.Argument(
            help="A model.pt whose architecture to measure (else the architecture the options below describe)."
        ),
    ] = None,
    cost: Annotated[
        str,
        typer.Option(
            help="Cost target: ort-cpu (measured with onnxruntime's CPU provider here, batch 1) or orin-emu (Jetson AGX Orin, EMULATED; --module, --power-mode, --precision)."
        ),
    ] = "ort-cpu",
    module: Annotated[str | None, typer.Option(help=MODULE_HELP)] = None,
    power_mode: Annotated[str | None, typer.Option(help=POWER_MODE_HELP)] = None,
    precision: Annotated[str | None, typer.Option(help=PRECISION_HELP)] = None,
    backbone: Annotated[str, typer.Option(help=BACKBONE_HELP)] = "simvp",
    dataset: Annotated[str, typer.Option(help=DATASET_HELP)] = "taxibj",
    data: Annotated[str | None, typer.Option(help=DATA_HELP)] = None,
    frames_in: Annotated[int | None, typer.Option(help="Input frames (default: the family's).")] = None,
    frames_out: Annotated[int | None, typer.Option(help="Frames to forecast (default: the family's).")] = None,
    size: Annotated[int | None, typer.Option(help="Frame height in pixels (default: the family's).")] = None,
    region_size: Annotated[int, typer.Option(min=1, max=4096, help="DataMask region side in pixels (power of 2).")] = 8,
    group_size: Annotated[int | None, typer.Option(min=1, max=4096, help=GROUP_SIZE_HELP)] = None,
    group_order: Annotated[
        str, typer.Option(help="'scored' or 'ordered' (see `dpedge train --help`): which export mode is timed.")
    ] = "ordered",
    slimmable: Annotated[
        bool | None,
        typer.Option(
            "--slimmable/--no-slimmable",
            help="Time the branches of a width-routed slimmable model, as `dpedge train` trains by default below budget 1: its router alone and each width level, with and without the router (--no-slimmable: each layer on tiles and whole maps, for `dpedge train --no-slimmable`).",
        ),
    ] = None,
    arch: Annotated[list[str], typer.Option(help=ARCH_HELP)] = [],
    threads: Annotated[int, typer.Option(min=1, max=1024, help="onnxruntime intra-op threads the table is for.")] = 1,
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
    from dynaprune_edge.training.run import RunSpec, model_config_for, pruning_defaults
    from dynaprune_edge.training.trainer import TrainConfig

    if model is not None:
        return load_model(model).model_config
    budget = 0.5  # any budget below 1: the table does not depend on it
    overrides = {
        "region_size": region_size,
        "group_order": group_order,
        **pruning_defaults(budget, slimmable, group_size),
    }
    spec = RunSpec.create(backbone, data_config, budget, TrainConfig(), parse_assignments(arch), overrides)
    return model_config_for(spec, load_dataset(data_config))


@app.command()
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
            help="ort (onnxruntime CPU), ort-cuda, trt (a TensorRT engine on its device) or orin-emu (Jetson AGX Orin latency emulated from a roofline; outputs from onnxruntime CPU)."
        ),
    ] = "ort",
    module: Annotated[str | None, typer.Option(help=MODULE_HELP)] = None,
    power_mode: Annotated[
        str | None,
        typer.Option(
            help=POWER_MODE_HELP + " trt: the mode the Jetson must be in, checked with `nvpmodel -q` before timing."
        ),
    ] = None,
    precision: Annotated[str | None, typer.Option(help=PRECISION_HELP)] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Another copy of the model's training data (its family's format), or 'sample' for the bundled one. Default: what the manifest records."
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
            help="Runs of each model in a row at its turn, the last timed: 1 (strict turns, as `bench latency`) times each after the other evicted it from the caches; 3 times it warm, as a model running alone.",
        ),
    ] = 1,
    threads: Annotated[int, typer.Option(max=1024, help="onnxruntime intra-op threads.")] = 1,
    trtexec_log: Annotated[
        Path | None,
        typer.Option(
            help="The log of a trtexec run of this model's engine (the line `dpedge export --trt` prints; the --exportProfile and --exportLayerInfo files it names are read when beside the log): reported beside, as measured on the GPU the log names; with orin-emu, a run on another GPU than an Orin is scaled to the Orin."
        ),
    ] = None,
    dense_trtexec_log: Annotated[
        Path | None,
        typer.Option(
            help="The same for the dense twin's engine: gives the measured speedup, and on orin-emu the emulator's error on this model."
        ),
    ] = None,
    calibrate: Annotated[
        str | None,
        typer.Option(
            help="orin-emu: 'cuda' builds and profiles both engines with trtexec on this machine's NVIDIA GPU and scales their per-layer times to the Orin, beside the first-principles figures (a --trtexec-log of a run on a desktop GPU is scaled the same way)."
        ),
    ] = None,
    frames: Annotated[
        Path | None,
        typer.Option(
            help="The validation windows in a NAME.frames.npz that `dpedge deploy` copied beside the model, instead of reading the data (a device without torch or the data files)."
        ),
    ] = None,
    power: Annotated[
        str,
        typer.Option(
            help="Power and energy per inference, read from the Jetson's rail monitors: tegrastats, jtop (jetson-stats), off, or auto (tegrastats where found, else jtop, else none; never on orin-emu)."
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
    as_json: Annotated[
        bool, typer.Option("--json", help="Print everything as one JSON object instead of tables.")
    ] = False,
    budget: Annotated[
        float | None,
        typer.Option(
            help="A width-routed model's run-time budget (dpedge train --budget B, below 1): the mean cost ratio on its cost target, in (0, 1]; 1 runs the widest level. Default: the trained budget."
        ),
    ] = None,
    layout: Annotated[
        str | None,
        typer.Option(
            help="ort, ort-cuda: run a pruned export as one graph (single) or as a router graph then the chosen branch's graph (split). Default: what its export measured faster."
        ),
    ] = None,
    cuda_graph: Annotated[
        bool,
        typer.Option(
            "--cuda-graph",
            help="trt: capture each engine (the single engine, or the bundle's router, each branch and the bypass) into a CUDA graph once at load and launch that instead; an engine that cannot be captured runs eagerly, and a line says which and why.",
        ),
    ] = False,
    backbone: Annotated[
        str | None,
        typer.Option(help=f"Only to export the dense twin from the model.pt beside MODEL: {MODEL_BACKBONE_HELP}"),
    ] = None,
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
    profiling.print_profile(result, console)


@app.command()
def device(
    disk: Annotated[
        Path, typer.Option(help="Report the free space for this folder (or its nearest existing parent).")
    ] = Path("."),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object (what `dpedge deploy` reads).")
    ] = False,
) -> None:
    """What this machine offers dpedge: its version, L4T and JetPack, CUDA, TensorRT, onnxruntime, power mode and free disk."""
    from dynaprune_edge.runtime.jetson import device_facts

    facts = device_facts(disk)
    if as_json:
        print(json.dumps(facts))
        return
    for name, value in facts.items():
        console.print(f"{name}: {'not found' if value is None else value}", markup=False, highlight=False)


@app.command()
def engine(
    model: Annotated[
        Path,
        typer.Argument(
            help="An exported MODEL.onnx, its manifest beside it (with --check: an engine, its .engine.json, or a .bundle.json)."
        ),
    ],
    precision: Annotated[
        str,
        typer.Option(
            help="fp32, fp16 or int8 (int8 is calibrated on --frames, or reuses the calibration cache beside the model)."
        ),
    ] = "fp16",
    frames: Annotated[
        Path | None,
        typer.Option(
            help="A NAME.frames.npz of validation windows (`dpedge deploy` copies one): int8 calibration and the Polygraphy check's inputs."
        ),
    ] = None,
    layout: Annotated[
        str | None,
        typer.Option(
            help="single: one engine of the whole graph; split: a pruned graph's bundle, one engine for the router and one per branch (TensorRT may run every branch of an If). Default: split for a pruned graph."
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object: the engine's (or bundle's) path, each engine file with its SHA-256, and the check against onnxruntime.",
        ),
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Build nothing: check the engine or bundle MODEL built earlier (what `dpedge deploy` runs on the device), refused in one line unless it was built for this GPU and TensorRT from the graph beside it and every engine file is the one its metadata lists (SHA-256).",
        ),
    ] = False,
) -> None:
    """Build the TensorRT engine of an exported model on this device, without torch (`dpedge export --trt` does the same from a model.pt); a pruned model's as a bundle of engines."""
    from dynaprune_edge.export.tensorrt.build import build_or_explain
    from dynaprune_edge.runtime.frames import load_frames
    from dynaprune_edge.runtime.manifest import read_manifest
    from dynaprune_edge.runtime.tensorrt import check_engine, engine_files

    if not model.is_file():
        raise ConfigError(f"{model}: no such file")
    if check:
        if frames is not None or layout is not None:
            raise ConfigError("--check builds nothing: --frames and --layout are options of a build")
        checked = check_engine(model)
        if as_json:
            print(json.dumps(checked))
            return
        console.print(
            f"{checked['engine']}: {len(checked['engines'])} engine file(s), each the one {checked['metadata']} lists, built for this "
            f"{checked['device']} with TensorRT {checked['tensorrt']} from the {checked['onnx']} beside it",
            markup=False,
            soft_wrap=True,
        )
        return
    manifest = read_manifest(model)
    calibration = None if frames is None else load_frames(frames, manifest)[0]
    outcome = build_or_explain(model, manifest, precision, calibration, None, layout=layout)
    if outcome.engine_path is None:
        raise ConfigError(
            f"no TensorRT engine built: {outcome.reason}"
        )  # the reason ends with the command for the device
    if as_json:
        _, _, metadata, engines = engine_files(outcome.engine_path)
        print(
            json.dumps(
                {
                    "engine": str(outcome.engine_path),
                    "metadata": metadata.name,
                    "engines": [vars(e) for e in engines],
                    "polygraphy": outcome.polygraphy,
                    "profile_command": outcome.command,
                }
            )
        )
        return
    console.print(f"wrote {outcome.engine_path}; checked against onnxruntime: {outcome.polygraphy}")
    console.print(f"profile it with: {outcome.command}", soft_wrap=True, markup=False)


@app.command()
def deploy(
    model: Annotated[
        Path,
        typer.Argument(
            help="An exported MODEL.onnx (its manifest, and its dense twin MODEL.dense.onnx or the model.pt to export it from, beside it)."
        ),
    ],
    host: Annotated[str, typer.Option(help="The device, USER@HOST (a host name or IP address; [v6] in brackets).")],
    port: Annotated[int, typer.Option(min=1, max=65535, help="Its SSH port.")] = 22,
    identity: Annotated[
        Path | None, typer.Option(help="The private key to log in with (default: ssh's own choice).")
    ] = None,
    known_hosts: Annotated[
        Path | None,
        typer.Option(
            help="The known_hosts file to check the device's host key against (default: ssh's, ~/.ssh/known_hosts)."
        ),
    ] = None,
    accept_new_host_key: Annotated[
        bool,
        typer.Option(
            "--accept-new-host-key",
            help="Trust the host key of a device seen for the first time (a changed key is still refused).",
        ),
    ] = False,
    remote_dir: Annotated[
        str, typer.Option(help="The folder on the device (relative paths are in the login's home).")
    ] = "dpedge-deploy",
    build_engine: Annotated[
        bool,
        typer.Option(
            "--build-engine",
            help="Build the TensorRT engines (model and dense twin) on the device: engines are not portable.",
        ),
    ] = False,
    engine: Annotated[
        Path | None,
        typer.Option(
            help="Copy this engine or bundle instead of building one on the device: an .engine (or its .engine.json) or a .bundle.json built from MODEL on an identical device (same GPU and TensorRT; e.g. fetched from the first Jetson of a fleet), with the dense twin's engine where it lies beside it. Every engine goes first, its metadata last; each is checked on the device by SHA-256, with the GPU and TensorRT it was built for."
        ),
    ] = None,
    precision: Annotated[
        str,
        typer.Option(help="The engines' precision: fp32, fp16 or int8 (calibrated on the model's validation windows)."),
    ] = "fp16",
    profile: Annotated[
        bool,
        typer.Option("--profile", help="Profile the model against its dense twin on the device and fetch the report."),
    ] = False,
    backend: Annotated[
        str,
        typer.Option(
            help="--profile backend on the device: trt (the engines built), or ort (onnxruntime CPU: a device without TensorRT)."
        ),
    ] = "trt",
    power_mode: Annotated[
        str | None,
        typer.Option(
            help="The nvpmodel mode the Jetson must be in while profiling on trt (MAXN, 50W, 30W, 15W); checked there, never changed (jetson/clocks.sh sets it)."
        ),
    ] = None,
    power: Annotated[
        str,
        typer.Option(
            help="The profile's power meter on the device: auto, tegrastats, jtop or off (dpedge profile --power; an AGX Orin's tegrastats shows its rails to root only, jtop to anyone)."
        ),
    ] = "auto",
    report: Annotated[
        Path | None, typer.Option(help="Where the fetched report goes (default: beside the model, report-HOST).")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            help="Read the profile's validation windows from this copy of the data (default: what the manifest records; 'sample': the bundled one)."
        ),
    ] = None,
    samples: Annotated[
        int,
        typer.Option(min=1, max=100000, help="Validation windows to profile on (sent to the device in a frames file)."),
    ] = 64,
    remote_dpedge: Annotated[
        str,
        typer.Option(
            help="The dpedge command on the device (a path where it is not on a non-interactive login's PATH)."
        ),
    ] = "dpedge",
    backbone: Annotated[
        str | None,
        typer.Option(help=f"Only to export the dense twin from the model.pt beside MODEL: {MODEL_BACKBONE_HELP}"),
    ] = None,
) -> None:
    """Deploy an exported model to a Jetson over SSH: check the device, copy, build the engines there (or copy engines built on an identical device), check them there, profile there, fetch the report."""
    from dynaprune_edge.deploy import DeployOptions
    from dynaprune_edge.deploy import deploy as run_deploy
    from dynaprune_edge.deploy.ssh import Target

    register_own_backbone(backbone)

    if report is not None:
        check_writable(report, "--report", folder=True)
    target = Target.parse(
        host, port=port, identity=identity, known_hosts=known_hosts, accept_new_host_key=accept_new_host_key
    )
    options = DeployOptions(
        remote_dir,
        build_engine,
        precision,
        profile,
        backend,
        power_mode,
        power,
        report,
        data,
        samples,
        remote_dpedge,
        engine=engine,
    )
    run_deploy(model, target, options, console)


@app.command()
def demo(
    out: Annotated[
        Path,
        typer.Option(
            help="Directory for the demo's models, exports, plot, verdict and reports (models trained with the same settings are reused)."
        ),
    ] = Path("runs/demo"),
    steps: Annotated[
        int, typer.Option(min=1, max=10000000, help="Optimizer steps per model (as many epochs as that takes).")
    ] = 300,
) -> None:
    """On the real KNMI radar sample: static-width SimVPs against one width-routed SimVP priced in this machine's milliseconds, its one artifact timed over run-time budgets; a plot, a table and a verdict."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import demo as run_demo

    run_demo.demo(out, steps, console)


KNMI_HELP = (
    "KNMI radar data to run on: a file, directory or glob, or 'sample' (default: the frames of the "
    "2010-08-26 event bundled with dpedge)."
)


@bench_app.command("accuracy")
def bench_accuracy(
    out: Annotated[Path, typer.Option(help="Directory for the benchmark's models.")] = Path("runs/bench-accuracy"),
    steps: Annotated[
        int,
        typer.Option(
            min=1,
            max=10000000,
            help="Optimizer steps per model, dense and pruned alike (as many epochs as that takes).",
        ),
    ] = 600,
    budget: Annotated[
        float, typer.Option("--budget", "--target-flops", help="FLOPs budget of the pruned models.")
    ] = 0.3,
    backbone: Annotated[
        list[str],
        typer.Option(
            help="Backbones to run, repeatable (default: the built-in ones; PATH.py:Class for one of your own, which runs that file)."
        ),
    ] = [],
    knmi: Annotated[str | None, typer.Option(help=KNMI_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per row instead of a table.")] = False,
) -> None:
    """For each backbone, on synthetic TaxiBJ, real New York bike traffic and the real KNMI radar set: dense vs pruned MAE, FLOPs ratio, data kept."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import accuracy
    from dynaprune_edge.bench.common import checked_knmi

    accuracy.bench(out, steps, budget, backbone, as_json, checked_knmi(knmi), console)


@bench_app.command("latency")
def bench_latency(
    out: Annotated[
        Path,
        typer.Option(
            help="Directory for the benchmark's models and exports (models trained with the same settings are reused)."
        ),
    ] = Path("runs/bench-latency"),
    steps: Annotated[
        int, typer.Option(min=1, max=10000000, help="Optimizer steps per model (as many epochs as that takes).")
    ] = 300,
    budget: Annotated[
        list[float],
        typer.Option(
            "--budget",
            "--target-flops",
            help="Budgets of the pruned models (ratios on their --cost target), repeatable (default: 0.3 and 0.5).",
        ),
    ] = [],
    threads: Annotated[
        list[int], typer.Option(min=1, max=1024, help="onnxruntime intra-op threads, repeatable (default: 1 and 2).")
    ] = [],
    backbone: Annotated[
        list[str],
        typer.Option(
            help="Backbones to run, repeatable (default: the built-in ones; PATH.py:Class for one of your own, which runs that file)."
        ),
    ] = [],
    group_order: Annotated[
        str,
        typer.Option(
            help="Group order the models are trained with (see `dpedge train --help`); 'ordered' lets export compile constant-weight sub-networks."
        ),
    ] = "ordered",
    runs: Annotated[
        int,
        typer.Option(
            min=1, max=1000000, help="Timed runs of each model per row (cycling over the validation samples)."
        ),
    ] = 300,
    repeat: Annotated[
        int,
        typer.Option(
            min=1,
            max=100,
            help="Runs of each model in a row at its turn, only the last timed: 1 (strict turns, as the benchmark pages' tables) times each model after the others' runs; 3 times each warm, as a model running alone.",
        ),
    ] = 1,
    cost: Annotated[
        list[str],
        typer.Option(
            help="Cost targets the models' budgets are priced on, repeatable: flops, ort-cpu (default: flops)."
        ),
    ] = [],
    knmi: Annotated[str | None, typer.Option(help=KNMI_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per row instead of a table.")] = False,
) -> None:
    """Dense vs sparse export latency (onnxruntime CPU, batch 1) on synthetic TaxiBJ, real New York bike traffic and the real KNMI radar set."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import latency
    from dynaprune_edge.bench.common import checked_knmi

    latency.bench(
        out, steps, budget, threads, backbone, group_order, runs, repeat, as_json, checked_knmi(knmi), console, cost
    )


@bench_app.command("pareto")
def bench_pareto(
    out: Annotated[
        Path,
        typer.Option(
            help="Directory for the models, exports, results.json and the plots (models trained with the same settings are reused)."
        ),
    ] = Path("runs/bench-pareto"),
    steps: Annotated[
        int, typer.Option(min=1, max=10000000, help="Optimizer steps per model, static and pruned alike.")
    ] = 300,
    dataset: Annotated[
        list[str],
        typer.Option(
            help="Datasets, repeatable: taxibj (synthetic), nycbike, knmi, weatherbench (real samples) (default: all)."
        ),
    ] = [],
    backbone: Annotated[
        list[str],
        typer.Option(
            help="Backbones, repeatable (default: the built-in ones; PATH.py:Class for one of your own, which runs that file). SimVP gets static widths 0.25–1.0 and every budget; the others dense, half width and budget 0.3."
        ),
    ] = [],
    budget: Annotated[
        list[float],
        typer.Option(
            help="SimVP's region-pruned models' budgets, repeatable (default: 0.3 and 0.5; the width-routed model is trained at 0.5 and measured at 0.3–1)."
        ),
    ] = [],
    cost: Annotated[
        list[str],
        typer.Option(
            help="Cost targets the budgets (and the width-routed models) are priced on, repeatable (default: flops and ort-cpu)."
        ),
    ] = [],
    large: Annotated[
        bool,
        typer.Option(
            help="Also a larger SimVP (32 spatial / 128 temporal channels) with its own static curve, on taxibj and knmi."
        ),
    ] = True,
    region_pruned: Annotated[
        bool,
        typer.Option(help="Also the region-pruned models (--no-slimmable) at --budget, besides the width-routed ones."),
    ] = True,
    threads: Annotated[int, typer.Option(min=1, max=1024, help="onnxruntime intra-op threads.")] = 1,
    runs: Annotated[
        int, typer.Option(min=1, max=1000000, help="Timed runs of each model (cycling over the validation samples).")
    ] = 200,
    repeat: Annotated[
        int,
        typer.Option(
            min=1,
            max=100,
            help="Runs of each model in a row at its turn, the last timed (3: each model warm, as if it ran alone).",
        ),
    ] = 3,
    knmi: Annotated[str | None, typer.Option(help=KNMI_HELP)] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object per point instead of a table.")
    ] = False,
) -> None:
    """Validation MAE vs measured latency: static-width SimVPs (and ConvLSTM, ViT) against Dyna-Pruner, per dataset, with a plot each."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import pareto
    from dynaprune_edge.bench.common import checked_knmi

    pareto.bench(
        out,
        steps,
        dataset,
        backbone,
        budget,
        cost,
        large,
        region_pruned,
        threads,
        runs,
        repeat,
        as_json,
        checked_knmi(knmi),
        console,
    )


@bench_app.command("layout")
def bench_layout(
    runs: Annotated[int, typer.Option(min=1, max=1000000, help="Timed runs of each graph.")] = 300,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per row instead of tables.")] = False,
) -> None:
    """What onnxruntime's blocked channel layout makes of pruned work on this CPU: region masks by their shape, and layer time against width (about a minute)."""
    from dynaprune_edge.bench import layout

    layout.bench(runs, as_json, console)


@bench_app.command("training")
def bench_training(
    out: Annotated[Path, typer.Option(help="Directory for the runs and results.json.")] = Path("runs/bench-training"),
    epochs: Annotated[
        int, typer.Option(min=2, max=100000, help="Epochs of every run (full data, ST-Prune, InfoBatch-style alike).")
    ] = 10,
    frames: Annotated[
        list[int],
        typer.Option(
            min=1,
            max=1000000,
            help="Synthetic TaxiBJ series lengths, repeatable (a small and a large set: where ST-Prune starts to pay).",
        ),
    ] = [],
    prune_ratio: Annotated[float, typer.Option(help="--prune-ratio of the ST-Prune and InfoBatch-style runs.")] = 0.5,
    anneal: Annotated[float, typer.Option(help="--anneal of both.")] = 0.125,
    easy_share: Annotated[float, typer.Option(help="--easy-share of both.")] = 0.5,
    knmi: Annotated[str | None, typer.Option(help=KNMI_HELP)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """ST-Prune against full-data training and an InfoBatch-style baseline (same seeds): wall-clock to the full-data model's validation MAE (within 1 %), final MAE, pruned fraction, samples seen, scoring overhead; and 1 vs 2 processes."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import training
    from dynaprune_edge.bench.common import checked_knmi
    from dynaprune_edge.training.sample_pruning import SamplePruning

    pruning = SamplePruning(
        ratio=prune_ratio, anneal=anneal, easy_share=easy_share
    )  # bad options fail now, not after the first run
    training.bench(out, epochs, frames or [600, 4000], pruning, checked_knmi(knmi), as_json, console)


@bench_app.command("orin")
def bench_orin(
    out: Annotated[
        Path, typer.Option(help="Directory for the reference networks' ONNX files (built once) and results.json.")
    ] = Path("runs/bench-orin"),
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the rows and summaries as one JSON object instead of a table.")
    ] = False,
) -> None:
    """The orin-emu emulator against published Jetson AGX Orin latencies of well-known networks (MLPerf, Ultralytics): published vs emulated ms, constants as they stand and fitted on marked rows."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import orin

    orin.bench(out, as_json, console)


@bench_app.command("gpu-check")
def bench_gpu_check(
    out: Annotated[
        Path, typer.Option(help="Directory for the small model, its export, its engines and gpu-check.json.")
    ] = Path("runs/gpu-check"),
    steps: Annotated[
        int,
        typer.Option(min=1, max=100000, help="Optimizer steps of the small width-routed SimVP (NYC bike sample data)."),
    ] = 200,
    device: Annotated[
        str,
        typer.Option(
            help="auto: TensorRT where it imports, else PyTorch on the CUDA GPU, else this CPU; cuda or cpu: the PyTorch proxy there."
        ),
    ] = "auto",
    runs: Annotated[int, typer.Option(min=1, max=100000, help="Timed runs of each graph or branch.")] = 200,
) -> None:
    """The split layout on this machine's GPU against the single routed graph, per branch, beside orin-emu's prediction (scripts/gpu_check.sh; a few minutes)."""
    check_writable(out, "--out", folder=True)
    from dynaprune_edge.bench import gpu_check

    gpu_check.check(out, steps, device, runs, console)


@bench_app.command("trtexec")
def bench_trtexec(
    log: Annotated[
        Path,
        typer.Argument(
            help="The output of a trtexec run (e.g. the command `dpedge export --trt` prints, run on the Jetson)."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Read the performance summary of a trtexec run on the device: throughput, latency and GPU compute time."""
    from dynaprune_edge.profiling.trtexec import parse_trtexec_summary

    if not log.is_file():
        raise ConfigError(f"{log}: no such file")
    summary = parse_trtexec_summary(log.read_text(errors="replace"))
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(
        title=f"trtexec {summary.get('tensorrt', '(version not in the log)')}: {log.name}",
        caption="milliseconds, as trtexec measured them on its device",
    )
    timings = {name: stats for name, stats in summary.items() if isinstance(stats, dict)}
    statistics = list(dict.fromkeys(stat for stats in timings.values() for stat in stats))
    table.add_column("timing")
    for stat in statistics:
        table.add_column(stat, justify="right")
    for name, stats in timings.items():
        table.add_row(name, *(f"{stats[stat]:.4g}" if stat in stats else "–" for stat in statistics))
    console.print(table)
    if "throughput_qps" in summary:
        console.print(f"throughput {summary['throughput_qps']:.4g} qps")


def error_line(error: BaseException) -> str:
    """What the user reads. The system's refusals (a full disk, a folder not writable, no
    memory left) are the machine's state, not dpedge's bugs: they get one line too."""
    if isinstance(error, MemoryError):
        return f"out of memory ({error or 'no detail'}): smaller sizes, fewer samples or another machine"
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    text = error.format_message() if hasattr(error, "format_message") else str(error)  # click's usage errors
    if getattr(error, "ctx", None) is not None:
        text = f"{error.ctx.command_path}: {text}"
    return " ".join(text.split()) or type(error).__name__


def main() -> None:
    from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer's own click (pyproject: typer>=0.29)

    try:
        code = app(standalone_mode=False)  # usage errors come here, not to click's boxed message
    except NoArgsIsHelpError as error:
        error.show()  # `dpedge`, `dpedge bench`: the help
        sys.exit(error.exit_code)
    except (DpedgeError, UsageError, OSError, MemoryError) as error:
        # one line, never wrapped or marked up, in one write: the ranks of a distributed run
        # share stderr, and a print's text and newline are two writes that can interleave
        sys.stderr.write(f"error: {error_line(error)}\n")
        sys.stderr.flush()
        sys.exit(1)
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted (an interrupted `dpedge train` continues with --resume)", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)  # --help returns 0
