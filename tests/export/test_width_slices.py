"""A slimmable network's width levels (`dpedge train --slimmable`, `dpedge export --width`):
each level of every backbone is a static network whose export computes what PyTorch
computes at that level, with that level's BatchNorm statistics, and costs what fvcore
counts."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import torch

from dynaprune_edge.export.network import build_graph
from dynaprune_edge.export.parity import PARITY_TOLERANCE
from dynaprune_edge.flops.fvcore_count import static_equivalent_flops
from dynaprune_edge.masks import MaskMode, PruningConfig
from dynaprune_edge.models import BACKBONES, ForecastShape, ModelConfig, build_model
from dynaprune_edge.runtime.manifest import FORECAST, INPUT

SHAPE = ForecastShape(frames_in=3, frames_out=2, channels=2, height=32, width=32)


def slimmable(backbone: str):
    """A slimmable model whose width levels hold different BatchNorm statistics, as
    training leaves them."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone, SHAPE, {}, PruningConfig(slimmable=True)))
    with torch.no_grad():
        for norm in model.width_norms:
            norm.width_mean.normal_(0.0, 0.5)
            norm.width_var.uniform_(0.5, 2.0)
            norm.use_width(-1)
    return model.eval()


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_every_width_level_exports_with_parity_and_costs_what_fvcore_counts(backbone):
    model = slimmable(backbone)
    x = torch.randn(
        2, SHAPE.frames_in, SHAPE.channels, SHAPE.height, SHAPE.width, generator=torch.Generator().manual_seed(1)
    )
    flops = []
    for level in range(len(model.pruning.width_levels)):
        with torch.no_grad():
            forecast = model(x, MaskMode(hard=True), level)
        graph, costs = build_graph(model, None, "dense", None, width=level)
        session = onnxruntime.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
        for sample in range(2):
            exported = session.run([FORECAST], {INPUT: x[sample : sample + 1].numpy()})[0]
            assert np.abs(exported - forecast.prediction[sample : sample + 1].numpy()).max() <= PARITY_TOLERANCE
        ledger = forecast.flops[0].item()
        assert costs[0][0] == pytest.approx(ledger, rel=1e-6), "the graph's flops output is not the ledger's"
        assert ledger == pytest.approx(static_equivalent_flops(forecast.masks.ledger, forecast.masks, 0), rel=0.01)
        flops.append(ledger)
    assert flops == sorted(set(flops)), "wider levels must compute more"
    with torch.no_grad():
        plain = model(x)
    assert flops[-1] == pytest.approx(plain.dense_flops)
    widest = model(x, MaskMode(hard=True), len(flops) - 1).prediction
    assert torch.equal(widest, plain.prediction), (
        "a slimmable model's plain forward is its widest level (metrics rely on it)"
    )
    if model.width_norms:  # what the export matched used the level's own statistics, not the widest level's
        with torch.no_grad():
            padded = model.pad(x)
            with_widest = model.crop(model.backbone(padded, model.width_masks(padded, 0)))
            narrowest = model(x, MaskMode(hard=True), 0).prediction
        assert (with_widest - narrowest).abs().max() > 100 * PARITY_TOLERANCE
