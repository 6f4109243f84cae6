"""Kill tests of the three writers of file pairs (issue "Hardening", "Prove it"): `dpedge
train` (OUT/model.pt then OUT/resume.pt, after every epoch and at the end), `dpedge export`
(MODEL.onnx then its manifest MODEL.dpedge.json) and `dpedge engine` (the engine then its
metadata ENGINE.json; or a split bundle: its engines, named by their hashes, then the
.bundle.json that lists them, then the removal of the engines of the bundle it replaced).
Each runs over the OLD complete files of an earlier run and is SIGKILLed before the
file-system steps (os.fsync, os.replace, os.unlink) it takes in its output folder, after
its last one, and at random moments of its writing. Every file left must be the old one,
one the run wrote whole or one it removed (leftover `.NAME.<hex>.tmp` temporaries aside),
and loading what is left must work, or, where the two files of a pair are not each other's,
fail with one line; a bundle always loads, as the old one or the new one.

Two files cannot be renamed at once: between the renames, a new graph (engine) lies beside
the old manifest (metadata). That pair is refused, in one line, because the file written
last records the SHA-256 of the other; these tests prove that it is, and that nothing else
is ever left.

SIGKILL loses nothing the kernel already has (an fsync matters for a power cut only), so
the files left depend on the renames and removals done alone: killing before each step
and after the last covers every gap between two steps. The writers run in processes
forked from one harness process (HARNESS, run with `python -c`) that imported torch and
dpedge once: a fresh interpreter per kill point would spend most of this file's time
importing.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from onnx import helper, numpy_helper

from dynaprune_edge.errors import ConfigError
from dynaprune_edge.export.tensorrt.bundle import bundle_name
from dynaprune_edge.export.tensorrt.names import ORIN, engine_name, timing_cache_name
from dynaprune_edge.files import sha256_file
from dynaprune_edge.runtime import load
from dynaprune_edge.runtime.tensorrt import meta_path, read_bundle
from dynaprune_edge.training import load_model
from tests.trt_stand_ins import load_test_module

TESTS = Path(__file__).parent

HARNESS = r'''
import hashlib, json, os, select, signal, sys, time, traceback

for name in sys.argv[1:]:
    __import__(name)  # what every case imports: once, here


def sha256(path):
    with open(path, "rb") as file:
        return hashlib.sha256(file.read()).hexdigest()


def writer(case, started):
    """The forked case: `dpedge ARGV`, its output into files, each os.fsync, os.replace and
    os.unlink on a path in case["folder"] logged (a line as it begins, one as it ends) and
    SIGKILLed at case["kill"]; a byte to `started` as each temporary there is created."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        os.dup2(os.open(case[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    log = os.open(case["steps"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    folder, kill = os.path.realpath(case["folder"]), case.get("kill") or {}
    exec(case.get("prelude", ""), {})
    from dynaprune_edge import files

    def inside(path):
        return (os.path.realpath(path) + os.sep).startswith(folder + os.sep)

    def write(record):
        os.write(log, (json.dumps(record) + "\n").encode())

    count = 0

    def step(kind, path, act, **details):
        nonlocal count
        if not inside(path):
            return act()
        count += 1
        record = {"n": count, "kind": kind, "path": str(path), "t": time.monotonic(), **details}
        if kill.get("when") == "before" and kill["step"] == count:
            write({**record, "phase": "killed"})
            os.kill(os.getpid(), signal.SIGKILL)
        write({**record, "phase": "begin"})
        result = act()
        write({"n": count, "phase": "end"})
        if (kill.get("when") == "after" and kill["step"] == count) or (
                kind == "replace" and kill.get("after_replacing") == os.path.basename(path)):
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    real_replace, real_fsync, real_unlink, real_create = os.replace, os.fsync, os.unlink, files.create_beside

    def create_beside(path):
        if started is not None and inside(path):
            os.write(started, b"w")
        return real_create(path)

    os.replace = lambda source, target, **options: step(
        "replace", target, lambda: real_replace(source, target, **options), sha256=sha256(source))
    os.fsync = lambda fd: step("fsync", os.readlink(f"/proc/self/fd/{fd}"), lambda: real_fsync(fd))
    os.unlink = lambda path, **options: step("unlink", path, lambda: real_unlink(path, **options))
    files.create_beside = create_beside
    code = 0
    try:
        from dynaprune_edge.cli import main

        sys.argv = ["dpedge", *case["argv"]]
        main()
    except SystemExit as exit:  # as the interpreter ends on it
        if isinstance(exit.code, int) or exit.code is None:
            code = exit.code or 0
        else:
            print(exit.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


for line in sys.stdin:
    case = json.loads(line)
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            writer(case, write if "kill_after" in case else None)
        finally:
            os._exit(99)
    os.close(write)
    if "kill_after" in case and select.select([read], [], [], 300)[0] and os.read(read, 1):
        time.sleep(case["kill_after"])  # from its first temporary on
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    os.close(read)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status) else {"exit": os.WEXITSTATUS(status)}), flush=True)
os._exit(0)  # no interpreter teardown (torch's takes seconds)
'''

WARM = [
    "pytest",
    "torch",
    "torch._dynamo",
    "dynaprune_edge.cli",
    "dynaprune_edge.training.run",
    "dynaprune_edge.export.exporter",
    "dynaprune_edge.profile",
    "dynaprune_edge.export.tensorrt.build",
]
"""Imported by the harness before it forks (torch._dynamo: building a model on the meta
device, as `dpedge train` checks its size, imports it)."""

RUN = [
    "--dataset",
    "taxibj",
    "--synthetic-frames",
    "60",
    "--batch-size",
    "64",
    "--arch",
    "spatial_channels=8",
    "--arch",
    "temporal_channels=16",
    "--epochs",
    "2",
]
"""tests/conftest.py's TINY model on half its frames (35/2/2 windows) in one step per epoch:
two epochs of a dense SimVP in under a second."""

CHECKPOINT = ("model.pt", "resume.pt", "metrics.json")
PROFILE = ["--runs", "3", "--samples", "2", "--warmup", "0", "--power", "off"]  # loads the pair and runs it, briefly
EXPORT = ("model.onnx", "model.dpedge.json")
TEMPORARY = re.compile(r"\.(?P<name>.+)\.[0-9a-f]{12}\.tmp")
SHAPE = [1, 4, 1, 8, 8]  # the input both TensorRT stand-ins have
TRT_VERSION = "8.5.2.2"


@dataclass
class Step:
    """One os.fsync, os.replace or os.unlink a case took in its folder, as the harness logged it."""

    kind: str  # "fsync", "replace" or "unlink"
    path: str  # fsync: the file or folder flushed; replace: the name renamed onto; unlink: the file removed
    t: float  # time.monotonic() as it began
    done: bool | None  # True: it ended; False: killed before it began; None: a kill landed inside it
    sha256: str | None = None  # replace: of the temporary renamed into place

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass
class Run:
    """A case's end: exit code or signal, its steps, its output."""

    status: dict  # {"exit": code} or {"signal": number}
    steps: list[Step]
    stdout: str
    stderr: str

    @property
    def killed(self) -> bool:
        return self.status == {"signal": signal.SIGKILL}

    def written(self, name: str) -> list[str]:
        """The SHA-256 of each version of `name` the run began to rename into place."""
        return [
            step.sha256
            for step in self.steps
            if step.kind == "replace" and step.name == name and step.done is not False
        ]


class Harness:
    """The harness process (a session of its own, so that it and the cases it forks end
    together); `run` forks a case from it and waits for its end."""

    TIMEOUT = 300

    def __init__(self, logs: Path) -> None:
        self.logs, self.cases = logs, 0
        # one thread: OpenMP's pool does not survive a fork, and the 2 cores are shared
        environment = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.process = subprocess.Popen(
            [sys.executable, "-c", HARNESS, *WARM],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=environment,
            start_new_session=True,
        )

    def run(
        self, argv: list, folder: Path, kill: dict | None = None, kill_after: float | None = None, prelude: str = ""
    ) -> Run:
        """`dpedge ARGV`, its steps in `folder` logged; SIGKILLed at `kill` ({"step": n,
        "when": "before"/"after"}, or {"after_replacing": name}: after the first rename onto
        it), or `kill_after` seconds after its first temporary in `folder`; `prelude`: Python
        the case runs first."""
        self.cases += 1
        files = {name: str(self.logs / f"{self.cases}.{name}") for name in ("stdout", "stderr", "steps")}
        case = {"argv": list(map(str, argv)), "folder": str(folder), "kill": kill, "prelude": prelude, **files}
        if kill_after is not None:
            case["kill_after"] = kill_after
        self.process.stdin.write(json.dumps(case) + "\n")
        self.process.stdin.flush()
        if not select.select([self.process.stdout], [], [], self.TIMEOUT)[0]:
            self.stop()
            raise AssertionError(f"dpedge {' '.join(case['argv'])} did not end within {self.TIMEOUT} s")
        line = self.process.stdout.readline()
        assert line, "the harness ended (its error is above)"
        return Run(
            json.loads(line),
            read_steps(Path(files["steps"])),
            Path(files["stdout"]).read_text(),
            Path(files["stderr"]).read_text(),
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.stop()


def read_steps(log: Path) -> list[Step]:
    """The steps a case logged: a line as each began (or was killed before it), one as it ended."""
    steps: dict[int, Step] = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record["phase"] == "end":
            steps[record["n"]].done = True
        else:
            steps[record["n"]] = Step(
                record["kind"],
                record["path"],
                record["t"],
                False if record["phase"] == "killed" else None,
                record.get("sha256"),
            )
    return [steps[n] for n in sorted(steps)]


@pytest.fixture(scope="module")
def harness(tmp_path_factory) -> Iterator[Harness]:
    """One harness for the module: each test's cases fork from its warm imports."""
    harness = Harness(tmp_path_factory.mktemp("harness"))
    yield harness
    harness.close()


def kill_points(
    reference: Run, kinds: tuple[str, ...] = ("fsync", "replace", "unlink"), randomly: int = 2
) -> list[dict]:
    """Where to kill a run that repeats the uncrashed `reference`: before each of its steps
    of `kinds`, after its last step, and `randomly` times at a random moment of its writing
    (from its first temporary on: most of a writer's time goes to computing what to write)."""
    assert reference.status == {"exit": 0} and reference.steps, reference.stderr
    last = len(reference.steps)
    writing = reference.steps[-1].t - reference.steps[0].t + 0.02
    draw = random.Random()
    return (
        [{"kill": {"step": n, "when": "before"}} for n, step in enumerate(reference.steps, 1) if step.kind in kinds]
        + [{"kill": {"step": last, "when": "after"}}]
        + [{"kill_after": draw.uniform(0, writing)} for _ in range(randomly)]
    )


def digests(folder: Path, names) -> dict[str, str | None]:
    return {name: sha256_file(folder / name) if (folder / name).is_file() else None for name in names}


def possible_states(old: dict[str, str | None], run: Run) -> list[dict[str, str | None]]:
    """The files `run` can have left over `old`: each temporary it renamed into place and
    each file it removed (None), in order; both outcomes of a rename or removal that a
    random kill interrupted."""
    state = dict(old)
    interrupted = None
    for step in run.steps:
        if step.kind in ("replace", "unlink") and step.done is not False:
            change = (step.name, step.sha256 if step.kind == "replace" else None)
            if step.done:
                state.update([change])
            else:
                interrupted = change
    return [state] if interrupted is None else [state, {**state, interrupted[0]: interrupted[1]}]


def check_files_left(folder: Path, old: dict[str, str | None], run: Run, point: dict) -> dict[str, str | None]:
    """The files in `folder` after `run` was killed at `point`: each the old one, one the
    run renamed into place (whole: the loads that follow read them) or none where the run
    removed it, and nothing else but temporaries of those names."""
    label = f"{point}"
    # a random kill may come after the end
    assert run.killed or ("kill_after" in point and run.status == {"exit": 0}), f"{label}: {run.status} {run.stderr}"
    state = digests(folder, old)
    assert state in possible_states(old, run), f"{label}: {state}"
    strays = [
        p.name
        for p in folder.iterdir()
        if p.name not in old and not ((match := TEMPORARY.fullmatch(p.name)) and match["name"] in old)
    ]
    assert not strays, f"{label}: {strays}"
    return state


def left(folder: Path, state: dict[str, str | None]) -> tuple:
    """What a loader can meet in `folder`: the files at their names and the names that have
    a temporary beside them. Loading depends on nothing else: once per distinct one."""
    temporaries = sorted(TEMPORARY.fullmatch(p.name)["name"] for p in folder.iterdir() if p.name not in state)
    return tuple(state.items()), tuple(temporaries)


def version(run: Run, old: dict, state: dict, name: str) -> int:
    """0: the old `name`; k: the k-th version the run wrote."""
    return [old[name], *run.written(name)].index(state[name])


def assert_one_error_line(run: Run, message: str, label: str) -> None:
    """What the user sees of a refusal: exit code 1 and one `error:` line, no traceback."""
    assert run.status == {"exit": 1} and "Traceback" not in run.stderr, f"{label}: {run.status} {run.stderr}"
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], f"{label}: {run.stderr}"


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path).model.state_dict()


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


# --- checkpoints: dpedge train ------------------------------------------------------------


@dataclass
class Runs:
    """The training runs the checkpoint and export tests start from."""

    epoch1: Path  # a run of RUN killed after its first epoch's checkpoint: the OLD files
    finished: Path  # the same run resumed to its end, uncrashed
    resumed: Run  # that resumption


@pytest.fixture(scope="module")
def runs(harness, tmp_path_factory) -> Runs:
    """RUN killed after its first checkpoint (the old files of the checkpoint test, and an
    old model to export), then resumed to its end (the new ones, and a new model)."""
    folder = tmp_path_factory.mktemp("runs")
    epoch1, finished = folder / "epoch1", folder / "finished"
    first = harness.run(["train", *RUN, "--out", epoch1], epoch1, kill={"after_replacing": "resume.pt"})
    assert first.killed and torch.load(epoch1 / "resume.pt", weights_only=True)["epoch"] == 1, first.stderr
    shutil.copytree(epoch1, finished)
    resumed = harness.run(["train", *RUN, "--out", finished, "--resume"], finished)
    assert resumed.status == {"exit": 0}, resumed.stderr
    return Runs(epoch1, finished, resumed)


@pytest.mark.slow
def test_a_training_killed_at_any_step_leaves_whole_checkpoints_and_resumes_to_the_same_model(harness, runs, tmp_path):
    """`dpedge train --resume` from the checkpoint of epoch 1 of 2 writes model.pt and
    resume.pt after epoch 2, both again at the end, then metrics.json. Killed anywhere in
    that, each file is the old one or a whole new one, and resume.pt is never newer than
    model.pt nor more than one checkpoint older (model.pt is written first). The two are not
    bound to each other and need not be: model.pt stands alone (`dpedge info` reads it), and
    --resume reads resume.pt alone and writes model.pt again, so --resume from every state
    left ends with the weights of the uncrashed run.

    Killed before each os.replace only (and after the last step, and once at random): a
    case trains a whole epoch (about a second), and a kill before an fsync leaves the same
    files as one before the rename that follows it or after the one before it."""
    old = digests(runs.epoch1, CHECKPOINT)
    final = weights(runs.finished / "model.pt")
    versions, loaded = set(), set()
    for number, point in enumerate(kill_points(runs.resumed, ("replace",), randomly=1)):
        label = f"{point}"
        case = tmp_path / f"case{number}"
        shutil.copytree(runs.epoch1, case)
        run = harness.run(["train", *RUN, "--out", case, "--resume"], case, **point)
        state = check_files_left(case, old, run, point)
        model, resume = (version(run, old, state, name) for name in ("model.pt", "resume.pt"))
        assert resume <= model <= resume + 1, f"{label}: model.pt version {model}, resume.pt version {resume}"

        versions.add((model, resume, state["metrics.json"] is not None))
        if (key := left(case, state)) not in loaded:
            loaded.add(key)
            info = harness.run(["info", case / "model.pt"], case)
            assert info.status == {"exit": 0} and '"model"' in info.stdout, f"{label}: {info.stderr}"
            again = harness.run(["train", *RUN, "--out", case, "--resume"], case)
            assert again.status == {"exit": 0}, f"{label}: {again.stderr}"
            assert same_weights(weights(case / "model.pt"), final), (
                f"{label}: resumed to other weights than the uncrashed run"
            )
            assert [h["epoch"] for h in json.loads((case / "metrics.json").read_text())["history"]] == [1, 2], label
    assert {(0, 0, False), (2, 2, True)} <= versions, f"the kills missed the old or the new files: {versions}"


# --- exports: dpedge export ---------------------------------------------------------------


@pytest.mark.slow
def test_an_export_killed_at_any_step_leaves_the_old_pair_the_new_pair_or_one_refused_in_one_line(
    harness, runs, tmp_path
):
    """`dpedge export` of the finished run over the export of its epoch-1 model (other
    weights, so another graph and manifest): killed anywhere, each file is the old one or the
    whole new one; the old pair and the new pair profile, a new graph beside the old
    manifest (the one state between the two renames) is refused in one line, because the
    manifest records its graph's SHA-256."""
    old_folder = tmp_path / "old"
    first = harness.run(["export", runs.epoch1 / "model.pt", "-o", old_folder / "model.onnx"], old_folder)
    assert first.status == {"exit": 0}, first.stderr
    old = digests(old_folder, EXPORT)
    reference_folder = tmp_path / "reference"
    shutil.copytree(old_folder, reference_folder)
    reference = harness.run(
        ["export", runs.finished / "model.pt", "-o", reference_folder / "model.onnx"], reference_folder
    )
    assert all(digests(reference_folder, EXPORT)[name] != old[name] for name in EXPORT), (
        "old and new exports are the same files"
    )

    seen, loaded = set(), set()
    for number, point in enumerate(kill_points(reference)):
        label = f"{point}"
        case = tmp_path / f"case{number}"
        shutil.copytree(old_folder, case)
        run = harness.run(["export", runs.finished / "model.pt", "-o", case / "model.onnx"], case, **point)
        state = check_files_left(case, old, run, point)
        pair = {(0, 0): "old", (1, 1): "new"}.get(tuple(version(run, old, state, name) for name in EXPORT), "mixed")
        seen.add(pair)
        if (key := left(case, state)) in loaded:
            continue
        loaded.add(key)
        profiled = harness.run(["profile", case / "model.onnx", *PROFILE], case)
        if pair == "mixed":
            assert_one_error_line(profiled, "model.onnx is not the graph model.dpedge.json describes", label)
        else:
            assert profiled.status == {"exit": 0}, f"{label}: {profiled.stderr}"
    assert {"old", "new"} <= seen, f"the kills missed the old or the new pair: {seen}"


# --- engines: dpedge engine, against the TensorRT stand-ins -------------------------------


def builder_prelude(stand_ins: str, tag: bytes) -> str:
    """The prelude of a `dpedge engine` case: the stand-in builder of the test module
    `stand_ins` installed (tests/trt_stand_ins.py, install_stand_ins), every engine it
    builds but a bundle's router marked with `tag`: two builds of one graph differ, as
    TensorRT's tactic choices make them."""
    return (
        f"import sys\nsys.path.insert(0, {str(TESTS.parent)!r})\nfrom tests.trt_stand_ins import install_stand_ins\n"
        f"install_stand_ins({stand_ins!r}, {TRT_VERSION!r}, {tag!r})\n"
    )


OLD_BUILD, NEW_BUILD = b" (old build)", b" (new build)"


@dataclass
class Rebuild:
    """`dpedge engine GRAPH --precision fp16` with the stand-in builder of the test module
    `stand_ins`, run over the folder `old`: the graph, its manifest and the build before
    ("old build"); `new`: a copy of it that the same command rebuilt uncrashed ("new
    build"), as `reference` did."""

    harness: Harness
    old: Path
    graph: str
    stand_ins: str
    new: Path
    reference: Run
    names: tuple[str, ...]  # every file either build left
    accumulating: tuple[str, ...]  # files each build adds to (the timing cache)

    def run(self, folder: Path, **point) -> Run:
        return engine_build(self.harness, folder / self.graph, self.stand_ins, NEW_BUILD, **point)

    @property
    def before(self) -> dict[str, str | None]:
        return digests(self.old, self.names)

    @property
    def after(self) -> dict[str, str | None]:
        return digests(self.new, self.names)


def engine_build(harness: Harness, graph: Path, stand_ins: str, tag: bytes, **point) -> Run:
    """`dpedge engine GRAPH --precision fp16` (`builder_prelude(stand_ins, tag)`), killed at `point`."""
    return harness.run(
        ["engine", graph, "--precision", "fp16"], graph.parent, prelude=builder_prelude(stand_ins, tag), **point
    )


def rebuild_over_old(harness: Harness, tmp_path: Path, graph: Path, stand_ins: str) -> Rebuild:
    """Build `graph` once in its folder, the old build; then again, uncrashed, over a copy
    of that folder: the reference of the kills."""
    first = engine_build(harness, graph, stand_ins, OLD_BUILD)
    assert first.status == {"exit": 0}, first.stderr
    old, new = graph.parent, tmp_path / "reference"
    shutil.copytree(old, new)
    reference = engine_build(harness, new / graph.name, stand_ins, NEW_BUILD)
    assert reference.status == {"exit": 0}, reference.stderr
    names = tuple(sorted({p.name for p in old.iterdir()} | {p.name for p in new.iterdir()}))
    return Rebuild(harness, old, graph.name, stand_ins, new, reference, names, (timing_cache_name(ORIN, TRT_VERSION),))


def killed_rebuilds(rebuild: Rebuild, tmp_path: Path) -> Iterator[tuple[str, Path, Run, dict[str, str | None]]]:
    """Rebuilds of a copy of the old folder, each SIGKILLed at one of the reference's kill
    points: (label, folder, run, the files left), once check_files_left found each the old
    one, one the run renamed into place, or one it removed. After the caller's checks, the
    build run again in that folder (once per distinct state left) must succeed and leave the
    files of the uncrashed rebuild, the accumulating ones aside."""
    before, after, rerun = rebuild.before, rebuild.after, set()
    for number, point in enumerate(kill_points(rebuild.reference)):
        label = f"{point}"
        case = tmp_path / f"case{number}"
        shutil.copytree(rebuild.old, case)
        run = rebuild.run(case, **point)
        state = check_files_left(case, before, run, point)
        yield label, case, run, state
        if (key := left(case, state)) not in rerun:
            rerun.add(key)
            again = rebuild.run(case)
            assert again.status == {"exit": 0}, f"{label}, run again: {again.stderr}"
            rebuilt = {
                name: digest
                for name, digest in digests(case, rebuild.names).items()
                if name not in rebuild.accumulating
            }
            assert rebuilt == {name: after[name] for name in rebuilt}, f"{label}: run again, the build left {rebuilt}"


@pytest.mark.slow
def test_an_engine_build_killed_at_any_step_leaves_the_old_pair_the_new_pair_or_one_refused_in_one_line(
    harness, tmp_path, toy_manifest, write_toy_graph, install_fake_tensorrt, monkeypatch
):
    """`dpedge engine` rebuilding an engine beside the one built before from the same graph
    (tests/export/trt/test_build.py's stand-in builder): it writes the timing cache, the
    engine, then its metadata. Killed anywhere, each file is the old one or the whole new
    one; the trt backend (against tests/runtime/test_tensorrt_backend.py's stand-in runtime,
    which here deserializes the two builds' engines) loads and runs the old pair and the new
    pair, and refuses a new engine beside the old metadata in one line; run again, the build
    succeeds."""
    old_folder = tmp_path / "old"
    old_folder.mkdir()
    manifest = toy_manifest(
        SHAPE, backbone="simvp", dataset="synthetic", width_levels=[0.5, 1.0], mode="dense"
    )  # one engine
    nodes = [
        helper.make_node("Identity", ["frames"], ["forecast"]),
        helper.make_node("ReduceSum", ["frames"], ["flops"], keepdims=0),
        helper.make_node("Constant", [], ["branch"], value=numpy_helper.from_array(np.array(1, np.int64))),
    ]
    graph = write_toy_graph(old_folder, nodes, [], SHAPE, manifest)
    rebuild = rebuild_over_old(harness, tmp_path, graph, "export/trt/test_build.py")
    engine = old_folder / engine_name(graph.stem, ORIN, TRT_VERSION, "fp16")
    pair = (engine.name, meta_path(engine).name)
    old, new = rebuild.before, rebuild.after
    built = {(folder / engine.name).read_bytes() for folder in (rebuild.old, rebuild.new)}
    assert len(built) == 2 and all(new[name] != old[name] for name in (*pair, *rebuild.accumulating)), (
        "old and new builds are the same files"
    )

    install_fake_tensorrt(load_test_module("runtime/test_tensorrt_backend.py").fake_modules, TRT_VERSION)
    trt = sys.modules["tensorrt"]
    stand_in = trt.Runtime(None).deserialize_cuda_engine(b"fake engine")  # the runtime stand-in's one engine
    runtime = SimpleNamespace(deserialize_cuda_engine=lambda data: stand_in if data in built else None)
    monkeypatch.setattr(trt, "Runtime", lambda logger: runtime)
    frames = np.ones((1, *SHAPE[1:]), np.float32)
    seen = set()
    for label, case, run, state in killed_rebuilds(rebuild, tmp_path):
        left_pair = {(0, 0): "old", (1, 1): "new"}.get(tuple(version(run, old, state, name) for name in pair), "mixed")
        seen.add(left_pair)
        if left_pair == "mixed":
            with pytest.raises(ConfigError) as refused:
                load(case / engine.name, "trt")
            message = str(refused.value)
            refusal = f"{engine.name} is not the engine its metadata {meta_path(engine).name} describes"
            assert "\n" not in message and refusal in message, f"{label}: {message}"
        else:
            forecast = load(case / engine.name, "trt").run(frames).forecast
            np.testing.assert_array_equal(forecast, 2 * frames, err_msg=label)  # what the stand-in engine computes
    assert {"old", "new"} <= seen, f"the kills missed the old or the new pair: {seen}"


@pytest.mark.slow
def test_a_bundle_build_killed_at_any_step_leaves_the_old_bundle_or_the_new_one_never_a_mix(
    harness, tmp_path, routed_toy, install_fake_tensorrt, monkeypatch
):
    """`dpedge engine` rebuilding the split bundle of a width-routed graph (a router, four
    branches and the budget-1 engine; tests/runtime/test_tensorrt_bundle.py's stand-in
    builder) beside the bundle built before from the same graph, whose branch engines
    differ from the new ones and whose router is alike: it writes the timing cache after
    each engine, then each engine under a name of its hash, then the .bundle.json, then
    removes the old engines the new bundle does not list. Killed anywhere, each file is the
    old one, a whole new one or (an old engine) gone; the trt backend (the same stand-in's
    runtime, running each engine's graph) loads exactly the old bundle or exactly the new
    one, every engine the one its .bundle.json lists, never a mix; run again, the build
    succeeds and leaves the uncrashed build's files."""
    old_folder = tmp_path / "old"
    old_folder.mkdir()
    graph, _ = routed_toy.export(old_folder, True)
    rebuild = rebuild_over_old(harness, tmp_path, graph, "runtime/test_tensorrt_bundle.py")
    bundle = bundle_name(graph.stem, ORIN, TRT_VERSION, "fp16")
    bundles = [read_bundle(folder / bundle) for folder in (rebuild.old, rebuild.new)]
    engines = [sorted(engine.sha256 for engine in meta.engines) for meta in bundles]
    assert len(engines[0]) == 1 + routed_toy.branches + 1, "a router, the branches and the budget-1 engine"
    assert set(engines[0]) & set(engines[1]) == {bundles[0].router.sha256}, (
        "the two builds share their router engine only"
    )

    install_fake_tensorrt(load_test_module("runtime/test_tensorrt_bundle.py").fake_modules, TRT_VERSION)
    trt = sys.modules["tensorrt"]
    deserialize, loaded = trt.Runtime(None).deserialize_cuda_engine, []
    runtime = SimpleNamespace(
        deserialize_cuda_engine=lambda data: loaded.append(hashlib.sha256(data).hexdigest()) or deserialize(data)
    )
    monkeypatch.setattr(trt, "Runtime", lambda logger: runtime)
    rng = np.random.default_rng(0)
    frames = np.concatenate([routed_toy.frames(branch, rng) for branch in range(routed_toy.branches)])
    seen, old = set(), rebuild.before
    for label, case, run, state in killed_rebuilds(rebuild, tmp_path):
        which = version(run, old, state, bundle)  # 0: the old .bundle.json, 1: the new one
        seen.add(which)
        loaded.clear()
        backend = load(case / bundle, "trt")
        assert backend.meta == bundles[which] and sorted(loaded) == engines[which], (
            f"{label}: loaded {loaded}, not bundle {which}'s engines"
        )
        assert backend.run(frames).branch.tolist() == list(range(routed_toy.branches)), label
    assert seen == {0, 1}, f"the kills missed the old or the new bundle: {seen}"
