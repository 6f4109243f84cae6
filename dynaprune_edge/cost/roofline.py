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
- multi-head attention, Q·Kᵀ (MatMul of two activations) → optional scale and mask
  (Mul/Div/Add/Where/Cast) → Softmax → MatMul with V, is one kernel that never writes the
  score matrix (TensorRT ≥ 8.6's MHA fusion, `_gemm_mha_v2`/flash attention; TensorRT
  Developer Guide, "Multi-Head Attention Fusion"; docs "Fused Attention", method 2). Only
  where its documented restrictions hold: the two batched products in FP16 (an implicitly
  calibrated `--int8` engine, as dpedge builds, does not fuse: NVIDIA/TensorRT#4167 on an
  Orin; fp32/TF32 is not a supported input type), head size 16–256 and a multiple of 8; in
  INT8 only with Q/DQ placed as the guide says (`explicit_int8`: NVIDIA's MLPerf engines),
  head size 16, 32 or 64 and at most 512 tokens. Q·Kᵀ and V must have the same head size
  (the documented shapes; assumed strict). The scores must be read by nothing else;
- the Transpose and Split ops whose outputs only the fused attention reads (the head
  split of a packed QKV projection) and the Transpose that only re-merges its heads are no
  kernel: the fused kernel reads and writes those layouts itself (assumed; NVIDIA's BERT
  QKVToContext plugin reads the packed QKV GEMM output directly);
- LayerNorm, as LayerNormalization or as its primitive ops (ReduceMean, Sub, Pow,
  ReduceMean, Add, Sqrt, Div, then the scale Mul and shift Add), is one kernel: TensorRT ≥
  8.6 imports the first as one INormalizationLayer and recognises the second as layernorm
  (NVIDIA/TensorRT#2781, #3692); that either runs as one kernel is assumed;
- GELU (Div, Erf, Add, Mul, Mul) and a bias are pointwise, so they fuse into the matrix
  product before them by the first rule (NVIDIA/TensorRT#1240: "matched in pointwise
  fusion, and then it is fused into conv").
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

EMULATOR_REVISION = 2
"""Bumped whenever the kernels or their prices change (fusions, constants): an orin-emu
cost table priced by an earlier revision is measured again."""

VIEWS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout"}  # their output is their input, viewed
FREE = VIEWS | {"Constant", "Shape", "Size"}  # no kernel: resolved when the engine is built
MATRIX = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
POINTWISE = {
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Sqrt",
    "Exp",
    "Log",
    "Neg",
    "Abs",
    "Reciprocal",
    "Erf",
    "Tanh",
    "Sigmoid",
    "Relu",
    "LeakyRelu",
    "Elu",
    "Selu",
    "HardSigmoid",
    "HardSwish",
    "Softplus",
    "Clip",
    "Max",
    "Min",
    "Where",
    "Cast",
    "BatchNormalization",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "Not",
    "And",
    "Or",
    "Floor",
    "Ceil",
}
READS_WHAT_IT_WRITES = {
    "Gather",
    "GatherElements",
    "GatherND",
    "Slice",
}  # reads the part it copies, not its whole input
SCORE_OPS = {"Mul", "Div", "Add", "Where", "Cast"}  # scale and mask between Q·Kᵀ and the Softmax
LAYOUT = {"Transpose", "Split"}  # folded into a fused attention kernel's reads and writes where only it reads them
ELEMENT_BYTES = {
    TensorProto.INT64: 8,
    TensorProto.INT32: 4,
    TensorProto.BOOL: 1,
    TensorProto.INT8: 1,
    TensorProto.UINT8: 1,
}
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
    sealed: bool = False  # a pattern TensorRT fuses whole (attention, LayerNorm): nothing else joins it
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
        return {
            "name": self.name,
            "ops": self.ops,
            "operations": self.operations,
            "bytes": self.bytes,
            "utilisation": self.utilisation,
            "compute_ms": self.compute_ms,
            "memory_ms": self.memory_ms,
            "overhead_ms": self.overhead_ms,
            "ms": self.ms,
            "bound": self.bound,
        }


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
                raise ConfigError(
                    f"tensor {info.name} has a dynamic shape {dims}: the emulator needs static shapes (batch 1, as dpedge exports)"
                )
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


@dataclass
class Fusion:
    """Nodes of one graph level that TensorRT runs as one kernel (`members`, by name), and the
    layout nodes it folds into that kernel's reads and writes (`folded`: no kernel)."""

    kind: str  # "attention" or "layernorm"
    members: list[str]
    folded: set[str] = field(default_factory=set)
    tiles: int = 0  # attention: one thread block per head and 64 query rows (flash attention's grid)


class Patterns:
    """The attention and LayerNorm patterns of one graph level (the module doc's rules)."""

    def __init__(self, graph: onnx.GraphProto, shapes: dict[str, Tensor], constants: set[str], fuses_attention) -> None:
        self.shapes, self.constants, self.fuses_attention = shapes, constants, fuses_attention
        self.producer = {out: node for node in graph.node for out in node.output if out}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.external = {output.name for output in graph.output}
        for node in graph.node:
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    self.external.update(name for inner in walk(attribute.g) for name in inner.input)
        self.fusions: list[Fusion] = []
        for node in graph.node:
            if node.op_type == "Softmax":
                self._add(self._attention(node))
            elif node.op_type == "ReduceMean":
                self._add(self._layernorm(node))

    def _add(self, fusion: Fusion | None) -> None:
        taken = {name for f in self.fusions for name in [*f.members, *f.folded]}
        if fusion is not None and all(fusion.members) and not taken & {*fusion.members, *fusion.folded}:
            self.fusions.append(fusion)

    def through(self, name: str) -> str:
        """The tensor `name` views (Reshape, Squeeze, …: the same data)."""
        while name in self.producer and self.producer[name].op_type in VIEWS:
            name = self.producer[name].input[0]
        return name

    def users(self, name: str) -> list[onnx.NodeProto | None]:
        """The nodes reading `name`, through views; None for a read beyond this level."""
        found: list[onnx.NodeProto | None] = [None] if name in self.external else []
        for node in self.consumers.get(name, []):
            found += self.users(node.output[0]) if node.op_type in VIEWS else [node]
        return found

    def shape(self, name: str) -> tuple[int, ...]:
        tensor = self.shapes.get(name)
        return tensor.shape if tensor is not None else ()

    def _only_reader(self, name: str, node: onnx.NodeProto) -> bool:
        readers = self.users(name)
        return len(readers) == 1 and readers[0] is node

    def _attention(self, softmax: onnx.NodeProto) -> Fusion | None:
        path, reader, name = [softmax], softmax, self.through(softmax.input[0])
        while True:  # up from the Softmax to Q·Kᵀ: every score tensor read once, by the next op
            node = self.producer.get(name)
            if node is None or not self._only_reader(name, reader):
                return None
            if node.op_type == "MatMul":
                first = node
                break
            if node.op_type not in SCORE_OPS | {"Transpose"}:
                return None
            scores = [
                i for i in node.input if i and i not in self.constants and self.shape(i) == self.shape(node.output[0])
            ]
            on_path = [
                i
                for i in scores
                if getattr(self.producer.get(self.through(i)), "op_type", None) in SCORE_OPS | {"MatMul", "Transpose"}
            ]
            scores = on_path or scores  # a full-size mask is the other operand
            if not scores:
                return None
            path.append(node)
            reader, name = node, self.through(scores[-1] if node.op_type == "Where" else scores[0])
        if any(not i or self.through(i) in self.constants for i in first.input):
            return None  # a product with weights: a projection, not Q·Kᵀ
        name = softmax.output[0]
        while True:  # down from the Softmax to the product with V
            readers = self.users(name)
            if len(readers) != 1 or readers[0] is None:
                return None
            node = readers[0]
            if node.op_type == "MatMul":
                second = node
                break
            if node.op_type not in ("Transpose", "Cast"):
                return None
            path.append(node)
            name = node.output[0]
        side = [i for i, operand in enumerate(second.input) if self.through(operand) == name]
        if len(side) != 1 or self.through(second.input[1 - side[0]]) in self.constants:
            return None
        values = self.shape(second.input[1 - side[0]])
        scores = self.shape(first.output[0])
        if len(values) < 2 or len(scores) < 2:
            return None
        head, value_head = self.shape(first.input[0])[-1], values[-1] if side[0] == 0 else values[-2]
        if not self.fuses_attention(head, value_head, max(scores[-2:])):
            return None
        fusion = Fusion(
            "attention",
            [first.name, *(n.name for n in path), second.name],
            tiles=math.prod(scores[:-2]) * math.ceil(scores[-2] / constant("gemm_tile")),
        )
        inside = set(fusion.members)
        ports = [first.input[0], first.input[1], second.input[1 - side[0]]]
        changed = True
        while changed:  # the layout ops only the attention reads: folded into its reads
            changed = False
            for port in list(ports):
                node = self.producer.get(self.through(port))
                if node is None or node.op_type not in LAYOUT or node.name in fusion.folded or not node.name:
                    continue
                if all(
                    u is not None and u.name in inside | fusion.folded
                    for out in node.output
                    if out
                    for u in self.users(out)
                ):
                    fusion.folded.add(node.name)
                    ports.append(node.input[0])
                    changed = True
        name = second.output[0]
        while True:  # the Transposes that only re-merge its heads: folded into its write
            readers = self.users(name)
            if len(readers) != 1 or readers[0] is None or readers[0].op_type != "Transpose" or not readers[0].name:
                break
            fusion.folded.add(readers[0].name)
            name = readers[0].output[0]
        return fusion

    def _layernorm(self, mean: onnx.NodeProto) -> Fusion | None:
        """mean(x) → x − mean → (·)² → mean → + eps → sqrt → (x − mean) / ·, then × γ and + β."""

        def single(name: str, *ops: str) -> onnx.NodeProto | None:
            readers = self.users(name)
            return readers[0] if len(readers) == 1 and readers[0] is not None and readers[0].op_type in ops else None

        source = self.through(mean.input[0])
        centre = single(mean.output[0], "Sub")
        if centre is None or [self.through(i) for i in centre.input] != [source, self.through(mean.output[0])]:
            return None
        readers = self.users(centre.output[0])
        square = next(
            (
                n
                for n in readers
                if n is not None and (n.op_type == "Pow" or (n.op_type == "Mul" and n.input[0] == n.input[1]))
            ),
            None,
        )
        if square is None:
            return None
        variance = single(square.output[0], "ReduceMean")
        epsilon = variance and single(variance.output[0], "Add")
        root = epsilon and single(epsilon.output[0], "Sqrt")
        divide = root and single(root.output[0], "Div")
        if divide is None or [n.name if n is not None else None for n in readers if n is not square] != [divide.name]:
            return None
        members, name = [mean, centre, square, variance, epsilon, root, divide], divide.output[0]
        while (affine := single(name, "Mul", "Add")) is not None and any(
            self.through(i) in self.constants for i in affine.input
        ):
            members.append(affine)
            name = affine.output[0]
        return Fusion("layernorm", [n.name for n in members])


ROUTER_SWITCH = "router/budget"
"""Scope of the `If` by which a width-routed graph runs its widest level alone at budget 1
(its then branch) and the router and the branch it picks below (its else branch)."""


class GraphRoofline:
    """The kernels of every route through `model`, priced on `device`. `explicit_int8`: an
    int8 engine built from Q/DQ nodes placed as TensorRT's int8 attention fusion needs them
    (NVIDIA's MLPerf engines), not calibrated implicitly as dpedge builds its int8 engines."""

    def __init__(self, model: onnx.ModelProto, device: Device, explicit_int8: bool = False) -> None:
        self.device = device
        self.explicit_int8 = explicit_int8
        self.shapes = tensors(model)
        self.constants = constant_names(model.graph)
        self.routes = self._routes(model.graph)

    def fuses_attention(self, head: int, value_head: int, tokens: int) -> bool:
        """Whether TensorRT fuses an attention of this head size and sequence length on this
        device (the module doc's restrictions)."""
        if head != value_head:
            return False
        if self.device.precision == "fp16":
            return 16 <= head <= 256 and head % 8 == 0
        return self.device.precision == "int8" and self.explicit_int8 and head in (16, 32, 64) and tokens <= 512

    def route_ms(self) -> list[float]:
        return [sum(k.ms for k in route) for route in self.routes]

    def _bytes(self, name: str, matrix: bool) -> float:
        tensor = self.shapes.get(name)
        if tensor is None:
            return 0.0
        size = (
            self.device.activation_bytes(matrix)
            if tensor.elem_type in FLOATS
            else ELEMENT_BYTES.get(tensor.elem_type, 4)
        )
        return float(tensor.elements * size)

    def _routes(self, graph: onnx.GraphProto) -> list[list[Kernel]]:
        """One kernel list per route: this graph's kernels, then (where it has an `If`) those
        of each route through the then branch, then of each through the else branch: the
        order of dpedge's branch chain, so route i is the sub-network of branch i."""
        kernels = self._kernels(graph)
        branches = [node for node in graph.node if node.op_type == "If"]
        if not branches:
            return [kernels]
        if len(branches) > 1:
            raise ConfigError(
                f"graph {graph.name} has {len(branches)} If nodes at one level: the emulator follows dpedge's chain of one If per level"
            )
        (node,) = branches
        overhead = Kernel(node.name, ["If"], overhead_ms=constant("branch_overhead_us") / 1e3, nodes=[node.name])
        bodies = {attribute.name: attribute.g for attribute in node.attribute}
        # a width-routed graph's budget switch: priced as below budget 1, the router run
        parts = ("else_branch",) if node.name.startswith(ROUTER_SWITCH) else ("then_branch", "else_branch")
        return [kernels + [overhead] + route for part in parts for route in self._routes(bodies[part])]

    def _kernels(self, graph: onnx.GraphProto) -> list[Kernel]:
        """This graph level's kernels (not its branches'), fused as the module doc says."""
        fusions = Patterns(graph, self.shapes, self.constants, self.fuses_attention).fusions
        fused = {name: fusion for fusion in fusions for name in fusion.members}
        folded = {name for fusion in fusions for name in fusion.folded}
        alias = {node.output[0]: node.input[0] for node in graph.node if node.op_type in VIEWS}
        alias |= {out: node.input[0] for node in graph.node if node.name in folded for out in node.output if out}

        def root(name: str) -> str:
            while name in alias:
                name = alias[name]
            return name

        users: dict[str, list[str]] = {}  # tensor (root) → names of the nodes at this level reading it
        external: set[str] = {root(output.name) for output in graph.output}  # read beyond this level
        for node in graph.node:
            if node.op_type in FREE or node.name in folded:
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
        grouped: dict[int, Kernel] = {}  # id(fusion) → its kernel
        for node in graph.node:
            if node.op_type == "If" or node.op_type in FREE or node.name in folded:
                continue
            sources = {id(owner[root(name)]): owner[root(name)] for name in node.input if name and root(name) in owner}
            kernel, fusion = None, fused.get(node.name)
            if fusion is not None:
                kernel = grouped.get(id(fusion))
                if kernel is None:
                    kernel = grouped[id(fusion)] = Kernel(node.name, [], matrix=fusion.kind == "attention", sealed=True)
                    if fusion.tiles:
                        kernel.utilisation = fusion.tiles / (
                            math.ceil(fusion.tiles / self.device.sms) * self.device.sms
                        )
                    kernels.append(kernel)
                    reads[id(kernel)], after[id(kernel)] = set(), set()
            elif node.op_type in POINTWISE:
                for candidate in sources.values():  # join a conv/pointwise producer none of the other inputs waits for
                    fusible = (candidate.matrix or set(candidate.ops) <= POINTWISE) and not candidate.sealed
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
            if fusion is not None and fusion.kind == "attention":  # the softmax hides under the two products (assumed)
                operations, tiles = (operations if node.op_type in MATRIX else 0.0), 0
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
            written = [
                name
                for name, made in owner.items()
                if made is kernel and (name in external or not set(users.get(name, [])) <= members)
            ]
            kernel.bytes = sum(self._bytes(name, kernel.matrix) for name in [*reads[id(kernel)], *written])
            self._price(kernel)
        return kernels

    def _depthwise(self, node: onnx.NodeProto) -> bool:
        """A convolution with one input channel per group: TensorRT runs it on the CUDA
        cores (there is no matrix product for the tensor cores to take)."""
        return (
            node.op_type == "Conv"
            and len(node.input) > 1
            and self.shapes[node.input[1]].shape[1] == 1
            and any(a.name == "group" and a.i > 1 for a in node.attribute)
        )

    def _work(self, node: onnx.NodeProto) -> tuple[float, int]:
        """(operations, output tiles or 0) of one node."""
        if node.op_type in MATRIX:
            macs, tiles = matrix_work(node, self.shapes)
            return 2 * macs, 0 if self._depthwise(node) else tiles
        out = self.shapes.get(node.output[0])
        first = self.shapes.get(node.input[0]) if node.input and node.input[0] else None
        elements = max(
            out.elements if out else 0, first.elements if first and node.op_type not in READS_WHAT_IT_WRITES else 0
        )
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
        return (
            sum(max(k.compute_ms, k.memory_ms) + constant("cuda_graph_kernel_us") / 1e3 for k in kernels)
            + constant("cuda_graph_launch_us") / 1e3
        )

    def route_ms(self, cuda_graph: bool = False) -> list[float]:
        """Per branch: the router engine, the host dispatch, the branch engine."""
        router = self.engine_ms(self.router, cuda_graph) + constant("dispatch_overhead_us") / 1e3
        return [router + self.engine_ms(branch, cuda_graph) for branch in self.branches]

    def eager_ms(self) -> float:
        """The single-If engine if TensorRT runs every branch's layers (NVIDIA/TensorRT#4402):
        the router, every branch and one If overhead per link of the chain, for any sample."""
        links = len(self.branches) - 1
        return (
            sum(k.ms for k in self.router)
            + sum(k.ms for branch in self.branches for k in branch)
            + links * constant("branch_overhead_us") / 1e3
        )


def constant_names(graph: onnx.GraphProto) -> set[str]:
    """Initializers and Constant outputs of `graph` and of the subgraphs nested in it."""
    found = {init.name for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            found.update(node.output)
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                found |= constant_names(attribute.g)
    return found


def walk(graph: onnx.GraphProto):
    """Every node of `graph` and of the subgraphs nested in it."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from walk(attribute.g)


def route_ms(model: onnx.ModelProto, device: Device) -> np.ndarray:
    """Emulated milliseconds of each route (branch) of an exported graph."""
    return np.asarray(GraphRoofline(model, device).route_ms())
