"""Task specs: what ``--task`` names, resolved to tasks.

A spec is a task YAML file (assay's own format, :mod:`assay.evaluate.taskfile`, or an lm-evaluation-harness task
YAML over local files, :mod:`assay.evaluate.lmeval`) or a registered suite ``PREFIX[:ARG]``: ``builtin:knowledge``,
``gsm8k:./data``, ``kl:builtin:reference``, ``contamination:builtin:knowledge`` (:mod:`assay.evaluate.suites`
registers them when imported, in the registry of :mod:`assay.evaluate.tasks`). This module sits above every
loader; nothing below it imports it.

    tasks = load_tasks("builtin:knowledge") + load_tasks("arc_easy.yaml", data={"test": "arc_easy_test.jsonl"})
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import assay.evaluate.suites  # noqa: F401 - importing it registers every suite prefix
from assay.errors import EvalError
from assay.evaluate.taskfile import load_task_file
from assay.evaluate.tasks import Task, suite_loader, suite_prefixes, with_num_fewshot

__all__ = ["load_task", "load_tasks", "registered_suites"]


def load_tasks(spec: str, *, num_fewshot: int | None = None, data: Mapping[str, Any] | None = None,
               allow_task_code: bool = False) -> list[Task]:
    """Every task a spec names: a task YAML file, or a registered suite ``PREFIX[:ARG]``.

    ``num_fewshot`` overrides the tasks' few-shot count (:func:`~assay.evaluate.tasks.with_num_fewshot`).
    ``data`` maps a split name to local data files, or ``TASK:SPLIT`` to one task's files (an lm-evaluation-harness
    YAML over a hub dataset runs on them); ``allow_task_code`` lets a task file's ``!function`` helpers run. Raises
    :class:`EvalError` (exit 2) for an unknown spec, a missing file or a bad task definition.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise EvalError("empty task name (give a task YAML file or a suite such as builtin:knowledge)")
    spec = spec.strip()
    path = Path(spec).expanduser()
    if path.is_file():
        return load_task_file(path, data=data, allow_task_code=allow_task_code, num_fewshot=num_fewshot)
    if data:
        raise EvalError(f"--data applies to task YAML files, not to {spec}")
    return [with_num_fewshot(t, num_fewshot) for t in _load_suite(spec, path)]


def _load_suite(spec: str, path: Path) -> list[Task]:
    prefix, sep, arg = spec.partition(":")
    loader = suite_loader(prefix, load_tasks)
    if loader is not None:
        loaded = loader(arg if sep else None)
        tasks = [loaded] if isinstance(loaded, Task) else list(loaded)
        if not tasks:
            raise EvalError(f"task {spec} has no tasks")
        return tasks
    if path.is_dir():
        raise EvalError(f"task {spec} is a folder: give the task YAML file inside it")
    if path.suffix.lower() in (".yaml", ".yml") or "/" in spec or path.exists():
        raise EvalError(f"task file not found: {spec}")
    known = ", ".join(suite_prefixes()) or "none registered"
    raise EvalError(f"unknown task {spec!r}: not a task YAML file and not a registered suite (suites: {known})")


def load_task(spec: str) -> Task:
    """The single task a spec names (see :func:`load_tasks`; a spec naming several tasks is refused)."""
    tasks = load_tasks(spec)
    if len(tasks) != 1:
        raise EvalError(f"{spec} names {len(tasks)} tasks; use load_tasks() for a group")
    return tasks[0]


def registered_suites() -> list[str]:
    """Every registered suite prefix, sorted (for help texts and error messages)."""
    return suite_prefixes()
