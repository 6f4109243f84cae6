"""The contract every backbone keeps, and `DynaPruner`, which wraps a backbone with the
mask generator and the persistence fallback for skipped regions."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dynaprune_edge.checks import is_count
from dynaprune_edge.cost import FlopsCost, cost_model
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.layers import (
    FlopsLedger,
    GateSpec,
    Interpreter,
    Layer,
    MaskedBatchNorm2d,
    MaskState,
    TrainingInterpreter,
)
from dynaprune_edge.masks import DataMask, ImportanceField, MaskGenerator, MaskMode, ModelMask, PruningConfig
from dynaprune_edge.masks.budget import CostCurve, calibrate
from dynaprune_edge.masks.generator import groups_at_widths
from dynaprune_edge.masks.router import WidthRouter


@contextlib.contextmanager
def evaluating(module: nn.Module):
    """`module` in eval mode for the block (BatchNorm reads, never updates, its statistics)."""
    training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(training)


@dataclass(frozen=True)
class ForecastShape:
    """Input (B, frames_in, channels, height, width) → output (B, frames_out, ...)."""

    frames_in: int
    frames_out: int
    channels: int
    height: int
    width: int

    def __post_init__(self) -> None:
        for name, value in dataclasses.asdict(self).items():
            if not is_count(value, 1):
                raise ConfigError(f"forecast shape: {name} must be a whole number ≥ 1, got {value!r}")


class Backbone(nn.Module, ABC):
    """A forecaster made of layer types (`dynaprune_edge.layers`), whose forward is written
    once, as `program(ops, x)` against an `Interpreter`: torch runs it in training
    (`forward`), the exporter runs it to emit each sub-network. So every backbone exports.

    Subclasses define `name` (its registry key), `Options` (a dataclass of sizes, all with
    defaults) and `program`, which returns the (B, frames_out, C, H, W) forecast. What the
    backbone outputs in skipped regions does not matter: `DynaPruner` replaces it with the
    fallback there.
    """

    name: ClassVar[str]
    Options: ClassVar[type]
    WIDTHS: ClassVar[dict[str, int]] = {}
    """The options that set the network's width, each with the multiple it must keep (the
    static-width baselines of `scaled_options`)."""

    def __init__(self, shape: ForecastShape, options, group_size: int, one_width: bool = False) -> None:
        """one_width: every gate always takes the same width level (a slimmable network:
        one width decision per sample), so channels that a residual add couples agree by
        construction and a backbone may gate them too, under one gate."""
        super().__init__()
        self.shape = shape
        self.options = options
        self.group_size = group_size
        self.one_width = one_width

    @classmethod
    def spatial_multiple(cls, options) -> int:
        """What frame height and width must be multiples of (strides, patches); DynaPruner
        pads any other grid up to it."""
        return 1

    @classmethod
    def check_before_data(cls, options, frames_in: int, frames_out: int, channels: int) -> None:
        """ConfigError for what is wrong with this backbone whatever the grid: called before
        any data are read, with the windows asked for and the family's usual channels
        (what depends on the data's own shape is checked once it is known)."""

    @classmethod
    def region_size(cls, options: dict) -> int | None:
        """The pruning region side this architecture fixes (a ViT's token is one region),
        or None where any region size works."""
        return None

    @classmethod
    def scaled_options(cls, options, multiplier: float) -> dict:
        """`options` (a dict of sizes) with every layer `multiplier` times as wide: the
        static network of about multiplier² the FLOPs that a pruned one must beat."""
        values = dataclasses.asdict(cls.Options(**options))
        for name, multiple in cls.WIDTHS.items():
            values[name] = max(multiple, round(values[name] * multiplier / multiple) * multiple)
        return values

    def patch_grid(self, patch: int) -> tuple[int, int]:
        """Rows and columns of patch×patch tiles covering a frame (ConfigError if they don't)."""
        height, width = self.shape.height, self.shape.width
        if patch < 1 or height % patch or width % patch:
            raise ConfigError(f"patch_size {patch} does not divide {height}×{width} frames")
        return height // patch, width // patch

    def check_region_grid(self, grid: tuple[int, int]) -> None:
        """Raise ConfigError if this backbone cannot use regions forming `grid`."""

    def layers(self) -> list[Layer]:
        return [m for m in self.modules() if isinstance(m, Layer)]

    def prunable_layers(self) -> list[dict]:
        """Each layer (by its path), the gate that prunes its filters (None: never pruned) and,
        for one that is not pruned, why, where the backbone knows (`dpedge info`)."""
        return [
            {"layer": name, "gate": None if layer.gate is None else layer.gate.name}
            for name, layer in self.named_modules()
            if isinstance(layer, Layer)
        ]

    def gate_specs(self) -> list[GateSpec]:
        """Every prunable unit, once each, in layer order (the order of ModelMask's widths)."""
        return list(dict.fromkeys(layer.gate for layer in self.layers() if layer.gate is not None))

    def check_exportable(self) -> None:
        for layer in self.layers():
            layer.check_exportable()

    @abstractmethod
    def program(self, ops: Interpreter, x):
        """The forecast of the (B, frames_in, C, H, W) frames `x`, in `ops`' primitives."""

    def forward(self, x: Tensor, masks: MaskState) -> Tensor:
        return self.program(TrainingInterpreter(masks), x)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model: saved inside `model.pt`."""

    backbone: str
    shape: ForecastShape
    options: dict
    pruning: PruningConfig

    def to_dict(self) -> dict:
        return {
            "backbone": self.backbone,
            "shape": dataclasses.asdict(self.shape),
            "options": dict(self.options),
            "pruning": self.pruning.to_dict(),
        }

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        return cls(
            backbone=values["backbone"],
            shape=ForecastShape(**values["shape"]),
            options=dict(values["options"]),
            pruning=PruningConfig.from_dict(values["pruning"]),
        )


@dataclass
class Forecast:
    prediction: Tensor  # (B, frames_out, C, H, W)
    flops: Tensor  # (B,) closed-form sparse FLOPs of each sample, mask generator included
    dense_flops: float  # the same backbone with pruning off, per sample
    data_kept: Tensor  # (B,) fraction of regions computed
    masks: MaskState | None  # None: a width-routed forecast, whose branches ran separately
    cost_ratio: Tensor  # (B,) cost relative to the dense model on the model's cost target
    branch: Tensor | None = None  # (B,) a width-routed model's branch per sample: 0 persistence, then each width level
    predicted_losses: Tensor | None = (
        None  # (B, branches) its width router's predicted error of every branch (in its loss_unit)
    )

    @property
    def flops_ratio(self) -> Tensor:
        return self.flops / self.dense_flops


def padded_shape(shape: ForecastShape, multiple: int) -> ForecastShape:
    """`shape` with height and width rounded up to multiples of `multiple`."""
    up = lambda side: -(-side // multiple) * multiple
    return dataclasses.replace(shape, height=up(shape.height), width=up(shape.width))


class DynaPruner(nn.Module):
    """Backbone + (when pruning is on) mask generator. Skipped regions output the last
    input frame (persistence) in training and at inference alike, so the loss sees what
    the exported model will do there.

    Any grid is used whole: `shape` is the user's frame; the backbone runs on it padded
    (bottom and right, zeros of the normalised input) to what the regions and the
    backbone's strides need, and the forecast is cropped back, so padding never reaches
    the loss, the metrics or the outputs. Regions made only of padding are never computed
    (their importance logit is −∞), so they cost nothing either."""

    def __init__(
        self, backbone: Backbone, pruning: PruningConfig, region_size: int, shape: ForecastShape | None = None
    ) -> None:
        """region_size: the side of a region (`models.region_side`: the pruning setting, or
        for a dense model its backbone's spatial multiple)."""
        super().__init__()
        padded = backbone.shape
        self.shape = shape or padded
        if padded.height % region_size or padded.width % region_size:
            raise ConfigError(
                f"{padded.height}×{padded.width} frames are not a multiple of the region size {region_size}"
            )
        self.backbone = backbone
        self.pruning = pruning
        self.region_size = region_size
        self.grid = (padded.height // region_size, padded.width // region_size)
        backbone.check_region_grid(self.grid)
        rows = torch.arange(self.grid[0]) * region_size < self.shape.height
        columns = torch.arange(self.grid[1]) * region_size < self.shape.width
        self.register_buffer("real_regions", rows[:, None] & columns[None, :], persistent=False)
        self.gates = backbone.gate_specs()
        self.cost_model = (
            cost_model(pruning.cost, pruning.cost_table) if pruning.enabled else FlopsCost()
        )  # dense: 1 on any target
        self.layer_names = {layer: name for name, layer in backbone.named_modules() if isinstance(layer, Layer)}
        for layer, name in self.layer_names.items():
            # A layer whose export computes skipped regions anyway (the ConvLSTM's
            # recurrence) is charged in full on any cost target: FLOPs included.
            layer.tile_limit = self.cost_model.tile_limit(name) if layer.skips_regions_when_tiled else 0
        # A slimmable network's BatchNorms keep statistics per width level (`at_width`).
        self.width_norms = (
            [m for m in backbone.modules() if isinstance(m, MaskedBatchNorm2d)] if pruning.slimmable else []
        )
        for norm in self.width_norms:
            norm.track_widths(len(pruning.width_levels))
        if pruning.enabled:
            channels = pruning.generator_channels
            self.generator = MaskGenerator(
                shape.frames_in * shape.channels, region_size, channels, pruning.keep_bias, pruning.activity_weight
            )
            if pruning.routes_widths:
                self.width_router = WidthRouter(
                    self.generator.feature_channels, len(pruning.width_levels), pruning.max_cost
                )
            else:
                self.data_mask = DataMask(self.grid)
                self.model_mask = ModelMask(self.gates, channels, pruning)
        else:
            self.generator = None

    @property
    def regions(self) -> int:
        """DataMask regions per frame (the grid's cells, padding included)."""
        return self.grid[0] * self.grid[1]

    @property
    def padding(self) -> tuple[int, int]:
        """Rows and columns of padding below and right of the user's frame."""
        return self.backbone.shape.height - self.shape.height, self.backbone.shape.width - self.shape.width

    @property
    def padding_only_regions(self) -> bool:
        return not bool(self.real_regions.all())

    def pad(self, x: Tensor) -> Tensor:
        """(B, T, C, H, W) user frames → the backbone's padded frames."""
        rows, columns = self.padding
        return F.pad(x, (0, columns, 0, rows)) if rows or columns else x

    def crop(self, y: Tensor) -> Tensor:
        return y[..., : self.shape.height, : self.shape.width]

    def importance(self, padded: Tensor) -> ImportanceField:
        """The generator's importance field, −∞ in regions made only of padding (never
        kept, by any threshold; S = 0 there, so they weigh nothing in group scores)."""
        field = self.generator(padded)
        if not self.padding_only_regions:
            return field
        return ImportanceField(field.features, field.logits.masked_fill(~self.real_regions, float("-inf")))

    def lower_importance(self, graph, frames: str, shape: tuple[int, ...]) -> tuple[str, str]:
        """`importance` in the exported router: (features, logits) of the padded frames."""
        features, logits = self.generator.lower(graph, frames, shape)
        if self.padding_only_regions:
            real = graph.const(self.real_regions.numpy()[None, None])
            logits = graph.op("Where", real, logits, graph.const(np.float32(-np.inf)), scope="router/regions")
        return features, logits

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The backbone's parameters and the masks' (mask generator, and DataMask and
        ModelMask or the width router: a few parameters the trainer moves at a higher
        learning rate; none in a dense model)."""
        backbone = list(self.backbone.parameters())
        ours = {id(p) for p in backbone}
        return {"backbone": backbone, "masks": [p for p in self.parameters() if id(p) not in ours]}

    def mask_flops(self) -> float:
        """What deciding the masks costs per sample (generator, and group scorers or the
        width router's head): fixed."""
        shape = self.backbone.shape
        decision = self.width_router.flops() if self.pruning.routes_widths else self.model_mask.flops()
        return self.generator.flops(shape.height, shape.width) + decision

    def dense_masks(self, x: Tensor) -> MaskState:
        """Every region and filter kept: the backbone as the dense baseline runs it."""
        return MaskState.all_kept(x.shape[0], self.grid, self.gates, x)

    def masks_keeping(self, counts: Tensor, like: Tensor, groups: Tensor | None = None) -> MaskState:
        """The hard masks of samples keeping counts[i] regions (the first ones, row-major)
        and, per gate, groups[i, gate] groups (the first ones; default: what the ModelMask
        keeps at that count): a sample's cost depends on nothing else."""
        region = (torch.arange(self.regions, device=like.device)[None] < counts[:, None]).to(like.dtype)
        table = (
            torch.as_tensor(self.model_mask.width_table(self.regions), device=like.device)[counts]
            if groups is None
            else groups
        )
        channels = {
            gate.name: (torch.arange(gate.groups, device=like.device)[None] < table[:, [index]])
            .to(like.dtype)
            .repeat_interleave(gate.group_size, dim=1)
            for index, gate in enumerate(self.gates)
        }
        return MaskState(region.reshape(-1, 1, *self.grid), channels)

    def level_groups(self, level: float) -> dict[str, int]:
        """Groups every gate keeps at width level `level` (the ModelMask's rounding)."""
        kept = groups_at_widths(self.gates, torch.full((len(self.gates),), float(level)))
        return {gate.name: int(groups) for gate, groups in zip(self.gates, kept)}

    def width_masks(self, padded: Tensor, level: int) -> MaskState:
        """Every region computed and every gate at the width level of index `level` (its
        first groups): one static sub-network of a slimmable model, for every sample."""
        groups = self.level_groups(self.pruning.width_levels[level])
        per_sample = torch.tensor([[groups[gate.name] for gate in self.gates]], device=padded.device).expand(
            padded.shape[0], -1
        )
        return self.masks_keeping(
            torch.full((padded.shape[0],), self.regions, device=padded.device), padded, per_sample
        )

    @contextlib.contextmanager
    def at_width(self, level: int):
        """The backbone with the BatchNorm statistics of width level `level` in use for the
        block (read in evaluation and export, updated in training); outside it, the widest
        level's. No-op for a model that is not slimmable (one set of statistics)."""
        for norm in self.width_norms:
            norm.keep_width(-1)  # what the widest level's statistics became outside a block
            norm.use_width(level)
        try:
            yield
        finally:
            for norm in self.width_norms:
                norm.keep_width(level)
                norm.use_width(-1)

    def sample_costs(self, ledger: FlopsLedger) -> Tensor:
        """(B,) each sample's cost on the model's cost target (`pruning.cost`), relative to
        the dense model's: its layers priced from what they kept, plus the fixed part (a
        dense model's FLOPs: 1, or less for a slimmable one's narrower width levels)."""
        price = self.cost_model
        total = price.fixed_cost(ledger.fixed)
        for layer, use in ledger.layers.items():
            total = total + price.layer_cost(self.layer_names[layer], use.flops, use.width, ledger.kept_regions)
        return total / price.dense_cost(ledger.dense)

    @torch.no_grad()
    def cost_of_counts(self, counts: Tensor) -> np.ndarray:
        """Cost ratio of samples keeping counts[i] regions (and the widths the ModelMask
        gives them), mask generator included: the training ledger of one forward of these
        made-up masks (it reads only the masks, so the input is zeros). What a branch
        computing n regions costs, as training charges it."""
        x = self.blank_frames(len(counts))
        return self.sample_costs(self.made_up_ledger(x, self.masks_keeping(counts, x))).numpy()

    def blank_frames(self, batch: int) -> Tensor:
        """Zero frames at the backbone's padded shape: input for a ledger of made-up masks."""
        shape = self.backbone.shape
        return torch.zeros(batch, shape.frames_in, shape.channels, shape.height, shape.width)

    @torch.no_grad()
    def made_up_ledger(self, x: Tensor, masks: MaskState, router: bool = True) -> FlopsLedger:
        """The training ledger of one forward of `x` under made-up `masks`, the mask
        generator's (and router's) FLOPs included when there is one and `router` says so:
        what a sample with those masks costs. The ledger reads only the masks, so `x` may
        be zeros; no BatchNorm statistics are taken from it."""
        if self.generator is not None and router:
            masks.ledger.add_fixed(self.mask_flops())
        with evaluating(self.backbone):
            self.backbone(x, masks)
        return masks.ledger

    def cost_curve(self) -> CostCurve:
        """cost(n) for n = 0..R kept regions, relative to dense (`cost_of_counts`)."""
        return CostCurve(self.cost_of_counts(torch.arange(self.regions + 1)))

    @torch.no_grad()
    def narrow_to_cap(self, step: float = 0.5) -> bool:
        """Make room under the per-sample cap for a sample that keeps one region, lowering
        every gate's initial width (its bias, `step` at a time) where the near-full
        starting widths cost more than the cap: where width is what buys time, as in a
        ConvLSTM priced in ms (its regions never tile). False when even the narrowest
        widths do not fit."""
        cap, mask = self.pruning.cap, self.model_mask
        one_region = torch.tensor([1.0 / self.regions])
        while self.cost_curve().max_regions(cap) == 0:
            if bool((mask.quantise(mask.widths(one_region)) == mask.levels[0]).all()):
                return False
            mask.width_bias -= step
        return True

    @torch.no_grad()
    def calibrate(self, inputs: Iterable[Tensor]) -> None:
        """Set the DataMask's cap (the most regions a sample may keep within
        `pruning.cap`) and keep threshold (the mean budget `pruning.budget`) from the
        importance logits of `inputs`: batches of held-out training windows, never
        validation or test ones (masks/budget.py)."""
        curve = self.cost_curve()
        with evaluating(self.generator):
            logits = torch.cat([self.importance(self.pad(x)).logits.flatten(1) for x in inputs])
        threshold, limit = calibrate(logits.numpy(), curve, self.pruning.budget, curve.max_regions(self.pruning.cap))
        self.data_mask.threshold.fill_(threshold)
        self.data_mask.max_regions.fill_(limit)

    def masks(self, x: Tensor, mode: MaskMode) -> MaskState:
        """The masks of the user's frames `x` (on the padded grid)."""
        return self.padded_masks(self.pad(x), mode)

    def padded_masks(self, padded: Tensor, mode: MaskMode) -> MaskState:
        if self.generator is None:
            return self.dense_masks(padded)
        field = self.importance(padded)
        region_mask = self.data_mask(field, mode)
        channel_masks, _ = self.model_mask(field, region_mask, mode)
        masks = MaskState(region_mask, channel_masks)
        masks.ledger.add_fixed(self.mask_flops())
        return masks

    @torch.no_grad()
    def routing_margins(self, x: Tensor) -> Tensor:
        """(B,) DataMask.routing_margin of the user's frames `x`."""
        return self.data_mask.routing_margin(self.importance(self.pad(x)).logits)

    def dense_forecast(self, x: Tensor) -> Tensor:
        """The backbone with pruning off on the user's frames: what `dpedge export --dense` computes."""
        padded = self.pad(x)
        return self.crop(self.backbone(padded, self.dense_masks(padded)))

    def forward(
        self, x: Tensor, mode: MaskMode = MaskMode(), width: int | None = None, budget: float | None = None
    ) -> Forecast:
        """width: the index of a width level: the static sub-network at that level, every
        region computed, no router (a slimmable network's slice; `at_width`); a
        width-routed model in training mode adds its router's predictions, which the
        trainer fits to the errors of the levels it ran. budget: a width-routed model's
        run-time budget (default: the trained one)."""
        if width is not None:
            padded = self.pad(x)
            forecast = self.level_forecast(padded, width)
            if self.pruning.routes_widths and self.training:
                forecast.predicted_losses = self.router_predictions(padded)
            return forecast
        if self.pruning.routes_widths:
            return self.routed_forecast(x, self.pruning.budget if budget is None else budget)
        x = self.pad(x)
        masks = self.padded_masks(x, mode)
        dense_part = self.backbone(x, masks)
        region = masks.region_at((x.shape[-2], x.shape[-1]))[:, None]  # (B, 1, 1, H, W)
        prediction = region * dense_part + (1 - region) * x[:, -1:]
        ledger = masks.ledger
        return Forecast(
            self.crop(prediction),
            ledger.sparse,
            ledger.dense,
            masks.region_fraction(),
            masks,
            self.sample_costs(ledger),
        )

    def level_forecast(self, padded: Tensor, level: int) -> Forecast:
        """Width level `level` alone on the padded frames: every region, that level's
        first groups and BatchNorm statistics, no router (its FLOPs and cost exclude it)."""
        masks = self.width_masks(padded, level)
        with self.at_width(level):
            prediction = self.backbone(padded, masks)
        ledger = masks.ledger
        measured = self.cost_model.branch_costs()  # (routed, alone) ratios, or None: priced from the ledger
        cost = (
            self.sample_costs(ledger)
            if measured is None
            else torch.full((len(padded),), measured[1][level], device=padded.device)
        )
        return Forecast(self.crop(prediction), ledger.sparse, ledger.dense, masks.region_fraction(), masks, cost)

    def level_costs(self) -> list[float]:
        """Each width level's cost ratio alone, no router (a `--width` export; the widest is
        what a width-routed model runs at budget 1): measured (cost/table.py BranchTimes),
        or from one ledger forward per level."""
        measured = self.cost_model.branch_costs()
        if measured is not None:
            return measured[1]
        x = self.blank_frames(1)
        levels = range(len(self.pruning.width_levels))
        return [
            float(self.sample_costs(self.made_up_ledger(x, self.width_masks(x, level), router=False))[0])
            for level in levels
        ]

    def routed_forecast(self, x: Tensor, budget: float) -> Forecast:
        """A width-routed model's forecast of the user's frames `x` under `budget`: each
        sample's branch runs on the samples that took it (as the exported graph runs one
        branch per sample); persistence repeats the last input frame."""
        padded = self.pad(x)
        if budget >= 1.0:  # the widest level for every sample, the router not run (its cost not spent)
            widest = len(self.pruning.width_levels) - 1
            forecast = self.level_forecast(padded, widest)
            forecast.branch = torch.full((len(x),), widest + 1, device=x.device)
            return forecast
        predicted = self.router_predictions(padded)
        branch = self.width_router.choose(predicted, budget)
        prediction = x[:, -1:].expand(-1, self.shape.frames_out, -1, -1, -1).clone()
        flops = torch.full((len(x),), self.mask_flops(), device=x.device)
        for level in range(len(self.pruning.width_levels)):
            chosen = branch == level + 1
            if bool(chosen.any()):
                forecast = self.level_forecast(padded[chosen], level)
                prediction[chosen] = forecast.prediction
                flops[chosen] += forecast.flops
        return Forecast(
            prediction,
            flops,
            self.dense_flops,
            (branch > 0).to(x.dtype),
            None,
            self.width_router.costs[branch],
            branch,
            predicted,
        )

    @functools.cached_property
    def dense_flops(self) -> float:
        """FLOPs of the backbone with nothing pruned, per sample (the ledger's dense count)."""
        x = self.blank_frames(1)
        return self.made_up_ledger(x, self.dense_masks(x)).dense

    def branch_ledgers(self) -> list[FlopsLedger]:
        """The training ledger of one sample at each width level, the router's FLOPs among
        its fixed ones (`made_up_ledger`)."""
        x = self.blank_frames(1)
        return [self.made_up_ledger(x, self.width_masks(x, level)) for level in range(len(self.pruning.width_levels))]

    def branch_costs(self) -> Tensor:
        """(branches,) a width-routed model's cost ratio of each branch on its cost target,
        router included: persistence (the router alone), then each width level; on a
        measured target, each branch's graph as timed (cost/table.py BranchTimes)."""
        measured = self.cost_model.branch_costs()
        if measured is not None:
            return torch.tensor(measured[0])
        ledgers = self.branch_ledgers()
        price = self.cost_model
        router = price.fixed_cost(ledgers[0].fixed) / price.dense_cost(ledgers[0].dense)
        return torch.cat([torch.tensor([float(router)]), *[self.sample_costs(ledger).float() for ledger in ledgers]])

    @torch.no_grad()
    def calibrate_router(self, inputs: Iterable[Tensor]) -> None:
        """The width router's branch costs and its price at every budget, from the
        predicted errors of `inputs`: batches of held-out training windows, never
        validation or test ones (masks/router.py)."""
        with evaluating(self.generator):
            predicted = torch.cat([self.router_predictions(self.pad(x)) for x in inputs])
        self.width_router.calibrate(predicted, self.branch_costs())

    def router_predictions(self, padded: Tensor) -> Tensor:
        """(B, branches) the width router's predicted error of each branch for the padded
        frames, read from their importance field."""
        field = self.importance(padded)
        return self.width_router.predicted_losses(field.features, field.logits)
