"""The cost models: FLOPs prices exactly what the training ledger counts; a measured
table round-trips through JSON, prices monotonically and is refused where it was not
measured."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynaprune_edge.cost import CostTable, LayerTimes, MeasuredCost, machine_fingerprint
from dynaprune_edge.errors import ConfigError
from dynaprune_edge.masks import MaskMode, PruningConfig
from dynaprune_edge.models import BACKBONES, ForecastShape, ModelConfig, build_model

POINTS = [0, 1, 2, 4, 8, 16]
SIZES = {
    "simvp": {"spatial_channels": 16, "temporal_channels": 32},
    "vit": {"dim": 64, "depth": 2},
    "convlstm": {"hidden_channels": 16},
}


@pytest.mark.parametrize("backbone", BACKBONES.names())
def test_the_flops_target_prices_exactly_what_the_ledger_counts(backbone):
    torch.manual_seed(0)
    config = ModelConfig(backbone, ForecastShape(3, 2, 2, 32, 32), SIZES[backbone], PruningConfig(budget=0.4))
    model = build_model(config).eval()
    x = torch.randn(6, 3, 2, 32, 32)
    with torch.no_grad():  # a generator that keeps about half the regions, differently per sample
        model.generator.importance.weight.normal_(0, 1.0)
        model.generator.importance.bias -= model.importance(model.pad(x)).logits.median()
    forecast = model(x, MaskMode(hard=True))
    assert forecast.flops.std() > 0  # samples differ, so the comparison is per sample
    assert torch.allclose(forecast.cost_ratio, forecast.flops / forecast.dense_flops, rtol=1e-6)


def layer(tiled, whole, shares=(0.25, 0.5, 1.0), limit=16) -> LayerTimes:
    return LayerTimes(list(shares), [list(row) for row in tiled], list(whole), limit)


def table(layers: dict[str, LayerTimes], **changes) -> CostTable:
    values = dict(
        target="ort-cpu",
        machine=machine_fingerprint(1),
        model={"backbone": "simvp"},
        regions=16,
        region_points=POINTS,
        layers=layers,
        fixed_ms=0.2,
        dense_ms=3.0,
        runs=5,
    )
    return CostTable(**(values | changes))


times = st.lists(st.floats(0.001, 5.0), min_size=len(POINTS) * 3 + 3, max_size=len(POINTS) * 3 + 3)


def noisy_layer(values: list[float], limit: int) -> LayerTimes:
    """A layer whose measured times are noise: nothing ordered about them."""
    tiled = np.array(values[: len(POINTS) * 3]).reshape(3, len(POINTS))
    tiled[:, 0] = 0.0  # no region: the all-skipped branch, no layer runs
    return layer(tiled, values[len(POINTS) * 3 :], limit=limit)


@settings(max_examples=60, deadline=None)
@given(times, st.sampled_from([0, 4, 16]))
def test_a_measured_price_never_falls_when_a_sample_keeps_more(values, limit):
    times = noisy_layer(values, limit)
    points = np.asarray(POINTS, float)
    widths = np.linspace(0.2, 1.0, 17)
    for regions in (0.5, 3.0, 7.5, 12.0):  # more width, same regions
        prices = times.price(widths, np.full_like(widths, regions), points)
        assert np.all(np.diff(prices) >= -1e-9)
    below = np.linspace(0.0, limit if limit else 16, 33)  # more regions, same width, within one execution
    for width in (0.3, 0.6, 1.0):
        prices = times.price(np.full_like(below, width), below, points)
        assert np.all(np.diff(prices) >= -1e-9)


def test_a_measured_price_interpolates_between_the_measured_points():
    times = layer([[0, 1, 2, 3, 4, 5], [0, 2, 4, 6, 8, 10], [0, 4, 8, 12, 16, 20]], [6, 11, 21])
    points = np.asarray(POINTS, float)
    assert times.price(np.array([0.5]), np.array([4.0]), points) == pytest.approx(6.0)  # measured
    assert times.price(np.array([0.75]), np.array([4.0]), points) == pytest.approx(9.0)  # halfway in width
    assert times.price(np.array([0.5]), np.array([3.0]), points) == pytest.approx(5.0)  # halfway in regions
    assert times.price(np.array([0.5]), np.array([0.0]), points) == pytest.approx(0.0)  # the all-skipped branch
    on_maps = dataclasses.replace(times, tile_limit=4)
    assert on_maps.price(np.array([0.5]), np.array([8.0]), points) == pytest.approx(11.0)  # above the limit: whole maps


def test_the_price_is_differentiable_in_width_and_regions():
    times = layer([[0, 1, 2, 3, 4, 5], [0, 2, 4, 6, 8, 10], [0, 4, 8, 12, 16, 20]], [6, 11, 21])
    width, regions = torch.tensor([0.6], requires_grad=True), torch.tensor([5.0], requires_grad=True)
    times.price(width, regions, np.asarray(POINTS, float)).sum().backward()
    assert width.grad.item() > 0 and regions.grad.item() > 0


def test_a_table_round_trips_through_json():
    original = table(
        {
            "encoder.0": layer([[0, 1, 2, 3, 4, 5]] * 3, [6, 6, 6]),
            "readout": layer([[0, 0.1, 0.2, 0.3, 0.4, 0.5]] * 3, [1, 1, 1], (1.0, 1.0, 1.0), 0),
        }
    )
    again = CostTable.from_json(original.to_json())
    assert again == original
    width, regions = np.array([0.3, 0.9]), np.array([2.0, 11.0])
    assert np.array_equal(
        MeasuredCost(again).layer_cost("encoder.0", None, width, regions),
        MeasuredCost(original).layer_cost("encoder.0", None, width, regions),
    )


@pytest.mark.parametrize(
    "key, value", [("cpu", "Some Other CPU"), ("onnxruntime", "1.17.0"), ("threads", 4), ("cores", 64)]
)
def test_a_table_measured_on_another_machine_or_onnxruntime_is_refused(key, value):
    here = machine_fingerprint(1)
    elsewhere = table({}, machine={**here, key: value})
    with pytest.raises(ConfigError, match=f"cost table made with {key}"):
        elsewhere.check(here, {"backbone": "simvp"})
    with pytest.raises(ConfigError, match="another model"):
        table({}).check(here, {"backbone": "vit"})
    table({}).check(here, {"backbone": "simvp"})


@pytest.mark.parametrize("text", ["[]", '{"format": 1}', "not json", '{"format": 99}'])
def test_a_file_that_is_not_a_table_is_one_config_error(text):
    with pytest.raises(ConfigError, match="cost table"):
        CostTable.from_json(text)
