"""The export interpreter: runs a backbone's one forward (`Backbone.program`) to emit one
sub-network of the exported graph, in which skipped filters and regions are absent.

It implements the backbone primitives of `dynaprune_edge.layers.Interpreter` on graph
`Feature`s and hands each layer to its own lowering (`Layer.lower`), which builds on the
execution helpers here: `conv` and `linear` over the kept filters (`KeptFilters`) and
kept regions (`KeptRegions`), channel masks, and `count`, where each layer adds the cost
of what it emitted. The dense export is the same interpreter with nothing pruned.
"""

from __future__ import annotations

import numpy as np

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.filters import KeptFilters
from dynaprune_edge.export.graph import Feature
from dynaprune_edge.export.regions import KeptRegions, TilePolicy
from dynaprune_edge.export.routing import Branch
from dynaprune_edge.layers import GateSpec, Interpreter
from dynaprune_edge.layers.conv import norm_channels, norm_groups
from dynaprune_edge.layers.interpreter import POINTWISE, patch_side
from dynaprune_edge.models import Backbone


class SubNetwork(Interpreter):
    def __init__(
        self, branch: Branch, backbone: Backbone, mode: str, gate_order: list[str], tiles: TilePolicy | None = None
    ) -> None:
        self.b = branch.builder
        self.branch = branch
        self.filters = KeptFilters(branch, mode, gate_order)
        self.regions = KeptRegions(branch, tiles)
        self.flops = 0.0  # the cost of every layer emitted, as each layer's `cost` counts it
        self._scopes = {module: f"compute/{name}" for name, module in backbone.named_modules()}

    def scope_of(self, layer) -> str:
        """Node-name prefix of a layer's compute nodes: its path in the backbone."""
        return self._scopes[layer]

    def count(self, flops: float) -> None:
        self.flops += float(flops)

    def like(self, x: Feature, name: str, channels: int | None = None) -> Feature:
        """Feature `name`, laid out as `x` (frames, tiles, tokens), with `channels` channels."""
        channels = x.channels if channels is None else channels
        return Feature(name, (x.shape[0], channels) + x.shape[2:], x.frames, x.tiled)

    # -- execution helpers for the layers' lowerings -----------------------------------

    def conv(
        self,
        x: Feature,
        weight: np.ndarray,
        bias: np.ndarray,
        conv,
        upsample: int,
        *,
        out_gate: GateSpec | None,
        in_gate: GateSpec | None,
        scope: str,
        tile_limit: int | None = None,
    ) -> Feature:
        """A convolution (an nn.Conv2d's geometry, BatchNorm folded into `weight` and `bias`)
        computing the kept filters on the kept regions only (on tiles only in branches of
        at most `tile_limit` regions, the layer's `Layer.tile_limit`)."""
        weight_name, bias_name = self.filters.select_weights(weight, bias, out_gate, in_gate)
        out_channels = self.filters.kept_channels(out_gate, weight.shape[0])
        return self.regions.conv(x, weight_name, bias_name, conv, upsample, out_channels, scope, tile_limit)

    def linear(
        self,
        x: Feature,
        weight: np.ndarray,
        bias: np.ndarray,
        *,
        out_gate: GateSpec | None,
        in_gate: GateSpec | None,
        scope: str,
    ) -> Feature:
        """x (tokens, in) · weight (in, out) + bias over the kept channels."""
        weight_name, bias_name = self.filters.select_weights(weight, bias, out_gate, in_gate, out_axis=1)
        y = self.b.op("Add", self.b.op("MatMul", x.name, weight_name, scope=scope), bias_name, scope=scope)
        return self.like(x, y, self.filters.kept_channels(out_gate, weight.shape[1]))

    def mask_channels(self, y: Feature, gate: GateSpec | None, scope: str) -> Feature:
        """Zero the filters of `gate` this branch computes beyond the sample's own."""
        if not self.filters.masks_channels(gate):
            return y
        repeat = y.channels // self.filters.kept_channels(gate, gate.channels)
        mask = self.filters.channel_mask(gate, repeat)
        if len(y.shape) == 4:  # maps and tiles: (1, channels, 1, 1)
            mask = self.branch.cached(
                ("map mask", gate.name, repeat),
                lambda: self.b.op("Reshape", mask, self.b.const([1, -1, 1, 1]), scope=f"route/{gate.name}"),
            )
        return self.like(y, self.b.op("Mul", y.name, mask, scope=scope))

    def standardize(self, x: str, axis: int, eps: float, scope: str) -> str:
        """(x − mean) / sqrt(variance + eps) over `axis`, as primitive ops: ONNX
        LayerNormalization needs TensorRT ≥ 8.6 (JetPack 6), while onnxruntime and TensorRT
        ≥ 8.6 fuse this pattern back into one kernel."""
        b = self.b
        centred = b.op("Sub", x, b.reduce("ReduceMean", x, axis, scope), scope=scope)
        variance = b.reduce("ReduceMean", b.op("Pow", centred, b.const(np.float32(2)), scope=scope), axis, scope)
        return b.op(
            "Div",
            centred,
            b.op("Sqrt", b.op("Add", variance, b.const(np.float32(eps)), scope=scope), scope=scope),
            scope=scope,
        )

    def map_norm(self, y: Feature, norm, gate: GateSpec | None, scope: str) -> Feature:
        """A GroupNorm, or a LayerNorm over (C, H, W), of the kept channels over each
        sample's whole map (skipped regions zero, and zeroed again after it): the kept
        channels are whole norm groups, each normalised alone, then scaled and shifted by
        its own parameters."""
        y, b = self.regions.to_map(y), self.b
        rows, channels = y.shape[:2]
        per_group = norm_channels(norm) // norm_groups(norm)
        grouped = b.op("Reshape", y.name, b.const([rows, channels // per_group, -1]), scope=scope)
        name = b.op("Reshape", self.standardize(grouped, 2, norm.eps, scope), b.const(list(y.shape)), scope=scope)
        for parameter, op in ((norm.weight, "Mul"), (norm.bias, "Add")):
            if parameter is not None:  # (C,) of a GroupNorm, (C, H, W) of a LayerNorm: the kept channels'
                values = parameter.detach().numpy()
                kept, _ = self.filters.select_weights(
                    values.reshape(values.shape[0], *(values.shape[1:] or (1, 1))), None, gate, None
                )
                name = b.op(op, name, kept, scope=scope)
        return self.regions.mask_regions(self.like(y, name), scope)

    def silu(self, y: Feature, scope: str) -> Feature:
        return self.like(y, self.b.op("Mul", y.name, self.b.op("Sigmoid", y.name, scope=scope), scope=scope))

    # -- the backbone primitives (dynaprune_edge.layers.Interpreter) --------------------

    def apply(self, layer, *inputs):
        return layer.lower(self, *inputs)

    def per_frame(self, frames: Feature) -> Feature:
        _, count, channels, height, width = frames.shape
        shape = (count, channels, height, width)
        return Feature(
            self.b.op("Reshape", frames.name, self.b.const(list(shape)), scope="compute/input"), shape, count
        )

    def stack_frames(self, z: Feature) -> Feature:
        batch, channels, height, width = z.shape
        shape = (batch // z.frames, z.frames * channels, height, width)
        return Feature(
            self.b.op("Reshape", z.name, self.b.const(list(shape)), scope="compute/stack"), shape, 1, z.tiled
        )

    def unstack_frames(self, z: Feature, frames: int) -> Feature:
        batch, channels, height, width = z.shape
        shape = (batch * frames, channels // frames, height, width)
        return Feature(
            self.b.op("Reshape", z.name, self.b.const(list(shape)), scope="compute/unstack"), shape, frames, z.tiled
        )

    def split_frames(self, z: Feature) -> list[Feature]:
        z = self.regions.to_map(z)
        names = self.b.op(
            "Split", z.name, self.b.const([1] * z.frames), scope="compute/input", outputs=z.frames, axis=0
        )
        names = names if isinstance(names, list) else [names]
        return [Feature(name, (1,) + z.shape[1:]) for name in names]

    def join_frames(self, values: list[Feature]) -> Feature:
        maps = [self.regions.to_map(value) for value in values]
        joined = self.b.op("Concat", *(m.name for m in maps), scope="compute/output", axis=0)
        return Feature(joined, (len(maps),) + maps[0].shape[1:], len(maps))

    def forecast(self, z: Feature) -> Feature:
        y = self.regions.to_map(z)
        shape = (1, y.frames, y.channels) + y.shape[2:]
        return Feature(self.b.op("Reshape", y.name, self.b.const(list(shape)), scope="compute/output"), shape, y.frames)

    def last_frame(self, frames: Feature) -> Feature:
        _, count, channels, height, width = frames.shape
        scope = "compute/input"
        last = self.b.op(
            "Slice", frames.name, self.b.const([count - 1]), self.b.const([count]), self.b.const([1]), scope=scope
        )
        return Feature(
            self.b.op("Reshape", last, self.b.const([1, channels, height, width]), scope=scope),
            (1, channels, height, width),
        )

    def fill_skipped(self, frame: Feature, last: Feature) -> Feature:
        routing = self.branch.routing
        if routing is None:
            return frame
        b, scope = self.b, "compute/fallback"
        keep = routing.region_mask(frame.shape[2:])
        skipped = b.op("Sub", b.const(np.float32(1)), keep, scope=scope)
        return self.like(
            frame,
            b.op(
                "Add",
                b.op("Mul", keep, frame.name, scope=scope),
                b.op("Mul", skipped, last.name, scope=scope),
                scope=scope,
            ),
        )

    def space_to_depth(self, z: Feature, block: int) -> Feature:
        """torch's pixel_unshuffle, channel-major (ONNX SpaceToDepth is not)."""
        z = self.regions.to_map(z)
        b, scope = self.b, "compute/space_to_depth"
        batch, channels, height, width = z.shape
        x = b.op(
            "Reshape", z.name, b.const([batch, channels, height // block, block, width // block, block]), scope=scope
        )
        x = b.op("Transpose", x, scope=scope, perm=[0, 1, 3, 5, 2, 4])
        shape = (batch, channels * block * block, height // block, width // block)
        return Feature(b.op("Reshape", x, b.const(list(shape)), scope=scope), shape, z.frames)

    def depth_to_space(self, z: Feature, block: int) -> Feature:
        z = self.regions.to_map(z)
        batch, channels, height, width = z.shape
        name = self.b.op("DepthToSpace", z.name, scope="compute/depth_to_space", blocksize=block, mode="CRD")
        return Feature(name, (batch, channels // (block * block), height * block, width * block), z.frames)

    def zero_state(self, channels: GateSpec | int, size: tuple[int, int]) -> Feature:
        kept = self.filters.kept_channels(channels, channels.channels) if isinstance(channels, GateSpec) else channels
        shape = (1, kept) + tuple(size)
        return Feature(self.b.const(np.zeros(shape, np.float32), "state"), shape)

    def add(self, a: Feature, b: Feature) -> Feature:
        """a + b, in tiles if both are tiles. Both must keep the same channels: a sum of two
        features pruned by different gates has no static sub-network (coupled filters)."""
        if a.tiled != b.tiled:
            a, b = self.regions.to_map(a), self.regions.to_map(b)
        if a.shape != b.shape:
            raise ConfigError(
                f"a residual sum of features shaped {list(a.shape)} and {list(b.shape)} in a sub-network: both "
                "sides must be pruned by the same gate or by none (e.g. an ungated stream plus an ungated projection)"
            )
        return Feature(self.b.op("Add", a.name, b.name, scope="compute/add"), a.shape, a.frames, a.tiled)

    def concat(self, values: list[Feature]) -> Feature:
        """Channels one after the other; in tiles if every value is in tiles. Only features
        no gate prunes: the channels a consumer reads must not depend on the branch."""
        if len({value.tiled for value in values}) > 1:
            values = [self.regions.to_map(value) for value in values]
        first = values[0]
        if any(value.shape[0] != first.shape[0] or value.shape[2:] != first.shape[2:] for value in values):
            raise ConfigError(f"a concatenation of features shaped {[list(v.shape) for v in values]} in a sub-network")
        name = self.b.op("Concat", *(value.name for value in values), scope="compute/concat", axis=1)
        return Feature(
            name, (first.shape[0], sum(value.channels for value in values)) + first.shape[2:], first.frames, first.tiled
        )

    def pool(self, z: Feature, kind: str, size: int) -> Feature:
        """Over whole maps (a pooling window may straddle regions)."""
        z = self.regions.to_map(z)
        batch, channels, height, width = z.shape
        name = self.b.op(
            "MaxPool" if kind == "max" else "AveragePool",
            z.name,
            scope="compute/pool",
            kernel_shape=[size, size],
            strides=[size, size],
        )
        return Feature(name, (batch, channels, height // size, width // size), z.frames)

    def upsample(self, z: Feature, factor: int, mode: str) -> Feature:
        """ONNX Resize as torch interpolates, over whole maps (a bilinear window straddles
        regions)."""
        z = self.regions.to_map(z)
        batch, channels, height, width = z.shape
        name = self.b.upsample(z.name, factor, mode, "compute/upsample")
        return Feature(name, (batch, channels, height * factor, width * factor), z.frames)

    def pointwise(self, operation: str, *operands) -> Feature:
        """On whole maps unless every value operand is in the same tiles; a number operand
        becomes a constant."""
        values = [o for o in operands if isinstance(o, Feature)]
        if len({value.tiled for value in values}) > 1:
            operands = [self.regions.to_map(o) if isinstance(o, Feature) else o for o in operands]
            values = [o for o in operands if isinstance(o, Feature)]
        names = [o.name if isinstance(o, Feature) else self.b.const(np.float32(o)) for o in operands]
        return self.like(values[0], self.b.op(POINTWISE[operation][1], *names, scope=f"compute/{operation}"))

    def channels(self, z: Feature, start: int, stop: int) -> Feature:
        b, scope = self.b, "compute/channels"
        name = b.op("Slice", z.name, b.const([start]), b.const([stop]), b.const([1]), scope=scope)
        return self.like(z, name, stop - start)

    def to_tokens(self, frames: Feature) -> Feature:
        """One row per region (patch = region), gathered to the computed tokens."""
        b, scope = self.b, "compute/patchify"
        _, count, channels, height, width = frames.shape
        grid_h, grid_w = self.branch.grid
        p = height // grid_h
        patches = b.op("Reshape", frames.name, b.const([count, channels, grid_h, p, grid_w, p]), scope=scope)
        patches = b.op(
            "Reshape",
            b.op("Transpose", patches, scope=scope, perm=[2, 4, 0, 1, 3, 5]),
            b.const([grid_h * grid_w, -1]),
            scope=scope,
        )
        return Feature(self.regions.gather_tokens(patches), (self.regions.token_count, count * channels * p * p))

    def from_tokens(self, tokens: Feature, frames: int, channels: int) -> Feature:
        b, scope = self.b, "compute/unpatchify"
        grid_h, grid_w = self.branch.grid
        p = patch_side(tokens.channels, frames, channels)
        rows = self.regions.scatter_tokens(tokens.name, tokens.channels)
        y = b.op("Reshape", rows, b.const([grid_h, grid_w, frames, channels, p, p]), scope=scope)
        y = b.op("Transpose", y, scope=scope, perm=[2, 3, 0, 4, 1, 5])
        shape = (1, frames, channels, grid_h * p, grid_w * p)
        return Feature(b.op("Reshape", y, b.const(list(shape)), scope=scope), shape, frames)

    def add_token_table(self, tokens: Feature, table) -> Feature:
        rows = self.regions.gather_tokens(self.branch.shared.const(table.detach().numpy()[0], "position"))
        return self.like(tokens, self.b.op("Add", tokens.name, rows, scope="compute/embed"))

    def gelu(self, z: Feature) -> Feature:
        b, scope = self.b, "compute/gelu"
        erf = b.op("Erf", b.op("Div", z.name, b.const(np.float32(np.sqrt(2.0))), scope=scope), scope=scope)
        return self.like(
            z,
            b.op(
                "Mul",
                b.op("Mul", z.name, b.const(np.float32(0.5)), scope=scope),
                b.op("Add", erf, b.const(np.float32(1)), scope=scope),
                scope=scope,
            ),
        )
