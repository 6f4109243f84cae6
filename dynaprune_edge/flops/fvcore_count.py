"""fvcore's count under dpedge's convention (`dynaprune_edge.flops.FLOPS_CONVENTION`): the
independent check of the closed-form FLOPs each layer's `cost` gives. Needs torch and fvcore
(the `train` extra) and nothing else of dpedge, so it sits beside the convention."""

from __future__ import annotations

import logging

import torch
from fvcore.nn import FlopCountAnalysis
from torch import Tensor, nn

NOT_COUNTED = (
    "aten::batch_norm",
    "aten::group_norm",
    "aten::layer_norm",
    "aten::instance_norm",
    "aten::upsample_nearest2d",
    "aten::upsample_bilinear2d",
    "aten::adaptive_avg_pool2d",
)


def _not_counted(inputs, outputs) -> int:
    return 0


def fvcore_flops(module: nn.Module, inputs: tuple[Tensor, ...]) -> float:
    """Multiply-adds of convolutions, linear layers and matrix products in one call."""
    if inputs and inputs[0].shape[0] == 0:
        return 0.0  # nothing gathered: a layer whose every region was skipped
    logging.getLogger("fvcore").setLevel(logging.ERROR)  # unsupported element-wise ops
    was_training = module.training
    analysis = FlopCountAnalysis(module.eval(), inputs)
    # set_op_handle(op, None) leaves fvcore's default handle in charge: count zero instead
    analysis.set_op_handle(**{op: _not_counted for op in NOT_COUNTED})
    analysis.unsupported_ops_warnings(False)
    analysis.uncalled_modules_warnings(False)
    try:
        return float(analysis.total())
    finally:
        module.train(was_training)


class _DenseBackbone(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.backbone(x, self.model.dense_masks(x))


@torch.no_grad()
def dense_flops_fvcore(model: nn.Module) -> float:
    """fvcore's count of one sample through a `DynaPruner`'s backbone with pruning off."""
    shape = model.backbone.shape
    x = torch.zeros(1, shape.frames_in, shape.channels, shape.height, shape.width)
    return fvcore_flops(_DenseBackbone(model), (x,))


def static_equivalent_flops(ledger, masks, sample: int) -> float:
    """fvcore's count of what one sample of a forward computed: each layer the `ledger`
    recorded, as its static equivalent (the dense layer of exactly the kept channels,
    regions as tiles with their halo, tokens) under `masks`, per-frame layers once per
    frame. The mask generator's fixed cost is not included."""
    total = 0.0
    for entry in ledger.entries:
        framed = masks.for_frames(entry.frames) if entry.frames > 1 else masks
        for element in range(sample * entry.frames, (sample + 1) * entry.frames):
            module, example = entry.layer.static_equivalent(framed, element, entry.output_size)
            total += fvcore_flops(module, example)
    return total
