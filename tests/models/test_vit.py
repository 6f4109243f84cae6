"""The patch transformer: a skipped token really costs nothing and changes nothing."""

from __future__ import annotations

import pytest
import torch

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.layers import MaskState, TrainingInterpreter
from dynaprune_edge.masks import MaskMode, PruningConfig
from dynaprune_edge.models import ModelConfig, build_model
from tests.models.test_backbones import SHAPE, build, inputs, nudge


def test_vit_skipped_tokens_do_not_influence_kept_ones():
    model, x = build("vit", 0.3), inputs(1)
    nudge(model, x)
    backbone = model.backbone
    with torch.no_grad():
        masks = model.masks(x, MaskMode(hard=True))
        patchify = TrainingInterpreter(masks).to_tokens
        full = patchify(backbone(x, masks))
        kept = masks.region_mask.flatten().nonzero()[:, 0]
        skipped = (masks.region_mask.flatten() == 0).nonzero()[:, 0]
        assert 0 < len(kept) < full.shape[1]
        gathered_masks = MaskState(torch.ones(1, 1, 1, len(kept)), masks.channel_masks)
        patches, position = patchify(x)[:, kept], backbone.position[:, kept]
        gathered = backbone.transformer(TrainingInterpreter(gathered_masks), patches, position)
    torch.testing.assert_close(full[:, kept], gathered, rtol=1e-4, atol=1e-5)
    assert (full[:, skipped] == 0).all()


def test_vit_with_every_token_skipped_stays_finite():
    backbone = build("vit", 1.0).backbone
    x = inputs(2).requires_grad_()
    masks = MaskState.all_kept(2, backbone.grid, backbone.gate_specs(), x)
    masks.region_mask = masks.region_mask.clone()
    masks.region_mask[0] = 0
    y = backbone(x, masks)
    y.sum().backward()
    assert torch.isfinite(y).all() and (y[0] == 0).all()
    assert torch.isfinite(x.grad).all()


def test_vit_patch_size_must_equal_region_size():
    pruning = PruningConfig(budget=0.3, region_size=4)
    with pytest.raises(ConfigError, match="patch_size equal to the region size"):
        build_model(ModelConfig("vit", SHAPE, {"patch_size": 8}, pruning))
