"""Patch transformer forecaster, the transformer family: one token per p×p patch of the
input frames stacked as channels (ViT over space, frames as features, as SimVP's
translator treats them), pre-norm blocks, a linear head that emits every output frame's
patch.

Pruning. DataMask = token pruning (DynamicViT): a token is one region, so `patch_size` must
equal the pruning region size. A skipped token is computed nowhere: its embedding,
attention output, MLP and head output are zero, and it is excluded as an attention key and
query, so kept tokens cannot depend on it (attention is a softmax weighted by the token
mask, DynamicViT's masked softmax without its ε, exact for hard masks and differentiable
for soft ones). ModelMask: gate "attn{i}" covers block i's heads·head_dim q/k/v channels and
gate "mlp{i}" its MLP hidden units. A group is `group_size` consecutive channels, the
hardware's alignment unit, not a head: with head_dim 16 and groups of 8 a head may keep
half its dimensions, still a static sub-network (narrower heads). Attention is written as
explicit matmuls (not scaled_dot_product_attention) so fvcore can count it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.masks import GateSpec, MaskState
from dynaprune_edge.masks.gated import kept_count
from dynaprune_edge.models.base import Backbone, ForecastShape
from dynaprune_edge.models.registry import BACKBONES


@dataclass(frozen=True)
class ViTOptions:
    patch_size: int = 8  # pixels per token side; must equal the pruning region size
    dim: int = 128  # token width (narrower makes the mask generator > 5 % of the cost)
    depth: int = 4  # blocks
    heads: int = 8
    head_dim: int = 16
    mlp_ratio: int = 2  # MLP hidden units = dim · mlp_ratio


def kept_tokens(masks: MaskState, element: int) -> int:
    return int(masks.region_mask[element].sum().round())


class TokenLinear(nn.Module):
    """A linear layer over the kept tokens only.

    gate: names the output channels as a prunable unit; the output holds `repeats` copies
        of that channel set (q, k and v share the "attn" gate).
    input_gate: the gate that pruned this layer's input channels (None: input is dense).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        gate: str | None = None,
        input_gate: str | None = None,
        group_size: int = 1,
        repeats: int = 1,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.gate = gate
        self.input_gate = input_gate
        self.repeats = repeats
        self.gate_spec = None if gate is None else GateSpec(gate, out_features // repeats, group_size)

    def forward(self, x: Tensor, keep: Tensor, masks: MaskState) -> Tensor:
        """x: (B, N, in); keep: (B, N, 1) token mask."""
        y = self.linear(x)
        if self.gate is not None:
            y = y * masks.channel(self.gate).repeat(1, self.repeats)[:, None, :]
        y = y * keep
        fraction = keep.mean(dim=(1, 2)) * masks.fraction(self.input_gate) * masks.fraction(self.gate)
        tokens = x.shape[1]
        dense = float(tokens * self.linear.in_features * self.linear.out_features)
        masks.ledger.add(self, dense, fraction, masks.frames, (tokens, self.linear.out_features))
        return y

    def static_equivalent(self, masks: MaskState, element: int, output_size: tuple[int, int]):
        """The dense linear on the gathered kept tokens, kept input and output channels."""
        inputs = kept_count(masks.fraction(self.input_gate)[element], self.linear.in_features)
        gated = self.linear.out_features // self.repeats
        outputs = self.repeats * kept_count(masks.fraction(self.gate)[element], gated)
        module = nn.Linear(inputs, outputs, bias=False)
        return module, (torch.zeros(kept_tokens(masks, element), inputs),)


class StaticAttention(nn.Module):
    """softmax(q kᵀ · scale) v per head, heads of unequal kept widths: what one sample's
    pruned attention computes on its gathered tokens."""

    def __init__(self, head_dims: list[int], scale: float) -> None:
        super().__init__()
        self.head_dims = [d for d in head_dims if d > 0]
        self.scale = scale

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        heads = zip(q.split(self.head_dims, -1), k.split(self.head_dims, -1), v.split(self.head_dims, -1))
        return torch.cat([torch.softmax(qh @ kh.T * self.scale, dim=-1) @ vh for qh, kh, vh in heads], dim=-1)


class MaskedAttention(nn.Module):
    """Multi-head attention core (no weights) over the kept tokens. Its cost, 2·N²·heads·
    head_dim multiply-adds, is quadratic in the kept token fraction."""

    def __init__(self, heads: int, head_dim: int, gate: str) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.gate = gate

    def forward(self, qkv: Tensor, keep: Tensor, masks: MaskState) -> Tensor:
        """qkv: (B, N, 3·heads·head_dim), already zero at pruned channels and tokens."""
        batch, tokens, _ = qkv.shape
        q, k, v = (
            t.reshape(batch, tokens, self.heads, self.head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=-1)
        )
        logits = q @ k.transpose(-2, -1) * self.scale  # (B, heads, N, N)
        key_keep = keep[:, None, :, 0][:, :, None, :]  # (B, 1, 1, N)
        # Stabilise with the largest *kept* logit: a skipped key must not shift the kept
        # keys' weights (numerically) nor overflow; a sample with no kept token gets 0.
        shift = logits.detach().masked_fill(key_keep == 0, float("-inf")).amax(dim=-1, keepdim=True)
        shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
        weights = torch.exp((logits - shift).clamp_max(0)) * key_keep
        attention = weights / weights.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(weights.dtype).tiny)
        out = (attention @ v).transpose(1, 2).reshape(batch, tokens, -1) * keep

        channels = self.heads * self.head_dim
        fraction = keep.mean(dim=(1, 2)) ** 2 * masks.fraction(self.gate)
        masks.ledger.add(self, 2.0 * tokens * tokens * channels, fraction, masks.frames, (tokens, channels))
        return out

    def static_equivalent(self, masks: MaskState, element: int, output_size: tuple[int, int]):
        kept = masks.channel(self.gate)[element].reshape(self.heads, self.head_dim).sum(dim=1)
        head_dims = [int(d.round()) for d in kept]
        tokens, channels = kept_tokens(masks, element), sum(head_dims)
        example = tuple(torch.zeros(tokens, channels) for _ in range(3))
        return StaticAttention(head_dims, self.scale), example


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(LN x), then x + MLP(LN x); skipped tokens stay zero."""

    def __init__(self, index: int, options: ViTOptions, group_size: int) -> None:
        super().__init__()
        dim, channels, hidden = options.dim, options.heads * options.head_dim, options.dim * options.mlp_ratio
        attn, mlp = f"attn{index}", f"mlp{index}"
        self.attention_norm = nn.LayerNorm(dim)
        self.qkv = TokenLinear(dim, 3 * channels, gate=attn, group_size=group_size, repeats=3)
        self.attention = MaskedAttention(options.heads, options.head_dim, attn)
        self.projection = TokenLinear(channels, dim, input_gate=attn)
        self.mlp_norm = nn.LayerNorm(dim)
        self.expand = TokenLinear(dim, hidden, gate=mlp, group_size=group_size)
        self.contract = TokenLinear(hidden, dim, input_gate=mlp)

    def forward(self, x: Tensor, keep: Tensor, masks: MaskState) -> Tensor:
        qkv = self.qkv(self.attention_norm(x), keep, masks)
        x = x + self.projection(self.attention(qkv, keep, masks), keep, masks)
        hidden = F.gelu(self.expand(self.mlp_norm(x), keep, masks))  # GELU(0) = 0: pruned units stay off
        return x + self.contract(hidden, keep, masks)


@BACKBONES.register("vit")
class PatchTransformer(Backbone):
    Options = ViTOptions

    def __init__(self, shape: ForecastShape, options: ViTOptions, group_size: int) -> None:
        super().__init__(shape, options, group_size)
        patch = options.patch_size
        self.grid = self.patch_grid(patch)
        tokens = self.grid[0] * self.grid[1]
        self.embed = TokenLinear(shape.frames_in * shape.channels * patch * patch, options.dim)
        self.position = nn.Parameter(torch.zeros(1, tokens, options.dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.blocks = nn.ModuleList([TransformerBlock(i, options, group_size) for i in range(options.depth)])
        self.norm = nn.LayerNorm(options.dim)
        self.head = TokenLinear(options.dim, shape.frames_out * shape.channels * patch * patch)

    def check_region_grid(self, grid: tuple[int, int]) -> None:
        if grid != self.grid:
            raise ConfigError(
                f"vit patch_size {self.options.patch_size} gives a {self.grid[0]}×{self.grid[1]} token "
                f"grid but the regions form {grid[0]}×{grid[1]}: set the vit option patch_size "
                f"equal to the region size"
            )

    def forward(self, x: Tensor, masks: MaskState) -> Tensor:
        keep = masks.region_mask.flatten(1)[:, :, None]  # (B, N, 1), token order = region order
        return self.unpatchify(self.run_tokens(self.patchify(x), self.position, keep, masks))

    def patchify(self, frames: Tensor) -> Tensor:
        """(B, T, C, H, W) → (B, N, T·C·p²), tokens in row-major region order."""
        batch, count, channels = frames.shape[:3]
        p, (grid_h, grid_w) = self.options.patch_size, self.grid
        patches = frames.reshape(batch, count, channels, grid_h, p, grid_w, p).permute(0, 3, 5, 1, 2, 4, 6)
        return patches.reshape(batch, grid_h * grid_w, -1)

    def unpatchify(self, tokens: Tensor) -> Tensor:
        """(B, N, frames_out·C·p²) → (B, frames_out, C, H, W), the inverse of `patchify`."""
        shape, p, (grid_h, grid_w) = self.shape, self.options.patch_size, self.grid
        y = tokens.reshape(tokens.shape[0], grid_h, grid_w, shape.frames_out, shape.channels, p, p)
        y = y.permute(0, 3, 4, 1, 5, 2, 6)
        return y.reshape(-1, shape.frames_out, shape.channels, shape.height, shape.width)

    def run_tokens(self, patches: Tensor, position: Tensor, keep: Tensor, masks: MaskState) -> Tensor:
        """The transformer on any token set: (B, N, patch features) → (B, N, output
        features). Exposed so a test can run the kept tokens alone, gathered."""
        x = self.embed(patches, keep, masks) + position * keep
        for block in self.blocks:
            x = block(x, keep, masks)
        return self.head(self.norm(x), keep, masks)
