"""Gated convolution: filters (in groups) and output regions that a sample's masks switch
off, with its cost and its lowering; and the BatchNorm that goes with it."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dynaprune_edge.distributed import current_world
from dynaprune_edge.flops import conv_flops
from dynaprune_edge.layers.base import Layer
from dynaprune_edge.layers.state import GateSpec, MaskState


def kept_count(fraction: Tensor, total: int) -> int:
    """Channels (or units) a kept fraction stands for; the input of a frame-stacked layer
    keeps the same share of every frame's channels."""
    return int((fraction * total).round())


def kept_tiles(
    masks: MaskState,
    element: int,
    output_size: tuple[int, int],
    kernel: int,
    stride: int = 1,
    tile_limit: int | None = None,
):
    """(tiles, input tile size) of an SBNet-style gathered execution of a conv: the kept
    regions as tiles with the halo of the kernel's extent (`kernel`: a dilated kernel's
    d·(k-1)+1) and no padding, or the whole map where regions
    are finer than the map (such layers are not spatially gated) or where the element
    keeps more regions than the layer's `tile_limit`."""
    tiles, tile = 1, output_size
    if masks.region_at(output_size) is not None:
        kept = int(masks.region_mask[element].sum().round())
        if kept == 0 or tile_limit is None or kept <= tile_limit:
            grid = masks.region_mask.shape[-2:]
            tiles, tile = kept, tuple(size // cells for size, cells in zip(output_size, grid))
    return tiles, tuple((size - 1) * stride + kernel for size in tile)


def conv_output_size(size: tuple[int, int], conv: nn.Conv2d) -> tuple[int, int]:
    """Output height and width of `conv` (its kernel, stride, padding and dilation) on a `size` input."""
    return tuple(
        (side + 2 * pad - dilation * (kernel - 1) - 1) // stride + 1
        for side, kernel, stride, pad, dilation in zip(size, conv.kernel_size, conv.stride, conv.padding, conv.dilation)
    )


def fold_batch_norm(conv: nn.Conv2d, norm: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of the convolution with the (eval-mode) BatchNorm after it folded in:
    what the exported graph convolves with (onnxruntime and TensorRT want constant weights
    and no BatchNormalization node)."""
    weight = conv.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros(weight.shape[0], dtype=torch.float64)
    if norm is not None:
        scale = norm.weight.detach().double() / torch.sqrt(norm.running_var.double() + norm.eps)
        weight = weight * scale[:, None, None, None]
        bias = (bias - norm.running_mean.double()) * scale + norm.bias.detach().double()
    return weight.float().numpy(), bias.float().numpy()


class MaskedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm whose training statistics come from the kept positions and channels only.

    Plain BatchNorm would average the skipped regions and pruned filters in too, so a
    sample's normalisation would depend on how much the rest of the batch skipped, and the
    running statistics used at inference would match no sample: the kept outputs drift
    between training and inference. At inference this is ordinary BatchNorm (folded into
    the convolution at export). Training over several processes, its statistics are summed
    over the ranks, masked or not: the global batch's, as one process computes them (the
    mask generator uses it for that alone)."""

    def track_widths(self, levels: int) -> None:
        """Keep running statistics per width level of a slimmable network (switchable
        BatchNorm; Yu et al., ICLR 2019): a narrower network's features have statistics of
        their own, and one shared set, averaged over the widths training ran, matches none
        of them. `running_mean`/`running_var` hold the level in use (`use_width`)."""
        self.register_buffer("width_mean", self.running_mean.repeat(levels, 1))
        self.register_buffer("width_var", self.running_var.repeat(levels, 1))

    def use_width(self, level: int) -> None:
        """Level `level`'s statistics into the running ones, which training updates and
        evaluation and export read."""
        self.running_mean.copy_(self.width_mean[level])
        self.running_var.copy_(self.width_var[level])

    def keep_width(self, level: int) -> None:
        """The running statistics, as training left them, back into level `level`'s."""
        self.width_mean[level].copy_(self.running_mean)
        self.width_var[level].copy_(self.running_var)

    def forward(self, y: Tensor, kept: Tensor | None = None) -> Tensor:
        world = current_world()
        if not self.training or (kept is None and world.size == 1):
            return super().forward(y)
        kept = (torch.ones_like(y[:, :1, :1, :1]) if kept is None else kept.detach()).expand_as(y)
        count = world.sum(kept.sum(dim=(0, 2, 3)))
        mean = world.sum((y * kept).sum(dim=(0, 2, 3))) / count.clamp_min(1)
        centred = y - mean[:, None, None]
        variance = world.sum((centred.pow(2) * kept).sum(dim=(0, 2, 3))) / count.clamp_min(1)
        with torch.no_grad():
            seen = count > 1  # channels kept somewhere in the batch update their statistics
            unbiased = variance * count / (count - 1).clamp_min(1)
            momentum = self.momentum
            self.running_mean[seen] = (1 - momentum) * self.running_mean[seen] + momentum * mean[seen]
            self.running_var[seen] = (1 - momentum) * self.running_var[seen] + momentum * unbiased[seen]
            self.num_batches_tracked += 1
        scale = self.weight / torch.sqrt(variance + self.eps)
        return centred * scale[:, None, None] + self.bias[:, None, None]


ACTIVATIONS = (nn.SiLU, nn.ReLU, nn.GELU, nn.LeakyReLU, nn.Tanh, nn.Identity)
"""The activations a gated conv may end with: each maps 0 to 0, so pruned filters stay off."""


def lower_activation(net, y, activation: nn.Module, scope: str):
    """`activation` (one of ACTIVATIONS) emitted on the feature `y` of the sub-network `net`."""
    if isinstance(activation, nn.SiLU):
        return net.silu(y, scope)
    if isinstance(activation, nn.GELU):
        return net.gelu(y)
    if isinstance(activation, nn.ReLU):
        return net.like(y, net.b.op("Relu", y.name, scope=scope))
    if isinstance(activation, nn.LeakyReLU):
        return net.like(y, net.b.op("LeakyRelu", y.name, scope=scope, alpha=float(activation.negative_slope)))
    if isinstance(activation, nn.Tanh):
        return net.like(y, net.b.op("Tanh", y.name, scope=scope))
    return y


MAP_NORMS = (nn.GroupNorm, nn.LayerNorm)
"""Normalisations over a sample's map that a gated conv may end with, instead of BatchNorm:
GroupNorm, and LayerNorm over the map's (C, H, W) (one group). They are not folded into the
convolution (their statistics are each sample's own)."""


def norm_groups(norm: nn.Module) -> int:
    """The groups of channels a MAP_NORMS normalisation takes statistics over."""
    return norm.num_groups if isinstance(norm, nn.GroupNorm) else 1


def norm_channels(norm: nn.Module) -> int:
    """The channels a MAP_NORMS normalisation normalises."""
    return norm.num_channels if isinstance(norm, nn.GroupNorm) else norm.normalized_shape[0]


class GatedConv2d(Layer):
    """[nearest upsample] → conv → BatchNorm → activation (SiLU) → × masks.

    gate: names this layer's output filters as a prunable unit (None: never pruned).
    input_gate: the gate of the layer that feeds this one (None: the input is dense); for
        an input of frames stacked as channels, its channels repeat once per frame.
    activation: True (SiLU), False (none) or a module of ACTIVATIONS (a converted model's own).
    depthwise: one filter per channel (in = out channels, groups = channels): its channels
        are its input's, so its input's gate prunes them (`gate` must be None).
    padding, dilation: as nn.Conv2d's (padding None: kernel_size // 2, "same" for odd kernels).
    norm: True (BatchNorm), False (none) or a module of MAP_NORMS, which normalises each
        sample's map over all its positions, skipped regions as zeros (what the export's map
        holds there); whole norm groups are pruned or none (a converted model's own norm).
    A skipped region outputs zero here, exactly what a tile-gathered execution that never
    computes it leaves.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        *,
        gate: str | None,
        input_gate: GateSpec | None,
        group_size: int,
        upsample: int = 1,
        norm: bool | nn.Module = True,
        activation: bool | nn.Module = True,
        depthwise: bool = False,
        padding: int | None = None,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        if depthwise and (in_channels != out_channels or gate is not None):
            raise ValueError("a depthwise conv keeps its channels, and its input's gate prunes them")
        self.upsample = upsample
        self.depthwise = depthwise
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            kernel_size // 2 if padding is None else padding,
            dilation=dilation,
            groups=in_channels if depthwise else 1,
            bias=norm is False or isinstance(norm, nn.Module),
        )
        self.norm = norm if isinstance(norm, MAP_NORMS) else MaskedBatchNorm2d(out_channels) if norm else None
        self.activation = (
            activation if isinstance(activation, nn.Module) else nn.SiLU() if activation else nn.Identity()
        )
        if not isinstance(self.activation, ACTIVATIONS) or (
            isinstance(self.activation, nn.GELU) and self.activation.approximate != "none"
        ):
            raise ValueError(f"unsupported activation {self.activation}")
        self.gate = input_gate if depthwise else None if gate is None else GateSpec(gate, out_channels, group_size)
        self.input_gate = input_gate

    def cost(self, in_channels, out_channels, positions):
        kernel_h, kernel_w = self.conv.kernel_size
        return conv_flops(1 if self.depthwise else in_channels, out_channels, kernel_h * kernel_w, positions)

    def forward(self, x: Tensor, masks: MaskState) -> Tensor:
        if self.upsample > 1:
            x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
        y = self.conv(x)
        size = tuple(y.shape[-2:])
        region = masks.region_at(size)
        if isinstance(self.norm, MaskedBatchNorm2d):
            y = self.norm(y, self.kept_positions(masks, region))
        elif self.norm is not None:
            y = self.norm(y if region is None else y * region)
        y = self.activation(y)
        conv = self.conv
        width = (
            masks.fraction(self.gate) if self.depthwise else masks.fraction(self.input_gate) * masks.fraction(self.gate)
        )
        sparse = self.cost(
            conv.in_channels * masks.fraction(self.input_gate),
            conv.out_channels * masks.fraction(self.gate),
            masks.computed_positions(size, self.tile_limit),
        )
        masks.ledger.add(
            self, sparse, self.cost(conv.in_channels, conv.out_channels, size[0] * size[1]), masks.frames, size, width
        )
        return masks.apply(y, self.gate, region)

    def kept_positions(self, masks: MaskState, region: Tensor | None) -> Tensor | None:
        """(N, C or 1, H or 1, W or 1) 0/1 weights of the outputs this layer really computes."""
        kept = masks.channel(self.gate)
        kept = None if kept is None else kept[:, :, None, None]
        if region is not None:
            kept = region if kept is None else kept * region
        return kept

    def lower(self, net, x):
        scope = net.scope_of(self)
        batch_norm = self.norm if isinstance(self.norm, MaskedBatchNorm2d) else None
        weight, bias = fold_batch_norm(self.conv, batch_norm)
        in_gate = None if self.depthwise else self.input_gate  # a depthwise weight has one input channel per filter
        y = net.conv(
            x,
            weight,
            bias,
            self.conv,
            self.upsample,
            out_gate=self.gate,
            in_gate=in_gate,
            scope=scope,
            tile_limit=self.tile_limit,
        )
        net.count(self.cost(x.channels, y.channels, y.positions))
        if self.norm is not None and batch_norm is None:
            y = net.map_norm(y, self.norm, self.gate, scope)
        return net.mask_channels(lower_activation(net, y, self.activation, scope), self.gate, scope)

    def static_equivalent(self, masks: MaskState, element: int, output_size: tuple[int, int]):
        """The dense layer that computes exactly what element `element` keeps: kept input
        and output channels, kept regions gathered as tiles into the batch (SBNet), with
        the halo the kernel needs and no padding. Returns (module, example input)."""
        in_kept = kept_count(masks.fraction(self.input_gate)[element], self.conv.in_channels)
        out_kept = kept_count(masks.fraction(self.gate)[element], self.conv.out_channels)
        stride, kernel, dilation = self.conv.stride[0], self.conv.kernel_size[0], self.conv.dilation[0]
        tiles, tile_in = kept_tiles(masks, element, output_size, dilation * (kernel - 1) + 1, stride, self.tile_limit)
        module = nn.Conv2d(
            in_kept,
            out_kept,
            kernel,
            stride,
            padding=0,
            dilation=dilation,
            groups=out_kept if self.depthwise else 1,
            bias=False,
        )
        return module, (torch.zeros(tiles, in_kept, *tile_in),)
