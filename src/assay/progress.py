"""Progress events, reported by the core to an observer; the core never draws the UI.

    >>> def work(items, progress: Progress = NULL_PROGRESS):
    ...     progress.start("hashing", total=len(items))
    ...     for it in items:
    ...         progress.advance("hashing")
    ...     progress.finish("hashing")

The CLI passes a rich progress bar on stderr (:func:`assay.cli.common.progress`); a library caller passes nothing.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    """Receives progress events. ``task`` names a unit of work; ``total`` may be unknown (None)."""

    def start(self, task: str, total: float | None = None) -> None: ...

    def advance(self, task: str, amount: float = 1) -> None: ...

    def finish(self, task: str) -> None: ...

    def note(self, message: str) -> None: ...


class _NullProgress:
    def start(self, task: str, total: float | None = None) -> None:
        pass

    def advance(self, task: str, amount: float = 1) -> None:
        pass

    def finish(self, task: str) -> None:
        pass

    def note(self, message: str) -> None:
        pass


NULL_PROGRESS: Progress = _NullProgress()
