"""Exports of models on grids that are not multiples of the region size: the graph takes
and returns the user's grid (padding inside, cropped at the end), and matches PyTorch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from dynaprune_edge.data import DataConfig, Normalizer, SpatioTemporalData
from dynaprune_edge.data.windows import WindowDataset, time_split
from dynaprune_edge.export.exporter import Exporter, ExportOptions
from dynaprune_edge.masks import MaskMode, PruningConfig
from dynaprune_edge.models import BACKBONES, ForecastShape, ModelConfig, build_model
from dynaprune_edge.training.checkpoint import atomic_save, model_payload
from tests.exported import run_in_model_units

SIZES = {
    "simvp": {"spatial_channels": 16, "temporal_channels": 32},
    "vit": {"dim": 64, "depth": 2},
    "convlstm": {"hidden_channels": 16},
}


def grid_data(height: int, width: int) -> SpatioTemporalData:
    """A small city on a height×width grid, a third of its cells always empty."""
    rng = np.random.default_rng(0)
    series = rng.random((90, 2, height, width)).astype(np.float32)
    series[..., ::3] = 0.0
    segments = time_split(series, (0.7, 0.15, 0.15))
    normalizer = Normalizer.fit_segments(segments.train)
    splits = {name: WindowDataset(split, 3, 2, normalizer) for name, split in segments.splits().items()}
    config = DataConfig("taxibj", frames_in=3, frames_out=2, size=height)
    return SpatioTemporalData(
        config, normalizer=normalizer, channels=2, height=height, width=width, source="synthetic", unit="u", **splits
    )


def saved(tmp_path, backbone: str, data: SpatioTemporalData, **pruning):
    """A model whose generator keeps about half the regions, differently per sample."""
    torch.manual_seed(0)
    shape = ForecastShape(3, 2, 2, data.height, data.width)
    config = ModelConfig(backbone, shape, SIZES[backbone], PruningConfig(budget=0.3, **pruning))
    model = build_model(config).eval()
    with torch.no_grad():
        model.generator.importance.weight.normal_(0, 1.0)
        frames = torch.stack([data.train[i][0] for i in range(0, len(data.train), 3)])
        logits = model.importance(model.pad(frames)).logits
        model.generator.importance.bias -= logits[torch.isfinite(logits)].median()
    path = tmp_path / "model.pt"
    atomic_save(model_payload(model, config, data.config, data.normalizer, {}), path)
    return path, model


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone, height, width, region_size",
    [(b, 10, 20, 8) for b in BACKBONES.names()] + [(b, 13, 7, 8) for b in BACKBONES.names()] + [("simvp", 10, 20, 2)],
)
def test_a_padded_grid_exports_with_parity_at_the_user_s_shape(tmp_path, backbone, height, width, region_size):
    data = grid_data(height, width)
    path, model = saved(tmp_path, backbone, data, region_size=region_size)
    out = tmp_path / "model.onnx"
    chosen, manifest, _ = Exporter(path, ExportOptions(mode="gather", tiles="all"), data=data, log=lambda _: None).run(
        out
    )
    assert max(chosen.parity.values()) <= 1e-4 and len(chosen.parity) >= 2
    graph = onnx.load(out).graph
    dims = lambda value: [d.dim_value for d in value.type.tensor_type.shape.dim]
    assert dims(graph.input[0]) == [1, 3, 2, height, width] and dims(graph.output[0]) == [1, 2, 2, height, width]
    assert manifest.inputs[0].shape == [1, 3, 2, height, width]

    frames = torch.stack([data.test[i][0] for i in range(6)])
    with torch.no_grad():
        expected = model(frames, MaskMode(hard=True)).prediction.numpy()
    result = run_in_model_units(out, frames, data.normalizer)
    assert result.forecast.shape == expected.shape == (6, 2, 2, height, width)
    assert np.abs(result.forecast - expected).max() <= 1e-4

    dense_out = tmp_path / "model.dense.onnx"
    chosen, _, _ = Exporter(path, ExportOptions(dense=True), data=data, log=lambda _: None).run(dense_out)
    assert max(chosen.parity.values()) <= 1e-4
    with torch.no_grad():
        assert (
            np.abs(
                run_in_model_units(dense_out, frames, data.normalizer).forecast - model.dense_forecast(frames).numpy()
            ).max()
            <= 1e-4
        )
