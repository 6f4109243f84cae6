"""A roofline of an ONNX graph on one `Device` (dynaprune_edge.cost.orin): the emulated
Orin milliseconds of every kernel TensorRT would run, per route through the graph's `If`
nodes (one route per exported sub-network).

Per kernel: time = max(operations / (peak rate × compute efficiency × SM utilisation),
bytes moved / (bandwidth × memory efficiency)) + the per-kernel overhead. Operations count
a multiply-add as 2 (the peak rates do too). Bytes are what the kernel reads from and
writes to memory: its inputs from other kernels, its weights, and its outputs; what stays
inside a fused kernel is never written. SM utilisation is wave quantisation of a
convolution/GEMM's output tiles over the SMs (a layer with fewer tiles than SMs leaves
SMs idle).

Fusions modelled (TensorRT's documented ones that dpedge graphs meet):
- a convolution or matrix product absorbs the pointwise ops that follow it (bias, folded
  BatchNorm, activation, a residual Add, the region mask's Mul) when it is their only
  consumer: "Convolution and ReLU / ElementWise" fusion;
- consecutive pointwise ops fuse into one kernel ("PointWise" fusion);
- shape-only ops (Reshape, Squeeze, Unsqueeze, Flatten, Identity, Shape, Constant) are no
  kernel at all: static shapes are resolved when the engine is built.
Everything else (Transpose, Concat, Slice, Gather, Resize, reductions, Expand, Pad, …) is
a kernel of its own on the CUDA cores, and so is a depthwise convolution (one input channel
per group: no matrix product for the tensor cores). An `If` costs `branch_overhead_us` and only the
taken branch runs (TensorRT's IIfConditional evaluated lazily: `GraphRoofline`).

What dpedge builds for TensorRT from a pruned graph is a split bundle (`BundleRoofline`): the
router engine, a host dispatch (`dispatch_overhead_us`), the branch engine; with a CUDA graph
per engine each kernel costs `cuda_graph_kernel_us` instead of `kernel_overhead_us`, plus
`cuda_graph_launch_us` per engine. `BundleRoofline.eager_ms` prices the single-`If` engine as
others measured TensorRT running it: every branch's layers, whichever is taken.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto

from dynaprune_edge.cost.orin import Device, constant
from dynaprune_edge.errors import ConfigError

EMULATOR_REVISION = 1
"""Bumped whenever the kernels or their prices change (fusions, constants): an orin-emu
cost table priced by an earlier revision is measured again."""

VIEWS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}  # their output is their input, viewed
FREE = VIEWS | {"Constant", "Shape", "Size"}  # no kernel: resolved when the engine is built
MATRIX = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
POINTWISE = {
    "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Exp", "Log", "Neg", "Abs", "Reciprocal", "Erf", "Tanh", "Sigmoid",
    "Relu", "LeakyRelu", "Elu", "Selu", "HardSigmoid", "HardSwish", "Softplus", "Clip", "Max", "Min", "Where", "Cast",
    "BatchNormalization", "Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Not", "And", "Or", "Floor", "Ceil",
}
READS_WHAT_IT_WRITES = {"Gather", "GatherElements", "GatherND", "Slice"}  # reads the part it copies, not its whole input
ELEMENT_BYTES = {TensorProto.INT64: 8, TensorProto.INT32: 4, TensorProto.BOOL: 1, TensorProto.INT8: 1, TensorProto.UINT8: 1}
FLOATS = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}


@dataclass(frozen=True)
class Tensor:
    shape: tuple[int, ...]
    elem_type: int

    @property
    def elements(self) -> int:
        return math.prod(self.shape)


@dataclass
class Kernel:
    """One GPU kernel: the nodes fused into it and its roofline terms (milliseconds)."""

    name: str  # its first node's name (scopes: router/…, compute/<layer>/…)
    ops: list[str]
    operations: float = 0.0
    bytes: float = 0.0
    utilisation: float = 1.0
    matrix: bool = False
    compute_ms: float = 0.0
    memory_ms: float = 0.0
    overhead_ms: float = 0.0
    nodes: list[str] = field(default_factory=list)

    @property
    def ms(self) -> float:
        return max(self.compute_ms, self.memory_ms) + self.overhead_ms

    @property
    def bound(self) -> str:
        if self.overhead_ms >= max(self.compute_ms, self.memory_ms):
            return "overhead"
        return "compute" if self.compute_ms >= self.memory_ms else "memory"

    def as_dict(self) -> dict:
        return {"name": self.name, "ops": self.ops, "operations": self.operations, "bytes": self.bytes, "utilisation": self.utilisation,
                "compute_ms": self.compute_ms, "memory_ms": self.memory_ms, "overhead_ms": self.overhead_ms, "ms": self.ms, "bound": self.bound}


def tensors(model: onnx.ModelProto) -> dict[str, Tensor]:
    """Shape and element type of every tensor in the model and its subgraphs (shape
    inference fills in the intermediate ones); a ConfigError for a dynamic dimension."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)  # folds Shape→Gather→Reshape chains
    found: dict[str, Tensor] = {}

    def visit(graph: onnx.GraphProto) -> None:
        for info in [*graph.input, *graph.output, *graph.value_info]:
            kind = info.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in kind.shape.dim)
            if -1 in dims:
                raise ConfigError(f"tensor {info.name} has a dynamic shape {dims}: the emulator needs static shapes (batch 1, as dpedge exports)")
            found[info.name] = Tensor(dims, kind.elem_type)
        for init in graph.initializer:
            found[init.name] = Tensor(tuple(init.dims), init.data_type)
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    visit(attribute.g)
                elif node.op_type == "Constant" and attribute.type == onnx.AttributeProto.TENSOR:
                    found[node.output[0]] = Tensor(tuple(attribute.t.dims), attribute.t.data_type)

    visit(inferred.graph)
    return found


def matrix_work(node: onnx.NodeProto, shapes: dict[str, Tensor]) -> tuple[float, int]:
    """(multiply-adds, output tiles) of a convolution or matrix product."""
    out = shapes[node.output[0]].shape
    tile = int(constant("gemm_tile"))
    if node.op_type in ("Conv", "ConvTranspose"):
        weight = shapes[node.input[1]].shape
        source = out if node.op_type == "Conv" else shapes[node.input[0]].shape
        macs = math.prod(source) * math.prod(weight[1:])  # Conv: per output; ConvTranspose: per input
        rows, columns = out[0] * math.prod(out[2:]), out[1]
        return float(macs), math.ceil(rows / tile) * math.ceil(columns / tile)
    a = shapes[node.input[0]].shape
    inner = a[-2] if node.op_type == "Gemm" and any(att.name == "transA" and att.i for att in node.attribute) else a[-1]
    rows, columns = (out[-2] if len(out) > 1 else 1), out[-1]
    batch = math.prod(out[:-2]) if len(out) > 2 else 1
    return float(math.prod(out) * inner), batch * math.ceil(rows / tile) * math.ceil(columns / tile)


ROUTER_SWITCH = "router/budget"
"""Scope of the `If` by which a width-routed graph runs its widest level alone at budget 1
(its then branch) and the router and the branch it picks below (its else branch)."""


class GraphRoofline:
    """The kernels of every route through `model`, priced on `device`."""

    def __init__(self, model: onnx.ModelProto, device: Device) -> None:
        self.device = device
        self.shapes = tensors(model)
        self.routes = self._routes(model.graph)

    def route_ms(self) -> list[float]:
        return [sum(k.ms for k in route) for route in self.routes]

    def _bytes(self, name: str, matrix: bool) -> float:
        tensor = self.shapes.get(name)
        if tensor is None:
            return 0.0
        size = self.device.activation_bytes(matrix) if tensor.elem_type in FLOATS else ELEMENT_BYTES.get(tensor.elem_type, 4)
        return float(tensor.elements * size)

    def _routes(self, graph: onnx.GraphProto) -> list[list[Kernel]]:
        """One kernel list per route: this graph's kernels, then (where it has an `If`) those
        of each route through the then branch, then of each through the else branch: the
        order of dpedge's branch chain, so route i is the sub-network of bucket i."""
        kernels = self._kernels(graph)
        branches = [node for node in graph.node if node.op_type == "If"]
        if not branches:
            return [kernels]
        if len(branches) > 1:
            raise ConfigError(f"graph {graph.name} has {len(branches)} If nodes at one level: the emulator follows dpedge's chain of one If per level")
        (node,) = branches
        overhead = Kernel(node.name, ["If"], overhead_ms=constant("branch_overhead_us") / 1e3, nodes=[node.name])
        bodies = {attribute.name: attribute.g for attribute in node.attribute}
        # a width-routed graph's budget switch: priced as below budget 1, the router run
        parts = ("else_branch",) if node.name.startswith(ROUTER_SWITCH) else ("then_branch", "else_branch")
        return [kernels + [overhead] + route for part in parts for route in self._routes(bodies[part])]

    def _kernels(self, graph: onnx.GraphProto) -> list[Kernel]:
        """This graph level's kernels (not its branches'), fused as the module doc says."""
        alias = {node.output[0]: node.input[0] for node in graph.node if node.op_type in VIEWS}

        def root(name: str) -> str:
            while name in alias:
                name = alias[name]
            return name

        users: dict[str, list[str]] = {}  # tensor (root) → names of the nodes at this level reading it
        external: set[str] = {root(output.name) for output in graph.output}  # read beyond this level
        for node in graph.node:
            if node.op_type in FREE:
                continue
            for name in node.input:
                if name:
                    users.setdefault(root(name), []).append(node.name)
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    external.update(root(name) for inner in walk(attribute.g) for name in inner.input)
        owner: dict[str, Kernel] = {}  # tensor → the kernel that made it
        kernels: list[Kernel] = []
        reads: dict[int, set[str]] = {}
        after: dict[int, set[int]] = {}  # id(kernel) → ids of the kernels it waits for
        for node in graph.node:
            if node.op_type == "If" or node.op_type in FREE:
                continue
            sources = {id(owner[root(name)]): owner[root(name)] for name in node.input if name and root(name) in owner}
            kernel = None
            if node.op_type in POINTWISE:
                for candidate in sources.values():  # join a conv/pointwise producer none of the other inputs waits for
                    fusible = candidate.matrix or set(candidate.ops) <= POINTWISE
                    if fusible and not any(id(candidate) in after[i] for i in sources if i != id(candidate)):
                        kernel = candidate
                        break
            if kernel is None:
                kernel = Kernel(node.name, [], matrix=node.op_type in MATRIX and not self._depthwise(node))
                kernels.append(kernel)
                reads[id(kernel)], after[id(kernel)] = set(), set()
            for i in sources:
                if i != id(kernel):
                    after[id(kernel)] |= {i} | after[i]
            kernel.ops.append(node.op_type)
            kernel.nodes.append(node.name)
            operations, tiles = self._work(node)
            kernel.operations += operations
            if tiles:
                waves = math.ceil(tiles / self.device.sms)
                kernel.utilisation = tiles / (waves * self.device.sms)
            for position, name in enumerate(node.input):
                if name and owner.get(root(name)) is not kernel:
                    part = node.op_type in READS_WHAT_IT_WRITES and position == 0  # it reads what it copies
                    reads[id(kernel)].add(node.output[0] if part else root(name))
            for name in node.output:
                owner[name] = kernel
        for kernel in kernels:
            members = set(kernel.nodes)
            written = [name for name, made in owner.items() if made is kernel and (name in external or not set(users.get(name, [])) <= members)]
            kernel.bytes = sum(self._bytes(name, kernel.matrix) for name in [*reads[id(kernel)], *written])
            self._price(kernel)
        return kernels

    def _depthwise(self, node: onnx.NodeProto) -> bool:
        """A convolution with one input channel per group: TensorRT runs it on the CUDA
        cores (there is no matrix product for the tensor cores to take)."""
        return node.op_type == "Conv" and len(node.input) > 1 and self.shapes[node.input[1]].shape[1] == 1 and any(
            a.name == "group" and a.i > 1 for a in node.attribute)

    def _work(self, node: onnx.NodeProto) -> tuple[float, int]:
        """(operations, output tiles or 0) of one node."""
        if node.op_type in MATRIX:
            macs, tiles = matrix_work(node, self.shapes)
            return 2 * macs, 0 if self._depthwise(node) else tiles
        out = self.shapes.get(node.output[0])
        first = self.shapes.get(node.input[0]) if node.input and node.input[0] else None
        elements = max(out.elements if out else 0, first.elements if first and node.op_type not in READS_WHAT_IT_WRITES else 0)
        return float(elements), 0

    def _price(self, kernel: Kernel) -> None:
        device = self.device
        rate = device.matrix_ops_per_second() if kernel.matrix else device.vector_ops_per_second()
        kernel.compute_ms = kernel.operations / (rate * constant("compute_efficiency") * kernel.utilisation) * 1e3
        kernel.memory_ms = kernel.bytes / (device.bytes_per_second() * constant("memory_efficiency")) * 1e3
        kernel.overhead_ms = constant("kernel_overhead_us") / 1e3


class BundleRoofline:
    """The split bundle of a pruned graph priced on `device`, from its router graph and
    branch graphs (runtime/split.py cuts them): per branch (`routes`, as GraphRoofline's),
    the router engine's kernels, the host dispatch, the branch engine's kernels."""

    def __init__(self, router: onnx.ModelProto, branches: list[onnx.ModelProto], device: Device) -> None:
        self.router = GraphRoofline(router, device).routes[0]
        self.branches = [GraphRoofline(graph, device).routes[0] for graph in branches]
        dispatch = Kernel("host dispatch", ["dispatch"], overhead_ms=constant("dispatch_overhead_us") / 1e3)
        self.routes = [[*self.router, dispatch, *branch] for branch in self.branches]

    @staticmethod
    def engine_ms(kernels: list[Kernel], cuda_graph: bool) -> float:
        """One engine's kernels, launched one by one or as one captured CUDA graph."""
        if not cuda_graph:
            return sum(k.ms for k in kernels)
        return sum(max(k.compute_ms, k.memory_ms) + constant("cuda_graph_kernel_us") / 1e3 for k in kernels) + constant("cuda_graph_launch_us") / 1e3

    def route_ms(self, cuda_graph: bool = False) -> list[float]:
        """Per branch: the router engine, the host dispatch, the branch engine."""
        router = self.engine_ms(self.router, cuda_graph) + constant("dispatch_overhead_us") / 1e3
        return [router + self.engine_ms(branch, cuda_graph) for branch in self.branches]

    def eager_ms(self) -> float:
        """The single-If engine if TensorRT runs every branch's layers (NVIDIA/TensorRT#4402):
        the router, every branch and one If overhead per link of the chain, for any sample."""
        links = len(self.branches) - 1
        return sum(k.ms for k in self.router) + sum(k.ms for branch in self.branches for k in branch) + links * constant("branch_overhead_us") / 1e3


def walk(graph: onnx.GraphProto):
    """Every node of `graph` and of the subgraphs nested in it."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from walk(attribute.g)


def route_ms(model: onnx.ModelProto, device: Device) -> np.ndarray:
    """Emulated milliseconds of each route (bucket) of an exported graph."""
    return np.asarray(GraphRoofline(model, device).route_ms())
