"""Patch transformer forecaster, the transformer family: one token per p×p patch of the
input frames stacked as channels (ViT over space, frames as features, as SimVP's
translator treats them), pre-norm blocks, a linear head that emits every output frame's
patch.

Pruning. DataMask = token pruning (DynamicViT): a token is one region, so `patch_size` must
equal the pruning region size; a skipped token is computed nowhere (`layers.tokens`).
ModelMask: gate "attn{i}" covers block i's heads·head_dim q/k/v channels and gate "mlp{i}"
its MLP hidden units. Attention is written as explicit matmuls (not
scaled_dot_product_attention) so fvcore can count it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.layers import Interpreter, MaskedAttention, TokenLinear, TokenNorm
from dynaprune_edge.models.base import Backbone, ForecastShape
from dynaprune_edge.models.catalog import register_backbone


@dataclass(frozen=True)
class ViTOptions:
    patch_size: int = 8  # pixels per token side; must equal the pruning region size
    dim: int = 128  # token width (narrower makes the mask generator > 5 % of the cost)
    depth: int = 4  # blocks
    heads: int = 8
    head_dim: int = 16
    mlp_ratio: int = 2  # MLP hidden units = dim · mlp_ratio


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(LN x), then x + MLP(LN x); skipped tokens stay zero."""

    def __init__(self, index: int, options: ViTOptions, group_size: int) -> None:
        super().__init__()
        dim, channels, hidden = options.dim, options.heads * options.head_dim, options.dim * options.mlp_ratio
        self.attention_norm = TokenNorm(dim)
        self.qkv = TokenLinear(dim, 3 * channels, gate=f"attn{index}", group_size=group_size, repeats=3)
        self.attention = MaskedAttention(options.heads, options.head_dim, self.qkv.gate)
        self.projection = TokenLinear(channels, dim, input_gate=self.qkv.gate)
        self.mlp_norm = TokenNorm(dim)
        self.expand = TokenLinear(dim, hidden, gate=f"mlp{index}", group_size=group_size)
        self.contract = TokenLinear(hidden, dim, input_gate=self.expand.gate)

    def program(self, ops: Interpreter, x):
        qkv = ops.apply(self.qkv, ops.apply(self.attention_norm, x))
        x = ops.add(x, ops.apply(self.projection, ops.apply(self.attention, qkv)))
        hidden = ops.gelu(ops.apply(self.expand, ops.apply(self.mlp_norm, x)))
        return ops.add(x, ops.apply(self.contract, hidden))


@register_backbone
class PatchTransformer(Backbone):
    name = "vit"
    Options = ViTOptions
    WIDTHS = {"dim": 4, "heads": 1}

    @classmethod
    def spatial_multiple(cls, options) -> int:
        return options.patch_size

    @classmethod
    def region_size(cls, options: dict) -> int:
        return cls.Options(**options).patch_size

    def __init__(self, shape: ForecastShape, options: ViTOptions, group_size: int, one_width: bool = False) -> None:
        super().__init__(shape, options, group_size, one_width)
        patch = options.patch_size
        self.grid = self.patch_grid(patch)
        tokens = self.grid[0] * self.grid[1]
        self.embed = TokenLinear(shape.frames_in * shape.channels * patch * patch, options.dim)
        self.position = nn.Parameter(torch.zeros(1, tokens, options.dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        self.blocks = nn.ModuleList([TransformerBlock(i, options, group_size) for i in range(options.depth)])
        self.norm = TokenNorm(options.dim)
        self.head = TokenLinear(options.dim, shape.frames_out * shape.channels * patch * patch)

    def check_region_grid(self, grid: tuple[int, int]) -> None:
        if grid != self.grid:
            raise ConfigError(
                f"vit patch_size {self.options.patch_size} gives a {self.grid[0]}×{self.grid[1]} token "
                f"grid but the regions form {grid[0]}×{grid[1]}: set the vit option patch_size "
                f"equal to the region size"
            )

    def program(self, ops: Interpreter, x):
        tokens = self.transformer(ops, ops.to_tokens(x), self.position)
        return ops.from_tokens(tokens, self.shape.frames_out, self.shape.channels)

    def transformer(self, ops: Interpreter, patches, position: Tensor):
        """The transformer on any token set: (B, N, patch features) with (1, N, dim)
        positions → (B, N, output features). A test runs it on the kept tokens alone."""
        z = ops.add_token_table(ops.apply(self.embed, patches), position)
        for block in self.blocks:
            z = block.program(ops, z)
        return ops.apply(self.head, ops.apply(self.norm, z))
