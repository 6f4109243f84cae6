"""Lowering gated layers into one sub-network's ONNX nodes, where skipped work is absent.

A `SubNetwork` is one branch of the exported graph: a fixed number of kept regions
(tiles) and of kept filters per gate. Inside it, each `GatedConv2d` becomes
- filters: the kept output filters and input channels only, either gathered at run time
  from the full folded weights by the sample's top-scoring groups (mode "gather"), or
  constant weight slices owned by the branch (mode "bucketed", ordered groups);
- regions: in layers the `TilePolicy` selects, the computed regions' tiles with their halo
  are gathered into the batch and convolved without padding (SBNet); the tiles stay tiles
  until a layer runs on whole maps (scattered back, skipped regions zero). Other layers
  run over the whole map and zero the skipped regions (their work is not saved).
Samples of a branch may keep fewer regions or filters than it computes (a branch serves a
range of kept-region counts): the surplus is masked to zero, so every sample gets exactly
what the PyTorch hard-mask forward computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from dynaprune_edge.export.graph import GraphBuilder
from dynaprune_edge.masks import GatedConv2d


@dataclass(frozen=True)
class Feature:
    """A tensor of the graph with its static shape. Per-frame features hold `frames`
    frames per sample; tiled ones are (tiles·frames, C, tile, tile), tile-major."""

    name: str
    shape: tuple[int, ...]
    frames: int = 1
    tiled: bool = False


def fold_batch_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of the convolution with the (eval-mode) BatchNorm after it folded in."""
    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    if norm is not None:
        scale = norm.weight.detach().double() / torch.sqrt(norm.running_var.double() + norm.eps)
        weight = weight * scale[:, None, None, None]
        bias = (bias - norm.running_mean.double()) * scale + norm.bias.detach().double()
    return weight.float().numpy(), bias.float().numpy()


@dataclass
class Routing:
    """What the router computed for the sample, outside the branches: names of top-level
    tensors the branches read from the outer scope."""

    shared: GraphBuilder
    grid: tuple[int, int]
    region_logits: str  # (1, regions) importance logits, row-major regions
    keep: str  # (1, 1, grid_h, grid_w) float 0/1 kept regions
    kept_regions: str  # () int64 count of kept regions
    widths: np.ndarray  # (regions + 1, gates) kept groups per gate, for n = 0..R kept regions
    group_scores: dict[str, str] = field(default_factory=dict)  # gate → (1, groups); scored groups only
    _region_masks: dict[tuple[int, int], str] = field(default_factory=dict)

    @property
    def regions(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def width_table(self) -> str:
        """The kept-groups table as a top-level constant (only branches that mask use it)."""
        return self.shared.const(self.widths.astype(np.int64), "widths")

    def region_mask(self, size: tuple[int, int]) -> str:
        """(1, 1, H, W) kept-region mask at a feature resolution the grid divides."""
        if size not in self._region_masks:
            scale = [1.0, 1.0, size[0] / self.grid[0], size[1] / self.grid[1]]
            self._region_masks[size] = self.shared.op(
                "Resize", self.keep, "", self.shared.const(scale), scope="router/regions",
                mode="nearest", nearest_mode="floor", coordinate_transformation_mode="asymmetric",
            )
        return self._region_masks[size]


@dataclass(frozen=True)
class TilePolicy:
    """Which layers run on the kept regions' tiles: those with at least `min_channels`
    input channels, in branches computing at most `max_fraction` of the regions. Tiles
    skip the skipped regions' work but move data (halo gather, layout changes), which on
    a CPU pays for wide layers and few tiles sooner than for narrow layers and many."""

    min_channels: int = 1
    max_fraction: float = 1.0


@dataclass(frozen=True)
class BranchPlan:
    """A sub-network: kept-region counts `lo..hi` route here; it computes `hi` tiles and,
    per gate, the filters kept at `hi` regions (the most of its range)."""

    lo: int
    hi: int
    groups: dict[str, int]  # gate → kept groups computed
    masked_gates: frozenset[str]  # gates whose kept groups vary within lo..hi


class SubNetwork:
    """Emits one branch's layers into `builder` and counts the FLOPs they execute."""

    def __init__(
        self,
        builder: GraphBuilder,
        shared: GraphBuilder,
        routing: Routing | None,
        plan: BranchPlan | None,
        mode: str,
        group_size: int,
        gate_order: list[str],
        tiles: TilePolicy | None = None,
    ) -> None:
        self.b = builder
        self.shared = shared  # the top-level graph: full weights and tables shared by branches
        self.routing = routing
        self.plan = plan
        self.mode = mode
        self.group_size = group_size
        self.gate_order = gate_order
        self.tiles = tiles  # None: every layer runs on whole maps
        self.flops = 0.0
        self._cache: dict[tuple, str] = {}

    # -- filters -----------------------------------------------------------------------

    def kept_channels(self, gate: str | None, channels: int) -> int:
        if gate is None or self.plan is None:
            return channels
        return self.plan.groups[gate] * self.group_size

    def cached(self, key: tuple, make) -> str:
        """`make()` once per branch (index tensors shared by the layers that need them)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def channel_index(self, gate: str, repeat: int = 1, stride: int = 0) -> str:
        """(kept channels × repeat,) int64: the sample's kept channels of `gate`, in the
        order its layer emits them; `repeat` copies offset by `stride` index a
        frame-stacked input."""

        def make() -> str:
            groups, size = self.plan.groups[gate], self.group_size
            if gate not in self.routing.group_scores:  # ordered groups: the first ones
                index = np.arange(groups * size)
                return self.b.const(np.concatenate([index + r * stride for r in range(repeat)]), "channels")
            scope = f"route/{gate}"
            top = self.top_groups(gate)
            offsets = self.b.const(np.arange(size)[None, :])
            index = self.b.op("Add", self.b.op("Mul", self.b.op("Transpose", top, scope=scope, perm=[1, 0]), self.b.const(size), scope=scope), offsets, scope=scope)
            if repeat > 1:
                frames = self.b.const((np.arange(repeat) * stride)[:, None, None])
                index = self.b.op("Add", frames, self.b.op("Unsqueeze", index, self.b.const([0]), scope=scope), scope=scope)
            return self.b.op("Reshape", index, self.b.const([-1]), scope=scope)

        return self.cached(("channels", gate, repeat, stride), make)

    def top_groups(self, gate: str) -> str:
        """(1, kept groups) int64: the sample's highest-scoring groups of `gate`, best first."""
        return self.cached(
            ("top", gate),
            lambda: self.b.op("TopK", self.routing.group_scores[gate], self.b.const([self.plan.groups[gate]]), scope=f"route/{gate}", outputs=2, axis=1)[1],
        )

    def channel_mask(self, gate: str, repeat: int = 1) -> str:
        """(computed channels × repeat,) float: 1 for the filters this sample keeps (the
        first ones in the branch's order), 0 for those its branch computes beyond them."""

        def make() -> str:
            scope = f"route/{gate}"
            column = self.b.const([self.gate_order.index(gate)])
            row = self.b.op("Unsqueeze", self.routing.kept_regions, self.b.const([0]), scope=scope)
            groups = self.b.op("Gather", self.b.op("Gather", self.routing.width_table, row, scope=scope, axis=0), column, scope=scope, axis=1)
            position = self.b.const(np.tile(np.repeat(np.arange(self.plan.groups[gate]), self.group_size), repeat))
            keep = self.b.op("Less", position, self.b.op("Reshape", groups, self.b.const([1]), scope=scope), scope=scope)
            return self.b.op("Cast", keep, scope=scope, to=1)

        return self.cached(("mask", gate, repeat), make)

    def masks_channels(self, gate: str | None) -> bool:
        """Whether this branch computes more of `gate`'s filters than some of its samples keep."""
        gate = self.active(gate)
        return gate is not None and gate in self.plan.masked_gates

    def conv_weights(self, layer: GatedConv2d, in_repeat: int) -> tuple[str, str]:
        """The layer's folded weight and bias restricted to this branch's kept filters."""
        weight, bias = fold_batch_norm(layer.conv, layer.norm)
        return self.select_weights(weight, bias, layer.gate, layer.input_gate, in_repeat=in_repeat)

    def select_weights(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None,
        out_gate: str | None,
        in_gate: str | None,
        *,
        in_repeat: int = 1,
        out_repeat: int = 1,
        out_axis: int = 0,
    ) -> tuple[str, str | None]:
        """`weight` (out and in channels on axes `out_axis` and 1 − `out_axis`) and `bias`
        (None: none) restricted to the sample's kept channels: constant slices owned by the branch
        (bucketed, or nothing pruned), or gathered at run time from the shared full weights.
        `in_repeat`/`out_repeat`: the gate's channels repeat that many times along the axis
        (frames stacked as channels; q, k and v sharing one gate)."""
        out_gate, in_gate = self.active(out_gate), self.active(in_gate)
        in_axis = 1 - out_axis
        out_step, in_step = weight.shape[out_axis] // out_repeat, weight.shape[in_axis] // in_repeat
        if self.mode == "bucketed" or (out_gate is None and in_gate is None):
            keep_out = np.concatenate([np.arange(self.kept_channels(out_gate, out_step)) + r * out_step for r in range(out_repeat)])
            keep_in = np.concatenate([np.arange(self.kept_channels(in_gate, in_step)) + r * in_step for r in range(in_repeat)])
            sliced = np.take(np.take(weight, keep_out, axis=out_axis), keep_in, axis=in_axis)
            return self.b.const(sliced, "weight"), None if bias is None else self.b.const(bias[keep_out], "bias")
        scope = "route/weights"
        weight_name = self.shared.const(weight, "weight")
        bias_name = None if bias is None else self.shared.const(bias, "bias")
        if out_gate is not None:
            index = self.channel_index(out_gate, out_repeat, out_step)
            weight_name = self.b.op("Gather", weight_name, index, scope=scope, axis=out_axis)
            if bias is not None:
                bias_name = self.b.op("Gather", bias_name, index, scope=scope, axis=0)
        if in_gate is not None:
            weight_name = self.b.op("Gather", weight_name, self.channel_index(in_gate, in_repeat, in_step), scope=scope, axis=in_axis)
        return weight_name, bias_name

    def active(self, gate: str | None) -> str | None:
        """The gate if this branch prunes it (the dense export prunes nothing)."""
        return None if self.plan is None else gate

    # -- regions -----------------------------------------------------------------------

    @property
    def tiling(self) -> bool:
        """Whether layers may run on tiles: the branch computes few enough of the regions."""
        if self.tiles is None or self.plan is None:
            return False
        regions = self.routing.regions
        return self.plan.hi < regions and self.plan.hi <= self.tiles.max_fraction * regions

    def region_index(self) -> str:
        """(tiles,) int64: the branch's regions, highest importance first (kept ones lead)."""

        def make() -> str:
            scope = "route/regions"
            _, top = self.b.op("TopK", self.routing.region_logits, self.b.const([self.plan.hi]), scope=scope, outputs=2, axis=1)
            return self.b.op("Reshape", top, self.b.const([-1]), scope=scope)

        return self.cached(("regions",), make)

    def kept_tiles(self) -> str:
        """(tiles, 1, 1, 1, 1) float: 1 for the computed tiles the sample keeps."""

        def make() -> str:
            scope = "route/regions"
            count = self.b.op("Reshape", self.routing.kept_regions, self.b.const([1, 1, 1, 1, 1]), scope=scope)
            position = self.b.const(np.arange(self.plan.hi).reshape(-1, 1, 1, 1, 1))
            return self.b.op("Cast", self.b.op("Less", position, count, scope=scope), scope=scope, to=1)

        return self.cached(("kept_tiles",), make)

    def region_slots(self) -> str:
        """(regions + 1,) int64: each region's position in the tile batch, or `hi` (the
        zero tile) for regions the sample skips and for the outside of the frame (last)."""

        def make() -> str:
            scope = "route/regions"
            tiles = self.plan.hi
            slots = np.arange(tiles)
            kept = self.b.op("Less", self.b.const(slots), self.routing.kept_regions, scope=scope)
            slot = self.b.op("Where", kept, self.b.const(slots), self.b.const(np.int64(tiles)), scope=scope)
            empty = self.b.const(np.full(self.routing.regions + 1, tiles, np.int64))
            return self.b.op("ScatterElements", empty, self.region_index(), slot, scope=scope, axis=0)

        return self.cached(("slots",), make)

    def halo_index(self, geometry: HaloGeometry) -> str:
        """(tiles, span, span) int64 rows of the source bank that form each computed
        tile's input window (halo included; zero row where it is padding or skipped)."""

        def make() -> str:
            scope = "route/tiles"
            regions = self.region_index()
            if geometry.from_map:
                table = self.shared.const(geometry.map_rows(), "halo")
                return self.b.op("Gather", table, regions, scope=scope, axis=0)
            neighbour, pixel = geometry.bank_rows()
            slots = self.b.op("Gather", self.region_slots(), self.b.op("Gather", self.shared.const(neighbour, "halo"), regions, scope=scope, axis=0), scope=scope, axis=0)
            pixels = self.b.op("Gather", self.shared.const(pixel, "halo"), regions, scope=scope, axis=0)
            return self.b.op("Add", self.b.op("Mul", slots, self.b.const(np.int64(geometry.tile_pixels)), scope=scope), pixels, scope=scope)

        return self.cached(("halo", geometry), make)

    # -- layers ------------------------------------------------------------------------

    def input(self, x: Feature) -> Feature:
        """(1, T, C, H, W) frames → (T, C, H, W) per-frame maps."""
        _, frames, channels, height, width = x.shape
        shape = (frames, channels, height, width)
        return Feature(self.b.op("Reshape", x.name, self.b.const(list(shape)), scope="compute/input"), shape, frames)

    def stack_frames(self, z: Feature) -> Feature:
        """Per-frame features → frames stacked as channels (frame-major)."""
        batch, channels, height, width = z.shape
        shape = (batch // z.frames, z.frames * channels, height, width)
        return Feature(self.b.op("Reshape", z.name, self.b.const(list(shape)), scope="compute/stack"), shape, 1, z.tiled)

    def unstack_frames(self, z: Feature, frames: int) -> Feature:
        batch, channels, height, width = z.shape
        shape = (batch * frames, channels // frames, height, width)
        return Feature(self.b.op("Reshape", z.name, self.b.const(list(shape)), scope="compute/unstack"), shape, frames, z.tiled)

    def to_map(self, z: Feature) -> Feature:
        """Tiles → per-frame maps (skipped regions zero); maps pass through."""
        if not z.tiled:
            return z
        scope = "compute/scatter"
        _, channels, tile_h, tile_w = z.shape
        frames, (grid_h, grid_w) = z.frames, self.routing.grid
        tiles = self.b.op("Reshape", z.name, self.b.const([self.plan.hi, frames, channels, tile_h, tile_w]), scope=scope)
        if self.plan.lo < self.plan.hi:
            tiles = self.b.op("Mul", tiles, self.kept_tiles(), scope=scope)
        canvas = self.b.const(np.zeros((self.routing.regions, frames, channels, tile_h, tile_w), np.float32), "canvas")
        where = self.b.op("Unsqueeze", self.region_index(), self.b.const([1]), scope=scope)
        full = self.b.op("ScatterND", canvas, where, tiles, scope=scope)
        full = self.b.op("Reshape", full, self.b.const([grid_h, grid_w, frames, channels, tile_h, tile_w]), scope=scope)
        full = self.b.op("Transpose", full, scope=scope, perm=[2, 3, 0, 4, 1, 5])
        shape = (frames, channels, grid_h * tile_h, grid_w * tile_w)
        return Feature(self.b.op("Reshape", full, self.b.const(list(shape)), scope=scope), shape, frames)

    def output(self, y: Feature) -> Feature:
        """The forecast (1, T, C, H, W); skipped regions are zero."""
        y = self.to_map(y)
        shape = (1,) + (y.frames, y.shape[1]) + y.shape[2:]
        return Feature(self.b.op("Reshape", y.name, self.b.const(list(shape)), scope="compute/output"), shape, y.frames)

    def add(self, a: Feature, b: Feature, scope: str) -> Feature:
        """a + b (a residual), in tiles if both are tiles."""
        if a.tiled != b.tiled:
            a, b = self.to_map(a), self.to_map(b)
        return Feature(self.b.op("Add", a.name, b.name, scope=f"compute/{scope}"), a.shape, a.frames, a.tiled)

    def conv(self, layer: GatedConv2d, x: Feature, in_repeat: int = 1, scope: str = "conv") -> Feature:
        """[upsample] → conv (BN folded) → SiLU → masks, computing kept work only."""
        scope = f"compute/{scope}"
        conv = layer.conv
        stride, kernel, pad, up = conv.stride[0], conv.kernel_size[0], conv.padding[0], layer.upsample
        weight, bias = self.conv_weights(layer, in_repeat)
        out_channels = self.kept_channels(self.active(layer.gate), conv.out_channels)
        pointwise = kernel == 1 and stride == 1 and up == 1
        if x.tiled and pointwise:  # tile-local: no halo, no glue
            y = Feature(self.b.op("Conv", x.name, weight, bias, scope=scope, kernel_shape=[1, 1]), (x.shape[0], out_channels) + x.shape[2:], x.frames, True)
        elif self.tiling and x.shape[1] >= self.tiles.min_channels and (geometry := self.halo_geometry(x, kernel, stride, pad, up)):
            y = self.tiled_conv(x, geometry, weight, bias, out_channels, scope)
        else:
            y = self.map_conv(self.to_map(x), weight, bias, kernel, stride, pad, up, out_channels, scope)
        self.flops += float(np.prod(y.shape)) * x.shape[1] * kernel * kernel
        y = Feature(self.activation(layer, y.name, scope), y.shape, y.frames, y.tiled)
        if self.masks_channels(layer.gate):
            y = Feature(self.b.op("Mul", y.name, self.map_channel_mask(layer.gate), scope=scope), y.shape, y.frames, y.tiled)
        return y

    def map_channel_mask(self, gate: str) -> str:
        """`channel_mask` shaped (1, channels, 1, 1) for feature maps and tiles."""
        return self.cached(("map mask", gate), lambda: self.b.op("Reshape", self.channel_mask(gate), self.b.const([1, -1, 1, 1]), scope=f"route/{gate}"))

    def mask_regions(self, y: str, size: tuple[int, int], scope: str) -> str:
        """Zero a whole-map feature's skipped regions (where some sample of the branch may
        skip any, and regions are no finer than its pixels)."""
        if self.routing is None or self.plan.lo == self.routing.regions:
            return y
        grid = self.routing.grid
        if size[0] % grid[0] or size[1] % grid[1]:
            return y
        return self.b.op("Mul", y, self.routing.region_mask(size), scope=scope)

    def map_conv(self, x: Feature, weight: str, bias: str, kernel: int, stride: int, pad: int, up: int, out_channels: int, scope: str) -> Feature:
        """Over whole maps; outputs in skipped regions are zeroed (they cost as if kept)."""
        name, (batch, _, height, width) = x.name, x.shape
        if up > 1:
            name = self.b.op("Resize", name, "", self.b.const([1.0, 1.0, up, up]), scope=scope, mode="nearest", nearest_mode="floor", coordinate_transformation_mode="asymmetric")
            height, width = height * up, width * up
        y = self.b.op("Conv", name, weight, bias, scope=scope, kernel_shape=[kernel, kernel], strides=[stride, stride], pads=[pad] * 4)
        size = ((height + 2 * pad - kernel) // stride + 1, (width + 2 * pad - kernel) // stride + 1)
        return Feature(self.mask_regions(y, size, scope), (batch, out_channels) + size, x.frames)

    def halo_geometry(self, x: Feature, kernel: int, stride: int, pad: int, up: int) -> HaloGeometry | None:
        """How a conv over `x` splits into the regions' tiles, or None if it does not
        (tiles narrower than a pixel, or not whole)."""
        grid = self.routing.grid
        map_size = (x.shape[2] * grid[0], x.shape[3] * grid[1]) if x.tiled else x.shape[2:]
        if map_size[0] % grid[0] or map_size[1] % grid[1]:
            return None
        tile_in = map_size[0] // grid[0]
        if tile_in != map_size[1] // grid[1] or (tile_in * up) % stride:
            return None
        return HaloGeometry(grid, map_size, tile_in * up // stride, stride, kernel, pad, up, from_map=not x.tiled)

    def tiled_conv(self, x: Feature, geometry: HaloGeometry, weight: str, bias: str, out_channels: int, scope: str) -> Feature:
        """SBNet over a batch of tiles: gather each computed tile's input window (halo
        included) from a (pixels, frames·channels) bank, so every gathered row is one
        contiguous copy, then convolve without padding."""
        tiles, frames, channels = self.plan.hi, x.frames, x.shape[1]
        # Frames and channels travel as one axis, so every layout change moves a single axis
        # (onnxruntime's fast transposes) and every gathered bank row is one contiguous copy.
        stacked = frames * channels
        if x.tiled:
            bank = self.b.op("Reshape", x.name, self.b.const([tiles, stacked, -1]), scope=scope)
            bank = self.b.op("Transpose", bank, scope=scope, perm=[0, 2, 1])
        else:
            bank = self.b.op("Transpose", self.b.op("Reshape", x.name, self.b.const([stacked, -1]), scope=scope), scope=scope, perm=[1, 0])
        bank = self.b.op("Reshape", bank, self.b.const([-1, stacked]), scope=scope)
        zeros = self.b.const(np.zeros((geometry.zero_rows(tiles), stacked), np.float32), "zeros")
        bank = self.b.op("Concat", bank, zeros, scope=scope, axis=0)
        span = geometry.span
        windows = self.b.op("Gather", bank, self.halo_index(geometry), scope=scope, axis=0)  # (tiles, span, span, stacked)
        windows = self.b.op("Reshape", windows, self.b.const([tiles, span * span, stacked]), scope=scope)
        windows = self.b.op("Transpose", windows, scope=scope, perm=[0, 2, 1])
        windows = self.b.op("Reshape", windows, self.b.const([tiles * frames, channels, span, span]), scope=scope)
        kernel, stride = geometry.kernel, geometry.stride
        y = self.b.op("Conv", windows, weight, bias, scope=scope, kernel_shape=[kernel, kernel], strides=[stride, stride])
        return Feature(y, (tiles * frames, out_channels, geometry.tile_out, geometry.tile_out), frames, True)

    def activation(self, layer: GatedConv2d, y: str, scope: str) -> str:
        if isinstance(layer.activation, nn.SiLU):
            return self.b.op("Mul", y, self.b.op("Sigmoid", y, scope=scope), scope=scope)
        return y


@dataclass(frozen=True)
class HaloGeometry:
    """Where each region's conv input window (halo included) lies in the source: a whole
    map (`from_map`, the raw input frames) or the previous layer's tile bank."""

    grid: tuple[int, int]
    map_size: tuple[int, int]  # source resolution (before upsampling)
    tile_out: int  # output pixels per tile side
    stride: int
    kernel: int
    pad: int
    upsample: int
    from_map: bool

    @property
    def span(self) -> int:
        return (self.tile_out - 1) * self.stride + self.kernel

    @property
    def tile_pixels(self) -> int:
        return (self.map_size[0] // self.grid[0]) * (self.map_size[1] // self.grid[1])

    def zero_rows(self, tiles: int) -> int:
        """Rows of zeros appended to the bank: one for a map, a whole tile for a tile bank."""
        return 1 if self.from_map else self.tile_pixels

    def _source_pixels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(regions, span, span) source row/column of every window pixel, and validity."""
        grid_h, grid_w = self.grid
        offsets = np.arange(self.span) - self.pad
        origin = self.tile_out * self.stride
        rows = (np.arange(grid_h) * origin)[:, None] + offsets[None, :]  # upsampled coordinates
        cols = (np.arange(grid_w) * origin)[:, None] + offsets[None, :]
        y = np.repeat(rows[:, None, :, None], grid_w, axis=1)  # (gh, gw, span, 1)
        x = np.repeat(cols[None, :, None, :], grid_h, axis=0)  # (gh, gw, 1, span)
        y, x = np.broadcast_arrays(y, x)
        height, width = self.map_size
        valid = (y >= 0) & (y < height * self.upsample) & (x >= 0) & (x < width * self.upsample)
        y, x = np.where(valid, y // self.upsample, 0), np.where(valid, x // self.upsample, 0)
        shape = (grid_h * grid_w, self.span, self.span)
        return y.reshape(shape), x.reshape(shape), valid.reshape(shape)

    def map_rows(self) -> np.ndarray:
        """(regions, span, span) row of the map bank (y·W + x; H·W is the zero row)."""
        y, x, valid = self._source_pixels()
        height, width = self.map_size
        return np.where(valid, y * width + x, height * width).astype(np.int64)

    def bank_rows(self) -> tuple[np.ndarray, np.ndarray]:
        """(regions, span, span) neighbour region (`regions` = outside) and pixel within it."""
        y, x, valid = self._source_pixels()
        tile_h, tile_w = self.map_size[0] // self.grid[0], self.map_size[1] // self.grid[1]
        region = (y // tile_h) * self.grid[1] + x // tile_w
        regions = self.grid[0] * self.grid[1]
        pixel = (y % tile_h) * tile_w + x % tile_w
        return np.where(valid, region, regions).astype(np.int64), pixel.astype(np.int64)
