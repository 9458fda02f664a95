"""Options and output helpers shared by every command.

Every command takes ``--json`` (one JSON document on stdout, nothing else) and prints rich tables otherwise.
Human output goes to stdout, progress and diagnostics to stderr.

    @click.command()
    @json_option
    def inspect(as_json: bool) -> int:
        doc = {...}
        if as_json:
            emit_json(doc)
        else:
            console().print(table)
        return 0
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from assay.jsonable import to_jsonable

if TYPE_CHECKING:  # rich is imported on first use, so `--json` runs never load it
    from types import TracebackType

    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])

#: Exit codes, everywhere.
EXIT_PASS, EXIT_FAIL, EXIT_UNDECIDED = 0, 1, 2


def json_option(f: F) -> F:
    """``--json``: print one machine-readable document on stdout and nothing else."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print one JSON document on stdout (nothing else goes to stdout).")(f)


def revision_option(f: F) -> F:
    """``--revision``: the snapshot of an ``org/name`` reference in the local HF cache."""
    return click.option("--revision", default=None, metavar="REV",
                        help="Snapshot (branch, tag or commit) of an org/name in the local Hugging Face cache.")(f)


def download_option(f: F) -> F:
    """``--download``: allow fetching an ``org/name`` that is not cached (off by default)."""
    return click.option("--download", is_flag=True, default=False,
                        help="Allow downloading an org/name that is not in the local cache (never by default).")(f)


_console: Console | None = None
_err_console: Console | None = None


def console() -> Console:
    """The stdout console for human output."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(highlight=False, soft_wrap=False)
    return _console


def err_console() -> Console:
    """The stderr console for progress, warnings and notes."""
    global _err_console
    if _err_console is None:
        from rich.console import Console

        _err_console = Console(stderr=True, highlight=False)
    return _err_console


def emit_json(doc: Any) -> None:
    """Write ``doc`` as one JSON document on stdout."""
    sys.stdout.write(json.dumps(to_jsonable(doc), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


class RichProgress:
    """A :class:`assay.progress.Progress` observer drawing rich progress bars on stderr."""

    def __init__(self, *, enabled: bool = True) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self._enabled = enabled and err_console().is_terminal
        self._bar = Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                             MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                             console=err_console(), transient=True, disable=not self._enabled)
        self._ids: dict[str, Any] = {}

    def __enter__(self) -> RichProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._bar.__exit__(exc_type, exc, tb)

    def start(self, task: str, total: float | None = None) -> None:
        self._ids[task] = self._bar.add_task(task, total=total)

    def advance(self, task: str, amount: float = 1) -> None:
        if task not in self._ids:
            self.start(task)
        self._bar.advance(self._ids[task], amount)

    def finish(self, task: str) -> None:
        tid = self._ids.pop(task, None)
        if tid is not None:
            self._bar.remove_task(tid)

    def note(self, message: str) -> None:
        if self._enabled:
            self._bar.console.print(f"[dim]{message}[/dim]")


@contextmanager
def progress(*, enabled: bool = True) -> Iterator[RichProgress]:
    """A progress observer for the duration of a command (drawn only on a terminal)."""
    with RichProgress(enabled=enabled) as p:
        yield p
