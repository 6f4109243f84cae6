"""A manifest is a file users are handed: every field is checked when it is read, and
anything malformed (wrong JSON type, bytes that are not UTF-8, an empty input list, a zero
std, a sub-network the graph picks but the manifest lacks) is one ConfigError line, never
an AttributeError, IndexError or a silent inf."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import helper, numpy_helper

import dynaprune_edge.runtime as rt
from dynaprune_edge.errors import ConfigError, DataError
from dynaprune_edge.runtime.manifest import VERSION, Manifest, manifest_path, read_manifest

SHAPE = [1, 2, 1, 4, 4]


@pytest.fixture
def model(tmp_path, toy_manifest, write_toy_graph) -> Path:
    """forecast = frames, flops = 1, branch = the constant `branch` (1: a listed sub-network)."""
    nodes = [
        helper.make_node("Identity", ["frames"], ["forecast"]),
        helper.make_node("Constant", [], ["flops"], value=numpy_helper.from_array(np.array(1, np.float32))),
        helper.make_node("Constant", [], ["branch"], value=numpy_helper.from_array(np.array(5, np.int64))),
    ]
    return write_toy_graph(tmp_path, nodes, [], SHAPE, toy_manifest(SHAPE, mode="dense"))


def rewrite(model: Path, change) -> None:
    values = json.loads(manifest_path(model).read_text())
    change(values)
    manifest_path(model).write_text(json.dumps(values))


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda v: v.clear() or v.update(format="dpedge-onnx", version=VERSION),
            "manifest field 'backbone' is missing",
        ),
        (lambda v: v.update(inputs=[]), "'inputs' must list 1 tensor(s), got 0"),
        (lambda v: v.update(std=[0]), "'std' must hold finite numbers > 0, got 0"),
        (lambda v: v.update(std=[1.0, 2.0, 3.0]), "'std' must hold 1 numbers, got 3"),
        (lambda v: v.update(mean=["a"]), "'mean' must hold finite numbers"),
        (lambda v: v.update(width_levels=[0.5, 2]), "'width_levels' must hold finite numbers > 0 and ≤ 1"),
        (lambda v: v.update(mode="sparse"), "'mode' must be one of dense, gather, sliced"),
        (lambda v: v.update(onnx="../other.onnx"), "'onnx' must be a file name beside the manifest"),
        (
            lambda v: v.update(branches=[{"regions": [3, 1], "tiles": 0, "widths": {}, "flops": 1}]),
            "each sub-network is",
        ),
        (
            lambda v: v.update(inputs=[{"name": "frames", "shape": [1, -2, 1, 4, 4], "dtype": "float32"}]),
            "shape of positive integers",
        ),
        (lambda v: v.update(versions=[]), "'versions' must be an object"),
        (lambda v: v.update(extra=1), "unknown manifest fields: extra"),
    ],
)
def test_a_malformed_field_is_named_in_one_config_error(model, change, message):
    rewrite(model, change)
    with pytest.raises(ConfigError, match="model.dpedge.json: ") as refused:
        read_manifest(model)
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("content", [b"[1, 2]", b"\xff\xfe not utf-8", b"{not json", b"[" * 100000])
def test_a_file_that_is_not_a_manifest_object_is_one_config_error(model, content):
    manifest_path(model).write_bytes(content)
    with pytest.raises(ConfigError, match="model.dpedge.json: (malformed manifest|not a dpedge export manifest)"):
        read_manifest(model)


def test_a_sub_network_the_manifest_does_not_list_is_refused_when_the_graph_picks_it(model):
    with pytest.raises(
        DataError, match="the graph chose sub-network 5, which its manifest does not list .* not exported together"
    ):
        rt.load(model).run(np.zeros((1, *SHAPE[1:]), np.float32))


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from([f for f in Manifest.__dataclass_fields__ if f not in ("format", "version")]), value=JSON)
def test_any_json_in_any_field_is_a_manifest_or_one_config_error(model, field, value):
    values = json.loads(manifest_path(model).read_text())
    values[field] = value
    try:
        Manifest.from_dict(values)
    except ConfigError as error:
        assert "\n" not in str(error)


def test_the_cli_answers_a_malformed_manifest_in_one_line(dpedge, model, tmp_path):
    rewrite(model, lambda v: v.update(inputs=[]))
    result = dpedge("profile", model, timeout=300)
    assert (
        result.returncode == 1
        and result.stderr.strip().count("\n") == 0
        and "'inputs' must list 1 tensor(s)" in result.stderr
    )


def test_integers_beyond_float_range_are_checked_without_overflowing(model):
    rewrite(model, lambda v: v.update(dense_flops=10**400, std=[10**400]))
    assert read_manifest(model).dense_flops == 10**400
    rewrite(model, lambda v: v.update(width_levels=[10**400]))
    with pytest.raises(ConfigError, match="'width_levels' must hold finite numbers > 0 and ≤ 1"):
        read_manifest(model)


def test_the_manifest_knows_the_fields_of_the_data_record_it_holds():
    import dataclasses

    from dynaprune_edge.data import DataConfig
    from dynaprune_edge.runtime.manifest import DATA_FIELDS

    assert tuple(field.name for field in dataclasses.fields(DataConfig)) == DATA_FIELDS
