"""What the fuzz tests share: the Hypothesis profiles, running `dpedge` in this process and
stopping it where its expensive work would start, what a refusal must look like, a
snapshot of the folder a command works in, and the strategies of bad option values.

The requirement (issue "Hardening", "Prove it"): every bad option value and every corrupt
file ends in exit status 1 with a single `error:` line, no traceback, and no file created
or changed. The test modules beside it import this module; conftest.py holds the
session's fixtures.

In process, not in a subprocess: a `python -m dynaprune_edge` costs about 2 s of torch
import, so a few hundred examples would take minutes. `main()` is called with sys.argv
set, sys.stdout and sys.stderr replaced, file descriptors 1 and 2 redirected (C libraries
such as HDF5 or onnxruntime write there, and a user sees it) and warnings recorded as a
fresh process would print them. tests/fuzz/test_processes.py checks a few cases end to end.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import shlex
import shutil
import stat
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path

import pytest
import typer.main
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st

# ------------------------------------------------------------------------------ profiles

# "ci", the default: a few examples per case, the same ones on every run (derandomize, no
# example database), so the suite stays within its minute and a red CI run replays
# locally; no shrinking either: an example that reaches training takes seconds, and
# shrinking one runs it dozens of times. "fuzz" (DPEDGE_FUZZ=1, or DPEDGE_FUZZ=N for N
# examples per case; `make fuzz`): many random examples, shrunk, failures kept in
# .hypothesis/ and replayed first next time. Applied per test (`@examples`), never loaded
# globally: the suite's other Hypothesis tests keep their own settings.
FUZZ = os.environ.get("DPEDGE_FUZZ", "")
settings.register_profile(
    "ci",
    max_examples=3,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "fuzz",
    max_examples=int(FUZZ) if FUZZ.isdigit() and int(FUZZ) > 1 else 150,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
PROFILE = "fuzz" if FUZZ not in ("", "0") else "ci"
examples = settings.get_profile(PROFILE)

REPOSITORY = Path(__file__).resolve().parents[2]
AS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
"""Root reads a chmod 000 file, so "unreadable file" examples are skipped as root."""

# ------------------------------------------------------------------------------ running dpedge


class WorkStarted(BaseException):
    """Raised by the stand-ins for the first expensive step of a command (training,
    exporting, measuring, connecting over SSH). A BaseException, so that no `except
    Exception` in dpedge turns it into something else. Reaching one with a bad value or a
    corrupt file means the value was not checked before the work began."""


WORK: tuple[tuple[str, str, str], ...] = (
    ("dynaprune_edge.training.trainer", "Trainer.fit", "training"),
    ("torch.distributed.run", "run", "launching training processes"),
    ("dynaprune_edge.export.cost_table", "priced_config", "pricing the model on a measured cost target"),
    ("dynaprune_edge.export.cost_table", "measure", "measuring a cost table"),
    ("dynaprune_edge.export.exporter", "Exporter.run", "exporting"),
    ("dynaprune_edge.profile", "profile", "profiling"),
    ("dynaprune_edge.profile", "run_trtexec_here", "running trtexec"),
    ("dynaprune_edge.deploy.ssh", "Session.run", "connecting to the device over SSH"),
    ("dynaprune_edge.bench.accuracy", "compare", "training the benchmark's models"),
    ("dynaprune_edge.bench.latency", "measure", "training and timing the benchmark's models"),
    ("dynaprune_edge.bench.pareto", "build", "training the benchmark's models"),
    ("dynaprune_edge.bench.training", "compare", "training the benchmark's models"),
    ("dynaprune_edge.bench.layout", "masks_row", "timing the layout benchmark"),
    ("dynaprune_edge.bench.orin", "exported", "building the reference networks"),
    ("dynaprune_edge.bench.gpu_check", "trained_model", "training the gpu check's model"),
)
"""(module, attribute, what it starts): where each command's expensive work begins."""


@dataclass
class Outcome:
    """What one `dpedge` call did, as its user would see it."""

    args: list[str]
    folder: Path  # the sandbox; shown as $S
    status: int | None = None  # exit status (0 when main() returned); None when it did not end
    stderr: str = ""
    work: str | None = None  # the expensive step it reached (WORK)
    escaped: BaseException | None = None  # what left main() other than SystemExit: a traceback

    def command(self) -> str:
        return "dpedge " + shlex.join(self.args).replace(str(self.folder), "$S")

    def traceback_end(self) -> str:
        """The escaped exception's type and message, where it was raised, and the last
        frame in dpedge's own code (where a library raised it)."""
        frames = traceback.extract_tb(self.escaped.__traceback__)
        ours = [
            frame
            for frame in frames
            if frame.filename.startswith(str(REPOSITORY))
            and not any(part in frame.filename for part in ("/tests/", "/site-packages/"))
        ]
        where = lambda frame: f"{frame.filename.removeprefix(str(REPOSITORY) + '/')}:{frame.lineno} in {frame.name}"
        message = str(self.escaped).splitlines()[0][:300] if str(self.escaped) else ""
        found = f"{type(self.escaped).__module__}.{type(self.escaped).__qualname__}: {message} (raised at {where(frames[-1])}"
        return found + (f", from {where(ours[-1])})" if ours and ours[-1] is not frames[-1] else ")")

    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def describe(self) -> str:
        if self.escaped is not None:
            ended = f"traceback: {self.traceback_end()}"
        elif self.work is not None:
            ended = f"not refused: reached {self.work}"
        else:
            ended = f"exit status {self.status}"
        shown = "\n".join("    " + line for line in self.stderr.replace(str(self.folder), "$S").splitlines()[:12])
        return f"{self.command()}\n  {ended}\n  stderr:\n{shown or '    (empty)'}"


class CapturedDescriptor:
    """File descriptor `fd` sent to a temporary file while the block runs: what C
    libraries write there (HDF5's error stack, onnxruntime's log) reaches a user too."""

    def __init__(self, fd: int) -> None:
        self.fd, self.text = fd, ""

    def __enter__(self) -> CapturedDescriptor:
        self.sink = tempfile.TemporaryFile()
        self.saved = os.dup(self.fd)
        os.dup2(self.sink.fileno(), self.fd)
        return self

    def __exit__(self, *exc) -> None:
        os.dup2(self.saved, self.fd)
        os.close(self.saved)
        self.sink.seek(0)
        self.text = self.sink.read().decode("utf-8", "replace")
        self.sink.close()


typer_get_command = typer.main.get_command


@functools.cache
def click_command(app):
    """typer builds the click command from the app's signatures on every call (~40 ms);
    the command is the same each time, so the examples share one."""
    return typer_get_command(app)


def stand_in(work: str) -> Callable:
    def started(*args, **kwargs):
        raise WorkStarted(work)

    return started


def restore_environment(saved: dict[str, str]) -> None:
    for name in set(os.environ) - set(saved):
        del os.environ[name]
    os.environ.update(saved)


def run_dpedge(args: Sequence[str], folder: Path, guarded: bool = True) -> Outcome:
    """`dpedge ARGS` in this process, in `folder` (the working directory and the cost-table
    cache, so that nothing is written outside it), with the expensive steps replaced by
    stand-ins that stop the run (`guarded`)."""
    from dynaprune_edge.cli import main

    outcome = Outcome([str(a) for a in args], Path(folder))
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.ExitStack() as stack:
        stack.callback(restore_environment, dict(os.environ))  # `train --nproc` sets OMP_NUM_THREADS for its ranks
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        if guarded:
            for module, attribute, work in WORK:
                owner_path, _, name = attribute.rpartition(".")
                owner = import_module(module)
                for part in filter(None, owner_path.split(".")):
                    owner = getattr(owner, part)
                patch.setattr(owner, name, stand_in(work))
        patch.setattr(typer.main, "get_command", click_command)
        patch.setenv("DPEDGE_CACHE_DIR", str(Path(folder) / "cache"))
        patch.chdir(folder)
        patch.setattr(sys, "argv", ["dpedge", *outcome.args])
        stack.enter_context(CapturedDescriptor(1))  # what is printed is not checked, only kept off the test's output
        c_stderr = stack.enter_context(CapturedDescriptor(2))
        warned = stack.enter_context(warnings.catch_warnings(record=True))
        warnings.simplefilter("always")  # each call is a fresh process: every warning is its first
        for hidden in (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning):
            warnings.simplefilter("ignore", hidden)  # Python hides these outside __main__
        patch.setattr(sys, "stdout", stdout)
        patch.setattr(sys, "stderr", stderr)
        try:
            main()
            outcome.status = 0
        except SystemExit as exit:
            if isinstance(exit.code, str):  # sys.exit("message") prints it and exits 1
                stderr.write(exit.code + "\n")
            outcome.status = 0 if exit.code is None else exit.code if isinstance(exit.code, int) else 1
        except WorkStarted as started:
            outcome.work = str(started)
        except BaseException as error:  # noqa: BLE001 — anything else is a traceback for the user
            outcome.escaped = error
    shown = [warnings.formatwarning(w.message, w.category, w.filename, w.lineno, None).strip() for w in warned]
    outcome.stderr = stderr.getvalue() + c_stderr.text + "".join(line + "\n" for line in shown)
    return outcome


# ------------------------------------------------------------------------------ sandboxes


@contextlib.contextmanager
def sandbox(root: Path, artifacts: Path, names: Sequence[str] = ()) -> Iterator[Path]:
    """A fresh folder under `root` holding copies of `names` from `artifacts` (files or
    folders): each example reads and may damage its own copies, never the session's."""
    folder = Path(tempfile.mkdtemp(dir=root))
    for name in names:
        source, target = artifacts / name, folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    try:
        yield folder
    finally:
        for path in folder.rglob("*"):  # chmod 000 files and folders made by the example
            with contextlib.suppress(OSError):
                path.chmod(stat.S_IRWXU)
        shutil.rmtree(folder, ignore_errors=True)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder`: relative name → SHA-256 ('folder' for a
    folder; size and mtime for a file this process cannot read)."""
    found = {}
    for path in sorted(Path(folder).rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_dir():
            found[name] = "folder"
            continue
        try:
            found[name] = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            info = path.lstat()
            found[name] = f"unreadable, {info.st_size} bytes, mtime {info.st_mtime_ns}"
    return found


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return (
        [f"created {name}" for name in after.keys() - before.keys()]
        + [f"removed {name}" for name in before.keys() - after.keys()]
        + [f"changed {name}" for name in before.keys() & after.keys() if before[name] != after[name]]
    )


# ------------------------------------------------------------------------------ what a refusal is


def refusal_problems(outcome: Outcome, before: dict, after: dict, not_because: str | None = None) -> list[str]:
    """Why `outcome` is not the refusal the issue asks for: exit status 1, stderr one line
    `error: ...`, no traceback, no file created or changed. `not_because`: the error the
    valid command line itself ends in on this machine (no TensorRT here), which a refusal
    of the bad input must not be."""
    if outcome.escaped is not None:
        return [f"a traceback: {outcome.traceback_end()}"]
    if outcome.work is not None:
        return [f"not refused before {outcome.work} started"]
    problems = []
    if outcome.status != 1:
        problems.append(f"exit status {outcome.status}, not 1")
    lines = outcome.stderr_lines()
    if len(lines) != 1 or not lines[0].startswith("error: "):
        problems.append(f"stderr is {len(lines)} line(s), not one 'error: ' line")
    if "Traceback (most recent call last)" in outcome.stderr:
        problems.append("a traceback in stderr")
    if not_because is not None and any(not_because in line for line in lines):
        problems.append(f"refused only for what this machine lacks ({not_because!r}), the bad input went unnoticed")
    return problems + changes(before, after)


def assert_refused(outcome: Outcome, before: dict, after: dict, not_because: str | None = None) -> None:
    problems = refusal_problems(outcome, before, after, not_because)
    assert not problems, "; ".join(problems) + "\n" + outcome.describe()


def assert_refused_or_accepted(outcome: Outcome, before: dict, after: dict) -> None:
    """For damage a format cannot always notice (a flipped byte in a zip's timestamp, in
    an HDF5 file's free space, inside a JSON string): the command either refuses the file
    as `assert_refused` demands, or takes it as valid (exit 0, or on to its work); never a
    traceback, another exit status, or a refusal that leaves files behind."""
    if outcome.escaped is None and (outcome.work is not None or outcome.status == 0):
        return
    assert_refused(outcome, before, after)


# ------------------------------------------------------------------------------ bad option values

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
"""Any text a command line can carry (argv holds no NUL)."""
NAMES = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789_-"), min_size=1, max_size=8)


def is_whole_number(text: str) -> bool:
    """Whether typer might read `text` as an integer ('12', ' 12', '1_000', '1.0', '1e3'):
    those are left out of the "not a whole number" values, conservatively."""
    try:
        int(text)
        return True
    except ValueError:
        pass
    try:
        return float(text).is_integer()
    except (ValueError, OverflowError):
        return False


def is_number(text: str) -> bool:
    """Whether `text` reads as a float ('nan' and 'inf' do: they have a class of their own)."""
    try:
        float(text)
        return True
    except ValueError:
        return False


NOT_WHOLE = st.sampled_from(["1.5", "nan", "inf", "", "ten", "0x10", "3/4"]) | TEXT.filter(
    lambda t: not is_whole_number(t)
)
NOT_NUMBER = st.sampled_from(["", "ten", "1,5", "0.5.1", "1e", "--"]) | TEXT.filter(lambda t: not is_number(t))
NOT_FINITE = st.sampled_from(["nan", "inf", "-inf", "NaN", "Infinity", "1e999", "-1e999"])


def floats(**bounds) -> st.SearchStrategy[str]:
    return st.floats(allow_nan=False, allow_infinity=False, **bounds).map(str)


@dataclass(frozen=True)
class Count:
    """A whole number in [least, most] (most None: any; a value beyond int64 is still
    refused: it cannot be a count of anything dpedge does)."""

    least: int = 1
    most: int | None = None
    power_of_two: bool = False

    def classes(self) -> dict[str, st.SearchStrategy]:
        above = self.most + 1 if self.most is not None else 2**63
        found = {
            f"below {self.least}": st.integers(max_value=self.least - 1).map(str),
            f"above {self.most}" if self.most is not None else "beyond int64": st.integers(min_value=above).map(str),
            "not a whole number": NOT_WHOLE,
        }
        if self.power_of_two:
            found["not a power of 2"] = st.integers(3, 2**20).filter(lambda n: n & (n - 1)).map(str)
        return found


@dataclass(frozen=True)
class Ratio:
    """A finite number in the interval from `low` to `high`, each end in or out."""

    low: float
    high: float
    low_in: bool
    high_in: bool

    def classes(self) -> dict[str, st.SearchStrategy]:
        low, high = self.low, self.high
        below = floats(max_value=low).filter(lambda v: float(v) < low or (float(v) == low and not self.low_in))
        above = floats(min_value=high).filter(lambda v: float(v) > high or (float(v) == high and not self.high_in))
        return {f"below {low:g}": below, f"above {high:g}": above, "not finite": NOT_FINITE, "not a number": NOT_NUMBER}


@dataclass(frozen=True)
class Positive:
    """A finite number > 0 with no upper bound (a learning rate, seconds)."""

    def classes(self) -> dict[str, st.SearchStrategy]:
        return {"0 or below": floats(max_value=0.0), "not finite": NOT_FINITE, "not a number": NOT_NUMBER}


@dataclass(frozen=True)
class NonNegative:
    """A finite number ≥ 0 with no upper bound (a loss weight, seconds)."""

    def classes(self) -> dict[str, st.SearchStrategy]:
        return {
            "negative": floats(max_value=0.0).filter(lambda v: float(v) < 0),
            "not finite": NOT_FINITE,
            "not a number": NOT_NUMBER,
        }


@dataclass(frozen=True)
class Choice:
    """One of `names` (an empty value is not one of them: it is not "the default")."""

    names: tuple[str, ...]

    def classes(self) -> dict[str, st.SearchStrategy]:
        unknown = (st.sampled_from(["nosuch", " ", "none", "all", "-", "DEFAULT"]) | TEXT).filter(
            lambda t: t and t not in self.names
        )
        return {"empty": st.just(""), "unknown name": unknown}


@dataclass(frozen=True)
class Text:
    """Free text checked against a pattern (a host, a remote path): `bad` are values that
    must be refused, as text or as a strategy."""

    bad: tuple[str, ...] | st.SearchStrategy

    def classes(self) -> dict[str, st.SearchStrategy]:
        return {"malformed": st.sampled_from(self.bad) if isinstance(self.bad, tuple) else self.bad}


@dataclass(frozen=True)
class BadPath:
    """A path of the kind `kind`, made in the sandbox by `make` before the command runs."""

    kind: str
    name: str
    suffix: str = ""

    def make(self, folder: Path) -> str:
        path = folder / "given" / (self.name + self.suffix)
        path.parent.mkdir(exist_ok=True)
        if self.kind == "missing":
            return str(folder / "nowhere" / path.name)
        if self.kind in ("a folder", "an empty folder"):
            path.mkdir()
        elif self.kind == "unreadable":
            path.write_bytes(b"\x00" * 64)
            path.chmod(0)
        elif self.kind == "a file":
            path.write_bytes(b"not a folder\n")
        elif self.kind == "inside a file":
            path.parent.joinpath("plain-file").write_bytes(b"a file, not a folder\n")
            return str(path.parent / "plain-file" / path.name)
        elif self.kind == "a glob matching nothing":
            return str(path.parent / (self.name + "*" + self.suffix))
        elif self.kind == "wrong suffix":
            return str(path.with_suffix(".txt"))
        else:
            raise ValueError(self.kind)
        return str(path)

    def __repr__(self) -> str:
        return f"<{self.kind}: given/{self.name}{self.suffix}>"


def paths(kind: str, suffix: str = "") -> st.SearchStrategy[BadPath]:
    return st.builds(BadPath, st.just(kind), NAMES, st.just(suffix))


@dataclass(frozen=True)
class InputFile:
    """A file the command reads."""

    suffix: str = ""

    def classes(self) -> dict[str, st.SearchStrategy]:
        return {kind: paths(kind, self.suffix) for kind in ("missing", "a folder", "unreadable")}


@dataclass(frozen=True)
class DataPath:
    """--data: a file, folder or glob of the family's files."""

    suffix: str = ""

    def classes(self) -> dict[str, st.SearchStrategy]:
        return {
            kind: paths(kind, self.suffix)
            for kind in ("missing", "an empty folder", "a glob matching nothing", "unreadable")
        }


@dataclass(frozen=True)
class OutputFolder:
    """A folder the command writes into (made when missing)."""

    def classes(self) -> dict[str, st.SearchStrategy]:
        return {kind: paths(kind) for kind in ("a file", "inside a file")}


@dataclass(frozen=True)
class OutputFile:
    """A file the command writes (`suffix`: the one it must have, refused otherwise)."""

    suffix: str = ""
    strict_suffix: bool = False

    def classes(self) -> dict[str, st.SearchStrategy]:
        kinds = ("a folder", "inside a file") + (("wrong suffix",) if self.strict_suffix else ())
        return {kind: paths(kind, self.suffix) for kind in kinds}


def materialize(value, folder: Path) -> str:
    """The command-line text of a drawn value (a BadPath is made in `folder` first)."""
    return value.make(folder) if isinstance(value, BadPath) else value


@dataclass(frozen=True)
class Arch:
    """--arch KEY=VALUE of a SimVP (the base command lines' backbone)."""

    def classes(self) -> dict[str, st.SearchStrategy]:
        known = ("spatial_channels", "temporal_channels", "translator_blocks")
        sizes = st.one_of(*Count(1).classes().values())
        return {
            "not KEY=VALUE": st.sampled_from(["", "=", "=8", "spatial_channels"]) | NAMES,
            "unknown key": NAMES.filter(lambda key: key not in known).map(lambda key: f"{key}=8"),
            "bad size": st.builds(lambda key, size: f"{key}={size}", st.sampled_from(known), sizes),
        }


def outside(allowed: str) -> st.SearchStrategy[str]:
    """Text holding at least one character not in `allowed`."""
    return TEXT.filter(lambda text: any(c not in allowed for c in text))


HOST_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-[]:"
BAD_HOSTS = Text(
    st.sampled_from(
        [
            "",
            "jetson.local",
            "@jetson.local",
            "dpedge@",
            "dpedge@-oProxyCommand=touch x",
            "dpedge@jetson.local:22",
            "dpedge@[::1",
            "dpedge@jet son",
            "dpedge@jetson;id",
            "-l root@jetson",
            "dpedge@" + "a" * 64 + ".local",
            "dpedge@jetson.",
            "dpedge@.jetson",
            "user name@jetson",
        ]
    )
    | outside(HOST_CHARACTERS).map(lambda host: f"dpedge@{host}")
)
"""--host values that are not USER@HOST (a host name or a bracketed IPv6 address)."""
BAD_REMOTE_PATHS = Text(
    st.sampled_from(
        [
            "",
            "../elsewhere",
            "deploy/../../etc",
            "-rf",
            "--help",
            "$(touch x)",
            "`id`",
            "a b",
            "a;b",
            "~/deploy",
            "a\nb",
        ]
    )
    | outside("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/+-")
)
"""--remote-dir and --remote-dpedge values that are not plain paths."""

# ------------------------------------------------------------------------------ valid command lines

SYNTHETIC = ("--dataset", "taxibj", "--synthetic-frames", "120")
TINY = ("--batch-size", "8", "--arch", "spatial_channels=8", "--arch", "temporal_channels=16", "--epochs", "1")
"""tests/conftest.py's TINY sizes (and one epoch): a model that trains in a second."""
PRUNED = ("--budget", "0.5", "--no-slimmable", "--group-order", "ordered")
"""What the session's model was trained with (a region-pruned model with sliced sub-networks)."""
EXPORTED = ("model.onnx", "model.dpedge.json", "model.dense.onnx", "model.dense.dpedge.json")
ENGINE = "model.orin.trt8.5.2.fp16.engine"
ENGINES = (
    ENGINE,
    ENGINE + ".json",
    "model.dense.orin.trt8.5.2.fp16.engine",
    "model.dense.orin.trt8.5.2.fp16.engine.json",
)
FRAMES = "model.frames.npz"
PROFILE_FAST = ("--runs", "3", "--samples", "2", "--power", "off")


@dataclass(frozen=True)
class Base:
    """A valid command line, in a sandbox ("$S") holding copies of the session's `files`,
    and how it ends on this machine (`reaches`): the expensive step it gets to (WORK),
    "exit 0", or, where this machine lacks what it needs (TensorRT), the error it ends in.
    A fuzz case changes one thing of it: the value of one option, or one file."""

    words: tuple[str, ...]
    files: tuple[str, ...] = ()
    reaches: str = "exit 0"
    argument: int | None = None  # index of its positional argument in `words` (MODEL, LOG)

    @property
    def fails_here(self) -> str | None:
        return self.reaches.removeprefix("error: ") if self.reaches.startswith("error: ") else None

    def line(self, folder: Path, option: str | None = None, value: str | None = None) -> list[str]:
        """The command line in `folder`, with `option` (or the positional argument, when
        `option` is upper case) set to `value`."""
        from dynaprune_edge.cli.train import without_option

        words = [word.replace("$S", str(folder)) for word in self.words]
        if option is None:
            return words
        if option.isupper():
            words[self.argument] = value
            return words
        if option != "--arch":  # repeatable: added to the others
            words = [words[0], *without_option(words[1:], option)]
        return [*words, f"{option}={value}"]


def train(*extra: str, files: tuple[str, ...] = (), reaches: str = "training") -> Base:
    return Base(("train", *extra, *TINY, "--out", "$S/run"), files, reaches)


BASES: dict[str, Base] = {
    "train": train(*SYNTHETIC, *PRUNED),
    "train --st-prune": train(*SYNTHETIC, *PRUNED, "--st-prune"),
    "train --cost orin-emu": train(
        *SYNTHETIC, *PRUNED, "--cost", "orin-emu", reaches="pricing the model on a measured cost target"
    ),
    "train --cost ort-cpu": train(
        *SYNTHETIC, *PRUNED, "--cost", "ort-cpu", reaches="pricing the model on a measured cost target"
    ),
    "train --resume": train(*SYNTHETIC, *PRUNED, "--resume", files=("run",)),
    "train taxibj.npz": train("--dataset", "taxibj", "--data", "$S/taxibj.npz", files=("taxibj.npz",)),
    "train knmi/": train(
        "--dataset",
        "knmi",
        "--data",
        "$S/knmi",
        "--frames-in",
        "2",
        "--frames-out",
        "2",
        "--size",
        "16",
        files=("knmi",),
    ),
    "train t2m.nc": train(
        "--dataset",
        "weatherbench",
        "--data",
        "$S/t2m.nc",
        "--frames-in",
        "2",
        "--frames-out",
        "2",
        "--size",
        "8",
        files=("t2m.nc",),
    ),
    "info": Base(("info", "$S/model.pt"), ("model.pt",), "exit 0", argument=1),
    "export": Base(
        ("export", "$S/model.pt", "--mode", "sliced", "--tiles", "none", "--levels", "2"),
        ("model.pt",),
        "exporting",
        argument=1,
    ),
    "export --trt": Base(
        ("export", "$S/model.pt", "--mode", "sliced", "--tiles", "none", "--levels", "2", "--trt"),
        ("model.pt",),
        "exporting",
        argument=1,
    ),
    "calibrate": Base(
        ("calibrate", "$S/model.pt", "--runs", "3", "--out", "$S/table.json"),
        ("model.pt",),
        "measuring a cost table",
        argument=1,
    ),
    "calibrate --cost orin-emu": Base(
        ("calibrate", "$S/model.pt", "--runs", "3", "--cost", "orin-emu"), ("model.pt",), "measuring a cost table"
    ),
    "calibrate (no model)": Base(
        ("calibrate", "--arch", "spatial_channels=8", "--arch", "temporal_channels=16", "--runs", "3"),
        (),
        "measuring a cost table",
    ),
    "profile": Base(("profile", "$S/model.onnx", *PROFILE_FAST), EXPORTED, "profiling", argument=1),
    "profile --backend orin-emu": Base(
        ("profile", "$S/model.onnx", "--backend", "orin-emu", *PROFILE_FAST), EXPORTED, "profiling"
    ),
    "profile --frames": Base(
        ("profile", "$S/model.onnx", "--frames", f"$S/{FRAMES}", *PROFILE_FAST), (*EXPORTED, FRAMES), "profiling"
    ),
    "profile --backend trt": Base(
        ("profile", f"$S/{ENGINE}", "--backend", "trt", *PROFILE_FAST),
        (*EXPORTED, *ENGINES),
        "error: tensorrt is not installed",
        argument=1,
    ),
    "engine": Base(("engine", "$S/model.onnx"), EXPORTED, "error: no TensorRT engine built", argument=1),
    "engine --frames": Base(
        ("engine", "$S/model.onnx", "--frames", f"$S/{FRAMES}"), (*EXPORTED, FRAMES), "error: no TensorRT engine built"
    ),
    "deploy": Base(
        ("deploy", "$S/model.onnx", "--host", "dpedge@jetson.local"),
        EXPORTED,
        "connecting to the device over SSH",
        argument=1,
    ),
    "deploy --profile": Base(
        ("deploy", "$S/model.onnx", "--host", "dpedge@jetson.local", "--profile", "--backend", "ort"),
        EXPORTED,
        "connecting to the device over SSH",
    ),
    "deploy --profile --build-engine": Base(
        ("deploy", "$S/model.onnx", "--host", "dpedge@jetson.local", "--profile", "--build-engine"),
        EXPORTED,
        "connecting to the device over SSH",
    ),
    "bench trtexec": Base(("bench", "trtexec", "$S/trtexec.log"), ("trtexec.log",), "exit 0", argument=2),
    "bench accuracy": Base(
        ("bench", "accuracy", "--out", "$S/bench", "--steps", "1"), (), "training the benchmark's models"
    ),
    "bench latency": Base(
        ("bench", "latency", "--out", "$S/bench", "--steps", "1", "--runs", "1"),
        (),
        "training and timing the benchmark's models",
    ),
    "bench pareto": Base(
        ("bench", "pareto", "--out", "$S/bench", "--steps", "1", "--runs", "1", "--dataset", "taxibj"),
        (),
        "training the benchmark's models",
    ),
    "bench training": Base(
        ("bench", "training", "--out", "$S/bench", "--epochs", "2", "--frames", "120"),
        (),
        "training the benchmark's models",
    ),
    "bench layout": Base(("bench", "layout", "--out", "$S/bench", "--runs", "1"), (), "timing the layout benchmark"),
    "bench orin": Base(("bench", "orin", "--out", "$S/bench"), (), "building the reference networks"),
    "bench gpu-check": Base(
        ("bench", "gpu-check", "--out", "$S/bench", "--steps", "1", "--runs", "1", "--device", "cpu"),
        (),
        "training the gpu check's model",
    ),
}


def reached(outcome: Outcome) -> str:
    """How a valid command line ended, in Base.reaches's terms."""
    if outcome.escaped is not None:
        return f"traceback: {outcome.traceback_end()}"
    if outcome.work is not None:
        return outcome.work
    lines = outcome.stderr_lines()
    return f"exit {outcome.status}" if outcome.status != 1 or not lines else lines[-1]
