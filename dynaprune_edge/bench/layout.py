"""`dpedge bench layout`: what onnxruntime's blocked channel layout makes of the work a
pruned branch saves, on this machine's CPU.

onnxruntime runs convolutions in a blocked layout (NCHWc: channels in blocks of 8 with
AVX2, 16 with AVX-512) and keeps an elementwise node in it only when all its inputs are
blocked tensors of one shape. Two things follow, each measured here on chains of 3×3
convolutions + ReLU, the graphs taking turns:

- **Masks.** A branch that runs a layer on whole maps multiplies its output by the
  kept-region mask, so that the next layer reads zeros where PyTorch has them. A
  broadcast (1, 1, H, W) mask makes onnxruntime convert every masked layer's output back
  to NCHW and the next convolution's input forward again; the exporter shapes the mask as
  the feature instead (`RegionOps.blocked_region_mask`: Expand to the rows, then a 1×1
  convolution of ones to the channels, whose output is blocked).
- **Widths.** A layer's time falls with its width in steps of the block, not with its
  FLOPs: a width that is not a multiple of the block is padded up to one, or leaves the
  blocked layout altogether.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from dynaprune_edge.bench.results import write_results
from dynaprune_edge.bench.tables import (
    layout_masks_grid,
    layout_masks_title,
    layout_widths_grid,
    layout_widths_title,
    rich_table,
)
from dynaprune_edge.export.graph import GraphBuilder, tensor_info
from dynaprune_edge.profiling.latency import interleaved_latency
from dynaprune_edge.runtime.onnxruntime import import_onnxruntime, session_options

MASKS = ("none", "broadcast", "blocked")
MASKED_SHAPES = ((16, 12, 20), (16, 64, 64), (32, 12, 20), (64, 16, 16))
"""(channels, height, width): SimVP's full-resolution layers on NYC bike's padded grid and
on KNMI, a wider layer, and a translator-like 64-channel map."""
WIDTHS = (8, 16, 24, 32, 48, 64)  # what group size 8 and the width levels give SimVPs
WIDTH_MAPS = ((12, 20), (64, 64))
LAYERS = 6
FRAMES = 4  # feature rows (SimVP encodes each input frame as one row)
REPEAT = 3  # each graph warm at its turn (profiling.latency.interleaved_latency)


@dataclass
class MaskRow:
    channels: int
    height: int
    width: int
    none_ms: float
    broadcast_ms: float
    blocked_ms: float

    @property
    def broadcast_overhead(self) -> float:
        return self.broadcast_ms / self.none_ms - 1

    @property
    def blocked_overhead(self) -> float:
        return self.blocked_ms / self.none_ms - 1

    def as_dict(self) -> dict:
        return {
            "kind": "mask",
            **asdict(self),
            "broadcast_overhead": self.broadcast_overhead,
            "blocked_overhead": self.blocked_overhead,
        }


@dataclass
class WidthRow:
    height: int
    width: int
    ms: dict[int, float]  # channels → median ms

    def time_share(self, channels: int) -> float:
        """Time of the chain at `channels` over the widest one's: what FLOPs say is (c/C)²."""
        return self.ms[channels] / self.ms[max(self.ms)]

    def flops_share(self, channels: int) -> float:
        return (channels / max(self.ms)) ** 2

    def as_dict(self) -> dict:
        return {
            "kind": "width",
            "height": self.height,
            "width": self.width,
            "ms": {str(c): t for c, t in self.ms.items()},
            "time_share": {str(c): self.time_share(c) for c in self.ms},
            "flops_share": {str(c): self.flops_share(c) for c in self.ms},
        }


def chain(channels: int, height: int, width: int, mask: str = "none") -> bytes:
    """LAYERS 3×3 convolutions + ReLU on (FRAMES, channels, H, W), each output multiplied by
    the run-time (1, 1, H, W) input `keep` shaped as `mask` says ("none": not at all)."""
    rng = np.random.default_rng(0)
    b = GraphBuilder("chain")
    x, scope = "x", "chain"
    keep = "keep"
    if mask == "blocked":
        rows = b.op("Expand", keep, b.const([FRAMES, 1, height, width]), scope=scope)
        keep = b.op("Conv", rows, b.const(np.ones((channels, 1, 1, 1), np.float32)), scope=scope)
    for _ in range(LAYERS):
        weight = b.const(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.1)
        x = b.op(
            "Relu",
            b.op("Conv", x, weight, b.const(np.zeros(channels, np.float32)), scope=scope, pads=[1, 1, 1, 1]),
            scope=scope,
        )
        if mask != "none":
            x = b.op("Mul", x, keep, scope=scope)
    b.identity(x, "y")
    inputs = [tensor_info("x", [FRAMES, channels, height, width]), tensor_info("keep", [1, 1, height, width])]
    return b.model(
        inputs, [tensor_info("y", [FRAMES, channels, height, width])], "dpedge bench layout"
    ).SerializeToString()


def timed(graphs: list[tuple[bytes, int, int, int]], runs: int) -> tuple[list[float], list[np.ndarray]]:
    """Median ms of each (graph, channels, height, width), in turns, on random features (the
    same for graphs of one shape) and one of 8 random half-kept masks per run; and each
    graph's output on the first mask."""
    ort = import_onnxruntime()
    runners = []
    for graph, channels, height, width in graphs:
        session = ort.InferenceSession(graph, session_options(1), providers=["CPUExecutionProvider"])
        x = np.random.default_rng(channels).standard_normal((FRAMES, channels, height, width)).astype(np.float32)
        runners.append(lambda keep, session=session, x=x: session.run(None, {"x": x, "keep": keep[0]})[0])
    height, width = graphs[0][2:]
    masks = (np.random.default_rng(1).random((8, 1, 1, height, width)) < 0.5).astype(np.float32)
    outputs = [runner(masks[:1]) for runner in runners]
    return [float(np.median(t)) for t in interleaved_latency(runners, masks, runs, repeat=REPEAT)], outputs


def masks_row(channels: int, height: int, width: int, runs: int) -> MaskRow:
    ms, outputs = timed([(chain(channels, height, width, mask), channels, height, width) for mask in MASKS], runs)
    if not np.array_equal(outputs[1], outputs[2]):
        raise AssertionError("the blocked mask must zero exactly what the broadcast one does")
    return MaskRow(channels, height, width, *ms)


def widths_row(height: int, width: int, runs: int) -> WidthRow:
    ms, _ = timed([(chain(c, height, width), c, height, width) for c in WIDTHS], runs)
    return WidthRow(height, width, dict(zip(WIDTHS, ms)))


def document(masked: list[MaskRow], widths: list[WidthRow], runs: int) -> dict:
    """What results.json holds: the rows of each table and the chain's settings."""
    return {
        "masks": [r.as_dict() for r in masked],
        "widths": [r.as_dict() for r in widths],
        "settings": {"layers": LAYERS, "frames": FRAMES, "runs": runs, "repeat": REPEAT, "threads": 1},
    }


def bench(out: Path, runs: int, as_json: bool, console: Console) -> tuple[list[MaskRow], list[WidthRow]]:
    """`dpedge bench layout`: every masked shape and every width map timed `runs` times; the
    rows into OUT/results.json, under "masks", "widths" and the chain's "settings"."""
    masked = [masks_row(*shape, runs) for shape in MASKED_SHAPES]
    widths = [widths_row(*size, runs) for size in WIDTH_MAPS]
    write_results(document(masked, widths, runs), out, benchmark="layout")
    if as_json:
        for row in [*masked, *widths]:
            print(json.dumps(row.as_dict()))
        return masked, widths
    console.print(rich_table(layout_masks_grid([r.as_dict() for r in masked], layout_masks_title(LAYERS, FRAMES))))
    console.print(rich_table(layout_widths_grid([r.as_dict() for r in widths], layout_widths_title(max(WIDTHS)))))
    console.print(f"[dim]rows in {out / 'results.json'}[/dim]")
    return masked, widths
