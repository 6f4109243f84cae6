"""How dpedge counts FLOPs: the convention every report prints and the multiply-add count of
each kind of work a layer does. Torch-free (the runtime and the profiler use it on the
Jetson); the formulas take plain numbers or tensors alike, so the training ledger (fractional,
differentiable kept counts) and the exported graph (whole counts) share them."""

from __future__ import annotations

FLOPS_CONVENTION = (
    "FLOPs = multiply-adds of convolutions, linear layers and matrix products "
    "(one multiply-add = one flop, as fvcore counts); normalisation and element-wise "
    "ops are not counted (BatchNorm folds into the convolution at export)"
)


def conv_flops(in_channels, out_channels, kernel_area, positions):
    """A convolution computing `positions` output pixels (groups = 1; bias not counted)."""
    return in_channels * out_channels * kernel_area * positions


def matmul_flops(rows, inner, columns):
    """A (rows × inner) · (inner × columns) matrix product, or a linear layer over `rows`."""
    return rows * inner * columns


def format_flops(flops: float) -> str:
    """Human-readable count: 40.1 M, 1.23 G."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(flops) >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g}"
