"""One look for every long-running loop: a rich progress bar with ETA, on stderr so that
stdout stays clean for tables and JSON. Put live figures (loss, epoch) in the description."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

stderr_console = Console(stderr=True)


def progress_bar(transient: bool = False, disable: bool = False) -> Progress:
    """disable: draw nothing (every process but the first of a distributed run)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=stderr_console,
        transient=transient,
        disable=disable,
    )
