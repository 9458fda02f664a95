"""Suites a user names with ``--task PREFIX:ARG``: built-in ones, standard benchmarks from local files, KL drift.

- ``builtin:knowledge``, ``builtin:arithmetic``, ``builtin:arithmetic-gen``, ``builtin:reference``
  (:mod:`.builtin`, no download);
- ``mmlu:PATH``, ``arc_easy:PATH``, ``arc_challenge:PATH``, ``hellaswag:PATH``, ``truthfulqa_mc1:PATH``,
  ``truthfulqa_mc2:PATH``, ``gsm8k:PATH``, ``winogrande:PATH`` (:mod:`.standard`, the files of the public
  releases, prompts of lm-evaluation-harness);
- ``kl:builtin:reference`` or ``kl:PATH`` (:mod:`assay.evaluate.kl`, drift of the candidate from its base).

Importing this package registers every prefix with :func:`assay.evaluate.tasks.register_suite`;
:func:`load_suite` resolves a spec directly.

    task = load_suite("builtin:knowledge")
    len(task.items), task.version
"""

from __future__ import annotations

from collections.abc import Callable

from assay.errors import EvalError
from assay.evaluate import tasks
from assay.evaluate.kl import load_kl_task
from assay.evaluate.probes import PROBES, load_probe  # behaviour probes: builtin:refusal..., contamination:
from assay.evaluate.suites.builtin import BUILTIN, load_builtin
from assay.evaluate.suites.standard import STANDARD, load_standard
from assay.evaluate.tasks import Task

__all__ = ["SUITES", "load_suite", "suite_names", "register"]


def _standard(name: str) -> Callable[[str], Task]:
    def load(arg: str) -> Task:
        return load_standard(name, arg)

    load.__name__ = f"load_{name}"
    load.__doc__ = f"``{name}:PATH``: {STANDARD[name].__doc__ or name}"
    return load


SUITES: dict[str, Callable[[str], Task]] = {
    "builtin": load_builtin,
    **{name: _standard(name) for name in STANDARD},
    "kl": load_kl_task,
}
"""Spec prefix -> loader of the text after ``PREFIX:``."""


def suite_names() -> list[str]:
    """Every spec form this package understands, for help texts and error messages."""
    return ([f"builtin:{n}" for n in BUILTIN] + [f"{n}:PATH" for n in STANDARD]
            + ["kl:builtin:reference", "kl:PATH"])


def load_suite(spec: str) -> Task:
    """Load ``PREFIX:ARG`` (``builtin:knowledge``, ``gsm8k:data/gsm8k``, ``kl:notes.txt``)."""
    prefix, sep, arg = spec.partition(":")
    if not sep or prefix not in SUITES:
        raise EvalError(f"unknown task {spec!r}; suites: {', '.join(suite_names())}")
    return SUITES[prefix](arg)


def _registry_loader(prefix: str) -> Callable[[str | None], Task | list[Task]]:
    def load(arg: str | None) -> Task | list[Task]:
        if arg is None or arg == "":
            if prefix == "builtin":  # `--task builtin`: every built-in suite
                return [load_builtin(name) for name in BUILTIN]
            example = "builtin:reference" if prefix == "kl" else "PATH"
            raise EvalError(f"task {prefix} needs an argument: {prefix}:{example}")
        if prefix == "builtin" and arg in PROBES:
            return load_probe(arg)
        return SUITES[prefix](arg)

    return load


def register() -> None:
    """Register every prefix with the task registry (done on import); ``builtin`` alone means every built-in."""
    for prefix in SUITES:
        tasks.register_suite(prefix, _registry_loader(prefix))


register()
