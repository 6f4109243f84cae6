"""The split bundle on TensorRT without a GPU: `dpedge engine`'s build of one engine per
graph of a routed model, and the `trt` backend running it, against a stand-in for
TensorRT and pycuda whose "engines" run their ONNX graph on onnxruntime (so the stand-in
computes what a real engine of that graph would, and only what is enqueued runs)."""

from __future__ import annotations

import functools
import itertools
import sys
import types
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.tensorrt.build import build_or_explain
from dynaprune_edge.files import sha256_file
from dynaprune_edge.runtime import load
from dynaprune_edge.runtime.manifest import BRANCH, BUDGET, FLOPS, FORECAST, INPUT
from dynaprune_edge.runtime.onnxruntime import open_session, session_options
from dynaprune_edge.runtime.tensorrt import read_bundle
from tests.trt_stand_ins import fake_builder_config, fake_device_memory, fake_libcuda

BUNDLE = "model.orin.trt{}.fp16.bundle.json"


def onnx_dtype(value: onnx.ValueInfoProto) -> np.dtype:
    return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))


def fake_modules(version: str, log: list) -> tuple[types.ModuleType, types.ModuleType]:
    """tensorrt and pycuda.driver as far as dpedge's build and bundle runtime use them. The
    builder's "engine" is the ONNX it parsed; a deserialized engine runs it on onnxruntime
    when enqueued, reading and writing the device buffers bound to it; device memory is a
    dict of byte arrays. TensorRT 8 makes int64 outputs int32. `log` records allocations,
    contexts, their scratch memory and every enqueue. Contexts enqueue through the stand-in
    CUDA driver `cuda.libcuda` (trt_stand_ins.fake_libcuda), which records them while the
    stream is capturing and runs them at each graph launch."""
    major = int(version.split(".")[0])
    cuda, memory = fake_device_memory(log)
    cuda.libcuda = libcuda = fake_libcuda(log)
    clock = itertools.count()

    class Event:  # a CUDA event: its time is when it was recorded, one tick (0.5 ms) per record
        def record(self, stream):
            self.at = next(clock) * 0.5

        def time_till(self, other):
            return other.at - self.at

    cuda.Event = Event

    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    trt.nptype = lambda dtype: dtype
    trt.TensorIOMode = types.SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(EXPLICIT_BATCH=0)
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
    trt.BuilderFlag = types.SimpleNamespace(FP16="fp16", INT8="int8")
    trt.ExecutionContextAllocationStrategy = types.SimpleNamespace(USER_MANAGED="user managed")
    trt.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {"__init__": lambda self: None})

    class Engine:
        def __init__(self, data: bytes) -> None:
            graph = onnx.load_from_string(data).graph
            self.role = graph.name
            self.session = open_session(data, session_options(1), ["CPUExecutionProvider"], graph.name)
            integer = np.int64 if major >= 10 else np.int32
            constants = {
                init.name for init in graph.initializer
            }  # onnx-tensorrt: an input with an initializer is a weight
            self.tensors = [
                (v.name, True, tuple(d.dim_value for d in v.type.tensor_type.shape.dim), onnx_dtype(v))
                for v in graph.input
                if v.name not in constants
            ]
            self.tensors += [
                (
                    v.name,
                    False,
                    tuple(d.dim_value for d in v.type.tensor_type.shape.dim),
                    integer if onnx_dtype(v) == np.int64 else onnx_dtype(v),
                )
                for v in graph.output
            ]
            self.device_memory_size = 1000 * len(graph.node)  # distinct per engine
            if major >= 10:
                self.num_io_tensors = len(self.tensors)
            else:
                self.num_bindings = len(self.tensors)

        def spec(self, name):
            return next(t for t in self.tensors if t[0] == name)

        get_tensor_name = get_binding_name = lambda self, i: self.tensors[i][0]
        get_tensor_mode = lambda self, name: "input" if self.spec(name)[1] else "output"
        get_tensor_shape = lambda self, name: self.spec(name)[2]
        get_tensor_dtype = lambda self, name: self.spec(name)[3]
        binding_is_input = lambda self, i: self.tensors[i][1]
        get_binding_shape = lambda self, i: self.tensors[i][2]
        get_binding_dtype = lambda self, i: self.tensors[i][3]

        def create_execution_context(self, strategy=None):
            if strategy is None:  # a context with device memory of its own (a single engine's)
                log.append(("own memory", self.role))
            return Context(self)

        def create_execution_context_without_device_memory(self):
            assert major < 10
            return Context(self)

    class Context:
        def __init__(self, engine: Engine) -> None:
            self.engine, self.addresses = engine, {}
            log.append(("context", engine.role))

        def set_device_memory(self, address, size):
            log.append(("scratch", self.engine.role, address, size))

        def set_tensor_address(self, name, address):
            self.addresses[name] = address

        def compute(self, addresses) -> bool:
            log.append(("execute", self.engine.role))
            feeds = {}
            for name, is_input, shape, dtype in self.engine.tensors:
                if is_input:
                    feeds[name] = np.frombuffer(memory[addresses[name]].tobytes(), dtype).reshape(shape)
            outputs = self.engine.session.run([t[0] for t in self.engine.tensors if not t[1]], feeds)
            for (name, _, _, dtype), value in zip([t for t in self.engine.tensors if not t[1]], outputs):
                memory[addresses[name]][:] = np.frombuffer(np.asarray(value, dtype).tobytes(), np.uint8)
            return True

        def execute_async_v3(self, stream_handle):
            return libcuda.enqueue(
                stream_handle, self.engine.role, functools.partial(self.compute, dict(self.addresses))
            )

        def execute_async_v2(self, bindings, stream_handle):
            addresses = {t[0]: address for t, address in zip(self.engine.tensors, bindings)}
            return libcuda.enqueue(stream_handle, self.engine.role, functools.partial(self.compute, addresses))

    if major < 10:
        del Context.set_device_memory  # TensorRT 8: the device_memory property
        Context.device_memory = property(
            None, lambda self, address: log.append(("scratch", self.engine.role, address, None))
        )
    trt.Runtime = lambda logger: types.SimpleNamespace(
        deserialize_cuda_engine=lambda data: Engine(data) if data.startswith(b"\x08") else None
    )

    class Network:
        def __init__(self) -> None:
            self.graph = None

        @property
        def inputs(self):  # as onnx-tensorrt imports them: an input with an initializer of its name is a weight
            constants = {init.name for init in self.graph.initializer}
            return [value for value in self.graph.input if value.name not in constants]

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, index):
            value = self.inputs[index]
            return types.SimpleNamespace(
                name=value.name,
                shape=tuple(d.dim_value for d in value.type.tensor_type.shape.dim),
                dtype=onnx_dtype(value),
            )

    class Parser:
        num_errors = 0

        def __init__(self, network, logger) -> None:
            self.network = network

        def parse(self, data):
            self.network.graph = onnx.load_from_string(data).graph
            self.network.data = data
            log.append(("parse", self.network.graph.name))
            return True

        def parse_from_file(self, path):  # one engine of the whole graph (--layout single)
            return self.parse(Path(path).read_bytes())

    class Builder:
        def __init__(self, logger) -> None:
            pass

        def create_network(self, flags):
            return Network()

        def create_builder_config(self):
            return fake_builder_config(log)()

        def build_serialized_network(self, network, config):
            calibrator = config.int8_calibrator
            if (
                calibrator is not None
            ):  # as TensorRT: the cache if there is one, else every batch, then the cache written
                role = network.graph.name
                if calibrator.read_calibration_cache() is None:
                    names = [value.name for value in network.graph.input]
                    while (pointers := calibrator.get_batch(names)) is not None:
                        log.append(
                            ("calibration batch", role, {name: memory[p].tobytes() for name, p in zip(names, pointers)})
                        )
                    calibrator.write_calibration_cache(b"scales of " + role.encode())
                log.append(("calibrated", role))
            return network.data  # the "engine": the graph it runs

    trt.Builder, trt.OnnxParser = Builder, Parser
    return trt, cuda


@pytest.fixture(params=["8.5.2.2", "10.3.0"])
def fake_tensorrt(request, install_fake_tensorrt):
    return request.param, install_fake_tensorrt(fake_modules, request.param)


@pytest.fixture(params=[False, True], ids=["region-routed", "width-routed"])
def routed_export(request, tmp_path, routed_toy):
    """A routed graph on disk with its manifest, as `dpedge export` writes them."""
    width_routed = request.param
    return *routed_toy.export(tmp_path, width_routed), width_routed


def samples(routed_toy, seed: int = 0) -> np.ndarray:
    """Frames reaching every branch, twice."""
    rng = np.random.default_rng(seed)
    return np.concatenate(
        [routed_toy.frames(branch % routed_toy.branches, rng) for branch in range(2 * routed_toy.branches)]
    )


def test_a_routed_graph_builds_one_engine_per_graph_checked_against_onnxruntime(
    tmp_path, routed_export, routed_toy, fake_tensorrt
):
    version, log = fake_tensorrt
    path, manifest, width_routed = routed_export
    outcome = build_or_explain(path, manifest, "fp16", samples(routed_toy), None)
    short = ".".join(version.split(".")[:3])
    assert outcome.engine_path == tmp_path / BUNDLE.format(short) and outcome.reason is None
    assert (
        outcome.polygraphy.startswith("PASSED: onnxruntime vs")
        and f"× {3 if width_routed else 1} budget" in outcome.polygraphy
    )
    meta = read_bundle(outcome.engine_path)
    roles = ["router", *(f"branch{k}" for k in range(routed_toy.branches)), *(["bypass"] if width_routed else [])]
    assert [e.role for e in meta.engines] == roles
    for engine in meta.engines:
        assert (tmp_path / engine.file).is_file() and sha256_file(tmp_path / engine.file) == engine.sha256
        assert engine.sha256[:12] in engine.file, "engines are named by their hash"
    assert (meta.onnx, meta.onnx_sha256, meta.precision) == ("model.onnx", sha256_file(path), "fp16")
    assert [e for e in log if e[0] == "parse"] == [("parse", f"dpedge-{role}") for role in roles]
    assert outcome.command.count("trtexec --loadEngine=") == len(roles), "trtexec times each engine on its own"


def test_the_trt_backend_runs_the_router_then_only_the_chosen_branch(
    tmp_path, routed_export, routed_toy, fake_tensorrt
):
    version, log = fake_tensorrt
    path, manifest, width_routed = routed_export
    bundle = build_or_explain(path, manifest, "fp16", None, None).engine_path
    log.clear()
    backend = load(bundle, backend="trt")
    sizes = {entry[1]: entry[3] for entry in log if entry[0] == "scratch"}
    scratch = {entry[2] for entry in log if entry[0] == "scratch"}
    assert len(scratch) == 1, "every context runs on one shared scratch block"
    assert not [entry for entry in log if entry[0] == "own memory"], (
        "no context of a bundle allocates scratch memory of its own"
    )
    engine_sizes = [
        1000 * len(onnx.load_from_string((tmp_path / e.file).read_bytes()).graph.node)
        for e in read_bundle(bundle).engines
    ]
    (block,) = [entry for entry in log if entry[0] == "alloc" and entry[1] in scratch]
    assert block[2] == max(engine_sizes), "the scratch block is the largest engine's need, not the sum"
    if version.startswith("10"):
        assert set(sizes.values()) == {max(engine_sizes)}

    single = open_session(path, session_options(1), ["CPUExecutionProvider"])
    frames = samples(routed_toy, seed=1)
    log.clear()
    result = backend.run(frames)
    expected = [single.run([FORECAST, FLOPS, BRANCH], {INPUT: sample[None]}) for sample in frames]
    assert result.branch.tolist() == [int(e[2]) for e in expected] and set(result.branch) == set(
        range(routed_toy.branches)
    )
    assert np.allclose(result.forecast, np.concatenate([e[0] for e in expected]), atol=1e-6)
    assert result.flops.tolist() == pytest.approx([float(e[1]) for e in expected])
    executed = [entry[1] for entry in log if entry[0] == "execute"]
    assert executed == [role for branch in result.branch for role in ("dpedge-router", f"dpedge-branch{branch}")], (
        "router, then the branch: nothing else"
    )
    if width_routed:  # the budget is a run-time input of the router engine; at 1 the budget-1 engine runs alone
        log.clear()
        backend.set_budget(1.0)
        at_one = backend.run(frames[:2])
        assert [entry[1] for entry in log if entry[0] == "execute"] == ["dpedge-bypass"] * 2
        reference = single.run([FORECAST, BRANCH], {INPUT: frames[:1], BUDGET: np.array(1.0, np.float32)})
        assert at_one.branch[0] == int(reference[1]) and np.allclose(at_one.forecast[:1], reference[0], atol=1e-6)
    assert backend.describe()["layout"] == "split"


def test_a_bundle_with_an_engine_missing_or_replaced_is_refused_with_the_rebuild_command(
    tmp_path, routed_export, fake_tensorrt
):
    path, manifest, _ = routed_export
    bundle = build_or_explain(path, manifest, "fp16", None, None).engine_path
    branch = tmp_path / read_bundle(bundle).branches[1].file
    branch.write_bytes(branch.read_bytes() + b"\x00")
    with pytest.raises(
        ConfigError,
        match=r"is not the branch1 engine .* lists .*rebuild the bundle with dpedge engine model.onnx --precision fp16",
    ) as refused:
        load(bundle, backend="trt")
    assert "\n" not in str(refused.value)
    branch.unlink()
    with pytest.raises(
        ConfigError,
        match=r"lists .*branch1.* which is not beside it: copy the whole bundle, or rebuild it with dpedge engine",
    ):
        load(bundle, backend="trt")


def test_a_build_killed_midway_leaves_the_previous_bundle_whole(
    tmp_path, routed_export, routed_toy, fake_tensorrt, monkeypatch
):
    """Engines are named by their hash and the bundle file is written last: whatever a
    kill interrupts, the bundle file on disk names engines that are all there."""
    path, manifest, _ = routed_export
    bundle = build_or_explain(path, manifest, "fp16", None, None).engine_path
    before = read_bundle(bundle)
    graph = onnx.load(path)  # a re-export: other weights, so other engines
    for initializer in graph.graph.initializer:
        if initializer.name.startswith("shared"):
            initializer.CopyFrom(onnx.numpy_helper.from_array(np.array(3.0, np.float32), initializer.name))
    onnx.save(graph, path)
    manifest = replace(manifest, onnx_sha256=sha256_file(path))
    (tmp_path / "model.dpedge.json").write_text(manifest.to_json())

    from dynaprune_edge.export.tensorrt import bundle as bundle_module

    written = []

    def killed_after_two(data, target):
        if len(written) == 2:
            raise KeyboardInterrupt  # the kill
        written.append(target)
        original(data, target)

    original = bundle_module.atomic_write_bytes
    monkeypatch.setattr(bundle_module, "atomic_write_bytes", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        build_or_explain(path, manifest, "fp16", None, None)
    assert read_bundle(bundle) == before and all((tmp_path / e.file).is_file() for e in before.engines)
    with pytest.raises(ConfigError, match="was built from another model.onnx"):  # whole, but of the graph it replaced
        load(bundle, backend="trt")

    monkeypatch.setattr(bundle_module, "atomic_write_bytes", original)
    after = read_bundle(build_or_explain(path, manifest, "fp16", None, None).engine_path)
    assert after.router.sha256 != before.router.sha256 or after.branches != before.branches
    on_disk = sorted(p.name for p in tmp_path.glob("*.engine"))
    assert on_disk == sorted(e.file for e in after.engines), (
        "the replaced bundle's engines are removed once the new one is whole"
    )
    assert load(bundle, backend="trt").run(samples(routed_toy)[:2]).forecast.shape[0] == 2


def test_a_bundle_whose_outputs_differ_from_onnxruntime_is_not_written(
    tmp_path, routed_export, routed_toy, fake_tensorrt, monkeypatch
):
    path, manifest, _ = routed_export
    from dynaprune_edge.export.tensorrt import bundle as bundle_module

    monkeypatch.setattr(
        bundle_module, "check_bundle", lambda *args: "FAILED: sample 0 took branch 2 in the bundle, 1 on onnxruntime"
    )
    with pytest.raises(ConfigError, match=r"bundle.json not written: the bundle's outputs differ from onnxruntime's"):
        build_or_explain(path, manifest, "fp16", samples(routed_toy), None)
    assert not list(tmp_path.glob("*.engine")) and not list(tmp_path.glob("*.bundle.json"))


def test_int8_calibrates_each_engine_on_what_the_bundle_feeds_it_then_reuses_each_engines_cache(
    tmp_path, routed_export, routed_toy, fake_tensorrt
):
    """Every engine of an int8 bundle calibrates on every frame with the inputs it gets when
    the bundle runs: a branch's batch for a frame the router sends it, run through that
    branch's graph, is the single graph's forecast of the frame. One cache per engine;
    the next build reads them all and calibrates nothing."""
    from dynaprune_edge.export.tensorrt.bundle import split_graphs

    _, log = fake_tensorrt
    path, manifest, width_routed = routed_export
    frames = samples(routed_toy)
    outcome = build_or_explain(path, manifest, "int8", frames, None)
    assert outcome.polygraphy.startswith("PASSED") and ("flag", "int8") in log
    graphs = split_graphs(path)
    named = {"dpedge-router": graphs.router, **{f"dpedge-branch{k}": g for k, g in enumerate(graphs.branches)}}
    named |= {"dpedge-bypass": graphs.bypass} if width_routed else {}
    batches: dict[str, list[dict]] = {}
    for _, role, batch in (entry for entry in log if entry[0] == "calibration batch"):
        inputs = {value.name: value for value in named[role].graph.input}
        shapes = {name: [d.dim_value for d in value.type.tensor_type.shape.dim] for name, value in inputs.items()}
        batches.setdefault(role, []).append(
            {
                name: np.frombuffer(data, onnx_dtype(inputs[name]))[: int(np.prod(shapes[name]))].reshape(shapes[name])
                for name, data in batch.items()
            }
        )
    assert set(batches) == set(named) and all(len(b) == len(frames) for b in batches.values()), (
        "every engine, every frame"
    )
    single = open_session(path, session_options(1), ["CPUExecutionProvider"])
    budget = {BUDGET: np.array(manifest.trained_budget, np.float32)} if width_routed else {}
    for index, frame in enumerate(frames):
        np.testing.assert_array_equal(batches["dpedge-router"][index][INPUT], frame[None])
        forecast, taken = single.run([FORECAST, BRANCH], {INPUT: frame[None], **budget})
        branch = open_session(
            named[f"dpedge-branch{int(taken)}"].SerializeToString(),
            session_options(1),
            ["CPUExecutionProvider"],
            "branch",
        )
        np.testing.assert_allclose(
            branch.run([FORECAST], batches[f"dpedge-branch{int(taken)}"][index])[0], forecast, rtol=1e-6, atol=1e-6
        )
    caches = sorted(tmp_path.glob("*.int8.calib"))
    assert len(caches) == len(named) and {c.read_bytes() for c in caches} == {
        b"scales of " + role.encode() for role in named
    }

    log.clear()
    build_or_explain(path, manifest, "int8", None, None)
    assert not [entry for entry in log if entry[0] == "calibration batch"] and len(
        [e for e in log if e[0] == "calibrated"]
    ) == len(named)
    caches[-1].unlink()
    with pytest.raises(
        ConfigError,
        match=rf"int8 needs calibration frames .* for every engine of the bundle; missing {caches[-1].name}$",
    ):
        build_or_explain(path, manifest, "int8", None, None)


def test_the_gpu_check_times_the_single_engine_the_bundle_and_its_cuda_graphs_per_branch_reached(
    routed_export, routed_toy, fake_tensorrt
):
    """scripts/gpu_check.sh's TensorRT path, run on the stand-ins: per branch the samples
    reached, each layout timed through the trt backend and checked against onnxruntime,
    the emulator's predictions beside; the trtexec lines of both builds."""
    from dynaprune_edge.bench import gpu_check

    path, manifest, _ = routed_export
    frames = samples(routed_toy)
    emulated = {
        "orin_emulated_ms": [0.1 * (k + 1) for k in range(len(manifest.branches))],
        "orin_emulated_cuda_graph_ms": [0.01 * (k + 1) for k in range(len(manifest.branches))],
    }
    rows, commands = gpu_check.tensorrt_rows(path, frames, 3, emulated)
    reached = load(path, "ort", 1).run(frames).branch
    assert [row["branch"] for row in rows] == sorted(set(reached.tolist())) and sum(
        row["samples"] for row in rows
    ) == len(frames)
    for row in rows:
        for layout in ("single", "split", "split_cuda_graph"):
            assert row[f"{layout}_ms"] > 0 and row[f"{layout}_max_abs_error"] <= 1e-6, (layout, row)
        assert row["orin_emulated_cuda_graph_ms"] == emulated["orin_emulated_cuda_graph_ms"][row["branch"]]
    assert len(commands) == 2 and all("trtexec" in command for command in commands)


def test_a_split_of_a_dense_graph_is_refused_in_one_line(routed_export):
    path, manifest, _ = routed_export
    with pytest.raises(ConfigError, match="--layout must be single, or split for a pruned graph"):
        build_or_explain(path, replace(manifest, mode="dense"), "fp16", None, None, layout="split")


def test_without_tensorrt_the_bundle_is_built_on_the_device_by_dpedge_engine(routed_export):
    path, manifest, _ = routed_export
    outcome = build_or_explain(path, manifest, "fp16", None, None)
    assert outcome.engine_path is None and outcome.command == "dpedge engine model.onnx --precision fp16"
    assert "build the bundle on the Jetson" in outcome.reason
    int8 = build_or_explain(path, manifest, "int8", None, None)
    assert int8.command == "dpedge engine model.onnx --precision int8 --frames model.frames.npz", (
        "int8 calibrates on the frames deploy copies"
    )


def test_profile_splits_each_samples_time_into_router_dispatch_and_branch(
    tmp_path, routed_export, routed_toy, fake_tensorrt, monkeypatch
):
    from dynaprune_edge.profiling.session import profile

    path, manifest, _ = routed_export
    bundle = load(build_or_explain(path, manifest, "fp16", None, None).engine_path, backend="trt")
    frames = samples(routed_toy)
    result = profile(bundle, bundle, frames, runs=len(frames), warmup=0, data="test windows")
    phases = result.summary()["bundle_phases"]
    assert [row["branch"] for row in phases] == list(range(routed_toy.branches))
    assert sum(row["samples"] for row in phases) == len(frames)
    for row in phases:
        assert (row["router_ms"], row["branch_ms"]) == (0.5, 0.5), (
            "the GPU times come from the events around each engine"
        )
        assert row["total_ms"] >= row["dispatch_ms"] >= 0


# --- CUDA graphs (--cuda-graph), against the stand-in CUDA driver -------------------------


@pytest.fixture
def stand_in_driver(monkeypatch):
    """The CUDA driver that runtime/tensorrt.py loads: the stand-in pycuda's (fake_libcuda)."""
    from dynaprune_edge.runtime import tensorrt as runtime_trt

    monkeypatch.setattr(runtime_trt, "load_libcuda", lambda: sys.modules["pycuda.driver"].libcuda)


def test_with_cuda_graphs_each_engine_is_captured_once_and_each_sample_launches_the_router_then_its_branch(
    tmp_path, routed_export, routed_toy, fake_tensorrt, stand_in_driver
):
    version, log = fake_tensorrt
    path, manifest, width_routed = routed_export
    bundle = build_or_explain(path, manifest, "fp16", None, None).engine_path
    roles = [engine.role for engine in read_bundle(bundle).engines]
    frames = samples(routed_toy, seed=3)
    eager = load(bundle, backend="trt").run(frames)
    log.clear()
    backend = load(bundle, backend="trt", cuda_graph=True)
    for (
        role
    ) in roles:  # one eager warm-up, then one capture, per engine: the router's first (the branches read its handoff)
        entries = [entry[0] for entry in log if entry[0] in ("enqueue", "captured") and entry[1] == f"dpedge-{role}"]
        assert entries == ["enqueue", "captured"], role
    assert [entry[1] for entry in log if entry[0] == "captured"] == [f"dpedge-{role}" for role in roles]
    assert backend.describe()["cuda_graphs"] == dict.fromkeys(roles, True) and backend.cuda_graph_notes == []

    log.clear()
    result = backend.run(frames)
    assert result.branch.tolist() == eager.branch.tolist() and set(result.branch) == set(range(routed_toy.branches))
    np.testing.assert_array_equal(result.forecast, eager.forecast)  # every replay read its own sample's frames
    assert result.flops.tolist() == eager.flops.tolist()
    launched = [entry[1] for entry in log if entry[0] == "graph launch"]
    assert launched == [role for branch in result.branch for role in ("dpedge-router", f"dpedge-branch{branch}")], (
        "router, then the branch: nothing else"
    )
    assert [entry[1] for entry in log if entry[0] == "execute"] == launched
    assert not [entry for entry in log if entry[0] in ("enqueue", "captured")], "nothing eager, nothing captured again"
    assert (
        set(backend.last_phases) == {"router_ms", "dispatch_ms", "branch_ms", "total_ms"}
        and backend.last_phases["router_ms"] == 0.5
    )
    if width_routed:  # at budget 1 the budget-1 engine's graph runs alone
        log.clear()
        backend.set_budget(1.0)
        at_one = backend.run(frames[:2])
        assert [entry[1] for entry in log if entry[0] == "graph launch"] == ["dpedge-bypass"] * 2
        reference = load(bundle, backend="trt")
        reference.set_budget(1.0)
        np.testing.assert_array_equal(at_one.forecast, reference.run(frames[:2]).forecast)


def test_a_branch_that_cannot_be_captured_runs_eagerly_alone_and_the_note_says_which(
    tmp_path, routed_export, routed_toy, fake_tensorrt, stand_in_driver
):
    version, log = fake_tensorrt
    path, manifest, _ = routed_export
    bundle = build_or_explain(path, manifest, "fp16", None, None).engine_path
    frames = samples(routed_toy, seed=4)
    eager = load(bundle, backend="trt").run(frames)
    libcuda = sys.modules["pycuda.driver"].libcuda
    libcuda.refuse.add("dpedge-branch1")
    backend = load(bundle, backend="trt", cuda_graph=True)
    assert not libcuda.capturing, "the stream is not left capturing"
    graphs = backend.describe()["cuda_graphs"]
    assert graphs.pop("branch1") is False and set(graphs.values()) == {True}, "the other engines are still captured"
    assert backend.cuda_graph_notes == [
        f"{bundle.name}: branch1: runs eagerly, its CUDA graph capture failed: TensorRT could not enqueue "
        "it while the stream was capturing (its log above says why)"
    ]
    assert backend.describe()["cuda_graph_notes"] == [backend.cuda_graph_notes[0].removeprefix(f"{bundle.name}: ")]
    log.clear()
    result = backend.run(frames)
    np.testing.assert_array_equal(result.forecast, eager.forecast)
    assert result.branch.tolist() == eager.branch.tolist()
    assert [entry[1] for entry in log if entry[0] == "enqueue"] == ["dpedge-branch1"] * int(np.sum(result.branch == 1))
    assert [entry[1] for entry in log if entry[0] == "graph launch"] == [
        role
        for branch in result.branch
        for role in ("dpedge-router", *([f"dpedge-branch{branch}"] if branch != 1 else []))
    ]


def test_dpedge_profile_prints_each_engine_that_runs_eagerly_once_and_reports_what_ran(
    routed_export, routed_toy, fake_tensorrt, stand_in_driver, monkeypatch
):
    from dynaprune_edge import profile as profiling

    path, manifest, _ = routed_export
    bundle = build_or_explain(path, manifest, "fp16", None, None).engine_path
    sys.modules["pycuda.driver"].libcuda.refuse.add("dpedge-branch1")
    # the bundle stands in for its own dense twin: the same engines, so the same note twice, to be printed once
    monkeypatch.setattr(profiling, "dense_twin", lambda onnx_path, opened, manifest, log: opened)
    monkeypatch.setattr(profiling, "profile_frames", lambda *args: (samples(routed_toy), "test windows"))
    printed = []
    result = profiling.run(
        bundle, profiling.Settings(backend="trt", cuda_graph=True, power="off", runs=8, samples=8), log=printed.append
    )
    assert printed == [
        f"{bundle.name}: branch1: runs eagerly, its CUDA graph capture failed: TensorRT could not enqueue it while the "
        "stream was capturing (its log above says why)"
    ]
    assert result.backend["cuda_graphs"]["branch1"] is False and result.backend["cuda_graphs"]["router"] is True
