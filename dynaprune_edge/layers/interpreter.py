"""The primitives a backbone's forward is written against, once, and the training
interpreter that runs them in torch under a sample's masks.

One forward, two interpreters: a backbone's `program(ops, x)` calls only `ops.apply(layer,
…)` for its layers and the primitives below for the glue between them (frame layout,
residual sums, tokens, the persistence fallback). `TrainingInterpreter` runs them on
batched tensors; the export's `SubNetwork` (dynaprune_edge.export.subnetwork) runs the same
program to emit one ONNX sub-network of kept work only. So a backbone has no second forward
to drift from the first, and one made of existing layer types and primitives exports as is.

Values are opaque to the program: tensors here, graph features there. Per-frame values hold
one map per frame of each sample, frame-major within a sample (sample 0's frames first).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
from torch import Tensor
from torch.nn import functional as F

from dynaprune_edge.layers.state import GateSpec, MaskState


class Interpreter(ABC):
    @abstractmethod
    def apply(self, layer, *inputs):
        """Run a layer (a `dynaprune_edge.layers.Layer`) on the inputs."""

    # -- frames ------------------------------------------------------------------------
    @abstractmethod
    def per_frame(self, frames):
        """(B, T, C, H, W) input frames → per-frame maps."""

    @abstractmethod
    def stack_frames(self, z):
        """Per-frame maps → one map per sample, the frames stacked as channels (frame-major)."""

    @abstractmethod
    def unstack_frames(self, z, frames: int):
        """One map per sample of `frames` stacked frames → per-frame maps."""

    @abstractmethod
    def split_frames(self, z) -> list:
        """Per-frame maps → one value per frame (one map per sample each)."""

    @abstractmethod
    def join_frames(self, values: list):
        """One value per frame → per-frame maps (the inverse of `split_frames`)."""

    @abstractmethod
    def forecast(self, z):
        """Per-frame maps → the (B, T, C, H, W) forecast."""

    @abstractmethod
    def last_frame(self, frames):
        """(B, T, C, H, W) input frames → the last frame's map (what persistence repeats)."""

    @abstractmethod
    def fill_skipped(self, frame, last):
        """`frame` with its skipped regions replaced by `last` (what the user sees there)."""

    @abstractmethod
    def space_to_depth(self, z, block: int):
        """torch's pixel_unshuffle (channel-major: c·block² + row·block + column)."""

    @abstractmethod
    def depth_to_space(self, z, block: int):
        """torch's pixel_shuffle, the inverse of `space_to_depth`."""

    @abstractmethod
    def zero_state(self, channels: GateSpec | int, size: tuple[int, int]):
        """A zero recurrent state at `size` of a gate's channels (those a sub-network keeps)
        or of a fixed count of channels, one map per sample."""

    @abstractmethod
    def add(self, a, b):
        """a + b (a residual)."""

    @abstractmethod
    def concat(self, values: list):
        """The values' channels one after the other (a U-Net skip); none of them pruned."""

    @abstractmethod
    def pool(self, z, kind: str, size: int):
        """Max ("max") or mean ("average") pooling over size×size windows at stride size."""

    @abstractmethod
    def upsample(self, z, factor: int, mode: str):
        """F.interpolate(z, scale_factor=factor) in `mode`: "nearest", "bilinear"
        (align_corners=False) or "bilinear-corners" (align_corners=True); per channel, so
        pruned channels stay zero."""

    @abstractmethod
    def pointwise(self, operation: str, *operands):
        """An elementwise operation of POINTWISE on values of one shape, or a value and a
        number (a recurrent cell's gating: sigmoid(g) * h, (1 - z) * h, tanh(c)); none of
        them pruned, as sigmoid(0) is not 0."""

    @abstractmethod
    def channels(self, z, start: int, stop: int):
        """Channels start…stop-1 of `z`, none of them pruned (a chunk of a cell's gates)."""

    # -- tokens (one per region: a transformer's patch size is the region size) ------------
    @abstractmethod
    def to_tokens(self, frames):
        """(B, T, C, H, W) → (B, regions, T·C·p²) tokens, row-major regions."""

    @abstractmethod
    def from_tokens(self, tokens, frames: int, channels: int):
        """(B, regions, frames·channels·p²) tokens → (B, frames, channels, H, W), the
        inverse of `to_tokens`."""

    @abstractmethod
    def add_token_table(self, tokens, table: Tensor):
        """tokens + a learned (1, regions, F) table (positions), on the kept tokens."""

    @abstractmethod
    def gelu(self, z):
        """GELU (exact, erf form); GELU(0) = 0, so pruned units stay off."""


POINTWISE = {
    "add": (torch.add, "Add"),
    "sub": (torch.sub, "Sub"),
    "mul": (torch.mul, "Mul"),
    "sigmoid": (torch.sigmoid, "Sigmoid"),
    "tanh": (torch.tanh, "Tanh"),
    "relu": (torch.relu, "Relu"),
}
"""`Interpreter.pointwise`'s operations: the torch function, the ONNX operator."""


def patch_side(features: int, frames: int, channels: int) -> int:
    """p of tokens holding `features` = frames·channels·p² values."""
    return math.isqrt(int(features) // (frames * channels))


def patchify(frames: Tensor, patch: int) -> Tensor:
    """(B, T, C, H, W) → (B, N, T·C·p²), tokens in row-major patch order."""
    batch, count, channels, height, width = frames.shape
    grid_h, grid_w = height // patch, width // patch
    patches = frames.reshape(batch, count, channels, grid_h, patch, grid_w, patch).permute(0, 3, 5, 1, 2, 4, 6)
    return patches.reshape(batch, grid_h * grid_w, -1)


def unpatchify(tokens: Tensor, frames: int, channels: int, grid: tuple[int, int]) -> Tensor:
    """(B, N, frames·C·p²) → (B, frames, C, H, W), the inverse of `patchify`."""
    (grid_h, grid_w), batch = grid, tokens.shape[0]
    patch = patch_side(tokens.shape[-1], frames, channels)
    y = tokens.reshape(batch, grid_h, grid_w, frames, channels, patch, patch).permute(0, 3, 4, 1, 5, 2, 6)
    return y.reshape(batch, frames, channels, grid_h * patch, grid_w * patch)


class TrainingInterpreter(Interpreter):
    """The primitives in torch, for a batch under its `MaskState`. A layer on per-frame maps
    gets the masks repeated over the frames (`MaskState.for_frames`), found from its
    input's leading dimension (B·frames)."""

    def __init__(self, masks: MaskState) -> None:
        self.masks = masks
        self.batch = masks.region_mask.shape[0]
        self._by_frames: dict[int, MaskState] = {1: masks}

    def _masks_for(self, value: Tensor) -> MaskState:
        frames, rest = divmod(int(value.shape[0]), int(self.batch))  # ints also under fvcore's tracing
        if rest:
            raise ValueError(f"a layer input of {value.shape[0]} rows is not whole frames of {self.batch} samples")
        if frames not in self._by_frames:
            self._by_frames[frames] = self.masks.for_frames(frames)
        return self._by_frames[frames]

    def apply(self, layer, *inputs):
        return layer(*inputs, self._masks_for(inputs[0]))

    def per_frame(self, frames: Tensor) -> Tensor:
        return frames.flatten(0, 1)

    def stack_frames(self, z: Tensor) -> Tensor:
        return z.reshape(self.batch, -1, *z.shape[-2:])

    def unstack_frames(self, z: Tensor, frames: int) -> Tensor:
        return z.reshape(self.batch * frames, -1, *z.shape[-2:])

    def split_frames(self, z: Tensor) -> list[Tensor]:
        return list(z.unflatten(0, (self.batch, -1)).unbind(1))

    def join_frames(self, values: list[Tensor]) -> Tensor:
        return torch.stack(values, dim=1).flatten(0, 1)

    def forecast(self, z: Tensor) -> Tensor:
        return z.unflatten(0, (self.batch, -1))

    def last_frame(self, frames: Tensor) -> Tensor:
        return frames[:, -1]

    def fill_skipped(self, frame: Tensor, last: Tensor) -> Tensor:
        region = self.masks.region_at(tuple(frame.shape[-2:]))
        return region * frame + (1 - region) * last

    def space_to_depth(self, z: Tensor, block: int) -> Tensor:
        return F.pixel_unshuffle(z, block)

    def depth_to_space(self, z: Tensor, block: int) -> Tensor:
        return F.pixel_shuffle(z, block)

    def zero_state(self, channels: GateSpec | int, size: tuple[int, int]) -> Tensor:
        return self.masks.region_mask.new_zeros(self.batch, getattr(channels, "channels", channels), *size)

    def add(self, a: Tensor, b: Tensor) -> Tensor:
        return a + b

    def concat(self, values: list[Tensor]) -> Tensor:
        return torch.cat(values, dim=1)

    def pool(self, z: Tensor, kind: str, size: int) -> Tensor:
        return (F.max_pool2d if kind == "max" else F.avg_pool2d)(z, size)

    def upsample(self, z: Tensor, factor: int, mode: str) -> Tensor:
        if mode == "nearest":
            return F.interpolate(z, scale_factor=factor, mode="nearest")
        return F.interpolate(z, scale_factor=factor, mode="bilinear", align_corners=mode == "bilinear-corners")

    def pointwise(self, operation: str, *operands) -> Tensor:
        return POINTWISE[operation][0](*operands)

    def channels(self, z: Tensor, start: int, stop: int) -> Tensor:
        return z[:, start:stop]

    def _region_grid(self) -> tuple[int, int]:
        return tuple(self.masks.region_mask.shape[-2:])

    def to_tokens(self, frames: Tensor) -> Tensor:
        return patchify(frames, frames.shape[-2] // self._region_grid()[0])

    def from_tokens(self, tokens: Tensor, frames: int, channels: int) -> Tensor:
        return unpatchify(tokens, frames, channels, self._region_grid())

    def add_token_table(self, tokens: Tensor, table: Tensor) -> Tensor:
        return tokens + table * self.masks.token_mask()

    def gelu(self, z: Tensor) -> Tensor:
        return F.gelu(z)
