"""A backbone made of existing layer types, defined here and nowhere else, trains and
exports with parity: adding one needs its class and `register_backbone`, no change to the
exporter. And a forward the export cannot compile says why in one line."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from dynaprune_edge.data import DataConfig, load_dataset
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.exporter import Exporter, ExportOptions
from dynaprune_edge.layers import GatedConv2d, Interpreter
from dynaprune_edge.masks import MaskMode, PruningConfig
from dynaprune_edge.models import BACKBONES, ForecastShape, ModelConfig, build_model, register_backbone
from dynaprune_edge.models.base import Backbone
from dynaprune_edge.training.checkpoint import atomic_save, model_payload
from exported import run_in_model_units

DATA = DataConfig("taxibj", synthetic_frames=160)


@dataclass(frozen=True)
class ResidualOptions:
    channels: int = 16
    coupled: bool = False  # sum two differently pruned features (not compilable)


class ResidualCNN(Backbone):
    """Frames stacked as channels → conv → x + project(expand(x)) → readout per frame."""

    name = "residual-test"
    Options = ResidualOptions

    def __init__(self, shape: ForecastShape, options: ResidualOptions, group_size: int, one_width: bool = False) -> None:
        super().__init__(shape, options, group_size, one_width)
        c, g = options.channels, group_size
        self.stem = GatedConv2d(shape.frames_in * shape.channels, c, 3, gate="stem" if options.coupled else None, input_gate=None, group_size=g)
        self.expand = GatedConv2d(c, c, 3, gate="expand", input_gate=self.stem.gate, group_size=g)
        self.project = GatedConv2d(c, c, 1, gate=None, input_gate=self.expand.gate, group_size=g)
        self.readout = GatedConv2d(c, shape.frames_out * shape.channels, 1, gate=None, input_gate=None, group_size=g, norm=False, activation=False)

    def program(self, ops: Interpreter, x):
        z = ops.apply(self.stem, ops.stack_frames(ops.per_frame(x)))
        z = ops.add(z, ops.apply(self.project, ops.apply(self.expand, z)))
        return ops.forecast(ops.unstack_frames(ops.apply(self.readout, z), self.shape.frames_out))


@pytest.fixture
def registered():
    with BACKBONES.scope():
        register_backbone(ResidualCNN)
        yield


def saved_model(tmp_path, options: dict):
    torch.manual_seed(0)
    data = load_dataset(DATA)
    shape = ForecastShape(data.frames_in, data.frames_out, data.channels, data.height, data.width)
    config = ModelConfig(ResidualCNN.name, shape, options, PruningConfig(budget=0.3))
    model = build_model(config).eval()
    with torch.no_grad():
        model.generator.importance.weight.normal_()
        model.model_mask.width_bias.uniform_(-1.0, 1.0)
        frames = torch.stack([data.train[i][0] for i in range(0, len(data.train), 4)])
        model.generator.importance.bias -= model.generator(frames).logits.median()  # about half kept
    atomic_save(model_payload(model, config, data.config, data.normalizer, {}), tmp_path / "model.pt")
    return tmp_path / "model.pt", model, data


def test_a_backbone_defined_outside_the_package_exports_with_parity(registered, tmp_path):
    path, model, data = saved_model(tmp_path, {})
    out = tmp_path / "model.onnx"
    regions = model.grid[0] * model.grid[1]
    chosen, _, _ = Exporter(path, ExportOptions(mode="gather", tiles="all", levels=regions), log=lambda _: None, data=data).run(out)
    assert len(chosen.parity) >= 3 and max(chosen.parity.values()) <= 1e-4
    frames = torch.stack([data.val[i][0] for i in range(16)])
    with torch.no_grad():
        ledger = model(frames, MaskMode(hard=True)).flops.numpy()
    np.testing.assert_allclose(run_in_model_units(out, frames, data.normalizer).flops, ledger, rtol=1e-5)


def test_a_sum_of_differently_pruned_features_is_refused_in_one_line(registered, tmp_path):
    path, _, data = saved_model(tmp_path, {"coupled": True})
    with pytest.raises(ConfigError, match="residual sum .* same gate or by none"):
        Exporter(path, ExportOptions(mode="gather", tiles="none"), log=lambda _: None, data=data).run(tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
