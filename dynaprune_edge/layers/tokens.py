"""Transformer layer types over one token per region: a linear layer on the kept tokens, the
masked multi-head attention core, and LayerNorm. A skipped token is computed nowhere: it is
zero after every layer and excluded as an attention key and query, so kept tokens cannot
depend on it (DynamicViT's masked softmax, exact for hard masks, differentiable for soft)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.flops import matmul_flops
from dynaprune_edge.layers.base import Layer
from dynaprune_edge.layers.conv import kept_count
from dynaprune_edge.layers.state import GateSpec, MaskState


def kept_tokens(masks: MaskState, element: int) -> int:
    return int(masks.region_mask[element].sum().round())


class TokenLinear(Layer):
    """A linear layer over the kept tokens only.

    gate: names the output channels as a prunable unit; the output holds `repeats` copies
        of that channel set (q, k and v share one gate).
    input_gate: the gate that pruned this layer's input channels (None: input is dense).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        gate: str | None = None,
        input_gate: GateSpec | None = None,
        group_size: int = 1,
        repeats: int = 1,
    ) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.gate = None if gate is None else GateSpec(gate, out_features // repeats, group_size)
        self.input_gate = input_gate
        self.repeats = repeats

    def cost(self, in_features, out_features, tokens):
        return matmul_flops(tokens, in_features, out_features)

    def forward(self, x: Tensor, masks: MaskState) -> Tensor:
        """x: (B, N, in) → (B, N, out), zero at skipped tokens and pruned channels."""
        keep = masks.token_mask()
        y = self.linear(x)
        if self.gate is not None:
            y = y * masks.channel(self.gate).repeat(1, self.repeats)[:, None, :]
        y = y * keep
        linear, tokens = self.linear, x.shape[1]
        sparse = self.cost(
            linear.in_features * masks.fraction(self.input_gate),
            linear.out_features * masks.fraction(self.gate),
            tokens * keep.mean(dim=(1, 2)),
        )
        dense = self.cost(linear.in_features, linear.out_features, tokens)
        width = masks.fraction(self.input_gate) * masks.fraction(self.gate)
        masks.ledger.add(self, sparse, dense, masks.frames, (tokens, linear.out_features), width)
        return y

    def lower(self, net, x):
        scope = net.scope_of(self)
        weight, bias = self.linear.weight.detach().numpy().T, self.linear.bias.detach().numpy()
        y = net.linear(x, weight, bias, out_gate=self.gate, in_gate=self.input_gate, scope=scope)
        net.count(self.cost(x.channels, y.channels, x.positions))
        return net.mask_channels(y, self.gate, scope)

    def static_equivalent(self, masks: MaskState, element: int, output_size: tuple[int, int]):
        """The dense linear on the gathered kept tokens, kept input and output channels."""
        inputs = kept_count(masks.fraction(self.input_gate)[element], self.linear.in_features)
        gated = self.linear.out_features // self.repeats
        outputs = self.repeats * kept_count(masks.fraction(self.gate)[element], gated)
        module = nn.Linear(inputs, outputs, bias=False)
        return module, (torch.zeros(kept_tokens(masks, element), inputs),)


class StaticAttention(nn.Module):
    """softmax(q kᵀ · scale) v per head, heads of unequal kept widths: what one sample's
    pruned attention computes on its gathered tokens (the fvcore check)."""

    def __init__(self, head_dims: list[int], scale: float) -> None:
        super().__init__()
        self.head_dims = [d for d in head_dims if d > 0]
        self.scale = scale

    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        heads = zip(q.split(self.head_dims, -1), k.split(self.head_dims, -1), v.split(self.head_dims, -1))
        return torch.cat([torch.softmax(qh @ kh.T * self.scale, dim=-1) @ vh for qh, kh, vh in heads], dim=-1)


class MaskedAttention(Layer):
    """Multi-head attention core (no weights) over the kept tokens. Its cost, q·kᵀ and
    attention·v, is quadratic in the kept tokens. `gate` is the q/k/v projection's gate: a
    group is `group_size` consecutive channels, so a head may keep part of its dimensions
    (narrower heads, still a static sub-network)."""

    def __init__(self, heads: int, head_dim: int, gate: GateSpec) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        self.scale = head_dim**-0.5
        self.gate = gate

    def cost(self, tokens, channels):
        return matmul_flops(tokens, channels, tokens) + matmul_flops(tokens, tokens, channels)

    def forward(self, qkv: Tensor, masks: MaskState) -> Tensor:
        """qkv: (B, N, 3·heads·head_dim), already zero at pruned channels and tokens."""
        keep = masks.token_mask()
        batch, tokens, _ = qkv.shape
        q, k, v = (t.reshape(batch, tokens, self.heads, self.head_dim).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
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
        sparse = self.cost(tokens * keep.mean(dim=(1, 2)), channels * masks.fraction(self.gate))
        masks.ledger.add(
            self, sparse, self.cost(tokens, channels), masks.frames, (tokens, channels), masks.fraction(self.gate)
        )
        return out

    def check_exportable(self) -> None:
        if self.head_dim % self.gate.group_size:
            raise ConfigError(
                f"vit export needs head_dim ({self.head_dim}) to be a multiple of the group size ({self.gate.group_size})"
            )

    def lower(self, net, qkv):
        """Attention over the computed tokens and kept channels, per kept group of channels
        (a group never straddles heads): q·k per group, summed into its head's logits (a
        0/1 membership product: routing, not counted as the layer's work), softmax over the
        kept keys, then each group's values weighted by its head's attention.
        (tokens, 3·channels) → (tokens, channels), channels in the kept order."""
        b, scope, filters = net.b, net.scope_of(self), net.filters
        size = self.gate.group_size
        tokens, channels = qkv.positions, qkv.channels // 3
        groups, per_head = channels // size, self.head_dim // size
        q, k, v = (
            b.op(
                "Transpose",
                b.op("Reshape", t, b.const([tokens, groups, size]), scope=scope),
                scope=scope,
                perm=[1, 0, 2],
            )
            for t in b.op("Split", qkv.name, b.const([channels] * 3), scope=scope, outputs=3, axis=1)
        )
        logits = b.op(
            "MatMul", q, b.op("Transpose", k, scope=scope, perm=[0, 2, 1]), scope=scope
        )  # (groups, tokens, tokens)
        if filters.scored(self.gate):  # the sample's own groups: their heads are known at run time
            heads = self.heads
            top = b.op("Reshape", filters.top_groups(self.gate), b.const([-1]), scope=scope)
            head_of_group = b.op("Div", top, b.const(np.int64(per_head)), scope=scope)
            member = b.op(
                "Equal",
                b.const(np.arange(heads)[:, None]),
                b.op("Unsqueeze", head_of_group, b.const([0]), scope=scope),
                scope=scope,
            )
            membership = b.op("Cast", member, scope=scope, to=1)
        else:  # the first groups: their heads are known now
            heads = -(-groups // per_head)
            head_of_group = b.const(np.arange(groups) // per_head)
            membership = b.const(
                (np.arange(heads)[:, None] == np.arange(groups)[None, :] // per_head).astype(np.float32)
            )
        logits = b.op("MatMul", membership, b.op("Reshape", logits, b.const([groups, -1]), scope=scope), scope=scope)
        logits = b.op(
            "Mul",
            b.op("Reshape", logits, b.const([heads, tokens, tokens]), scope=scope),
            b.const(np.float32(self.scale)),
            scope=scope,
        )
        if net.regions.tokens_masked:
            logits = b.op("Add", logits, net.regions.key_bias(), scope=scope)
        weights = b.op("Gather", b.op("Softmax", logits, scope=scope, axis=-1), head_of_group, scope=scope, axis=0)
        out = b.op("MatMul", weights, v, scope=scope)  # (groups, tokens, size)
        net.count(self.cost(tokens, channels))
        out = b.op(
            "Reshape", b.op("Transpose", out, scope=scope, perm=[1, 0, 2]), b.const([tokens, channels]), scope=scope
        )
        return net.like(qkv, out, channels)

    def static_equivalent(self, masks: MaskState, element: int, output_size: tuple[int, int]):
        kept = masks.channel(self.gate)[element].reshape(self.heads, self.head_dim).sum(dim=1)
        head_dims = [int(d.round()) for d in kept]
        tokens, channels = kept_tokens(masks, element), sum(head_dims)
        example = tuple(torch.zeros(tokens, channels) for _ in range(3))
        return StaticAttention(head_dims, self.scale), example


class TokenNorm(Layer, nn.LayerNorm):
    """LayerNorm over each token's features (not counted as FLOPs: a normalisation)."""

    def forward(self, x: Tensor, masks: MaskState) -> Tensor:
        return nn.LayerNorm.forward(self, x)

    def lower(self, net, x):
        b, scope = net.b, net.scope_of(self)
        normalised = net.standardize(x.name, -1, self.eps, scope)
        weight, bias = (b.const(p.detach().numpy(), "norm") for p in (self.weight, self.bias))
        return net.like(x, b.op("Add", b.op("Mul", normalised, weight, scope=scope), bias, scope=scope))
