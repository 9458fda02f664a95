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
from pathlib import Path
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


def check_output_file(path: Path, option: str) -> Path:
    """Refuse an output file whose folder does not exist, before any work, as a shell redirection would.

    assay never creates missing folders for a single output file: a typo in the path would otherwise scatter
    files (or a private key) in a new folder. Raises :class:`~assay.errors.UsageError` naming the folder.
    """
    from assay.errors import UsageError

    parent = path.parent if str(path.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise UsageError(f"{option} {path}: {parent} is a file, not a folder")
    if not parent.is_dir():
        raise UsageError(f"{option} {path}: the folder {parent} does not exist",
                         hint=f"create it first (mkdir -p {parent})")
    if path.is_dir():
        raise UsageError(f"{option} {path} is a folder; give a file name")
    return path


def check_device(device: str) -> str:
    """Refuse a ``--device`` this torch cannot use, before any model is loaded (``cpu``, ``cuda[:N]``, ``mps``).

    Raises :class:`~assay.errors.UsageError` naming what is available instead.
    """
    import re

    from assay.errors import UsageError

    m = re.fullmatch(r"(cpu|cuda|mps)(?::(\d+))?", device.strip())
    if m is None:
        raise UsageError(f"--device {device!r} is not a device", hint="use cpu, cuda, cuda:N or mps")
    kind, index = m.group(1), m.group(2)
    if kind == "cpu":
        return device
    if kind == "cuda":  # a CPU-only wheel says so in its version ("2.13.0+cpu"): no need to import torch to refuse
        from importlib.metadata import PackageNotFoundError, version

        try:
            installed = version("torch")
        except PackageNotFoundError:
            installed = ""
        if installed.endswith("+cpu"):
            raise UsageError(f"--device {device}: the installed torch {installed} is a CPU-only build",
                             hint="use --device cpu")
    import torch

    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            how = "a CPU-only build" if torch.version.cuda is None else "no CUDA device is visible"
            raise UsageError(f"--device {device}: this torch {torch.__version__} cannot use CUDA ({how})",
                             hint="use --device cpu")
        if index is not None and int(index) >= count:
            raise UsageError(f"--device {device}: only {count} CUDA device(s) are visible (cuda:0..cuda:{count - 1})")
    elif not torch.backends.mps.is_available():
        raise UsageError(f"--device {device}: this torch {torch.__version__} cannot use Apple's MPS here",
                         hint="use --device cpu")
    return device


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


_emitted = False


def emit_json(doc: Any) -> None:
    """Write ``doc`` as one JSON document on stdout."""
    global _emitted
    sys.stdout.write(json.dumps(to_jsonable(doc), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    _emitted = True


def emitted() -> bool:
    """Whether this run already printed its JSON document (so an error after it adds no second one)."""
    return _emitted


def reset_emitted() -> None:
    """Forget earlier documents: called by :func:`assay.cli.main.main` at the start of each run."""
    global _emitted
    _emitted = False


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
