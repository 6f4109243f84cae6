"""Bad option values, one at a time: a valid command line (dpedge_fuzz.BASES) with one
option set to a generated value of one class (below its range, above it, not finite, not
a number, an unknown name, a missing file, a folder where a file goes, a file where a
folder goes...) must end in exit status 1, one `error:` line, no traceback and no file
created or changed in the folder it works in; and it must say so before its expensive
work starts (training, exporting, measuring, connecting to the device).

Every (command, option, class) is a case of its own, so that each one that fails is
listed. Values typer itself refuses (`--epochs abc`, `--epochs 0` below its `min=`) are
held to the same requirement: the issue asks for exit 1 and one `error:` line for every
bad value, and typer's default (exit 2, a usage banner and a boxed message on stderr)
is neither; mapping typer's usage errors is for `main()` in dynaprune_edge/cli/__init__.py.

"Huge" values: counts beyond int64 (a count of nothing dpedge does), ratios above their
bound; numbers without an upper bound (a learning rate, a loss weight, seconds) get their
non-finite values instead, as no finite value is wrong by its size alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.dpedge_fuzz import (
    AS_ROOT,
    BAD_HOSTS,
    BAD_REMOTE_PATHS,
    BASES,
    Arch,
    Choice,
    Count,
    DataPath,
    InputFile,
    NonNegative,
    OutputFile,
    OutputFolder,
    Positive,
    Ratio,
    assert_refused,
    examples,
    materialize,
    reached,
    run_dpedge,
    sandbox,
    snapshot,
)

pytestmark = pytest.mark.fuzz

BACKBONES = ("simvp", "convlstm", "vit")
DATASETS = ("taxibj", "nycbike", "weatherbench", "sevir", "knmi")
COSTS = ("flops", "ort-cpu", "orin-emu")
MODULES = ("agx-orin-64gb", "agx-orin-32gb")
POWER_MODES = ("MAXN", "50W", "40W", "30W", "15W")
PRECISIONS = ("fp32", "fp16", "int8")
GROUP_ORDERS = ("ordered", "scored")
METERS = ("auto", "tegrastats", "jtop", "off")
UNIT = Ratio(0.0, 1.0, low_in=False, high_in=True)  # (0, 1]: a budget, a share
KNMI = DataPath(".h5")

OPTIONS: dict[str, dict[str, object]] = {
    "train": {
        "--out": OutputFolder(),
        "--backbone": Choice(BACKBONES),
        "--dataset": Choice(DATASETS),
        "--data": DataPath(".npz"),
        "--budget": UNIT,
        "--cost": Choice(COSTS),
        "--max-cost": Ratio(0.5, 1.0, low_in=True, high_in=True),  # [budget, 1]
        "--epochs": Count(1),
        "--batch-size": Count(1),
        "--lr": Positive(),
        "--seed": Count(0, 2**32 - 1),
        "--init": InputFile(".pt"),
        "--distill": NonNegative(),
        "--frames-in": Count(1, 1000),
        "--frames-out": Count(1, 1000),
        "--size": Count(1, 2048),
        "--synthetic-frames": Count(1),
        "--region-size": Count(1, power_of_two=True),
        "--group-size": Count(1),
        "--group-order": Choice(GROUP_ORDERS),
        "--activity-weight": NonNegative(),
        "--arch": Arch(),
        "--nproc": Count(2),
    },
    "train --cost orin-emu": {
        "--module": Choice(MODULES),
        "--power-mode": Choice(POWER_MODES),
        "--precision": Choice(PRECISIONS),
    },
    "train --cost ort-cpu": {"--cost-table": InputFile(".json")},
    "train --st-prune": {
        "--prune-ratio": Ratio(0.0, 1.0, low_in=True, high_in=False),
        "--anneal": Ratio(0.0, 1.0, low_in=True, high_in=True),
        "--score": Choice(("complexity", "loss", "both")),
        "--easy-share": UNIT,
    },
    "export": {
        "MODEL": InputFile(".pt"),
        "--output": OutputFile(".onnx", strict_suffix=True),
        "--mode": Choice(("gather", "sliced", "auto")),
        "--tiles": Choice(("all", "sparse", "wide", "none", "auto")),
        "--levels": Count(1),
        "--opset": Count(17, 21),
        "--width": UNIT,
        "--backbone": InputFile(".py"),
    },
    "export --trt": {"--jetpack": Choice(("5.1", "6.0", "6.1", "6.2"))},
    "info": {"MODEL": InputFile(".pt"), "--backbone": InputFile(".py")},
    "profile": {
        "MODEL": InputFile(".onnx"),
        "--backend": Choice(("ort", "ort-cuda", "trt", "orin-emu")),
        "--data": DataPath(".npz"),
        "--samples": Count(1),
        "--warmup": Count(0),
        "--runs": Count(1),
        "--repeat": Count(1),
        "--threads": Count(1),
        "--trtexec-log": InputFile(".log"),
        "--dense-trtexec-log": InputFile(".log"),
        "--frames": InputFile(".frames.npz"),
        "--power": Choice(METERS),
        "--power-seconds": Positive(),
        "--idle-seconds": NonNegative(),
        "--power-interval": Count(10),
        "--report": OutputFolder(),
        "--budget": UNIT,
        "--layout": Choice(("single", "split")),
        "--backbone": InputFile(".py"),
    },
    "profile --backend orin-emu": {
        "--module": Choice(MODULES),
        "--power-mode": Choice(POWER_MODES),
        "--precision": Choice(PRECISIONS),
        "--calibrate": Choice(("cuda",)),
    },
    "calibrate": {
        "MODEL": InputFile(".pt"),
        "--cost": Choice(("ort-cpu", "orin-emu")),
        "--threads": Count(1),
        "--runs": Count(3),
        "--out": OutputFile(".json"),
    },
    "calibrate --cost orin-emu": {
        "--module": Choice(MODULES),
        "--power-mode": Choice(POWER_MODES),
        "--precision": Choice(PRECISIONS),
    },
    "calibrate (no model)": {
        "--backbone": Choice(BACKBONES),
        "--dataset": Choice(DATASETS),
        "--data": DataPath(".npz"),
        "--frames-in": Count(1, 1000),
        "--frames-out": Count(1, 1000),
        "--size": Count(1, 2048),
        "--region-size": Count(1, power_of_two=True),
        "--group-size": Count(1),
        "--group-order": Choice(GROUP_ORDERS),
        "--arch": Arch(),
    },
    "deploy": {
        "MODEL": InputFile(".onnx"),
        "--host": BAD_HOSTS,
        "--port": Count(1, 65535),
        "--identity": InputFile(),
        "--known-hosts": InputFile(),
        "--remote-dir": BAD_REMOTE_PATHS,
        "--precision": Choice(PRECISIONS),
        "--backend": Choice(("trt", "ort")),
        "--power": Choice(METERS),
        "--remote-dpedge": BAD_REMOTE_PATHS,
        "--engine": InputFile(".bundle.json"),
    },
    "deploy --profile": {"--report": OutputFolder(), "--data": DataPath(".npz"), "--samples": Count(1)},
    "deploy --profile --build-engine": {"--power-mode": Choice(POWER_MODES)},
    "engine": {
        "MODEL": InputFile(".onnx"),
        "--precision": Choice(PRECISIONS),
        "--frames": InputFile(".frames.npz"),
        "--layout": Choice(("single", "split")),
    },
    "bench trtexec": {"LOG": InputFile(".log")},
    "bench accuracy": {
        "--out": OutputFolder(),
        "--steps": Count(1),
        "--budget": UNIT,
        "--backbone": Choice(BACKBONES),
        "--knmi": KNMI,
    },
    "bench latency": {
        "--out": OutputFolder(),
        "--steps": Count(1),
        "--budget": UNIT,
        "--threads": Count(1),
        "--backbone": Choice(BACKBONES),
        "--group-order": Choice(GROUP_ORDERS),
        "--runs": Count(1),
        "--repeat": Count(1),
        "--cost": Choice(COSTS),
        "--knmi": KNMI,
    },
    "bench pareto": {
        "--out": OutputFolder(),
        "--steps": Count(1),
        "--dataset": Choice(("taxibj", "nycbike", "knmi", "weatherbench")),
        "--backbone": Choice(BACKBONES),
        "--budget": UNIT,
        "--cost": Choice(COSTS),
        "--threads": Count(1),
        "--runs": Count(1),
        "--repeat": Count(1),
        "--knmi": KNMI,
    },
    "bench training": {
        "--out": OutputFolder(),
        "--epochs": Count(2),
        "--frames": Count(1),
        "--prune-ratio": Ratio(0.0, 1.0, low_in=True, high_in=False),
        "--anneal": Ratio(0.0, 1.0, low_in=True, high_in=True),
        "--easy-share": UNIT,
        "--knmi": KNMI,
    },
    "bench layout": {"--runs": Count(1)},
    "bench orin": {"--out": OutputFolder()},
    "bench gpu-check": {
        "--out": OutputFolder(),
        "--steps": Count(1),
        "--device": Choice(("auto", "cuda", "cpu")),
        "--runs": Count(1),
    },
}
"""For each valid command line of BASES, the options to fuzz and what their values must be."""

VALUES = {
    (base, option, label): values
    for base, options in OPTIONS.items()
    for option, kind in options.items()
    for label, values in kind.classes().items()
}
"""(command line, option, class of bad values) → the strategy of those values."""
UNREADABLE_AS_ROOT = pytest.mark.skipif(AS_ROOT, reason="as root, chmod 000 does not stop reading a file")
CASES = [
    pytest.param(*case, id=" ".join(case), marks=[UNREADABLE_AS_ROOT] if case[2] == "unreadable" else [])
    for case in VALUES
]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BASES))
def test_every_base_command_line_is_valid(name, artifacts, fuzz_root):
    """The fuzz cases change one value of these command lines: each must get to its work
    unchanged (or end as it must on this machine), else every refusal below would prove
    nothing."""
    base = BASES[name]
    with sandbox(fuzz_root, artifacts, base.files) as folder:
        outcome = run_dpedge(base.line(folder), folder)
    assert base.reaches in reached(outcome), outcome.describe()


@pytest.mark.parametrize("base, option, label", CASES)
@examples
@given(data=st.data())
def test_a_bad_option_value_is_refused_in_one_line_before_any_work(base, option, label, data, artifacts, fuzz_root):
    command = BASES[base]
    drawn = data.draw(VALUES[base, option, label], label=f"{option} ({label})")
    with sandbox(fuzz_root, artifacts, command.files) as folder:
        args = command.line(folder, option, materialize(drawn, folder))
        before = snapshot(folder)
        outcome = run_dpedge(args, folder)
        assert_refused(outcome, before, snapshot(folder), not_because=command.fails_here)
