"""Kept filters inside one sub-network: which of a layer's channels a branch computes, and
the weights that compute only those.

- mode "sliced" (ordered groups, DS-Net): every sample of a branch keeps the first groups
  of each gate, so a branch owns constant weight slices (onnxruntime's and TensorRT's fast
  path);
- mode "gather" (any group order): the sample's highest-scoring groups, found with TopK on
  the router's scores (a constant K per branch), gathered from the shared full weights.
A branch serving a range of kept-region counts computes the most filters of its range; the
filters some of its samples do not keep are masked to zero, so every sample gets exactly
what the PyTorch hard-mask forward computes.
"""

from __future__ import annotations

import numpy as np

from dynaprune_edge.export.routing import Branch
from dynaprune_edge.layers import GateSpec


class KeptFilters:
    def __init__(self, branch: Branch, mode: str, gate_order: list[str]) -> None:
        self.branch = branch
        self.b = branch.builder
        self.mode = mode
        self.gate_order = gate_order  # gate names in ModelMask's order (the width table's columns)

    def active(self, gate: GateSpec | None) -> GateSpec | None:
        """The gate if this branch prunes it (the dense export prunes nothing)."""
        return None if self.branch.plan is None else gate

    def kept_channels(self, gate: GateSpec | None, channels: int) -> int:
        """Channels of a `channels`-wide axis this branch computes, the axis holding
        `channels // gate.channels` copies of the gate's channels (frames stacked as
        channels; q, k and v sharing one gate)."""
        gate = self.active(gate)
        if gate is None:
            return channels
        return channels // gate.channels * self.branch.plan.groups[gate.name] * gate.group_size

    def scored(self, gate: GateSpec | None) -> bool:
        """Whether the sample's own scores choose the gate's groups (else the first ones)."""
        gate, routing = self.active(gate), self.branch.routing
        return gate is not None and routing is not None and gate.name in routing.group_scores

    def masks_channels(self, gate: GateSpec | None) -> bool:
        """Whether this branch computes more of `gate`'s filters than some of its samples keep."""
        gate = self.active(gate)
        return gate is not None and gate.name in self.branch.plan.masked_gates

    def channel_index(self, gate: GateSpec, repeat: int = 1) -> str:
        """(kept channels × repeat,) int64: the sample's kept channels of `gate`, in the
        order its layer emits them, for an axis holding `repeat` copies of the gate."""

        def make() -> str:
            groups, size, stride = self.branch.plan.groups[gate.name], gate.group_size, gate.channels
            if not self.scored(gate):  # ordered groups: the first ones
                index = np.arange(groups * size)
                return self.b.const(np.concatenate([index + r * stride for r in range(repeat)]), "channels")
            scope = f"route/{gate.name}"
            b = self.b
            top = b.op("Transpose", self.top_groups(gate), scope=scope, perm=[1, 0])
            index = b.op(
                "Add", b.op("Mul", top, b.const(size), scope=scope), b.const(np.arange(size)[None, :]), scope=scope
            )
            if repeat > 1:
                copies = b.const((np.arange(repeat) * stride)[:, None, None])
                index = b.op("Add", copies, b.op("Unsqueeze", index, b.const([0]), scope=scope), scope=scope)
            return b.op("Reshape", index, b.const([-1]), scope=scope)

        return self.branch.cached(("channels", gate.name, repeat), make)

    def top_groups(self, gate: GateSpec) -> str:
        """(1, kept groups) int64: the sample's highest-scoring groups of `gate`, best first."""

        def make() -> str:
            scores, kept = (
                self.branch.routing.group_scores[gate.name],
                self.b.const([self.branch.plan.groups[gate.name]]),
            )
            return self.b.op("TopK", scores, kept, scope=f"route/{gate.name}", outputs=2, axis=1)[1]

        return self.branch.cached(("top", gate.name), make)

    def channel_mask(self, gate: GateSpec, repeat: int = 1) -> str:
        """(computed channels × repeat,) float: 1 for the filters this sample keeps (the
        first ones in the branch's order), 0 for those its branch computes beyond them."""

        def make() -> str:
            b, scope = self.b, f"route/{gate.name}"
            routing = self.branch.routing
            column = b.const([self.gate_order.index(gate.name)])
            row = b.op("Unsqueeze", routing.kept_regions, b.const([0]), scope=scope)
            groups = b.op(
                "Gather", b.op("Gather", routing.width_table, row, scope=scope, axis=0), column, scope=scope, axis=1
            )
            position = b.const(
                np.tile(np.repeat(np.arange(self.branch.plan.groups[gate.name]), gate.group_size), repeat)
            )
            keep = b.op("Less", position, b.op("Reshape", groups, b.const([1]), scope=scope), scope=scope)
            return b.op("Cast", keep, scope=scope, to=b.FLOAT)

        return self.branch.cached(("mask", gate.name, repeat), make)

    def select_weights(
        self,
        weight: np.ndarray,
        bias: np.ndarray | None,
        out_gate: GateSpec | None,
        in_gate: GateSpec | None,
        out_axis: int = 0,
    ) -> tuple[str, str | None]:
        """`weight` (out and in channels on axes `out_axis` and 1 − `out_axis`) and `bias`
        (None: none) restricted to the sample's kept channels: constant slices owned by the
        branch (sliced, or nothing pruned), or gathered at run time from the shared full
        weights. An axis may hold several copies of its gate's channels (frames stacked as
        channels; q, k and v sharing one gate): each copy keeps the same channels."""
        out_gate, in_gate = self.active(out_gate), self.active(in_gate)
        in_axis = 1 - out_axis
        out_repeat = 1 if out_gate is None else weight.shape[out_axis] // out_gate.channels
        in_repeat = 1 if in_gate is None else weight.shape[in_axis] // in_gate.channels
        if self.mode == "sliced" or (out_gate is None and in_gate is None):
            keep_out = self.first_channels(out_gate, weight.shape[out_axis], out_repeat)
            keep_in = self.first_channels(in_gate, weight.shape[in_axis], in_repeat)
            sliced = np.take(np.take(weight, keep_out, axis=out_axis), keep_in, axis=in_axis)
            return self.b.const(sliced, "weight"), None if bias is None else self.b.const(bias[keep_out], "bias")
        scope, shared = "route/weights", self.branch.shared
        weight_name = shared.const(weight, "weight")
        bias_name = None if bias is None else shared.const(bias, "bias")
        if out_gate is not None:
            index = self.channel_index(out_gate, out_repeat)
            weight_name = self.b.op("Gather", weight_name, index, scope=scope, axis=out_axis)
            if bias is not None:
                bias_name = self.b.op("Gather", bias_name, index, scope=scope, axis=0)
        if in_gate is not None:
            weight_name = self.b.op(
                "Gather", weight_name, self.channel_index(in_gate, in_repeat), scope=scope, axis=in_axis
            )
        return weight_name, bias_name

    def first_channels(self, gate: GateSpec | None, channels: int, repeat: int) -> np.ndarray:
        """The first kept channels of each of the axis's `repeat` copies of the gate."""
        step = channels // repeat
        kept = self.kept_channels(gate, step)
        return np.concatenate([np.arange(kept) + r * step for r in range(repeat)])
