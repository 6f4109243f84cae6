"""The options more than one command takes, each declared once: its type, its checks and its
help. A command module names them as parameter types (`backbone: Backbone = "simvp"`), so
`dpedge train` and `dpedge calibrate` describe an architecture with the same options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from dynaprune_edge.errors import ConfigError

# What a model is built from: `dpedge train` trains it, `dpedge calibrate` times it.
Backbone = Annotated[
    str,
    typer.Option(
        help="Backbone: simvp (CNN), convlstm (RNN), vit (patch transformer), or one of your own: PATH.py:Class or "
        "package.module:Class (this imports that file, which runs its code as any Python import does: pass only "
        "files you trust; docs/guides/own-model.md)."
    ),
]
Dataset = Annotated[str, typer.Option(help="Dataset family: taxibj, nycbike, weatherbench, sevir or knmi.")]
Data = Annotated[
    str | None,
    typer.Option(
        help="Real data: a file, directory or glob in the family's format; 'sample' for the real sample bundled with "
        "dpedge (knmi, weatherbench, nycbike). Omitted: synthetic data of the family's shape."
    ),
]
FramesIn = Annotated[int | None, typer.Option(help="Input frames (default: the family's).")]
FramesOut = Annotated[int | None, typer.Option(help="Frames to forecast (default: the family's).")]
Size = Annotated[
    int | None,
    typer.Option(
        help="Frame height in pixels: the data are area-resampled down to it (default: the family's); any size, the "
        "model pads its grid internally."
    ),
]
ARCH_HELP = (
    "Backbone size KEY=VALUE, repeatable. simvp: spatial_channels, temporal_channels, "
    "translator_blocks; convlstm: patch_size, hidden_channels, num_layers, kernel_size; "
    "vit: patch_size, dim, depth, heads, head_dim, mlp_ratio."
)
Arch = Annotated[list[str] | None, typer.Option(help=ARCH_HELP)]
RegionSize = Annotated[int, typer.Option(min=1, max=4096, help="DataMask region side in pixels (power of 2).")]
GroupSize = Annotated[
    int | None,
    typer.Option(
        min=1,
        max=4096,
        help="Filters pruned together (hardware alignment). Default: 4 for a slimmable network (four distinct widths "
        "of a 16-channel layer), else 8.",
    ),
]
GroupOrder = Annotated[
    str,
    typer.Option(
        help="Which filter groups fill a layer's width: 'ordered' (always the first, DS-Net; export compiles "
        "constant-weight sub-networks, the fast ones) or 'scored' (each sample's best; export gathers weights at run "
        "time, often slower than dense)."
    ),
]
Slimmable = Annotated[
    bool | None,
    typer.Option(
        "--slimmable/--no-slimmable",
        help="Train every width level (0.25, 0.5, 0.75, 1.0 of each pruned layer's groups) as a network of its own: "
        "each step trains the widest, the narrowest and two levels between (with four levels, all of them), the "
        "narrower ones distilled from the widest, with BatchNorm statistics per level; metrics.json reports each "
        "level's MAE and cost and `dpedge export --width W` compiles one. With --budget below 1, also a width router: "
        "per sample persistence or one width level, under a budget the export takes at run time (dpedge profile "
        "--budget). Default: on below --budget 1, off at 1 (the plain dense baseline). --no-slimmable below budget 1: "
        "Dyna-Pruner's region and filter masks instead, which run slower than dense on most targets "
        "(docs/design.md).",
    ),
]

# The Jetson AGX Orin that orin-emu emulates (train, calibrate, profile).
Module = Annotated[
    str | None, typer.Option(help="orin-emu: agx-orin-64gb (16 SMs, default) or agx-orin-32gb (14 SMs).")
]
POWER_MODE_HELP = "orin-emu: nvpmodel mode MAXN (default), 50W, 30W or 15W (64 GB); MAXN, 40W, 30W or 15W (32 GB)."
PowerMode = Annotated[str | None, typer.Option(help=POWER_MODE_HELP)]
Precision = Annotated[
    str | None, typer.Option(help="orin-emu: fp32 (TF32 tensor cores, TensorRT's default), fp16 (default) or int8.")
]

# A model.pt trained with a backbone of the user's own names no file to run: the command is told.
MODEL_BACKBONE_HELP = (
    "The backbone MODEL was trained with, where it is your own: the same PATH.py:Class or package.module:Class as "
    "`dpedge train --backbone` (this runs that file's code; a model.pt names no file to run)."
)
ModelBackbone = Annotated[str | None, typer.Option(help=MODEL_BACKBONE_HELP)]
TwinBackbone = Annotated[
    str | None,
    typer.Option(help=f"Only to export the dense twin from the model.pt beside MODEL: {MODEL_BACKBONE_HELP}"),
]
TrainedModel = Annotated[Path, typer.Argument(help="A model.pt written by `dpedge train`.")]

Threads = Annotated[int, typer.Option(min=1, max=1024, help="onnxruntime intra-op threads.")]

# The benchmarks'.
Steps = Annotated[
    int,
    typer.Option(
        min=1, max=10000000, help="Optimizer steps per model, every model alike (as many epochs as that takes)."
    ),
]
Backbones = Annotated[
    list[str] | None,
    typer.Option(
        "--backbone",
        help="Backbones to run, repeatable (default: the built-in ones; PATH.py:Class for one of your own, which runs "
        "that file).",
    ),
]
Knmi = Annotated[
    str | None,
    typer.Option(
        help="KNMI radar data to run on: a file, directory or glob, or 'sample' (default: the frames of the "
        "2010-08-26 event bundled with dpedge)."
    ),
]


def json_flag(what: str):
    """--json, printing `what` instead of tables."""
    return Annotated[bool, typer.Option("--json", help=f"Print {what} instead of tables.")]


def out_folder(what: str):
    """--out DIR for a command that writes `what` there."""
    return Annotated[Path, typer.Option(help=f"Directory for {what}.")]


def arch_sizes(pairs: list[str] | None) -> dict[str, str]:
    """--arch KEY=VALUE ... as a dict (the backbone checks the keys and values)."""
    parsed = {}
    for pair in pairs or []:
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
