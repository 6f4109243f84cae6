"""`dpedge`: the command line. One module per command (or group of small ones), each declaring
the options that are its own and naming the shared ones from options.py; this module puts
them together and turns every error a user can cause into one line and exit code 1."""

from __future__ import annotations

import sys

import typer

from dynaprune_edge.cli import bench, calibrate, device, export, info, profile, train
from dynaprune_edge.errors import DpedgeError

app = typer.Typer(
    help="Train per-sample pruned spatio-temporal forecasters (Dyna-Pruner) and measure what they cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for command in (
    train.train,
    info.info,
    export.export,
    calibrate.calibrate,
    profile.profile,
    device.device,
    device.engine,
    device.deploy,
    bench.demo,
):
    app.command()(command)

bench_app = typer.Typer(help="Benchmarks: long runs that print comparison tables (not tests).", no_args_is_help=True)
for command in (
    bench.accuracy,
    bench.latency,
    bench.pareto,
    bench.layout,
    bench.training,
    bench.orin,
    bench.gpu_check,
    bench.trtexec,
    bench.render,
):
    bench_app.command(command.__name__.replace("_", "-"))(command)
app.add_typer(bench_app, name="bench")


def error_line(error: BaseException) -> str:
    """What the user reads. The system's refusals (a full disk, a folder not writable, no
    memory left) are the machine's state, not dpedge's bugs: they get one line too."""
    if isinstance(error, MemoryError):
        return f"out of memory ({error or 'no detail'}): smaller sizes, fewer samples or another machine"
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    text = error.format_message() if hasattr(error, "format_message") else str(error)  # click's usage errors
    if getattr(error, "ctx", None) is not None:
        text = f"{error.ctx.command_path}: {text}"
    return " ".join(text.split()) or type(error).__name__


def main() -> None:
    from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer's own click (pyproject: typer>=0.29)

    try:
        code = app(standalone_mode=False)  # usage errors come here, not to click's boxed message
    except NoArgsIsHelpError as error:
        error.show()  # `dpedge`, `dpedge bench`: the help
        sys.exit(error.exit_code)
    except (DpedgeError, UsageError, OSError, MemoryError) as error:
        # one line, never wrapped or marked up, in one write: the ranks of a distributed run
        # share stderr, and a print's text and newline are two writes that can interleave
        sys.stderr.write(f"error: {error_line(error)}\n")
        sys.stderr.flush()
        sys.exit(1)
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted (an interrupted `dpedge train` continues with --resume)", file=sys.stderr)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)  # --help returns 0
