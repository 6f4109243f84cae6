"""Latency statistics, per-sample timing through a backend, and onnxruntime node-time shares
(including nodes inside `If` branches, which onnxruntime traces inside the `If`'s span)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import dynaprune_edge.runtime as rt
from dynaprune_edge.errors import ConfigError, DataError
from dynaprune_edge.profiling.latency import LatencyStats, interleaved_latency, node_self_times, node_time_shares
from dynaprune_edge.runtime.manifest import Branch

CHANNELS, SIDE = 16, 32
SHAPE = [1, 1, CHANNELS, SIDE, SIDE]  # (batch, frames, channels, height, width)


@pytest.fixture
def write(toy_manifest, write_toy_graph):
    def write(folder: Path, nodes: list, initializers: list) -> Path:
        """`nodes` map image → out (and define flops); the graph around them maps frames →
        forecast (same shape), flops, branch, and its manifest is written beside it."""
        nodes = [
            helper.make_node("Reshape", ["frames", "image_shape"], ["image"], name="io/in"),
            *nodes,
            helper.make_node("Reshape", ["out", "frames_shape"], ["forecast"], name="io/out"),
            helper.make_node(
                "Constant", [], ["branch"], name="io/branch", value=numpy_helper.from_array(np.array(1, np.int64))
            ),
        ]
        initializers = [
            numpy_helper.from_array(np.array([1, CHANNELS, SIDE, SIDE], np.int64), "image_shape"),
            numpy_helper.from_array(np.array(SHAPE, np.int64), "frames_shape"),
            *initializers,
        ]
        manifest = toy_manifest(
            SHAPE,
            mean=[0.0] * CHANNELS,
            std=[1.0] * CHANNELS,
            branches=[Branch([0, 1], 1, {}, 1.0), Branch([2, 4], 4, {}, 4.0)],
            dense_flops=4.0,
        )
        return write_toy_graph(folder, nodes, initializers, SHAPE, manifest)

    return write


def conv(name: str, source: str, target: str) -> tuple[onnx.NodeProto, onnx.TensorProto]:
    weight = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((CHANNELS, CHANNELS, 3, 3)).astype(np.float32) * 0.1, f"{name}.w"
    )
    return helper.make_node("Conv", [source, weight.name], [target], pads=[1, 1, 1, 1], name=name), weight


@pytest.fixture
def conv_and_add(tmp_path, write) -> Path:
    """A 3×3 convolution over 16×32×32 (2.4 M multiply-adds) next to one scalar Add."""
    big, weight = conv("big/conv", "image", "out")
    nodes = [
        big,
        helper.make_node("ReduceMax", ["frames"], ["peak"], keepdims=0, name="tiny/max"),
        helper.make_node("Add", ["peak", "one"], ["flops"], name="tiny/add"),
    ]
    return write(tmp_path, nodes, [weight, numpy_helper.from_array(np.array(1, np.float32), "one")])


@pytest.fixture
def routed(tmp_path, write) -> Path:
    """A router (two small reductions) choosing between two convolution branches with `If`."""
    branches = {}
    for side in ("then", "else"):
        node, weight = conv(f"route/{side}/conv", "image", f"route/{side}/y")
        branches[side] = helper.make_graph(
            [node],
            side,
            [],
            [helper.make_tensor_value_info(f"route/{side}/y", TensorProto.FLOAT, None)],
            initializer=[weight],
        )
    nodes = [
        helper.make_node("ReduceSum", ["frames"], ["flops"], keepdims=0, name="router/sum"),
        helper.make_node("Greater", ["flops", "zero"], ["positive"], name="router/greater"),
        helper.make_node(
            "If", ["positive"], ["out"], name="route/if", then_branch=branches["then"], else_branch=branches["else"]
        ),
    ]
    return write(tmp_path, nodes, [numpy_helper.from_array(np.array(0, np.float32), "zero")])


def samples(n: int) -> np.ndarray:
    values = np.random.default_rng(1).standard_normal((n, *SHAPE[1:])).astype(np.float32)
    values[::2] = np.abs(values[::2])  # both branches run
    values[1::2] = -np.abs(values[1::2])
    return values


def test_latency_stats_follow_numpy_percentiles():
    stats = LatencyStats.from_samples([float(v) for v in range(1, 11)])
    assert stats.n == 10
    assert (stats.mean, stats.p50, stats.p90, stats.p99) == pytest.approx((5.5, 5.5, 9.1, 9.91))
    assert LatencyStats.from_samples(np.array([[4.0, 1.0], [3.0, 2.0]])).p50 == 2.5


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")]])
def test_latency_stats_reject_empty_or_non_finite(bad):
    with pytest.raises(DataError):
        LatencyStats.from_samples(bad)


def test_interleaved_latency_warms_up_then_alternates_runners():
    seen = []
    first = lambda sample: seen.append(("first", float(sample.flat[0])))
    second = lambda sample: seen.append(("second", float(sample.flat[0])))
    batch = np.zeros((3, *SHAPE[1:]), np.float32)
    batch[:, 0, 0, 0, 0] = [0, 1, 2]
    first_ms, second_ms = interleaved_latency([first, second], batch, runs=4)
    warm_up = [(name, value) for value in (0, 1, 2) for name in ("first", "second")]  # every sample once
    timed = [(name, value) for value in (0, 1, 2, 0) for name in ("first", "second")]
    assert seen == warm_up + timed
    assert first_ms.shape == second_ms.shape == (4,) and np.all(first_ms >= 0)


def test_repeated_turns_time_only_each_runners_last_run():
    """With repeat, a runner runs several times in a row at its turn and only its last, warm
    run is timed: here every first run of a turn is slow (a cold start) and the last fast."""
    calls = {"slow": 0}

    def cold_then_warm(sample):
        calls["slow"] += 1
        if calls["slow"] % 2:
            time.sleep(0.02)

    other = []
    batch = np.zeros((2, *SHAPE[1:]), np.float32)
    warm_ms, _ = interleaved_latency([cold_then_warm, other.append], batch, runs=4, repeat=2)
    assert calls["slow"] == 2 + 4 * 2 and len(other) == 2 + 4 * 2  # warm-up pass, then two runs per turn
    assert np.all(warm_ms < 10), warm_ms
    strict_ms, _ = interleaved_latency([cold_then_warm, other.append], batch[:1], runs=2)
    assert np.any(strict_ms > 15), "with strict turns the slow runs are the timed ones"
    with pytest.raises(ConfigError, match="repeat"):
        interleaved_latency([other.append], batch, runs=1, repeat=0)


def test_interleaved_latency_on_onnxruntime(conv_and_add):
    backend = rt.load(conv_and_add, threads=1)
    (ms,) = interleaved_latency([backend.run_one], samples(2), runs=3)
    assert ms.shape == (3,) and np.all(ms > 0)
    with pytest.raises(ConfigError, match="runs"):
        interleaved_latency([backend.run_one], samples(1), runs=0)


def test_big_conv_takes_most_of_the_time(conv_and_add):
    shares = node_time_shares(conv_and_add, samples(4), threads=1, prefixes=["big/", "tiny/", "io/"])
    assert shares["big/"] > 0.5 > shares["tiny/"]
    assert sum(shares.values()) == pytest.approx(1.0)


def test_nodes_inside_if_branches_count_once(routed):
    shares = node_time_shares(routed, samples(4), threads=1, prefixes=["router/", "route/", "route/then/", "io/"])
    assert shares["route/"] > shares["router/"]
    assert 0 < shares["route/then/"] < shares["route/"]
    # every node is under router/, route/ or io/: the If's span holds its branch, and
    # counting both would push the total past 1
    assert shares["router/"] + shares["route/"] + shares["io/"] == pytest.approx(1.0)


def test_self_times_leave_the_gaps_between_a_branch_s_nodes_to_no_node():
    def node(name, ts, dur, tid=1):
        return {
            "cat": "Node",
            "pid": 1,
            "tid": tid,
            "name": f"{name}_kernel_time",
            "ts": ts,
            "dur": dur,
            "args": {"op_name": "x"},
        }

    trace = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 10},
        node("warm", 1, 5),  # first run: warm-up, left out
        node("route/if", 20, 100),
        node("route/b/conv", 30, 40),
        node("route/b/add", 80, 10),  # 10 µs between them
        node("router/sum", 120, 10),
        node("other", 20, 7, tid=2),
    ]
    # the If keeps its span less its branch's extent (30 to 90): 40, not 100 − 40 − 10 = 50
    assert node_self_times(trace) == {
        "route/if": 40.0,
        "route/b/conv": 40.0,
        "route/b/add": 10.0,
        "router/sum": 10.0,
        "other": 7.0,
    }
