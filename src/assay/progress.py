"""Progress events, reported by the core to an observer; the core never draws the UI.

    >>> def work(items, progress: Progress = NULL_PROGRESS):
    ...     progress.start("hashing", total=len(items))
    ...     for it in items:
    ...         progress.advance("hashing")
    ...     progress.finish("hashing")

The CLI passes a rich progress bar on stderr (:func:`assay.cli.common.progress`) on a terminal, and
:class:`LineProgress` (plain lines) where there is none; a library caller passes nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Protocol


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


class LineProgress:
    """Progress as plain lines, for a log file or a pipe (no terminal, so no bars).

    Each top-level step (a task whose name starts with one of ``steps``) is named when it starts and given its
    time when it ends. Any other task is named once it has run for ``announce_after`` seconds (short ones stay
    quiet), and then shown every ``every`` seconds while it runs, with its count when it has one, so a long step
    is never silent. Notes are printed as they come. Every line starts with the time since the observer began.

        with LineProgress(sys.stderr, steps=("demo:",)) as progress:
            run_demo(out=Path("assay-demo"), progress=progress)
    """

    def __init__(self, stream: Any = None, *, steps: tuple[str, ...] = (), announce_after: float = 2.0,
                 every: float = 15.0) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._steps = steps
        self._announce_after = announce_after
        self._every = every
        self._t0 = time.monotonic()
        self._lock = threading.Lock()
        self._tasks: dict[str, _Task] = {}
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> LineProgress:
        self._ticker = threading.Thread(target=self._tick, name="assay-progress", daemon=True)
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)

    # --- the Progress protocol
    def start(self, task: str, total: float | None = None) -> None:
        now = time.monotonic()
        with self._lock:
            t = _Task(task, total, now)
            self._tasks[task] = t
            if task.startswith(self._steps) and self._steps:
                self._announce(t, now)

    def advance(self, task: str, amount: float = 1) -> None:
        with self._lock:
            t = self._tasks.get(task)
            if t is None:
                t = self._tasks[task] = _Task(task, None, time.monotonic())
            t.done += amount

    def finish(self, task: str) -> None:
        now = time.monotonic()
        with self._lock:
            t = self._tasks.pop(task, None)
            if t is not None and t.announced:
                count = f", {_count(t)}" if t.total else ""
                self._line(f"done: {task} ({now - t.started:.1f} s{count})", now)

    def note(self, message: str) -> None:
        with self._lock:
            self._line(message, time.monotonic())

    # --- internals
    def _announce(self, t: _Task, now: float) -> None:
        t.announced = True
        t.shown = now
        self._line(f"{t.name} ...", now)

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            now = time.monotonic()
            with self._lock:
                for t in list(self._tasks.values()):
                    if not t.announced:
                        if now - t.started >= self._announce_after:
                            self._announce(t, now)
                    elif now - t.shown >= self._every:
                        t.shown = now
                        count = f"{_count(t)}, " if t.total else (f"{t.done:g} done, " if t.done else "")
                        self._line(f"  {t.name}: {count}{now - t.started:.0f} s", now)

    def _line(self, text: str, now: float) -> None:
        try:
            self._stream.write(f"[{now - self._t0:6.1f}s] {text}\n")
            self._stream.flush()
        except (OSError, ValueError):  # a closed pipe must not stop the work
            pass


class _Task:
    __slots__ = ("name", "total", "started", "done", "announced", "shown")

    def __init__(self, name: str, total: float | None, started: float) -> None:
        self.name = name
        self.total = total
        self.started = started
        self.done = 0.0
        self.announced = False
        self.shown = started


def _count(t: _Task) -> str:
    total = t.total or 0
    return f"{t.done:g}/{total:g}" + (f" ({100 * t.done / total:.0f}%)" if total else "")
