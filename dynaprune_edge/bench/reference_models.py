"""Well-known networks whose Jetson AGX Orin latency is published, built here so that
`dpedge bench orin` can emulate exactly the graph the source timed.

Only the architecture matters (the emulator prices shapes, not values), so the weights are
random and the networks are written from their published descriptions in plain torch:
- ResNet-50 v1.5 (He et al. 2015; the stride-2 convolution in the 3×3 of each first
  bottleneck, as MLPerf's reference and torchvision build it): 25,557,032 parameters, 224×224.
- MobileNetV2 1.0 (Sandler et al. 2018): 3,504,872 parameters, 224×224; no published Orin
  row, but TensorRT's engine explorer ships a per-layer profile of it measured on a TITAN
  RTX, which `bench orin` scales to the Orin (dynaprune_edge.cost.calibration).
- YOLO11 n/s/m/l/x (Ultralytics 8.3, `yolo11.yaml`: the depth, width and channel-cap
  scales; C3k2, SPPF and C2PSA blocks; the decoupled head with distribution focal loss
  decoding, which the exported TensorRT engine runs and the published times include),
  640×640. Their published sizes are 2.6 / 9.4 / 20.1 / 25.3 / 56.9 M parameters.
- BERT-Large (Devlin et al. 2018), the encoder MLPerf's BERT-99 runs: 24 post-norm layers,
  hidden 1024, 16 heads of 64, FFN 4096 with exact (erf) GELU, LayerNorm eps 1e-12, the
  SQuAD start/end head, 384 tokens. The embeddings are simplified to their sum as a float
  input of (1, 384, 1024) followed by the embedding LayerNorm: the token/position/type
  lookups (a gather of 384 rows) are left out. Q, K and V are one packed 1024 → 3072
  projection, as NVIDIA's MLPerf engine builds them (one QKV GEMM feeding its fused
  attention plugin). 302.3 M parameters here; with the embedding tables (30522 tokens, 384
  positions, 2 types) 333.96 M and 246.9 GOPs, the published size of BERT-Large SQuAD.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from dynaprune_edge.files import atomic_write_bytes

# ---------------------------------------------------------------- ResNet-50


class ResNetBottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int):
        super().__init__()
        c_out = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(c_in, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x):
        return torch.relu(self.body(x) + self.shortcut(x))


def resnet50() -> nn.Module:
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1),
    ]
    c_in = 64
    for stage, (blocks, width) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512))):
        for block in range(blocks):
            layers.append(ResNetBottleneck(c_in, width, 2 if block == 0 and stage > 0 else 1))
            c_in = width * ResNetBottleneck.expansion
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 1000)]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- MobileNetV2


def conv_bn_relu6(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand 1×1 (skipped at expansion 1), depthwise 3×3, project 1×1; residual where the
    shape is kept."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int):
        super().__init__()
        hidden = c_in * expansion
        layers = [conv_bn_relu6(c_in, hidden, 1)] if expansion != 1 else []
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.body(x) if self.residual else self.body(x)


def mobilenet_v2() -> nn.Module:
    """Sandler et al. 2018, width 1.0: (expansion, channels, blocks, first stride) per stage."""
    layers: list[nn.Module] = [conv_bn_relu6(3, 32, 3, 2)]
    c_in = 32
    for expansion, c_out, blocks, stride in (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ):
        for block in range(blocks):
            layers.append(InvertedResidual(c_in, c_out, stride if block == 0 else 1, expansion))
            c_in = c_out
    layers += [conv_bn_relu6(c_in, 1280, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1280, 1000)]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- YOLO11


class ConvBnSiLU(nn.Module):
    """Ultralytics' `Conv`: same-padded convolution, batch norm, SiLU (or no activation)."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, s: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, s, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c_in: int, c_out: int, shortcut: bool = True, kernels=(3, 3), expansion: float = 0.5):
        super().__init__()
        hidden = int(c_out * expansion)
        self.cv1 = ConvBnSiLU(c_in, hidden, kernels[0])
        self.cv2 = ConvBnSiLU(hidden, c_out, kernels[1])
        self.add = shortcut and c_in == c_out

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3k(nn.Module):
    """CSP block of two branches, one through `n` k×k bottlenecks."""

    def __init__(self, c_in: int, c_out: int, n: int = 2, shortcut: bool = True):
        super().__init__()
        hidden = int(c_out * 0.5)
        self.cv1 = ConvBnSiLU(c_in, hidden)
        self.cv2 = ConvBnSiLU(c_in, hidden)
        self.cv3 = ConvBnSiLU(2 * hidden, c_out)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, (3, 3), 1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class C3k2(nn.Module):
    """YOLO11's C2f variant: split, chain `n` inner blocks (bottlenecks, or C3k for the
    larger scales and the deep stages), concatenate every intermediate, project."""

    def __init__(self, c_in: int, c_out: int, n: int, c3k: bool, expansion: float = 0.5, shortcut: bool = True):
        super().__init__()
        self.c = int(c_out * expansion)
        self.cv1 = ConvBnSiLU(c_in, 2 * self.c)
        self.cv2 = ConvBnSiLU((2 + n) * self.c, c_out)
        self.m = nn.ModuleList(
            C3k(self.c, self.c, 2, shortcut) if c3k else Bottleneck(self.c, self.c, shortcut) for _ in range(n)
        )

    def forward(self, x):
        y = list(self.cv1(x).split((self.c, self.c), 1))  # sizes, not chunk(2): static shapes in the ONNX
        for block in self.m:
            y.append(block(y[-1]))
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c_in: int, c_out: int, k: int = 5):
        super().__init__()
        hidden = c_in // 2
        self.cv1 = ConvBnSiLU(c_in, hidden)
        self.cv2 = ConvBnSiLU(hidden * 4, c_out)
        self.pool = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.pool(y[-1]))
        return self.cv2(torch.cat(y, 1))


class Attention(nn.Module):
    """Multi-head self-attention over the H×W positions, keys half the head width, with a
    depthwise 3×3 positional encoding of the values."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, dim // heads
        self.key_dim = self.head_dim // 2
        self.qkv = ConvBnSiLU(dim, dim + 2 * self.key_dim * heads, act=False)
        self.proj = ConvBnSiLU(dim, dim, act=False)
        self.pe = ConvBnSiLU(dim, dim, 3, groups=dim, act=False)

    def forward(self, x):
        b, c, h, w = x.shape
        q, k, v = (
            self.qkv(x)
            .view(b, self.heads, 2 * self.key_dim + self.head_dim, h * w)
            .split([self.key_dim, self.key_dim, self.head_dim], dim=2)
        )
        attention = ((q.transpose(-2, -1) @ k) * self.key_dim**-0.5).softmax(dim=-1)
        x = (v @ attention.transpose(-2, -1)).view(b, c, h, w) + self.pe(v.reshape(b, c, h, w))
        return self.proj(x)


class C2PSA(nn.Module):
    """Split; `n` attention + feed-forward blocks (residual) on one half; concatenate; project."""

    def __init__(self, channels: int, n: int):
        super().__init__()
        self.c = channels // 2
        self.cv1 = ConvBnSiLU(channels, 2 * self.c)
        self.cv2 = ConvBnSiLU(2 * self.c, channels)
        self.attention = nn.ModuleList(Attention(self.c, self.c // 64) for _ in range(n))
        self.ffn = nn.ModuleList(
            nn.Sequential(ConvBnSiLU(self.c, 2 * self.c), ConvBnSiLU(2 * self.c, self.c, act=False)) for _ in range(n)
        )

    def forward(self, x):
        a, b = self.cv1(x).split((self.c, self.c), dim=1)
        for attention, ffn in zip(self.attention, self.ffn):
            b = b + attention(b)
            b = b + ffn(b)
        return self.cv2(torch.cat((a, b), 1))


class Detect(nn.Module):
    """Decoupled head on strides 8/16/32: a box branch predicting 4 × 16-bin distances and a
    class branch (depthwise-separable), decoded to (1, 4 + classes, anchors) boxes in pixels."""

    reg_max = 16

    def __init__(self, channels: tuple[int, ...], image: int, classes: int = 80):
        super().__init__()
        box = max(16, channels[0] // 4, 4 * self.reg_max)
        cls = max(channels[0], min(classes, 100))
        self.box = nn.ModuleList(
            nn.Sequential(ConvBnSiLU(c, box, 3), ConvBnSiLU(box, box, 3), nn.Conv2d(box, 4 * self.reg_max, 1))
            for c in channels
        )
        self.cls = nn.ModuleList(
            nn.Sequential(
                ConvBnSiLU(c, c, 3, groups=c),
                ConvBnSiLU(c, cls),
                ConvBnSiLU(cls, cls, 3, groups=cls),
                ConvBnSiLU(cls, cls),
                nn.Conv2d(cls, classes, 1),
            )
            for c in channels
        )
        self.dfl = nn.Conv2d(self.reg_max, 1, 1, bias=False).requires_grad_(False)
        self.dfl.weight.data[:] = torch.arange(self.reg_max, dtype=torch.float).view(1, self.reg_max, 1, 1)
        centres, strides = [], []
        for stride in (8, 16, 32):
            side = image // stride
            ys, xs = torch.meshgrid(torch.arange(side) + 0.5, torch.arange(side) + 0.5, indexing="ij")
            centres.append(torch.stack((xs.flatten(), ys.flatten())))
            strides.append(torch.full((1, side * side), float(stride)))
        self.register_buffer("centres", torch.cat(centres, 1))
        self.register_buffer("strides", torch.cat(strides, 1))

    def forward(self, features):
        levels = [torch.cat((box(x), cls(x)), 1).flatten(2) for x, box, cls in zip(features, self.box, self.cls)]
        out = torch.cat(levels, 2)
        distances, scores = out.split((4 * self.reg_max, out.shape[1] - 4 * self.reg_max), 1)
        anchors = out.shape[2]
        distances = self.dfl(distances.view(1, 4, self.reg_max, anchors).transpose(2, 1).softmax(1)).view(1, 4, anchors)
        left_top, right_bottom = distances.split((2, 2), 1)
        first, second = self.centres - left_top, self.centres + right_bottom
        boxes = torch.cat(((first + second) / 2, second - first), 1) * self.strides
        return torch.cat((boxes, scores.sigmoid()), 1)


YOLO11_SCALES = {
    "n": (0.50, 0.25, 1024),
    "s": (0.50, 0.50, 1024),
    "m": (0.50, 1.00, 512),
    "l": (1.00, 1.00, 512),
    "x": (1.00, 1.50, 512),
}


class YOLO11(nn.Module):
    def __init__(self, scale: str, image: int = 640):
        super().__init__()
        depth, width, cap = YOLO11_SCALES[scale]

        def ch(c: int) -> int:
            return math.ceil(min(c, cap) * width / 8) * 8

        def n(repeats: int) -> int:
            return max(round(repeats * depth), 1)

        c3k_everywhere = scale in "mlx"
        self.stem = nn.Sequential(
            ConvBnSiLU(3, ch(64), 3, 2),
            ConvBnSiLU(ch(64), ch(128), 3, 2),
            C3k2(ch(128), ch(256), n(2), c3k_everywhere, 0.25),
            ConvBnSiLU(ch(256), ch(256), 3, 2),
            C3k2(ch(256), ch(512), n(2), c3k_everywhere, 0.25),
        )  # → P3, stride 8
        self.p4 = nn.Sequential(ConvBnSiLU(ch(512), ch(512), 3, 2), C3k2(ch(512), ch(512), n(2), True))
        self.p5 = nn.Sequential(
            ConvBnSiLU(ch(512), ch(1024), 3, 2),
            C3k2(ch(1024), ch(1024), n(2), True),
            SPPF(ch(1024), ch(1024)),
            C2PSA(ch(1024), n(2)),
        )
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.top_down4 = C3k2(ch(1024) + ch(512), ch(512), n(2), c3k_everywhere)
        self.top_down3 = C3k2(ch(512) + ch(512), ch(256), n(2), c3k_everywhere)
        self.down3 = ConvBnSiLU(ch(256), ch(256), 3, 2)
        self.bottom_up4 = C3k2(ch(256) + ch(512), ch(512), n(2), c3k_everywhere)
        self.down4 = ConvBnSiLU(ch(512), ch(512), 3, 2)
        self.bottom_up5 = C3k2(ch(512) + ch(1024), ch(1024), n(2), True)
        self.detect = Detect((ch(256), ch(512), ch(1024)), image)

    def forward(self, x):
        p3 = self.stem(x)
        p4 = self.p4(p3)
        p5 = self.p5(p4)
        h4 = self.top_down4(torch.cat((self.up(p5), p4), 1))
        h3 = self.top_down3(torch.cat((self.up(h4), p3), 1))
        o4 = self.bottom_up4(torch.cat((self.down3(h3), h4), 1))
        o5 = self.bottom_up5(torch.cat((self.down4(o4), p5), 1))
        return self.detect((h3, o4, o5))


# ---------------------------------------------------------------- BERT-Large


class BertLayer(nn.Module):
    """Post-norm transformer layer: x = LN(x + attention(x)), then LN(x + FFN(x))."""

    def __init__(self, hidden: int = 1024, heads: int = 16, ffn: int = 4096):
        super().__init__()
        self.hidden, self.heads, self.head_dim = hidden, heads, hidden // heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attention_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.up = nn.Linear(hidden, ffn)
        self.down = nn.Linear(ffn, hidden)
        self.ffn_norm = nn.LayerNorm(hidden, eps=1e-12)

    def forward(self, x):
        b, s, _ = x.shape
        q, k, v = (t.view(b, s, self.heads, self.head_dim).transpose(1, 2) for t in self.qkv(x).split(self.hidden, -1))
        attention = ((q @ k.transpose(-2, -1)) * self.head_dim**-0.5).softmax(dim=-1)
        context = (attention @ v).transpose(1, 2).reshape(b, s, self.hidden)
        x = self.attention_norm(x + self.out(context))
        return self.ffn_norm(x + self.down(nn.functional.gelu(self.up(x))))


class BertLarge(nn.Module):
    """BERT-Large for SQuAD from the summed embeddings: embedding LayerNorm, 24 layers, the
    start/end logits head."""

    def __init__(self, layers: int = 24, hidden: int = 1024):
        super().__init__()
        self.embedding_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.layers = nn.Sequential(*(BertLayer(hidden) for _ in range(layers)))
        self.head = nn.Linear(hidden, 2)

    def forward(self, embeddings):
        return self.head(self.layers(self.embedding_norm(embeddings)))


BERT_SEQUENCE = 384
BERT_EMBEDDING_TABLES = (30522 + BERT_SEQUENCE + 2) * 1024
"""Parameters of the token, position and type tables left out here (BERT's uncased
vocabulary; positions as the published 384-token SQuAD model keeps them)."""


REFERENCE_MODELS: dict[str, Callable[[], tuple[nn.Module, tuple[int, ...]]]] = {
    "resnet50": lambda: (resnet50(), (1, 3, 224, 224)),
    "mobilenet_v2": lambda: (mobilenet_v2(), (1, 3, 224, 224)),
    **{f"yolo11{scale}": (lambda scale=scale: (YOLO11(scale), (1, 3, 640, 640))) for scale in YOLO11_SCALES},
    "bert_large": lambda: (BertLarge(), (1, BERT_SEQUENCE, 1024)),
}


def to_onnx(model: nn.Module, shape: tuple[int, ...], path: Path) -> None:
    """Export in inference mode (batch norm folded into the convolutions, as TensorRT folds it),
    static shapes, opset 17; written whole or not at all."""
    import io

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model.eval(),
            (torch.zeros(shape),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["image"],
            output_names=["output"],
        )
    atomic_write_bytes(buffer.getvalue(), path)
