"""Kept regions inside one sub-network: where skipped regions cost nothing, and where they
are computed and zeroed.

In layers the `TilePolicy` selects, the computed regions become a batch of tiles (SBNet):
each tile's input window, halo included, is gathered and convolved without padding, and
stays a tile until a layer runs on whole maps (scattered back, skipped regions zero). Other
layers run over the whole map and zero the skipped regions (their work is not saved). For
a transformer a region is a token: the computed tokens are gathered rows. A branch
computes `hi` regions, the most of its range of kept-region counts; those beyond a
sample's own are masked, so every sample gets exactly what PyTorch computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dynaprune_edge.export.graph import Feature
from dynaprune_edge.export.routing import Branch
from dynaprune_edge.layers.conv import conv_output_size


@dataclass(frozen=True)
class TilePolicy:
    """Which layers run on the kept regions' tiles: those with at least `min_channels`
    input channels, in branches computing at most `max_fraction` of the regions. Tiles
    skip the skipped regions' work but move data (halo gather, layout changes), which on
    a CPU pays for wide layers and few tiles sooner than for narrow layers and many."""

    min_channels: int = 1
    max_fraction: float = 1.0


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
    dilation: int = 1

    @property
    def span(self) -> int:
        return (self.tile_out - 1) * self.stride + self.dilation * (self.kernel - 1) + 1

    @property
    def tile_pixels(self) -> int:
        return (self.map_size[0] // self.grid[0]) * (self.map_size[1] // self.grid[1])

    @property
    def zero_rows(self) -> int:
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


class KeptRegions:
    def __init__(self, branch: Branch, tiles: TilePolicy | None) -> None:
        self.branch = branch
        self.b = branch.builder
        self.tiles = tiles  # None: every layer runs on whole maps
        self.used_tiles = False  # whether some layer of the branch was emitted on tiles

    @property
    def tiling(self) -> bool:
        """Whether layers may run on tiles: the branch computes few enough of the regions."""
        plan, routing = self.branch.plan, self.branch.routing
        if self.tiles is None or plan is None:
            return False
        return plan.hi < routing.regions and plan.hi <= self.tiles.max_fraction * routing.regions

    def region_index(self) -> str:
        """(tiles,) int64: the branch's regions, highest importance first (kept ones lead)."""

        def make() -> str:
            scope = "route/regions"
            logits, hi = self.branch.routing.region_logits, self.branch.plan.hi
            _, top = self.b.op("TopK", logits, self.b.const([hi]), scope=scope, outputs=2, axis=1)
            return self.b.op("Reshape", top, self.b.const([-1]), scope=scope)

        return self.branch.cached(("regions",), make)

    def kept_tiles(self) -> str:
        """(tiles, 1, 1, 1, 1) float: 1 for the computed tiles the sample keeps."""

        def make() -> str:
            b, scope = self.b, "route/regions"
            count = b.op("Reshape", self.branch.routing.kept_regions, b.const([1, 1, 1, 1, 1]), scope=scope)
            position = b.const(np.arange(self.branch.plan.hi).reshape(-1, 1, 1, 1, 1))
            return b.op("Cast", b.op("Less", position, count, scope=scope), scope=scope, to=b.FLOAT)

        return self.branch.cached(("kept_tiles",), make)

    def region_slots(self) -> str:
        """(regions + 1,) int64: each region's position in the tile batch, or `hi` (the
        zero tile) for regions the sample skips and for the outside of the frame (last)."""

        def make() -> str:
            b, scope = self.b, "route/regions"
            tiles, routing = self.branch.plan.hi, self.branch.routing
            slots = np.arange(tiles)
            kept = b.op("Less", b.const(slots), routing.kept_regions, scope=scope)
            slot = b.op("Where", kept, b.const(slots), b.const(np.int64(tiles)), scope=scope)
            empty = b.const(np.full(routing.regions + 1, tiles, np.int64))
            return b.op("ScatterElements", empty, self.region_index(), slot, scope=scope, axis=0)

        return self.branch.cached(("slots",), make)

    def halo_index(self, geometry: HaloGeometry) -> str:
        """(tiles, span, span) int64 rows of the source bank that form each computed
        tile's input window (halo included; zero row where it is padding or skipped)."""

        def make() -> str:
            b, scope, shared = self.b, "route/tiles", self.branch.shared
            regions = self.region_index()
            if geometry.from_map:
                return b.op("Gather", shared.const(geometry.map_rows(), "halo"), regions, scope=scope, axis=0)
            neighbour, pixel = geometry.bank_rows()
            slots = b.op(
                "Gather",
                self.region_slots(),
                b.op("Gather", shared.const(neighbour, "halo"), regions, scope=scope, axis=0),
                scope=scope,
                axis=0,
            )
            pixels = b.op("Gather", shared.const(pixel, "halo"), regions, scope=scope, axis=0)
            return b.op(
                "Add", b.op("Mul", slots, b.const(np.int64(geometry.tile_pixels)), scope=scope), pixels, scope=scope
            )

        return self.branch.cached(("halo", geometry), make)

    # -- maps --------------------------------------------------------------------------

    def to_map(self, z: Feature) -> Feature:
        """Tiles → per-frame maps (skipped regions zero); maps pass through."""
        if not z.tiled:
            return z
        b, scope, plan = self.b, "compute/scatter", self.branch.plan
        _, channels, tile_h, tile_w = z.shape
        frames, (grid_h, grid_w) = z.frames, self.branch.grid
        tiles = b.op("Reshape", z.name, b.const([plan.hi, frames, channels, tile_h, tile_w]), scope=scope)
        if plan.lo < plan.hi:
            tiles = b.op("Mul", tiles, self.kept_tiles(), scope=scope)
        canvas = b.const(np.zeros((grid_h * grid_w, frames, channels, tile_h, tile_w), np.float32), "canvas")
        where = b.op("Unsqueeze", self.region_index(), b.const([1]), scope=scope)
        full = b.op("ScatterND", canvas, where, tiles, scope=scope)
        full = b.op("Reshape", full, b.const([grid_h, grid_w, frames, channels, tile_h, tile_w]), scope=scope)
        full = b.op("Transpose", full, scope=scope, perm=[2, 3, 0, 4, 1, 5])
        shape = (frames, channels, grid_h * tile_h, grid_w * tile_w)
        return Feature(b.op("Reshape", full, b.const(list(shape)), scope=scope), shape, frames)

    def mask_regions(self, y: Feature, scope: str) -> Feature:
        """Zero a whole-map feature's skipped regions (where some sample of the branch may
        skip any, and regions are no finer than its pixels)."""
        routing, plan = self.branch.routing, self.branch.plan
        if routing is None or plan.lo == routing.regions:
            return y
        size, grid = y.shape[2:], self.branch.grid
        if size[0] % grid[0] or size[1] % grid[1]:
            return y
        rows, channels = y.shape[0], y.channels
        mask = self.branch.cached(
            ("region mask", size, rows, channels), lambda: self.blocked_region_mask(size, rows, channels)
        )
        return Feature(self.b.op("Mul", y.name, mask, scope=scope), y.shape, y.frames)

    def blocked_region_mask(self, size: tuple[int, int], rows: int, channels: int) -> str:
        """The kept-region mask at `size` in the feature's own shape (rows, channels, H, W),
        made by a 1×1 convolution of ones. onnxruntime keeps a Mul in its blocked NCHWc
        layout only when both inputs are NCHWc tensors of one shape, which a convolution's
        output is; a broadcast (1, 1, H, W) mask sends each masked layer's output back to
        NCHW and the next convolution's input forward again (`dpedge bench layout`: on
        12×20 maps the masks cost 14–19 % broadcast, 5–8 % blocked; docs/design.md).
        Exact: each output is one 0/1 value times 1."""
        b, scope = self.b, "route/regions"
        mask = self.branch.routing.region_mask(size)
        if rows > 1:
            mask = b.op("Expand", mask, b.const([rows, 1, *size]), scope=scope)
        return b.op("Conv", mask, b.const(np.ones((channels, 1, 1, 1), np.float32)), scope=scope)

    # -- convolutions --------------------------------------------------------------------

    def conv(
        self,
        x: Feature,
        weight: str,
        bias: str | None,
        conv,
        upsample: int,
        out_channels: int,
        scope: str,
        tile_limit: int | None = None,
    ) -> Feature:
        """`conv` (an nn.Conv2d's geometry) after nearest `upsample`, computing the kept
        regions only where the tile policy and the layer's `tile_limit` allow: tile-local
        for a pointwise conv on tiles, on gathered tiles with halo, else over whole maps
        with the skipped regions zeroed."""
        kernel, stride, pad, dilation = conv.kernel_size[0], conv.stride[0], conv.padding[0], conv.dilation[0]
        group = out_channels if conv.groups > 1 else 1  # a depthwise conv: one group per channel it computes
        plan = self.branch.plan
        tiles_pay = tile_limit is None or (plan is not None and plan.hi <= tile_limit)
        if x.tiled and tiles_pay and kernel == 1 and stride == 1 and upsample == 1:  # tile-local: no halo, no glue
            inputs = (x.name, weight) if bias is None else (x.name, weight, bias)
            y = self.b.op("Conv", *inputs, scope=scope, kernel_shape=[1, 1], **({"group": group} if group > 1 else {}))
            return Feature(y, (x.shape[0], out_channels) + x.shape[2:], x.frames, True)
        if self.tiling and tiles_pay and x.channels >= self.tiles.min_channels:
            geometry = self.halo_geometry(x, kernel, stride, pad, upsample, dilation)
            if geometry is not None:
                return self.tiled_conv(x, geometry, weight, bias, out_channels, scope, group)
        return self.map_conv(self.to_map(x), weight, bias, conv, upsample, out_channels, scope)

    def map_conv(
        self, x: Feature, weight: str, bias: str | None, conv, upsample: int, out_channels: int, scope: str
    ) -> Feature:
        """Over whole maps; outputs in skipped regions are zeroed (they cost as if kept)."""
        name, (batch, _, height, width) = x.name, x.shape
        if upsample > 1:
            name = self.b.upsample(name, upsample, "nearest", scope)
            height, width = height * upsample, width * upsample
        size = conv_output_size((height, width), conv)
        y = Feature(
            self.b.conv(name, weight, bias, conv, scope, out_channels if conv.groups > 1 else 1),
            (batch, out_channels) + size,
            x.frames,
        )
        return self.mask_regions(y, scope)

    def halo_geometry(
        self, x: Feature, kernel: int, stride: int, pad: int, upsample: int, dilation: int = 1
    ) -> HaloGeometry | None:
        """How a conv over `x` splits into the regions' tiles, or None if it does not
        (tiles narrower than a pixel, or not whole)."""
        grid = self.branch.grid
        map_size = (x.shape[2] * grid[0], x.shape[3] * grid[1]) if x.tiled else x.shape[2:]
        if map_size[0] % grid[0] or map_size[1] % grid[1]:
            return None
        tile_in = map_size[0] // grid[0]
        if tile_in != map_size[1] // grid[1] or (tile_in * upsample) % stride:
            return None
        return HaloGeometry(
            grid,
            map_size,
            tile_in * upsample // stride,
            stride,
            kernel,
            pad,
            upsample,
            from_map=not x.tiled,
            dilation=dilation,
        )

    def tiled_conv(
        self,
        x: Feature,
        geometry: HaloGeometry,
        weight: str,
        bias: str | None,
        out_channels: int,
        scope: str,
        group: int = 1,
    ) -> Feature:
        """SBNet over a batch of tiles: gather each computed tile's input window (halo
        included) from a (pixels, frames·channels) bank, so every gathered row is one
        contiguous copy, then convolve without padding."""
        b, self.used_tiles = self.b, True
        tiles, frames, channels = self.branch.plan.hi, x.frames, x.channels
        # Frames and channels travel as one axis, so every layout change moves a single axis
        # (onnxruntime's fast transposes) and every gathered bank row is one contiguous copy.
        stacked = frames * channels
        if x.tiled:
            bank = b.op("Reshape", x.name, b.const([tiles, stacked, -1]), scope=scope)
            bank = b.op("Transpose", bank, scope=scope, perm=[0, 2, 1])
        else:
            bank = b.op(
                "Transpose", b.op("Reshape", x.name, b.const([stacked, -1]), scope=scope), scope=scope, perm=[1, 0]
            )
        bank = b.op("Reshape", bank, b.const([-1, stacked]), scope=scope)
        zeros = b.const(np.zeros((geometry.zero_rows, stacked), np.float32), "zeros")
        bank = b.op("Concat", bank, zeros, scope=scope, axis=0)
        span = geometry.span
        windows = b.op("Gather", bank, self.halo_index(geometry), scope=scope, axis=0)  # (tiles, span, span, stacked)
        windows = b.op("Reshape", windows, b.const([tiles, span * span, stacked]), scope=scope)
        windows = b.op("Transpose", windows, scope=scope, perm=[0, 2, 1])
        windows = b.op("Reshape", windows, b.const([tiles * frames, channels, span, span]), scope=scope)
        inputs = (windows, weight) if bias is None else (windows, weight, bias)
        kernel, stride, dilation = geometry.kernel, geometry.stride, geometry.dilation
        y = b.op(
            "Conv",
            *inputs,
            scope=scope,
            kernel_shape=[kernel, kernel],
            strides=[stride, stride],
            **({"dilations": [dilation, dilation]} if dilation > 1 else {}),
            **({"group": group} if group > 1 else {}),
        )
        return Feature(y, (tiles * frames, out_channels, geometry.tile_out, geometry.tile_out), frames, True)

    # -- tokens ------------------------------------------------------------------------

    @property
    def token_count(self) -> int:
        """Tokens the branch computes: the `hi` most important regions where the tile policy
        gathers them, else every region (the skipped ones masked)."""
        return self.branch.plan.hi if self.tiling else self.branch.regions

    @property
    def tokens_masked(self) -> bool:
        """Whether some computed token may be one the sample skips (excluded as a key)."""
        return self.branch.plan is not None and self.branch.plan.lo < self.token_count

    def gather_tokens(self, rows: str) -> str:
        """(regions, F) → the computed tokens' rows."""
        if not self.tiling:
            return rows
        self.used_tiles = True
        return self.b.op("Gather", rows, self.region_index(), scope="route/tokens", axis=0)

    def scatter_tokens(self, rows: str, features: int) -> str:
        """(computed tokens, F) → (regions, F), zero where no token was computed."""
        if not self.tiling:
            return rows
        regions, scope = self.branch.regions, "compute/scatter"
        where = self.b.op("Unsqueeze", self.region_index(), self.b.const([1]), scope=scope)
        canvas = self.b.const(np.zeros((regions, features), np.float32), "canvas")
        return self.b.op("ScatterND", canvas, where, rows, scope=scope)

    def key_bias(self) -> str:
        """(1, 1, computed tokens): 0 for the sample's kept tokens, −1e9 for the others."""

        def make() -> str:
            b, scope = self.b, "route/regions"
            keep = self.kept_tiles() if self.tiling else self.branch.routing.keep
            keep = b.op("Reshape", keep, b.const([1, 1, -1]), scope=scope)
            return b.op(
                "Mul", b.op("Sub", keep, b.const(np.float32(1)), scope=scope), b.const(np.float32(1e9)), scope=scope
            )

        return self.branch.cached(("key_bias",), make)
