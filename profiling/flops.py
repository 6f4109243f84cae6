"""How dpedge counts FLOPs, in one place, so that every report says the same thing."""

FLOPS_CONVENTION = (
    "FLOPs = multiply-adds of convolutions, linear layers and matrix products "
    "(one multiply-add = one flop, as fvcore counts); normalisation and element-wise "
    "ops are not counted (BatchNorm folds into the convolution at export)"
)


def format_flops(flops: float) -> str:
    """Human-readable count: 40.1 M, 1.23 G."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(flops) >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.3g}"
