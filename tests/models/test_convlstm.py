"""The ConvLSTM: its recurrent state really is zero where the masks say so."""

from __future__ import annotations

import torch

from dynaprune_edge.masks import MaskMode
from tests.models.test_backbones import SHAPE, build, inputs, nudge


def test_convlstm_state_is_zero_in_skipped_regions_and_pruned_channels():
    model, x = build("convlstm", 0.3), inputs(2)
    nudge(model, x)
    states = []
    for cell in model.backbone.cells:
        cell.register_forward_hook(lambda cell, args, output: states.append((cell.gate, output)))
    with torch.no_grad():
        masks = model.masks(x, MaskMode(hard=True))
        model.backbone(x, masks)
    assert len(states) == len(model.backbone.cells) * (SHAPE.frames_in + SHAPE.frames_out - 1)
    for gate, (hidden, cell) in states:
        region = masks.region_at(tuple(hidden.shape[-2:]))
        dropped = 1 - masks.channel(gate)[:, :, None, None] * region
        assert (hidden * dropped == 0).all() and (cell * dropped == 0).all()
