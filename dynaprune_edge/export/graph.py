"""A small ONNX graph builder: nodes by op name, constants as initializers, and `If`
branches as child builders that own their own initializers (onnxruntime keeps its fast
convolution path only for weights that are initializers of the graph the node is in:
docs/design.md, "Export"); and `Feature`, a tensor of the graph with its static shape."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


@dataclass(frozen=True)
class Feature:
    """A tensor of the graph with its static shape. Per-frame maps hold `frames` frames
    (T, C, H, W); tiled ones are (tiles·frames, C, tile, tile), tile-major; tokens are
    (tokens, features)."""

    name: str
    shape: tuple[int, ...]
    frames: int = 1
    tiled: bool = False

    @property
    def channels(self) -> int:
        return self.shape[1]

    @property
    def positions(self) -> int:
        """Output positions it holds, over all its rows (tiles, frames or tokens)."""
        return int(np.prod(self.shape)) // self.channels


class GraphBuilder:
    FLOAT = TensorProto.FLOAT
    INT64 = TensorProto.INT64

    def __init__(self, name: str, counter: itertools.count | None = None, opset: int = OPSET) -> None:
        self.name = name
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counter = counter or itertools.count()  # shared with branches: names stay unique
        self._constants: dict[tuple, str] = {}

    def fresh(self, hint: str) -> str:
        return f"{hint}_{next(self._counter)}"

    def const(self, value, hint: str = "const", dtype=None) -> str:
        """An initializer of this graph; equal constants are stored once."""
        array = np.asarray(value, dtype=dtype)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        key = (array.dtype.str, array.shape, hashlib.sha1(np.ascontiguousarray(array).tobytes()).hexdigest())
        if key not in self._constants:
            name = self.fresh(hint)
            self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
            self._constants[key] = name
        return self._constants[key]

    def op(self, op_type: str, *inputs: str, scope: str, outputs: int = 1, **attributes):
        """Add a node named `scope/op_type_N`; returns its output name (or names)."""
        name = self.fresh(f"{scope}/{op_type}")
        names = [f"{name}:{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), names, name=name, **attributes))
        return names[0] if outputs == 1 else names

    def identity(self, source: str, name: str, scope: str = "output") -> str:
        """`source` under a fixed `name` (a graph output, or a tensor a tool looks up)."""
        self.nodes.append(helper.make_node("Identity", [source], [name], name=f"{scope}/{name}"))
        return name

    def branch(self, name: str) -> GraphBuilder:
        return GraphBuilder(name, self._counter, self.opset)

    def conv(self, x: str, weight: str, bias: str | None, conv, scope: str, group: int = 1) -> str:
        """Conv with the kernel, stride, padding and dilation of `conv` (an nn.Conv2d);
        `group`: its groups as computed (a depthwise conv's kept channels)."""
        inputs = (x, weight) if bias is None else (x, weight, bias)
        return self.op(
            "Conv",
            *inputs,
            scope=scope,
            kernel_shape=list(conv.kernel_size),
            strides=list(conv.stride),
            pads=list(conv.padding) * 2,
            **({"dilations": list(conv.dilation)} if conv.dilation != (1, 1) else {}),
            **({"group": group} if group > 1 else {}),
        )

    def upsample(self, x: str, factor: int, mode: str, scope: str) -> str:
        """Resize by a whole factor as torch's F.interpolate(scale_factor=factor) in `mode`
        (`Interpreter.upsample`'s): nearest, or bilinear with or without aligned corners."""
        how = (
            {"mode": "nearest", "nearest_mode": "floor", "coordinate_transformation_mode": "asymmetric"}
            if mode == "nearest"
            else {
                "mode": "linear",
                "coordinate_transformation_mode": "align_corners"
                if mode == "bilinear-corners"
                else "pytorch_half_pixel",
            }
        )
        return self.op("Resize", x, "", self.const(np.array([1, 1, factor, factor], np.float32)), scope=scope, **how)

    def reduce(self, op_type: str, x: str, axis: int, scope: str) -> str:
        """ReduceMean, ReduceMax…  over one axis, keeping it (their axes became an input at
        opset 18)."""
        if self.opset < 18:
            return self.op(op_type, x, scope=scope, axes=[axis], keepdims=1)
        return self.op(op_type, x, self.const([axis]), scope=scope, keepdims=1)

    def subgraph(self, outputs: list[str], types: list[onnx.ValueInfoProto]) -> onnx.GraphProto:
        """This builder as an `If` branch whose outputs `outputs` have the given types."""
        values = []
        for name, info in zip(outputs, types):
            value = onnx.ValueInfoProto()
            value.CopyFrom(info)
            value.name = name
            values.append(value)
        return helper.make_graph(self.nodes, self.name, [], values, self.initializers)

    def if_else(
        self,
        condition: str,
        then: tuple[GraphBuilder, list[str]],
        other: tuple[GraphBuilder, list[str]],
        types: list[onnx.ValueInfoProto],
        scope: str,
    ):
        """Outputs of `then` where the 0-D bool `condition` holds, else of `other`."""
        return self.op(
            "If",
            condition,
            scope=scope,
            outputs=len(types),
            then_branch=then[0].subgraph(then[1], types),
            else_branch=other[0].subgraph(other[1], types),
        )

    def model(self, inputs: list[onnx.ValueInfoProto], outputs: list[onnx.ValueInfoProto], doc: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="dpedge")
        model.doc_string = doc
        return model


def tensor_info(name: str, shape: list[int], dtype=np.float32) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(np.dtype(dtype)), shape)
