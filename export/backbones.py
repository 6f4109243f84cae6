"""Each exportable backbone's forward, written again with the lowering primitives of a
`SubNetwork` (one branch: kept regions as tiles or tokens, kept filter groups only).
Each function mirrors the backbone's `forward` in dynaprune_edge/models; parity with it is
checked on every export."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.lowering import Feature, SubNetwork
from dynaprune_edge.models.convlstm import ConvLSTM, GatedConvLSTMCell
from dynaprune_edge.models.simvp import SimVP
from dynaprune_edge.models.vit import PatchTransformer, TokenLinear, TransformerBlock
from dynaprune_edge.registry import Registry

LOWERINGS: Registry[Callable[..., Feature]] = Registry("exportable backbone")
"""backbone name → lower(backbone module, SubNetwork, input Feature) → forecast Feature"""


def lowering_for(backbone: str):
    try:
        return LOWERINGS.get(backbone)
    except ConfigError:
        raise ConfigError(
            f"export of {backbone} models is not implemented yet (exportable: {', '.join(LOWERINGS.names())})"
        ) from None


@LOWERINGS.register("simvp")
def lower_simvp(model: SimVP, net: SubNetwork, x: Feature) -> Feature:
    z = net.input(x)
    for index, layer in enumerate(model.encoder):
        z = net.conv(layer, z, scope=f"enc{index}")
    z = net.conv(model.translator_in, net.stack_frames(z), in_repeat=x.shape[1], scope="translator_in")
    for index, block in enumerate(model.translator):
        inner = net.conv(block.project, net.conv(block.expand, z, scope=f"translator{index}"), scope=f"translator{index}")
        z = net.add(z, inner, scope=f"translator{index}")
    z = net.unstack_frames(net.conv(model.translator_out, z, scope="translator_out"), model.shape.frames_out)
    for index, layer in enumerate(model.decoder):
        z = net.conv(layer, z, scope=f"dec{index}")
    return net.output(net.conv(model.readout, z, scope="readout"))


class Tokens:
    """The transformer's lowering primitives over one branch's computed tokens: the
    `hi` most important regions, gathered, where the tile policy allows (else all
    regions, the skipped ones masked). Tokens the branch computes beyond the sample's kept ones are excluded as
    attention keys; their outputs land on skipped regions, which the fallback overwrites."""

    def __init__(self, model: PatchTransformer, net: SubNetwork) -> None:
        self.model, self.net, self.b = model, net, net.b
        regions = model.grid[0] * model.grid[1]
        self.gathered = net.tiling  # the tile policy decides whether kept tokens are gathered
        self.count = net.plan.hi if self.gathered else regions
        self.masked = net.plan is not None and net.plan.lo < self.count  # some computed token may be skipped

    def gather(self, rows: str, scope: str) -> str:
        """(regions, F) → the computed tokens' rows (count, F)."""
        if not self.gathered:
            return rows
        return self.b.op("Gather", rows, self.net.region_index(), scope=f"route/{scope}", axis=0)

    def scatter(self, rows: str, features: int) -> str:
        """(count, F) → (regions, F), zero where no token was computed."""
        if not self.gathered:
            return rows
        regions = self.model.grid[0] * self.model.grid[1]
        where = self.b.op("Unsqueeze", self.net.region_index(), self.b.const([1]), scope="compute/scatter")
        return self.b.op("ScatterND", self.b.const(np.zeros((regions, features), np.float32), "canvas"), where, rows, scope="compute/scatter")

    def linear(self, layer: TokenLinear, x: str, in_features: int, scope: str) -> tuple[str, int]:
        """x (count, in) → (count, out) over the kept channels; returns (name, out)."""
        linear = layer.linear
        weight, bias = self.net.select_weights(
            linear.weight.detach().numpy().T, linear.bias.detach().numpy(), layer.gate, layer.input_gate,
            out_repeat=layer.repeats, out_axis=1,
        )
        out = layer.repeats * self.net.kept_channels(self.net.active(layer.gate), linear.out_features // layer.repeats)
        self.net.flops += float(self.count * in_features * out)
        y = self.b.op("Add", self.b.op("MatMul", x, weight, scope=scope), bias, scope=scope)
        if self.net.masks_channels(layer.gate):
            y = self.b.op("Mul", y, self.net.channel_mask(layer.gate, layer.repeats), scope=scope)
        return y, out

    def layer_norm(self, norm, x: str, scope: str) -> str:
        """LayerNorm over the last axis as its primitive ops: ONNX LayerNormalization needs
        TensorRT ≥ 8.6 (JetPack 6), while onnxruntime and TensorRT ≥ 8.6 fuse this pattern
        back into one kernel."""
        b = self.b
        centred = b.op("Sub", x, b.reduce_mean(x, -1, scope), scope=scope)
        variance = b.reduce_mean(b.op("Pow", centred, b.const(np.float32(2)), scope=scope), -1, scope)
        scale = b.op("Sqrt", b.op("Add", variance, b.const(np.float32(norm.eps)), scope=scope), scope=scope)
        normalised = b.op("Div", centred, scale, scope=scope)
        return b.op("Add", b.op("Mul", normalised, b.const(norm.weight.detach().numpy(), "norm"), scope=scope), b.const(norm.bias.detach().numpy(), "norm"), scope=scope)

    def attention(self, block: TransformerBlock, qkv: str, channels: int, scope: str) -> str:
        """Multi-head attention over the kept channels, computed per kept group of
        channels (a group never straddles heads): q·k per group, summed into its head's
        logits, softmax over the kept keys, then each group's values weighted by its head's
        attention. (count, 3·channels) → (count, channels), channels in the kept order."""
        attention, b, net = block.attention, self.b, self.net
        size = net.group_size
        groups, per_head, tokens = channels // size, attention.head_dim // size, self.count
        q, k, v = (
            b.op("Transpose", b.op("Reshape", t, b.const([tokens, groups, size]), scope=scope), scope=scope, perm=[1, 0, 2])
            for t in b.op("Split", qkv, b.const([channels] * 3), scope=scope, outputs=3, axis=1)
        )
        logits = b.op("MatMul", q, b.op("Transpose", k, scope=scope, perm=[0, 2, 1]), scope=scope)  # (groups, tokens, tokens)
        gate = net.active(attention.gate)
        if gate is not None and gate in net.routing.group_scores:  # the sample's groups: heads known at run time
            heads = attention.heads
            head_of_group = b.op("Div", b.op("Reshape", net.top_groups(gate), b.const([-1]), scope=scope), b.const(np.int64(per_head)), scope=scope)
            membership = b.op("Cast", b.op("Equal", b.const(np.arange(heads)[:, None]), b.op("Unsqueeze", head_of_group, b.const([0]), scope=scope), scope=scope), scope=scope, to=1)
        else:  # the first groups: heads known now
            heads = -(-groups // per_head)
            head_of_group = b.const(np.arange(groups) // per_head)
            membership = b.const((np.arange(heads)[:, None] == np.arange(groups)[None, :] // per_head).astype(np.float32))
        logits = b.op("MatMul", membership, b.op("Reshape", logits, b.const([groups, -1]), scope=scope), scope=scope)
        logits = b.op("Mul", b.op("Reshape", logits, b.const([heads, tokens, tokens]), scope=scope), b.const(np.float32(attention.scale)), scope=scope)
        if self.masked:
            logits = b.op("Add", logits, self.key_bias(), scope=scope)
        weights = b.op("Gather", b.op("Softmax", logits, scope=scope, axis=-1), head_of_group, scope=scope, axis=0)
        out = b.op("MatMul", weights, v, scope=scope)  # (groups, tokens, size)
        net.flops += float(2 * tokens * tokens * channels + heads * groups * tokens * tokens)
        return b.op("Reshape", b.op("Transpose", out, scope=scope, perm=[1, 0, 2]), b.const([tokens, channels]), scope=scope)

    def key_bias(self) -> str:
        """(1, 1, count): 0 for the sample's kept tokens, −1e9 for the others."""

        def make() -> str:
            scope = "route/regions"
            keep = self.net.kept_tiles() if self.gathered else self.net.routing.keep
            keep = self.b.op("Reshape", keep, self.b.const([1, 1, -1]), scope=scope)
            return self.b.op("Mul", self.b.op("Sub", keep, self.b.const(np.float32(1)), scope=scope), self.b.const(np.float32(1e9)), scope=scope)

        return self.net.cached(("key_bias",), make)


@LOWERINGS.register("vit")
def lower_vit(model: PatchTransformer, net: SubNetwork, x: Feature) -> Feature:
    if model.options.head_dim % net.group_size:
        raise ConfigError(f"vit export needs head_dim ({model.options.head_dim}) to be a multiple of the group size ({net.group_size})")
    b, tokens = net.b, Tokens(model, net)
    _, frames, channels, height, width = x.shape
    p, (grid_h, grid_w), dim = model.options.patch_size, model.grid, model.options.dim
    patches = b.op("Reshape", x.name, b.const([frames, channels, grid_h, p, grid_w, p]), scope="compute/patchify")
    patches = b.op("Reshape", b.op("Transpose", patches, scope="compute/patchify", perm=[2, 4, 0, 1, 3, 5]), b.const([grid_h * grid_w, -1]), scope="compute/patchify")
    z, _ = tokens.linear(model.embed, tokens.gather(patches, "tokens"), frames * channels * p * p, "compute/embed")
    z = b.op("Add", z, tokens.gather(net.shared.const(model.position.detach().numpy()[0], "position"), "tokens"), scope="compute/embed")
    for index, block in enumerate(model.blocks):
        scope = f"compute/block{index}"
        qkv, width3 = tokens.linear(block.qkv, tokens.layer_norm(block.attention_norm, z, scope), dim, scope)
        attended = tokens.attention(block, qkv, width3 // 3, scope)
        projected, _ = tokens.linear(block.projection, attended, width3 // 3, scope)
        z = b.op("Add", z, projected, scope=scope)
        hidden, units = tokens.linear(block.expand, tokens.layer_norm(block.mlp_norm, z, scope), dim, scope)
        hidden = b.op("Mul", b.op("Mul", hidden, b.const(np.float32(0.5)), scope=scope), b.op("Add", b.op("Erf", b.op("Div", hidden, b.const(np.float32(np.sqrt(2.0))), scope=scope), scope=scope), b.const(np.float32(1)), scope=scope), scope=scope)
        contracted, _ = tokens.linear(block.contract, hidden, units, scope)
        z = b.op("Add", z, contracted, scope=scope)
    y, features = tokens.linear(model.head, tokens.layer_norm(model.norm, z, "compute/head"), dim, "compute/head")
    y = tokens.scatter(y, features)
    frames_out = model.shape.frames_out
    y = b.op("Reshape", y, b.const([grid_h, grid_w, frames_out, channels, p, p]), scope="compute/unpatchify")
    y = b.op("Transpose", y, scope="compute/unpatchify", perm=[2, 3, 0, 4, 1, 5])
    shape = (1, frames_out, channels, height, width)
    return Feature(b.op("Reshape", y, b.const(list(shape)), scope="compute/unpatchify"), shape, frames_out)


def pixel_unshuffle(b, x: str, shape: tuple[int, ...], patch: int, scope: str) -> str:
    """torch's pixel_unshuffle (channel-major: c·p² + row·p + col; ONNX SpaceToDepth is not)."""
    batch, channels, height, width = shape
    x = b.op("Reshape", x, b.const([batch, channels, height // patch, patch, width // patch, patch]), scope=scope)
    x = b.op("Transpose", x, scope=scope, perm=[0, 1, 3, 5, 2, 4])
    return b.op("Reshape", x, b.const([batch, channels * patch * patch, height // patch, width // patch]), scope=scope)


def lstm_cell(net: SubNetwork, cell: GatedConvLSTMCell, z: Feature, state: tuple[str, str], scope: str) -> tuple[str, str]:
    """One step of a ConvLSTM layer over the kept hidden channels: conv([z, h]) → i f g o
    → (h, c), zeroed at the skipped regions and at the filters computed beyond the sample's."""
    b = net.b
    hidden = cell.hidden_channels
    weight = cell.conv.weight.detach().numpy()
    bias = cell.conv.bias.detach().numpy()
    w_input, b_input = net.select_weights(weight[:, : cell.input_channels], bias, cell.gate, cell.input_gate, out_repeat=4)
    w_hidden, _ = net.select_weights(weight[:, cell.input_channels :], None, cell.gate, cell.gate, out_repeat=4)
    kept = net.kept_channels(net.active(cell.gate), hidden)
    kernel = cell.conv.kernel_size[0]
    inputs = b.op("Concat", z.name, state[0], scope=scope, axis=1)
    gates = b.op(
        "Conv", inputs, b.op("Concat", w_input, w_hidden, scope=scope, axis=1), b_input,
        scope=scope, kernel_shape=[kernel, kernel], pads=[kernel // 2] * 4,
    )
    size = z.shape[2:]
    net.flops += float(4 * kept * size[0] * size[1] * (z.shape[1] + kept) * kernel * kernel)
    in_gate, forget, candidate, out_gate = b.op("Split", gates, b.const([kept] * 4), scope=scope, outputs=4, axis=1)
    memory = b.op(
        "Add",
        b.op("Mul", b.op("Sigmoid", forget, scope=scope), state[1], scope=scope),
        b.op("Mul", b.op("Sigmoid", in_gate, scope=scope), b.op("Tanh", candidate, scope=scope), scope=scope),
        scope=scope,
    )
    output = b.op("Mul", b.op("Sigmoid", out_gate, scope=scope), b.op("Tanh", memory, scope=scope), scope=scope)
    if net.masks_channels(cell.gate):
        mask = net.map_channel_mask(cell.gate)
        output, memory = (b.op("Mul", t, mask, scope=scope) for t in (output, memory))
    return net.mask_regions(output, size, scope), net.mask_regions(memory, size, scope)


@LOWERINGS.register("convlstm")
def lower_convlstm(model: ConvLSTM, net: SubNetwork, x: Feature) -> Feature:
    """Every step unrolled (the loop length is static); the recurrence runs on whole maps
    at 1/patch resolution, its regions masked (tiles of a few pixels do not pay)."""
    b, patch = net.b, model.options.patch_size
    _, frames_in, channels, height, width = x.shape
    frames = pixel_unshuffle(b, b.op("Reshape", x.name, b.const([frames_in, channels, height, width]), scope="compute/input"), (frames_in, channels, height, width), patch, "compute/input")
    size = (height // patch, width // patch)
    steps = b.op("Split", frames, b.const([1] * frames_in), scope="compute/input", outputs=frames_in, axis=0)
    steps = steps if isinstance(steps, list) else [steps]
    states = []
    for cell in model.cells:
        zeros = b.const(np.zeros((1, net.kept_channels(net.active(cell.gate), cell.hidden_channels)) + size, np.float32), "state")
        states.append((zeros, zeros))
    last = b.op("Slice", x.name, b.const([frames_in - 1]), b.const([frames_in]), b.const([1]), scope="compute/input")
    last = b.op("Reshape", last, b.const([1, channels, height, width]), scope="compute/input")
    keep = net.routing.region_mask((height, width)) if net.routing is not None else None
    outputs, feedback = [], None
    for step in range(frames_in + model.shape.frames_out - 1):
        z = Feature(steps[step] if step < frames_in else feedback, (1, channels * patch * patch) + size)
        for index, cell in enumerate(model.cells):
            scope = f"compute/step{step}/lstm{index}"
            states[index] = lstm_cell(net, cell, z, states[index], scope)
            z = Feature(states[index][0], (1, net.kept_channels(net.active(cell.gate), cell.hidden_channels)) + size)
        if step >= frames_in - 1:
            scope = f"compute/step{step}"
            readout = net.to_map(net.conv(model.readout, z, scope=f"step{step}/readout"))
            frame = b.op("DepthToSpace", readout.name, scope=scope, blocksize=patch, mode="CRD")
            outputs.append(frame)
            if keep is not None:  # skipped regions feed back the last input frame, as the user sees them
                frame = b.op("Add", b.op("Mul", keep, frame, scope=scope), b.op("Mul", b.op("Sub", b.const(np.float32(1)), keep, scope=scope), last, scope=scope), scope=scope)
            feedback = pixel_unshuffle(b, frame, (1, channels, height, width), patch, scope)
    shape = (1, model.shape.frames_out, channels, height, width)
    stacked = b.op("Concat", *outputs, scope="compute/output", axis=0)
    return Feature(b.op("Reshape", stacked, b.const(list(shape)), scope="compute/output"), shape, model.shape.frames_out)
