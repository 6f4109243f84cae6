"""What a layer reads its masks from and reports its cost to, in training.

A backbone never decides what to prune: each layer asks the `MaskState` for the channel mask
of a gate (a prunable layer's filter groups) and the region mask at its feature resolution,
multiplies its activations by them, and reports its cost under the masks, and dense, to the
`FlopsLedger`. Per-sample FLOPs are thus computed in closed form, in the same pass,
differentiably (the masks are straight-through), by the same cost formula the exported graph
uses for the work it really executes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dynaprune_edge.errors import ConfigError


@dataclass(frozen=True)
class GateSpec:
    """A prunable unit: `channels` filters pruned in groups of `group_size`. Layers hold the
    gate of their output filters (`gate`) and of the layer that feeds them (`input_gate`),
    so wiring is by object, never by a retyped name."""

    name: str
    channels: int
    group_size: int

    def __post_init__(self) -> None:
        if self.channels % self.group_size:
            raise ConfigError(
                f"layer {self.name}: {self.channels} channels are not a multiple of the group size {self.group_size}"
            )

    @property
    def groups(self) -> int:
        return self.channels // self.group_size


@dataclass
class LedgerEntry:
    """One layer's cost in one forward: its dense cost per batch element, the cost each
    element kept. `layer` can rebuild its static equivalent (the fvcore check)."""

    layer: nn.Module
    dense: float
    sparse: Tensor
    frames: int
    output_size: tuple[int, ...]


@dataclass
class LayerUse:
    """What one layer computed for each sample of a forward, over all its applications (a
    layer applied at every step of a recurrence is one set of nodes in the exported graph):
    (batch,) FLOPs and the share of its FLOPs its kept filters make at all positions."""

    flops: Tensor
    width: Tensor


@dataclass
class FlopsLedger:
    batch: int
    kept_regions: Tensor | None = None  # (batch,) regions each sample keeps (straight-through)
    sparse: Tensor | float = 0.0
    dense: float = 0.0
    fixed: float = 0.0  # the mask generator's FLOPs, included in `sparse`
    entries: list[LedgerEntry] = field(default_factory=list)
    layers: dict[nn.Module, LayerUse] = field(default_factory=dict)

    def add(self, layer: nn.Module, sparse: Tensor, dense: float, frames: int, output_size, width: Tensor) -> None:
        """sparse: (batch · frames,) cost of each element under its masks; dense: the cost
        of one element with nothing pruned; width: (batch · frames,) the share of the
        layer's FLOPs its kept filters make at all positions (the same for every frame)."""
        per_sample = sparse.reshape(self.batch, frames).sum(dim=1)
        self.sparse = self.sparse + per_sample
        self.dense += dense * frames
        width = width.reshape(self.batch, frames)[:, 0]
        self.entries.append(LedgerEntry(layer, dense, sparse.detach(), frames, tuple(output_size)))
        if layer in self.layers:
            per_sample = per_sample + self.layers[layer].flops
        self.layers[layer] = LayerUse(per_sample, width)

    def add_fixed(self, flops: float) -> None:
        """Cost that does not depend on masks (the mask generator)."""
        self.sparse = self.sparse + flops
        self.fixed += flops


class MaskState:
    """Masks for a batch of B samples, or for B·frames elements when a backbone runs a
    per-frame module (`for_frames`): each sample's masks repeat over its frames."""

    def __init__(
        self,
        region_mask: Tensor,
        channel_masks: dict[str, Tensor],
        ledger: FlopsLedger | None = None,
        frames: int = 1,
    ) -> None:
        self.region_mask = region_mask  # (B·frames, 1, h, w), 1 = region computed
        self.channel_masks = channel_masks  # gate name → (B·frames, channels)
        self.ledger = ledger or FlopsLedger(region_mask.shape[0], region_mask.sum(dim=(1, 2, 3)))
        self.frames = frames

    @classmethod
    def all_kept(cls, batch: int, grid: tuple[int, int], gates: list[GateSpec], like: Tensor) -> MaskState:
        """The dense baseline's state: every region and filter kept."""
        ones = dict(dtype=like.dtype, device=like.device)
        return cls(
            torch.ones(batch, 1, *grid, **ones),
            {g.name: torch.ones(batch, g.channels, **ones) for g in gates},
        )

    def for_frames(self, frames: int) -> MaskState:
        repeat = lambda t: t.repeat_interleave(frames, dim=0)
        return MaskState(
            repeat(self.region_mask),
            {name: repeat(m) for name, m in self.channel_masks.items()},
            self.ledger,
            self.frames * frames,
        )

    def channel(self, gate: GateSpec | None) -> Tensor | None:
        return None if gate is None else self.channel_masks[gate.name]

    def fraction(self, gate: GateSpec | None) -> Tensor:
        """(B·frames,) share of the gate's channels kept; 1 for an ungated input."""
        if gate is None:
            return torch.ones(self.region_mask.shape[0], device=self.region_mask.device)
        return self.channel_masks[gate.name].mean(dim=1)

    def region_at(self, size: tuple[int, int]) -> Tensor | None:
        """Region mask at a feature map's resolution, or None where a region would be
        smaller than one feature pixel (such layers are computed over the whole map)."""
        grid_h, grid_w = self.region_mask.shape[-2:]
        height, width = size
        if height % grid_h or width % grid_w:
            return None
        if (height // grid_h, width // grid_w) == (1, 1):
            return self.region_mask
        return self.region_mask.repeat_interleave(height // grid_h, dim=-2).repeat_interleave(width // grid_w, dim=-1)

    def computed_positions(self, size: tuple[int, int], tile_limit: int | None = None) -> Tensor | float:
        """(B·frames,) output positions a layer computes at `size` under the region mask:
        all of them where regions are finer than the map, or where the sample keeps more
        than `tile_limit` regions (the layer runs on whole maps there, see
        `Layer.tile_limit`)."""
        region = self.region_at(size)
        positions = size[0] * size[1]
        if region is None:
            return positions
        computed = positions * region.mean(dim=(1, 2, 3))
        if tile_limit is None:
            return computed
        on_maps = (self.region_mask.sum(dim=(1, 2, 3)) > tile_limit).to(computed.dtype)
        return computed + on_maps * (positions - computed)

    def token_mask(self) -> Tensor:
        """(B, regions, 1): one token per region, in row-major region order."""
        return self.region_mask.flatten(1)[:, :, None]

    def region_fraction(self) -> Tensor:
        return self.region_mask.mean(dim=(1, 2, 3))

    def apply(self, y: Tensor, gate: GateSpec | None, region: Tensor | None) -> Tensor:
        """Zero the pruned channels and skipped regions of a (N, C, H, W) activation."""
        if gate is not None:
            y = y * self.channel_masks[gate.name][:, :, None, None]
        if region is not None:
            y = y * region
        return y
