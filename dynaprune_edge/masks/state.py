"""The masks of one batch and the FLOPs a backbone spends under them.

A backbone never decides what to prune: it asks the `MaskState` for the channel mask of a
gate (a prunable layer's filter groups) and the region mask at its feature resolution,
multiplies its activations by them, and reports each layer's dense cost to the
`FlopsLedger` with the fraction of that cost the masks leave. Per-sample FLOPs are thus
computed in closed form, in the same pass, differentiably (straight-through masks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from dynaprune_edge.errors import ConfigError


@dataclass(frozen=True)
class GateSpec:
    """A prunable unit: `channels` filters pruned in groups of `group_size`."""

    name: str
    channels: int
    group_size: int

    def __post_init__(self) -> None:
        if self.channels % self.group_size:
            raise ConfigError(
                f"layer {self.name}: {self.channels} channels are not a multiple of the "
                f"group size {self.group_size}"
            )

    @property
    def groups(self) -> int:
        return self.channels // self.group_size


@dataclass
class LedgerEntry:
    """One layer's cost in one forward: dense flops per batch element, and the fraction of
    it each element kept. `layer` can rebuild its static equivalent (tests, export)."""

    layer: nn.Module
    dense: float
    fraction: Tensor
    frames: int
    output_size: tuple[int, ...]


@dataclass
class FlopsLedger:
    batch: int
    sparse: Tensor | float = 0.0
    dense: float = 0.0
    entries: list[LedgerEntry] = field(default_factory=list)

    def add(self, layer: nn.Module, dense: float, fraction: Tensor, frames: int, output_size) -> None:
        """dense: flops of one batch element; fraction: (batch * frames,) kept share."""
        per_sample = fraction.reshape(self.batch, frames).sum(dim=1) * dense
        self.sparse = self.sparse + per_sample
        self.dense += dense * frames
        self.entries.append(LedgerEntry(layer, dense, fraction.detach(), frames, tuple(output_size)))

    def add_fixed(self, flops: float) -> None:
        """Cost that does not depend on masks (the mask generator)."""
        self.sparse = self.sparse + flops


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Forward the hard value exactly (soft − soft is 0 in floating point; hard + soft −
    soft is not), backpropagate through the soft one."""
    return (soft - soft.detach()) + hard


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
        self.ledger = ledger or FlopsLedger(batch=region_mask.shape[0])
        self.frames = frames

    @classmethod
    def all_kept(cls, batch: int, grid: tuple[int, int], gates: list[GateSpec], like: Tensor) -> "MaskState":
        """The dense baseline's state: every region and filter kept."""
        ones = dict(dtype=like.dtype, device=like.device)
        return cls(
            torch.ones(batch, 1, *grid, **ones),
            {g.name: torch.ones(batch, g.channels, **ones) for g in gates},
        )

    def for_frames(self, frames: int) -> "MaskState":
        repeat = lambda t: t.repeat_interleave(frames, dim=0)  # noqa: E731
        return MaskState(
            repeat(self.region_mask),
            {name: repeat(m) for name, m in self.channel_masks.items()},
            self.ledger,
            self.frames * frames,
        )

    def channel(self, gate: str | None) -> Tensor | None:
        return None if gate is None else self.channel_masks[gate]

    def fraction(self, gate: str | None) -> Tensor:
        """(B·frames,) share of the gate's channels kept; 1 for an ungated input."""
        if gate is None:
            return torch.ones(self.region_mask.shape[0], device=self.region_mask.device)
        return self.channel_masks[gate].mean(dim=1)

    def region_at(self, size: tuple[int, int]) -> Tensor | None:
        """Region mask at a feature map's resolution, or None where a region would be
        smaller than one feature pixel (such layers are computed over the whole map)."""
        grid_h, grid_w = self.region_mask.shape[-2:]
        height, width = size
        if height % grid_h or width % grid_w:
            return None
        if (height // grid_h, width // grid_w) == (1, 1):
            return self.region_mask
        return self.region_mask.repeat_interleave(height // grid_h, dim=-2).repeat_interleave(
            width // grid_w, dim=-1
        )

    def region_fraction(self) -> Tensor:
        return self.region_mask.mean(dim=(1, 2, 3))

    def apply(self, y: Tensor, gate: str | None, region: Tensor | None) -> Tensor:
        """Zero the pruned channels and skipped regions of a (N, C, H, W) activation."""
        if gate is not None:
            y = y * self.channel_masks[gate][:, :, None, None]
        if region is not None:
            y = y * region
        return y
