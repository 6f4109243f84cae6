"""A plain torch.nn.Module forecaster, as users write them, made a dpedge backbone by
tracing it (torch.fx): each convolution, with the BatchNorm and activation after it,
becomes a gated convolution holding the user's weights, and the traced graph becomes the
backbone's `program`, which both interpreters (training, export) run.

What converts today: reshapes between frames, channels and the forecast (the frames into
the batch for a per-frame encoder, stacked as channels for a translator, cut back out of
channels, and the last maps into the forecast), convolutions with a square kernel padded
so that their output is their input's size over the stride (any stride and dilation, groups 1
or depthwise), each optionally after a nearest upsampling by a whole factor and before a
BatchNorm2d, GroupNorm or LayerNorm over the map and an activation of
`layers.conv.ACTIVATIONS`, transposed convolutions whose kernel is their stride, residual
adds, channel concatenations, poolings whose window is their stride, nearest and bilinear
upsamplings by a whole factor, and pixel (un)shuffles; and for recurrent models one input frame (x[:, t]), zero states, elementwise arithmetic,
sigmoid, tanh and relu, chunks of channels and a stack of frames into the forecast:
SimVP-style networks, encoder-decoders, U-Nets, MobileNet blocks and ConvGRU/ConvLSTM
cells included (loops over frames unroll in the trace). Anything else is refused in one
line naming the module path and the operation.

Which filters are pruned: a convolution's output is a prunable unit (a gate named by its
module path) unless a residual add, a concatenation, a pixel shuffle, an elementwise
operation or a split into chunks reads it, frames are cut out of its channels, or it gives
the forecast: those keep their full width. A module called several times (at each step
of a recurrence) is one converted layer.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import inspect
import math
import operator
import re
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch import fx, nn
from torch.nn import functional as F

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.layers import GatedConv2d, Interpreter
from dynaprune_edge.layers.conv import ACTIVATIONS, MAP_NORMS, MaskedBatchNorm2d, norm_channels, norm_groups
from dynaprune_edge.models.base import Backbone, ForecastShape

SHAPE_ARGUMENTS = ("frames_in", "frames_out", "channels", "height", "width")
"""Keyword arguments of the user's __init__ that dpedge fills from the data's shape."""
SUPPORTED = (
    "Conv2d (square kernel, any stride and dilation, padded to its input's size over the stride, groups 1 or depthwise), ConvTranspose2d (kernel = stride, no padding), nearest and "
    "bilinear upsampling by a whole scale_factor, BatchNorm2d, GroupNorm and LayerNorm over (C, H, W) after a Conv2d, "
    "ReLU, SiLU, GELU, LeakyReLU, Tanh, residual adds, channel concatenations, max and average pooling (window = stride), "
    "PixelShuffle and PixelUnshuffle, reshapes between frames, channels and the forecast (frames into the batch or "
    "into channels, and back), and for recurrent cells: x[:, t], zero states, elementwise +, -, * of values of one shape or "
    "with a number, sigmoid, tanh, relu, chunk and split along channels, torch.stack of the forecast frames along dim 1"
)
FUNCTIONAL_ACTIVATIONS = {
    F.relu: nn.ReLU,
    torch.relu: nn.ReLU,
    F.silu: nn.SiLU,
    F.gelu: nn.GELU,
    torch.tanh: nn.Tanh,
    F.leaky_relu: nn.LeakyReLU,
}
ADDS = {operator.add, torch.add}
POOLS = {nn.MaxPool2d: "max", nn.AvgPool2d: "average", F.max_pool2d: "max", F.avg_pool2d: "average"}
SHUFFLES = {
    nn.PixelShuffle: "depth_to_space",
    nn.PixelUnshuffle: "space_to_depth",
    F.pixel_shuffle: "depth_to_space",
    F.pixel_unshuffle: "space_to_depth",
}
CONCATS = {torch.cat, torch.concat}
RESHAPES = {"reshape", "view", "flatten", "unflatten"}
UNARY = {
    torch.sigmoid: "sigmoid",
    F.sigmoid: "sigmoid",
    torch.tanh: "tanh",
    F.tanh: "tanh",
    torch.relu: "relu",
    F.relu: "relu",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.ReLU: "relu",
    "sigmoid": "sigmoid",
    "tanh": "tanh",
    "relu": "relu",
}
"""Elementwise functions, modules and tensor methods not absorbed by a convolution (a
recurrent cell's gates and state), by `Interpreter.pointwise` operation."""
BINARY = {
    operator.add: "add",
    torch.add: "add",
    operator.sub: "sub",
    torch.sub: "sub",
    operator.mul: "mul",
    torch.mul: "mul",
    "add": "add",
    "sub": "sub",
    "mul": "mul",
}
CHUNKS = {torch.chunk: "chunk", torch.split: "split", "chunk": "chunk", "split": "split"}
ZEROS = {torch.zeros, torch.zeros_like, "new_zeros"}
STACKS = {torch.stack}


@dataclass(frozen=True)
class Block:
    """A convolution and what it absorbs: the nearest upsampling before it (`upsample`,
    reading `source`), the BatchNorm, GroupNorm or LayerNorm and the activation after it
    (ending at `end`)."""

    source: fx.Node
    end: fx.Node
    norm: nn.Module | None
    activation: nn.Module | None
    upsample: int = 1
    upsampled_by: fx.Node | None = None


@dataclass(frozen=True)
class Step:
    """One value of the program: `kind` ("input", "frame", "zeros", "reshape", "layer",
    "add", "concat", "pool", "upsample", "shuffle", "pointwise", "channels", "stack"), the fx node it
    stands for and the nodes it reads; `layer`: the key of its converted layer; `frames`: a
    reshape's frame primitives (per_frame, stack_frames, unstack_frames:K, forecast),
    applied in order; `operation` and `factor`: a pooling's kind and window, an
    upsampling's mode and factor, a shuffle's primitive and factor, a pointwise operation; `factor` alone: the input frame a "frame"
    step takes, the channels of "zeros"; `span`: a "channels" step's first and end channel,
    the size of "zeros"; `operands`: a pointwise step's, node names and numbers."""

    kind: str
    node: str
    reads: tuple[str, ...] = ()
    layer: str = ""
    frames: tuple[str, ...] = ()
    operation: str = ""
    factor: int = 0
    span: tuple[int, int] = (0, 0)
    operands: tuple[str | float, ...] = ()


class ShapeError(ConfigError):
    """The user's model failed on a shape (its constructor or forward raised, or it returns
    another shape than the forecast's): whether it fails on the data's is known only once
    the data's shape is."""


@contextlib.contextmanager
def traceable_zeros():
    """torch.zeros recorded in the trace when its size comes from the input (a recurrent
    state, torch.zeros(batch, hidden, height, width), as users write it): torch's factory
    functions do not see fx's proxies among their sizes, so they are wrapped while tracing."""
    original = torch.zeros

    def zeros(*size, **options):
        proxy = next((a for a in (*size, *options.values()) if isinstance(a, fx.Proxy)), None)
        return (
            original(*size, **options)
            if proxy is None
            else proxy.tracer.create_proxy("call_function", original, size, options)
        )

    torch.zeros = zeros
    try:
        yield
    finally:
        torch.zeros = original


def trace(module: nn.Module, name: str) -> fx.Graph:
    try:
        with traceable_zeros():
            graph = fx.symbolic_trace(module).graph
    except Exception as error:  # noqa: BLE001 (data-dependent control flow and the like: fx's error, one line)
        raise ConfigError(
            f"{name}: cannot be traced ({type(error).__name__}: {str(error).splitlines()[0]}); dpedge needs a forward "
            "without data-dependent control flow"
        ) from None
    return graph


def upsampling(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[str, int] | None:
    """(`Interpreter.upsample` mode, whole factor) of a nearest or bilinear upsampling `node`
    (nn.Upsample, F.interpolate by scale_factor), else None."""
    module = modules.get(node.target) if node.op == "call_module" else None
    if isinstance(module, nn.Upsample):
        mode, size, factor, corners = module.mode, module.size, module.scale_factor, module.align_corners
    elif node.op == "call_function" and node.target is F.interpolate:
        arguments = dict(zip(("input", "size", "scale_factor", "mode", "align_corners"), node.args)) | node.kwargs
        mode, size, factor, corners = (
            arguments.get(k, d)
            for k, d in (("mode", "nearest"), ("size", None), ("scale_factor", None), ("align_corners", None))
        )
    else:
        return None
    factors = factor if isinstance(factor, (tuple, list)) else (factor, factor)
    if mode not in ("nearest", "bilinear") or size is not None or factor is None or len(set(factors)) != 1:
        return None
    whole = float(factors[0])
    mode = "bilinear-corners" if mode == "bilinear" and corners else mode
    return (mode, int(whole)) if whole.is_integer() and whole >= 1 else None


def pooling(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[str, int | None] | None:
    """(kind, window) of a max or average pooling `node` whose window is its stride, without
    padding (window None where it is some other pooling), else None."""
    module = modules.get(node.target) if node.op == "call_module" else None
    if module is not None and type(module) in POOLS:
        kind, kernel, stride, padding = POOLS[type(module)], module.kernel_size, module.stride, module.padding
        extra = (
            getattr(module, "dilation", 1) != 1
            or getattr(module, "ceil_mode", False)
            or not getattr(module, "count_include_pad", True)
        )
    elif node.op == "call_function" and node.target in POOLS:
        arguments = dict(zip(("input", "kernel_size", "stride", "padding"), node.args)) | node.kwargs
        kind, kernel, stride, padding = (
            POOLS[node.target],
            arguments.get("kernel_size"),
            arguments.get("stride"),
            arguments.get("padding", 0),
        )
        extra = bool(arguments.get("ceil_mode")) or arguments.get("dilation", 1) != 1
    else:
        return None

    def square(value) -> int:  # one side for both axes, or -1
        return (
            value
            if isinstance(value, int)
            else value[0]
            if isinstance(value, (tuple, list)) and len(set(value)) == 1
            else -1
        )

    kernel = square(kernel)
    stride = kernel if stride is None or stride == () else square(stride)  # torch's default stride is the window
    return kind, kernel if kernel > 0 and stride == kernel and square(padding) == 0 and not extra else None


def shuffling(node: fx.Node, modules: dict[str, nn.Module]) -> tuple[str, int] | None:
    """(interpreter primitive, factor) of a PixelShuffle or PixelUnshuffle `node`, else None."""
    module = modules.get(node.target) if node.op == "call_module" else None
    if module is not None and type(module) in SHUFFLES:
        return SHUFFLES[type(module)], getattr(module, "upscale_factor", getattr(module, "downscale_factor", None))
    if node.op == "call_function" and node.target in SHUFFLES:
        factor = (
            node.args[1]
            if len(node.args) > 1
            else node.kwargs.get("upscale_factor", node.kwargs.get("downscale_factor"))
        )
        return SHUFFLES[node.target], factor
    return None


def backbone_name(user: type) -> str:
    return re.sub(r"[^a-z0-9]+", "-", user.__name__.lower()).strip("-") or "traced"


def options_type(user: type) -> type:
    """The user's __init__ keyword arguments beyond the data's shape, as an Options
    dataclass (--arch sets them): each needs a whole-number default."""
    fields = []
    for name, parameter in inspect.signature(user.__init__).parameters.items():
        if (
            name == "self"
            or name in SHAPE_ARGUMENTS
            or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        ):
            continue
        default = parameter.default
        if default is parameter.empty or isinstance(default, bool) or not isinstance(default, int):
            raise ConfigError(
                f"{user.__name__}.__init__: argument {name!r} needs a whole-number default (what --arch {name}=N sets); "
                f"the data's shape comes as {', '.join(SHAPE_ARGUMENTS)}"
            )
        fields.append((name, int, dataclasses.field(default=default)))
    return dataclasses.make_dataclass(f"{user.__name__}Options", fields, frozen=True)


_CONVERTED: dict[type, type[Backbone]] = {}
"""The Backbone class made for each plain module class (its registry entry: one per class)."""
_MULTIPLES: dict[tuple, int] = {}
"""TracedBackbone.spatial_multiple per (class, options): a trace each, done once."""


def converted(user: type) -> type[Backbone]:
    """The Backbone class standing for the plain module class `user` (one per class). A
    `WIDTHS` class attribute of the user's ({argument: multiple it keeps}) names the
    arguments that set its width, which `dpedge bench pareto` scales for its static curve."""
    if user not in _CONVERTED:
        options = options_type(user)
        widths = dict(getattr(user, "WIDTHS", {}))
        unknown = set(widths) - {f.name for f in dataclasses.fields(options)}
        if unknown or not all(isinstance(m, int) and m >= 1 for m in widths.values()):
            raise ConfigError(
                f"{user.__name__}.WIDTHS must map arguments of its __init__ ({', '.join(f.name for f in dataclasses.fields(options))}) "
                f"to the whole multiple each keeps, got {widths}"
            )
        _CONVERTED[user] = type(
            user.__name__,
            (TracedBackbone,),
            {
                "name": backbone_name(user),
                "Options": options,
                "user": user,
                "WIDTHS": widths,
                "__module__": user.__module__,
                "__qualname__": user.__qualname__,
            },
        )
    return _CONVERTED[user]


class TracedBackbone(Backbone):
    """The backbone of a traced plain module (`user`, set by `converted`)."""

    user: type[nn.Module]

    @classmethod
    def spatial_multiple(cls, options) -> int:
        """The largest downsampling of the user's forward (its strides over its upsamplings),
        from a trace of the module built at a nominal shape: what the grid must be a
        multiple of."""
        key = (cls, options)
        if key not in _MULTIPLES:
            module = cls.build_user(ForecastShape(2, 2, 1, 64, 64), options)
            _MULTIPLES[key] = Conversion.downsampling(module, cls.user.__name__)
        return _MULTIPLES[key]

    @classmethod
    def check_before_data(cls, options, frames_in: int, frames_out: int, channels: int) -> None:
        """The conversion on a nominal grid (64 pixels a side, rounded to the model's
        multiple), so that an operation dpedge cannot prune, or a forward it cannot trace, is
        refused before any data are read. A failure on that grid may be the grid's: it is
        left to the data's own shape to show."""
        try:
            multiple = cls.spatial_multiple(options)
            side = multiple * -(-64 // multiple)
            cls(ForecastShape(frames_in, frames_out, channels, side, side), options, group_size=1)
        except ShapeError:
            pass

    @classmethod
    def build_user(cls, shape: ForecastShape, options) -> nn.Module:
        signature = inspect.signature(cls.user.__init__).parameters
        arguments = {name: getattr(shape, name) for name in SHAPE_ARGUMENTS if name in signature} | dataclasses.asdict(
            options
        )
        try:
            return cls.user(**arguments)
        except Exception as error:  # noqa: BLE001 (the user's constructor: whatever it raises is one line)
            raise ShapeError(
                f"{cls.user.__name__}({', '.join(f'{k}={v}' for k, v in arguments.items())}) raised "
                f"{type(error).__name__}: {error}"
            ) from None

    def __init__(self, shape: ForecastShape, options, group_size: int, one_width: bool = False) -> None:
        super().__init__(shape, options, group_size, one_width)
        module = self.build_user(shape, options)
        self.converted = nn.ModuleDict()  # the gated convolutions, by the user's module path
        conversion = Conversion(module, self.user.__name__, shape, group_size, self.converted)
        self.steps, self.paths, self.full_width = conversion.steps, conversion.paths, conversion.full_width

    def load_user_state(self, state: object, path) -> None:
        """The weights of the user's module as its own state dict holds them (`--init
        their.pt`), converted as at construction; one line if they are not its weights."""
        module = self.build_user(self.shape, self.options)
        try:
            module.load_state_dict(state)
        except (TypeError, AttributeError, RuntimeError) as error:
            detail = " ".join(str(error).split())[:300]
            raise ConfigError(
                f"--init {path}: not a state dict of {self.user.__name__} as built here ({detail})"
            ) from None
        layers = nn.ModuleDict()
        Conversion(module, self.user.__name__, self.shape, self.group_size, layers)
        for (
            key,
            layer,
        ) in layers.items():  # the converted weights and statistics; a slimmable net's per-level ones follow
            own = self.converted[key]
            own.conv.load_state_dict(layer.conv.state_dict())
            if isinstance(own.norm, MaskedBatchNorm2d):
                for name in ("weight", "bias", "running_mean", "running_var"):
                    getattr(own.norm, name).data.copy_(getattr(layer.norm, name))
            elif own.norm is not None:
                own.norm.load_state_dict(layer.norm.state_dict())

    def prunable_layers(self) -> list[dict]:
        """Each converted convolution by the user's module path, its gate, or why it has none."""
        return [
            {"layer": self.paths[key], "gate": None if layer.gate is None else layer.gate.name}
            | ({"why not": self.full_width[key]} if layer.gate is None else {})
            for key, layer in self.converted.items()
        ]

    def program(self, ops: Interpreter, x):
        values, frames = {}, None
        for step in self.steps:
            if step.kind == "input":
                values[step.node] = x
            elif step.kind == "frame":
                frames = frames or ops.split_frames(ops.per_frame(x))
                values[step.node] = frames[step.factor]
            elif step.kind == "zeros":
                values[step.node] = ops.zero_state(step.factor, step.span)
            elif step.kind == "pointwise":
                values[step.node] = ops.pointwise(
                    step.operation, *(values[o] if isinstance(o, str) else o for o in step.operands)
                )
            elif step.kind == "channels":
                values[step.node] = ops.channels(values[step.reads[0]], *step.span)
            elif step.kind == "stack":
                values[step.node] = ops.forecast(ops.join_frames([values[name] for name in step.reads]))
            elif step.kind == "reshape":
                value = values[step.reads[0]]
                for primitive in step.frames:
                    name, _, count = primitive.partition(":")
                    value = ops.unstack_frames(value, int(count)) if count else getattr(ops, name)(value)
                values[step.node] = value
            elif step.kind == "layer":
                values[step.node] = ops.apply(self.converted[step.layer], values[step.reads[0]])
            elif step.kind == "add":
                values[step.node] = ops.add(values[step.reads[0]], values[step.reads[1]])
            elif step.kind == "concat":
                values[step.node] = ops.concat([values[name] for name in step.reads])
            elif step.kind == "pool":
                values[step.node] = ops.pool(values[step.reads[0]], step.operation, step.factor)
            elif step.kind == "upsample":
                values[step.node] = ops.upsample(values[step.reads[0]], step.factor, step.operation)
            elif step.kind == "shuffle":
                values[step.node] = getattr(ops, step.operation)(values[step.reads[0]], step.factor)
        return values[self.steps[-1].node]


class Conversion:
    """The trace of `module` checked, its layers converted into `layers` and its `steps`."""

    def __init__(
        self, module: nn.Module, name: str, shape: ForecastShape, group_size: int, layers: nn.ModuleDict
    ) -> None:
        self.module, self.name, self.shape = module.eval(), name, shape
        self.graph = trace(module, name)
        for node in self.graph.nodes:  # in place, an operation would matter without its result being read
            if node.op == "call_method" and node.target.endswith("_") and not node.target.startswith("_"):
                raise self.refuse(node, f"the in-place {node.target}")
        self.graph.eliminate_dead_code()  # what the forecast never reads (a recurrence's unused last step) is neither trained nor exported
        self.shapes = self.propagate()
        self.modules = dict(module.named_modules())
        self.users = {node: list(node.users) for node in self.graph.nodes}
        self.steps: list[Step] = []
        self.gates: dict[str, object] = {}  # node name → the gate of the value it holds (None: full width)
        self.full_width: dict[str, str] = {}  # converted layer → why its filters are not pruned
        self.paths: dict[str, str] = {}  # converted layer → the user's module path
        self.frames: dict[str, int] = {}  # node name → frames per sample its value holds (rows = batch × frames)
        self.forecast = ""  # the node whose value is the forecast
        blocks = self.blocks_by_conv = self.blocks()
        self.absorbed = {
            n.name for conv, block in blocks.items() for n in self.between(conv, block.end)
        }  # what each block holds
        self.absorbed |= {block.upsampled_by.name for block in blocks.values() if block.upsampled_by is not None}
        for node in self.graph.nodes:
            self.convert(node, blocks, group_size, layers)

    @staticmethod
    def downsampling(module: nn.Module, name: str) -> int:
        """The largest factor by which the forward's strides shrink the frames (over its
        upsamplings), from the graph alone: 1 for a network at full resolution throughout."""
        modules, scales = dict(module.named_modules()), {}
        for node in trace(module, name).nodes:
            inputs = [scales[a.name] for a in node.all_input_nodes if a.name in scales]
            scale = max(inputs, default=Fraction(1))
            conv = modules.get(node.target) if node.op == "call_module" else None
            if isinstance(conv, nn.ConvTranspose2d):
                scale /= conv.stride[0]
            elif isinstance(conv, nn.Conv2d):
                scale *= conv.stride[0]
            upsampled, pooled, shuffled = upsampling(node, modules), pooling(node, modules), shuffling(node, modules)
            if upsampled:
                scale /= upsampled[1]
            if pooled and pooled[1]:
                scale *= pooled[1]
            if shuffled:
                scale = scale / shuffled[1] if shuffled[0] == "depth_to_space" else scale * shuffled[1]
            scales[node.name] = scale
        return max(1, math.ceil(max(scales.values(), default=Fraction(1))))

    def where(self, node: fx.Node) -> str:
        """The module path of `node`: the module it calls, or the one whose forward calls it."""
        if node.op == "call_module":
            return f"{self.name}.{node.target}"
        stack = node.meta.get("nn_module_stack") or {}
        path = next(reversed(stack.values()))[0] if stack else ""
        return f"{self.name}.{path}" if path else self.name

    def refuse(self, node: fx.Node, what: str) -> ConfigError:
        return ConfigError(f"{self.where(node)}: {what} is not supported for pruning yet; supported: {SUPPORTED}")

    def propagate(self) -> dict[str, tuple[int, ...]]:
        """Every node's output shape on a batch of two samples of the data's shape."""
        shape, shapes = self.shape, {}
        parameter = next(self.module.parameters(), None)
        x = torch.zeros(
            2,
            shape.frames_in,
            shape.channels,
            shape.height,
            shape.width,
            device=None if parameter is None else parameter.device,
        )

        class Shapes(fx.Interpreter):
            def run_node(inner, node):
                value = super().run_node(node)
                if isinstance(value, torch.Tensor):
                    shapes[node.name] = tuple(value.shape)
                return value

        try:
            with torch.no_grad():
                out = Shapes(fx.GraphModule(self.module, self.graph)).run(x)
        except Exception as error:  # noqa: BLE001 (the user's forward on the data's shape)
            raise ShapeError(
                f"{self.name}: its forward fails on frames shaped (batch, {shape.frames_in}, {shape.channels}, {shape.height}, "
                f"{shape.width}) ({type(error).__name__}: {str(error).splitlines()[0]})"
            ) from None
        expected = (2, shape.frames_out, shape.channels, shape.height, shape.width)
        self.returned = None
        if (
            not isinstance(out, torch.Tensor) or tuple(out.shape) != expected
        ):  # raised at the output: an operation before it is refused first
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            self.returned = ShapeError(
                f"{self.name}: its forward returns {got} for frames shaped (2, {shape.frames_in}, {shape.channels}, "
                f"{shape.height}, {shape.width}); dpedge needs the forecast (batch, frames_out, channels, height, width) = {expected}"
            )
        return shapes

    def module_of(self, node: fx.Node) -> nn.Module | None:
        return self.modules.get(node.target) if node.op == "call_module" else None

    def activation_of(self, node: fx.Node) -> nn.Module | None:
        """The activation module `node` applies, or None if it applies none."""
        module = self.module_of(node)
        if module is not None:
            exact = not isinstance(module, nn.GELU) or module.approximate == "none"  # the export lowers GELU's erf form
            return module if isinstance(module, ACTIVATIONS) and not isinstance(module, nn.Identity) and exact else None
        if node.op == "call_function" and node.target is F.gelu and node.kwargs.get("approximate", "none") != "none":
            return None
        if node.op == "call_function" and node.target in FUNCTIONAL_ACTIVATIONS:
            factory = FUNCTIONAL_ACTIVATIONS[node.target]
            slope = (
                node.args[1]
                if node.target is F.leaky_relu and len(node.args) > 1
                else node.kwargs.get("negative_slope", 0.01)
            )
            return factory(slope) if factory is nn.LeakyReLU else factory()
        if node.op == "call_method" and node.target in ("relu", "tanh"):
            return nn.ReLU() if node.target == "relu" else nn.Tanh()
        return None

    def only_user(self, node: fx.Node) -> fx.Node | None:
        users = self.users[node]
        return users[0] if len(users) == 1 else None

    def blocks(self) -> dict[str, Block]:
        """Per conv node, its Block: the nearest upsampling only it reads before it, the
        BatchNorm and the activation that read its output alone after it."""
        blocks = {}
        for node in self.graph.nodes:
            module = self.module_of(node)
            if isinstance(
                module, nn.ConvTranspose2d
            ):  # an activation only: a BatchNorm reads positions the conv's taps become
                follower = self.only_user(node)
                activation = follower is not None and self.activation_of(follower)
                blocks[node.name] = Block(node.args[0], follower if activation else node, None, activation or None)
                continue
            if not isinstance(module, nn.Conv2d):
                continue
            source, upsample, upsampled_by = node.args[0], 1, None
            upsampled = isinstance(source, fx.Node) and upsampling(source, self.modules)
            if (
                upsampled and upsampled[0] == "nearest" and self.only_user(source) is node
            ):  # the conv's own (GatedConv2d's upsample)
                source, upsample, upsampled_by = source.args[0], upsampled[1], source
            end, norm, activation = node, None, None
            follower = self.only_user(end)
            if follower is not None and isinstance(self.module_of(follower), (nn.BatchNorm2d, *MAP_NORMS)):
                end, norm = follower, self.module_of(follower)
                follower = self.only_user(end)
            if follower is not None and self.activation_of(follower) is not None:
                end, activation = follower, self.activation_of(follower)
            blocks[node.name] = Block(source, end, norm, activation, upsample, upsampled_by)
        return blocks

    def convert(self, node: fx.Node, blocks: dict[str, Block], group_size: int, layers: nn.ModuleDict) -> None:
        if node.op == "placeholder":
            if self.steps:
                raise self.refuse(node, "a second input")
            self.steps.append(Step("input", node.name))
            self.gates[node.name], self.frames[node.name] = None, self.shape.frames_in
        elif node.op == "output":
            if self.returned is not None:
                raise self.returned
            value = node.args[0]
            if not isinstance(value, fx.Node) or self.steps[-1].node != value.name or value.name != self.forecast:
                raise self.refuse(
                    node,
                    "an output that is not the last convolution's maps reshaped or stacked into the forecast frames",
                )
        elif node.name in self.absorbed or node.name not in self.shapes:
            return  # a block's BatchNorm and activation; sizes read off a shape (what reshapes take: their shapes are checked)
        elif node.name in blocks:
            self.convert_block(node, blocks[node.name], group_size, layers)
        elif self.is_call(node, ADDS | {"add"}) and all(isinstance(a, fx.Node) for a in node.args[:2]):
            self.convert_add(node)
        elif self.pointwise(node) is not None:
            self.convert_pointwise(node)
        elif self.is_call(node, {operator.getitem}):
            self.convert_item(node)
        elif self.is_call(node, ZEROS):
            self.convert_zeros(node)
        elif self.is_call(node, STACKS):
            self.convert_stack(node)
        elif node.op == "call_function" and node.target in CONCATS:
            self.convert_concat(node)
        elif pooling(node, self.modules) is not None:
            self.convert_pool(node)
        elif upsampling(node, self.modules) is not None:
            self.convert_upsample(node)
        elif shuffling(node, self.modules) is not None:
            self.convert_shuffle(node)
        elif self.is_reshape(node):
            self.convert_reshape(node)
        else:
            module = self.module_of(node)
            what = type(module).__name__ if module is not None else getattr(node.target, "__name__", str(node.target))
            if isinstance(module, nn.GELU) or node.target is F.gelu:
                what = "GELU(approximate='tanh')"
            elif isinstance(module, nn.Upsample) or node.target is F.interpolate:
                what = f"{what} (only nearest or bilinear, by a whole scale_factor)"
            elif isinstance(module, (nn.BatchNorm2d, *MAP_NORMS)) or self.activation_of(node) is not None:
                what = f"{what} not right after a convolution"
            raise self.refuse(node, what)

    def is_call(self, node: fx.Node, targets: set) -> bool:
        """Whether `node` calls one of `targets` (functions, or tensor methods by name)."""
        return node.op in ("call_function", "call_method") and node.target in targets

    def pointwise(self, node: fx.Node) -> str | None:
        """The `Interpreter.pointwise` operation `node` applies, or None."""
        module = self.module_of(node)
        if module is not None:
            return UNARY.get(type(module))
        if node.op in ("call_function", "call_method") and isinstance(node.target, str) == (node.op == "call_method"):
            return UNARY.get(node.target) or BINARY.get(node.target)
        return None

    def between(self, conv: str, end: fx.Node) -> list[fx.Node]:
        """The nodes after the conv `conv` up to `end`, included: what its block absorbs."""
        nodes, node = [], end
        while node.name != conv:
            nodes.append(node)
            node = node.args[0]
        return nodes

    def is_reshape(self, node: fx.Node) -> bool:
        return (node.op == "call_method" and node.target in RESHAPES) or (
            node.op == "call_function" and node.target in (torch.reshape, torch.flatten)
        )

    def source(self, node: fx.Node, index: int = 0) -> fx.Node:
        value = node.args[index]
        if not isinstance(value, fx.Node):
            raise self.refuse(node, f"{node.target} of a constant")
        return value

    def frame_primitives(self, source: fx.Node, node: fx.Node) -> tuple[tuple[str, ...], int] | None:
        """The interpreter's frame primitives a reshape of `source` into `node` stands for,
        and the frames per sample the result holds; None for a reshape that is not one of
        them. Shapes are those of a batch of 2 (`propagate`); 4-D values hold 2·frames rows."""
        before, after, shape = self.shapes.get(source.name), self.shapes.get(node.name), self.shape
        if before is None or after is None:
            return None
        if before == after:
            return (), self.frames[source.name]
        if len(before) == 5:  # the input frames
            (_, count, channels, height, width), rows = before, None
            if source.op != "placeholder":
                return None
            if after == (2 * count, channels, height, width):
                return ("per_frame",), count
            if after == (2, count * channels, height, width):
                return ("per_frame", "stack_frames"), 1
            return None
        rows, channels, height, width = before
        frames = self.frames[source.name]
        if after == (2, frames * channels, height, width) and frames > 1:
            return ("stack_frames",), 1
        forecast = after == (2, shape.frames_out, shape.channels, height, width)
        if forecast and frames == shape.frames_out and channels == shape.channels:
            return ("forecast",), shape.frames_out
        if frames == 1 and len(after) == 4 and after[2:] == (height, width) and after[0] % 2 == 0 and after[0] > 2:
            count = after[0] // 2
            if count * after[1] == channels:
                return (f"unstack_frames:{count}",), count
        if frames == 1 and forecast and shape.frames_out * shape.channels == channels:
            return (f"unstack_frames:{shape.frames_out}", "forecast"), shape.frames_out
        return None

    def convert_reshape(self, node: fx.Node) -> None:
        source = self.source(node)
        if source.name not in self.gates:
            raise self.refuse(node, f"a reshape of {source.name}, which is not a converted value")
        found = self.frame_primitives(source, node)
        if found is None:
            raise self.refuse(
                node,
                f"a reshape from {self.shapes.get(source.name)} to {self.shapes.get(node.name)} (between frames, "
                "channels and the forecast only)",
            )
        primitives, frames = found
        cuts = any(p.startswith("unstack_frames") or p == "forecast" for p in primitives)
        if cuts and self.gates[source.name] is not None:
            raise AssertionError("what frames are cut from is never gated")
        self.steps.append(Step("reshape", node.name, (source.name,), frames=primitives))
        self.gates[node.name], self.frames[node.name] = self.gates[source.name], frames
        if "forecast" in primitives:
            self.forecast = node.name

    def convert_add(self, node: fx.Node) -> None:
        a, b = (self.source(node, i) for i in range(2))
        if len(node.args) > 2 or node.kwargs:
            raise self.refuse(node, "an add with a scale (alpha)")
        for side in (a, b):
            if side.name not in self.gates:
                raise self.refuse(node, f"a sum with {side.name}, which is not a converted value")
            if self.gates[side.name] is not None:
                raise AssertionError("a value reaching a sum is never gated")
        self.steps.append(Step("add", node.name, (a.name, b.name)))
        self.gates[node.name], self.frames[node.name] = None, self.frames[a.name]

    def converted_value(self, node: fx.Node, value, what: str) -> fx.Node:
        """`value`, an argument of `node`, which must be a converted value no gate prunes."""
        if not isinstance(value, fx.Node) or value.name not in self.gates:
            raise self.refuse(node, f"{what} of {getattr(value, 'name', value)}, which is not a converted value")
        if self.gates[value.name] is not None:
            raise AssertionError(f"{what} reads a pruned value")
        return value

    def convert_pointwise(self, node: fx.Node) -> None:
        """An elementwise operation of values of one shape, or of a value and a number: full
        width in, full width out (sigmoid(0) is not 0; a product couples its factors)."""
        operation = self.pointwise(node)
        operands = node.args if self.module_of(node) is None else node.args[:1]
        if set(node.kwargs.items()) - {("inplace", False)} or len(operands) != (
            1 if operation in ("sigmoid", "tanh", "relu") else 2
        ):
            raise self.refuse(node, f"{operation} with arguments {', '.join(map(str, node.kwargs)) or len(operands)}")
        values = [self.converted_value(node, o, operation) for o in operands if not isinstance(o, (int, float))]
        if not values or any(self.shapes[v.name] != self.shapes[node.name] for v in values):
            raise self.refuse(
                node,
                f"{operation} of values shaped {[self.shapes.get(v.name) for v in values]} (one shape, or a value and a number)",
            )
        self.steps.append(
            Step(
                "pointwise",
                node.name,
                tuple(v.name for v in values),
                operation=operation,
                operands=tuple(o.name if isinstance(o, fx.Node) else float(o) for o in operands),
            )
        )
        self.gates[node.name], self.frames[node.name] = None, self.frames[values[0].name]

    def convert_item(self, node: fx.Node) -> None:
        """One input frame, x[:, t], or one chunk of channels (chunk / split along channels)."""
        source, index = node.args
        if source.op == "placeholder":
            count = self.shape.frames_in
            if not (
                isinstance(index, tuple)
                and len(index) == 2
                and index[0] == slice(None)
                and isinstance(index[1], int)
                and -count <= index[1] < count
            ):
                raise self.refuse(node, f"indexing the input frames by {index} (one frame, x[:, t], only)")
            self.steps.append(Step("frame", node.name, (source.name,), factor=index[1] % count))
            self.gates[node.name], self.frames[node.name] = None, 1
            return
        if not self.is_call(source, CHUNKS):
            raise self.refuse(node, f"an item of {getattr(source.target, '__name__', source.target)}")
        split, value = CHUNKS[source.target], self.converted_value(source, source.args[0], CHUNKS[source.target])
        arguments = dict(zip(("tensor", "sections", "dim"), source.args)) | source.kwargs
        sections = next(
            arguments[k] for k in ("sections", "chunks", "split_size_or_sections", "split_size") if k in arguments
        )
        dim, rank = arguments.get("dim", 0), len(self.shapes[value.name])
        if rank != 4 or dim % rank != 1:
            raise self.refuse(
                source, f"a {split} along dimension {dim} of {rank}-dimensional values (channels of maps only)"
            )
        channels = self.shapes[value.name][1]
        sizes = (
            [-(-channels // sections)] * sections
            if split == "chunk"
            else [sections] * channels
            if isinstance(sections, int)
            else list(sections)
        )
        starts = [
            sum(sizes[:i]) for i in range(len(sizes))
        ]  # torch's pieces: whole sizes from the start, the last one short
        start = starts[index]
        self.steps.append(Step("channels", node.name, (value.name,), span=(start, min(channels, start + sizes[index]))))
        self.gates[node.name], self.frames[node.name] = None, self.frames[value.name]

    def convert_zeros(self, node: fx.Node) -> None:
        """A zero state: one map per sample at a size of the forward's."""
        shape = self.shapes[node.name]
        if len(shape) != 4 or shape[0] != 2:
            raise self.refuse(node, f"zeros shaped {shape} (a state of one map per sample only)")
        self.steps.append(Step("zeros", node.name, factor=shape[1], span=shape[2:]))
        self.gates[node.name], self.frames[node.name] = None, 1

    def convert_stack(self, node: fx.Node) -> None:
        """torch.stack(frames, dim=1): one map per sample and forecast frame into the forecast."""
        values = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        shape = self.shape
        if self.shapes[node.name] != (2, shape.frames_out, shape.channels) + self.shapes[node.name][3:] or dim % 5 != 1:
            raise self.refuse(
                node, f"a stack into {self.shapes[node.name]} (the forecast's frames only, along dimension 1)"
            )
        values = [self.converted_value(node, value, "a stack") for value in values]
        if any(self.frames[value.name] != 1 for value in values):
            raise self.refuse(node, "a stack of values holding several frames each")
        self.steps.append(Step("stack", node.name, tuple(value.name for value in values)))
        self.gates[node.name], self.frames[node.name], self.forecast = None, shape.frames_out, node.name

    def convert_pool(self, node: fx.Node) -> None:
        kind, size = pooling(node, self.modules)
        source = self.source(node)
        if source.name not in self.gates or not size:
            raise self.refuse(node, f"{kind} pooling other than over size×size windows at stride size, without padding")
        self.steps.append(Step("pool", node.name, (source.name,), operation=kind, factor=size))
        # per channel: the gate goes through
        self.gates[node.name], self.frames[node.name] = self.gates[source.name], self.frames[source.name]

    def convert_upsample(self, node: fx.Node) -> None:
        """A nearest or bilinear upsampling no convolution absorbs: per channel, so the gate
        goes through (a bilinear mix of zeros is zero)."""
        mode, factor = upsampling(node, self.modules)
        source = self.source(node)
        if source.name not in self.gates:
            raise self.refuse(node, f"an upsampling of {source.name}, which is not a converted value")
        self.steps.append(Step("upsample", node.name, (source.name,), operation=mode, factor=factor))
        self.gates[node.name], self.frames[node.name] = self.gates[source.name], self.frames[source.name]

    def convert_shuffle(self, node: fx.Node) -> None:
        primitive, factor = shuffling(node, self.modules)
        source = self.source(node)
        if source.name not in self.gates or self.gates[source.name] is not None:
            raise AssertionError("what a pixel shuffle reads is converted and never gated")
        self.steps.append(Step("shuffle", node.name, (source.name,), operation=primitive, factor=factor))
        self.gates[node.name], self.frames[node.name] = None, self.frames[source.name]

    def convert_concat(self, node: fx.Node) -> None:
        values = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        rank = len(self.shapes[node.name])
        if not isinstance(values, (list, tuple)) or dim % rank != 1 or rank != 4:
            raise self.refuse(
                node, f"a concatenation along dimension {dim} of {rank}-dimensional values (channels of maps only)"
            )
        for value in values:
            if not isinstance(value, fx.Node) or value.name not in self.gates:
                raise self.refuse(
                    node, f"a concatenation with {getattr(value, 'name', value)}, which is not a converted value"
                )
            if self.gates[value.name] is not None:
                raise AssertionError("a value reaching a concatenation is never gated")
        self.steps.append(Step("concat", node.name, tuple(value.name for value in values)))
        self.gates[node.name], self.frames[node.name] = None, self.frames[values[0].name]

    def layer_key(self, node: fx.Node) -> str:
        """The converted layer's key for the conv module `node` calls (a ModuleDict key: its
        path with the dots replaced), its path recorded for `dpedge info`."""
        key = re.sub(r"[^0-9a-zA-Z_]", "_", str(node.target))
        self.paths[key] = str(node.target)
        return key

    def convert_transposed(self, node: fx.Node, block: Block, group_size: int, layers: nn.ModuleDict) -> None:
        """A ConvTranspose2d whose kernel is its stride s: exactly a 1×1 convolution to s²
        times the channels (its taps, channel-major) then a pixel shuffle by s, which is how
        it is converted (its activation applied before the shuffle, where it is the same)."""
        conv: nn.ConvTranspose2d = self.module_of(node)
        source, s = block.source, conv.stride[0]
        if (
            conv.kernel_size != (s, s)
            or conv.stride != (s, s)
            or conv.padding != (0, 0)
            or conv.output_padding != (0, 0)
            or conv.groups != 1
            or conv.dilation != (1, 1)
        ):
            raise self.refuse(
                node,
                f"ConvTranspose2d(kernel {conv.kernel_size}, stride {conv.stride}, padding {conv.padding}, output_padding "
                f"{conv.output_padding}, groups {conv.groups}, dilation {conv.dilation}): only kernel = stride, no padding",
            )
        key = self.layer_key(node)
        if not self.converted_before(node, block, key, layers):
            self.full_width[key] = "a transposed convolution: its channels become positions"
            taps = conv.out_channels * s * s
            layer = GatedConv2d(
                conv.in_channels,
                taps,
                1,
                gate=None,
                input_gate=self.gates[source.name],
                group_size=group_size,
                norm=False,
                activation=False if block.activation is None else block.activation,
            )
            with torch.no_grad():  # taps[o·s² + a·s + b] = Σ_c W[c, o, a, b] x[c]: pixel_shuffle's channel-major order
                layer.conv.weight.copy_(conv.weight.permute(1, 2, 3, 0).reshape(taps, conv.in_channels, 1, 1))
                bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
                layer.conv.bias.copy_(bias.repeat_interleave(s * s))
            layers[key] = layer
        taps_value = f"{block.end.name}.taps"
        self.steps.append(Step("layer", taps_value, (source.name,), key))
        self.steps.append(Step("shuffle", block.end.name, (taps_value,), operation="depth_to_space", factor=s))
        self.gates[block.end.name], self.frames[block.end.name] = None, self.frames[source.name]

    def convert_block(self, node: fx.Node, block: Block, group_size: int, layers: nn.ModuleDict) -> None:
        end, norm, activation, source = block.end, block.norm, block.activation, block.source
        conv: nn.Conv2d = self.module_of(node)
        if not isinstance(source, fx.Node) or source.name not in self.gates:
            raise self.refuse(
                node, f"a convolution of {getattr(source, 'name', source)}, which is not a converted value"
            )
        if isinstance(conv, nn.ConvTranspose2d):
            return self.convert_transposed(node, block, group_size, layers)
        kernel, stride, dilation = conv.kernel_size[0], conv.stride[0], conv.dilation[0]
        extent = dilation * (kernel - 1) + 1  # of the kernel, dilated
        padding = ((extent - 1) // 2 if extent % 2 else -1,) * 2 if conv.padding == "same" else conv.padding
        depthwise = conv.groups > 1 and conv.groups == conv.in_channels == conv.out_channels
        if (
            (conv.groups != 1 and not depthwise)
            or len({*conv.kernel_size, kernel}) > 1
            or len(set(conv.stride)) > 1
            or len(set(conv.dilation)) > 1
            or len(set(padding)) > 1
            or not extent - stride <= 2 * padding[0] <= extent - 1
            or conv.padding_mode != "zeros"
        ):
            raise self.refuse(
                node,
                f"Conv2d(kernel {conv.kernel_size}, stride {conv.stride}, padding {conv.padding}, dilation {conv.dilation}, "
                f"groups {conv.groups}, padding_mode {conv.padding_mode}): a square kernel padded so that its output is its "
                "input's size over the stride, with zeros",
            )
        if isinstance(norm, nn.BatchNorm2d) and not (norm.affine and norm.track_running_stats):
            raise self.refuse(end, "BatchNorm2d without affine parameters or running statistics")
        if isinstance(norm, nn.LayerNorm) and tuple(norm.normalized_shape) != self.shapes[node.name][1:]:
            raise self.refuse(
                end, f"a LayerNorm over {tuple(norm.normalized_shape)} (over a map's (channels, height, width) only)"
            )
        key = self.layer_key(node)
        if self.converted_before(node, block, key, layers):
            return self.add_layer_step(block, layers[key], key)
        reader = self.norm_keeps_width(norm, group_size) or next(
            (
                why
                for call in self.calls(node)
                for user in self.users[self.blocks_by_conv[call.name].end]
                if (why := self.full_width_reader(user))
            ),
            None,
        )
        gated = reader is None and not depthwise
        if reader is not None:
            self.full_width[key] = reader
        elif depthwise:
            self.full_width[key] = (
                "a depthwise convolution: its input's gate prunes it"
                if self.gates[source.name] is not None
                else "a depthwise convolution of a full-width input"
            )
        if depthwise and reader is not None and self.gates[source.name] is not None:
            if isinstance(norm, MAP_NORMS):
                raise self.refuse(end, f"{reader.split(' reads')[0]} after a depthwise convolution of a pruned input")
            raise AssertionError("a depthwise convolution that must keep its width reads a pruned input")
        batch_norm = isinstance(norm, nn.BatchNorm2d)
        layer = GatedConv2d(
            conv.in_channels,
            conv.out_channels,
            kernel,
            stride,
            gate=key if gated else None,
            input_gate=self.gates[source.name],
            group_size=group_size,
            upsample=block.upsample,
            norm=batch_norm or (copy.deepcopy(norm) if norm is not None else False),
            activation=False if activation is None else activation,
            depthwise=depthwise,
            padding=padding[0],
            dilation=dilation,
        )
        with torch.no_grad():
            layer.conv.weight.copy_(conv.weight)
            bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
            if not batch_norm:
                layer.conv.bias.copy_(bias)
            else:  # BatchNorm(conv + b) is BatchNorm with its mean shifted by b
                for name in ("weight", "bias", "running_var"):
                    getattr(layer.norm, name).copy_(getattr(norm, name))
                layer.norm.running_mean.copy_(norm.running_mean - bias)
                layer.norm.eps, layer.norm.momentum = norm.eps, norm.momentum
        layers[key] = layer
        self.add_layer_step(block, layer, key)

    @staticmethod
    def norm_keeps_width(norm: nn.Module | None, group_size: int) -> str | None:
        """Why a GroupNorm or LayerNorm after a convolution keeps its filters, or None: its
        statistics are per group of channels, so filters are pruned only in whole groups
        (and the sub-network's norm is the same norm over fewer groups)."""
        if not isinstance(norm, MAP_NORMS):
            return None
        per_group = norm_channels(norm) // norm_groups(norm)
        if group_size % per_group == 0:
            return None
        what = (
            "a LayerNorm over all its channels"
            if isinstance(norm, nn.LayerNorm)
            else f"a GroupNorm of {per_group} channels per group"
        )
        return f"{what} reads it (filters are pruned in groups of {group_size}: a norm group would be split)"

    def add_layer_step(self, block: Block, layer: GatedConv2d, key: str) -> None:
        self.steps.append(Step("layer", block.end.name, (block.source.name,), key))
        self.gates[block.end.name], self.frames[block.end.name] = layer.gate, self.frames[block.source.name]

    def calls(self, node: fx.Node) -> list[fx.Node]:
        """Every node calling the module `node` calls (a cell applied at each step)."""
        return [n for n in self.graph.nodes if n.op == "call_module" and n.target == node.target]

    def converted_before(self, node: fx.Node, block: Block, key: str, layers: nn.ModuleDict) -> bool:
        """Whether an earlier call of the module `node` calls was converted (a recurrence
        applies one module at every step): this call is then that same layer, which it can
        be only with the same input width and what it absorbs alike. Whether the layer is
        pruned was decided at its first call from what reads every call."""
        if key not in layers:
            return False
        first = self.blocks_by_conv[self.calls(node)[0].name]
        if (
            layers[key].input_gate != self.gates[block.source.name]
            or block.norm is not first.norm
            or block.upsample != first.upsample
            or type(block.activation) is not type(first.activation)
        ):
            raise self.refuse(
                node,
                "a module called again with another input width, or another BatchNorm, activation or upsampling around it",
            )
        return True

    def full_width_reader(self, node: fx.Node) -> str | None:
        """Why a value `node` reads keeps its full width (a sum reads it, or it is the
        forecast's channels), or None. A depthwise convolution keeps its input's channels:
        what must keep the width of its output must keep its input's too."""
        block = self.blocks_by_conv.get(node.name)
        module = self.module_of(node)
        if (
            block is not None
            and isinstance(module, nn.Conv2d)
            and module.groups > 1
            or pooling(node, self.modules) is not None
            or upsampling(node, self.modules) is not None
            and node.name not in self.absorbed
        ):
            end = block.end if block is not None else node  # the gate goes through: what reads the result decides
            return next((why for user in self.users[end] if (why := self.full_width_reader(user))), None)
        if self.is_call(node, ADDS | {"add"}) and all(isinstance(a, fx.Node) for a in node.args[:2]):
            return "a residual sum reads it (both sides of a sum are pruned alike or not at all)"
        if (operation := self.pointwise(node)) is not None:
            return f"an elementwise {operation} reads it ({'sigmoid(0) is not 0' if operation == 'sigmoid' else 'its operands keep one width'})"
        if self.is_call(node, CHUNKS):
            return "its channels are split into chunks (each chunk's channels must not depend on the branch)"
        if self.is_call(node, STACKS):
            return "its channels are the forecast's"
        if node.op == "call_function" and node.target in CONCATS:
            return "a concatenation reads it (its consumer's input channels would depend on the branch)"
        if shuffling(node, self.modules) is not None:
            return "a pixel shuffle reads it (its channels become positions, or positions its channels)"
        if self.is_reshape(node):
            after, before = (
                self.shapes.get(node.name),
                self.shapes.get(node.all_input_nodes[0].name) if node.all_input_nodes else None,
            )
            if after is not None and len(after) == 5:
                return "its channels are the forecast's"
            if (
                after is not None
                and before is not None
                and len(before) == 4
                and len(after) == 4
                and after[0] > before[0]
            ):
                return "frames are cut from its channels"
            return next((why for user in self.users[node] if (why := self.full_width_reader(user))), None)
        return None
