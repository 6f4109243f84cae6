"""Backbones (one per family: CNN, RNN, transformer) and the Dyna-Pruner wrapper."""

from __future__ import annotations

import dataclasses
import math

import torch

from dynaprune_edge.checks import is_count
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.models import convlstm, simvp, vit  # noqa: F401 (each registers its backbone)
from dynaprune_edge.models.base import Backbone, DynaPruner, Forecast, ForecastShape, ModelConfig, padded_shape
from dynaprune_edge.models.catalog import BACKBONES, register_backbone, resolve_backbone

MAX_SIZE_OPTION = 4096
"""Every backbone size (widths, depths, patches, kernels) is a whole number in [1, 4096]."""
MAX_PARAMETERS = 250_000_000
"""Largest model dpedge builds: 4 GB of weights and AdamW state, some hundred times an edge
forecaster; a bound on what mistyped --arch sizes can make a run allocate."""
MAX_PADDED_SIDE = 4096
"""Largest side of the grid a model runs on once padded to its regions and strides."""


def backbone_options(backbone: str, overrides: dict[str, str]) -> dict:
    """Fill a backbone's size options from `KEY=VALUE` overrides (values cast to the
    field's type); unknown keys are an error listing the known ones."""
    options_type = BACKBONES.get(backbone).Options
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    values = dataclasses.asdict(options_type())
    for key, raw in overrides.items():
        if key not in fields:
            raise ConfigError(f"{backbone} has no option {key!r}; known: {', '.join(fields)}")
        try:
            values[key] = type(values[key])(raw)
        except ValueError:
            raise ConfigError(f"{backbone} option {key}={raw!r} is not a {type(values[key]).__name__}") from None
    for key, value in values.items():
        if not (is_count(value, 1) and value <= MAX_SIZE_OPTION):
            raise ConfigError(
                f"{backbone} option {key} must be a whole number in [1, {MAX_SIZE_OPTION}], got {value!r}"
            )
    return values


def check_model_size(config: ModelConfig) -> None:
    """ConfigError if the model would have more than MAX_PARAMETERS parameters or pad its
    grid beyond MAX_PADDED_SIDE (large patches or regions), found on torch's meta device
    (shapes, no memory) before a byte of it is allocated."""
    flops_priced = dataclasses.replace(
        config, pruning=dataclasses.replace(config.pruning, cost="flops", cost_table=None)
    )
    with torch.device("meta"):  # the size does not depend on the cost target (whose table may not exist yet)
        model = build_model(flops_priced)
    parameters = sum(p.numel() for p in model.parameters())
    padded = model.backbone.shape
    if max(padded.height, padded.width) > MAX_PADDED_SIDE:
        raise ConfigError(
            f"{config.backbone}'s strides and regions would pad the {config.shape.height}×{config.shape.width} grid to "
            f"{padded.height}×{padded.width} (at most {MAX_PADDED_SIDE} per side): choose a smaller --region-size or patch_size"
        )
    if parameters > MAX_PARAMETERS:
        raise ConfigError(
            f"{config.backbone} with {', '.join(f'{k}={v}' for k, v in config.options.items())} would have "
            f"{parameters:,} parameters (at most {MAX_PARAMETERS:,}): choose smaller --arch sizes"
        )


def region_side(config: ModelConfig) -> int:
    """The DataMask region side the model is built with: `pruning.region_size` when it
    prunes; for a dense model (nothing to skip) its backbone's own spatial multiple, so
    that it is not padded for regions it never skips (a dense SimVP on NYC bike's 10×20
    runs on 12×20, not on the 16×24 that regions of 8 would need: 1.6× the work). A
    width-routed model computes every region too: its mask generator reads the frames at
    that side's resolution."""
    backbone_type = BACKBONES.get(config.backbone)
    if config.pruning.enabled and not config.pruning.routes_widths:
        return config.pruning.region_size
    return backbone_type.spatial_multiple(backbone_type.Options(**config.options))


def build_model(config: ModelConfig) -> DynaPruner:
    backbone_type = BACKBONES.get(config.backbone)
    options = backbone_type.Options(**config.options)
    side = region_side(config)
    multiple = math.lcm(side, backbone_type.spatial_multiple(options))
    backbone = backbone_type(
        padded_shape(config.shape, multiple), options, config.pruning.group_size, one_width=config.pruning.slimmable
    )
    return DynaPruner(backbone, config.pruning, side, config.shape)


__all__ = [
    "BACKBONES",
    "Backbone",
    "DynaPruner",
    "Forecast",
    "ForecastShape",
    "ModelConfig",
    "backbone_options",
    "build_model",
    "check_model_size",
    "register_backbone",
    "resolve_backbone",
]
