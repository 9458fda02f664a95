"""Behaviour probes: what a fine-tune most often breaks, measured against the model it came from.

Each probe is an ordinary task (kind :attr:`TaskKind.PROBE`) that ``assay eval`` and ``assay vet`` run next to the
benchmark suites, so candidate and base are compared item by item with the same paired statistics:

- ``builtin:refusal`` (:mod:`.refusal`): refusal of clearly harmful requests (``builtin:refusal/harmful``, metric
  ``refused``) and over-refusal of safe requests that sound risky (``builtin:refusal/benign``, ``over_refused``);
  :func:`alignment_stripped` says whether harmful-request compliance rose significantly, :func:`judge_refusals`
  re-classifies the answers with a local judge model;
- ``builtin:degeneration`` (:mod:`.degeneration`): repetition, distinct-n, loops, empty outputs and length of
  greedy and sampled continuations;
- ``builtin:stability`` (:mod:`.stability`): repeated greedy generation gives the same text, and log-likelihoods do
  not depend on the batch size;
- ``builtin:hallucination`` (:mod:`.hallucination`): confident fabrication about non-existent entities, answers
  supported by a passage or invented, abstention when the passage does not answer (offline, no judge model);
- ``contamination:<task>`` (:mod:`.contamination`): Min-K% probability of a benchmark's published items against
  perturbed copies; :func:`possible_contamination` turns the comparison into evidence with numbers.

Importing this package registers the ``contamination`` prefix with
:func:`assay.evaluate.tasks.register_wrapping_suite` and the direction of every lower-is-better probe metric with
:mod:`assay.evaluate.stats`; ``builtin:NAME`` specs reach :func:`load_probe` through :mod:`assay.evaluate.suites`.

    from assay.evaluate.loading import load_tasks
    tasks = load_tasks("builtin:refusal") + load_tasks("contamination:builtin:knowledge")
"""

from __future__ import annotations

from collections.abc import Callable

from assay.errors import EvalError
from assay.evaluate import stats, tasks
from assay.evaluate.probes import contamination, degeneration, hallucination, refusal, stability
from assay.evaluate.probes.contamination import (ContaminationFinding, load_contamination_tasks,
                                                 possible_contamination)
from assay.evaluate.probes.refusal import RefusalSummary, alignment_stripped, judge_refusals, refusal_summary
from assay.evaluate.tasks import Task

__all__ = ["PROBES", "load_probe", "alignment_stripped", "refusal_summary", "RefusalSummary", "judge_refusals",
           "possible_contamination", "ContaminationFinding", "load_contamination_tasks"]

PROBES: dict[str, Callable[[], list[Task]]] = {
    "refusal": refusal.refusal_tasks,
    "degeneration": lambda: [degeneration.degeneration_task()],
    "stability": lambda: [stability.stability_task()],
    "hallucination": hallucination.hallucination_tasks,
}
"""Probe name (after ``builtin:``) -> its tasks."""


def load_probe(name: str) -> list[Task]:
    """The tasks of ``builtin:NAME`` for a probe name in :data:`PROBES`."""
    try:
        build = PROBES[name]
    except KeyError:
        raise EvalError(f"no behaviour probe {name!r}; known: " + ", ".join(f"builtin:{n}" for n in PROBES)) from None
    return build()


def _register() -> None:
    lower = (*refusal.LOWER_IS_BETTER, *degeneration.LOWER_IS_BETTER, *stability.LOWER_IS_BETTER,
             *contamination.LOWER_IS_BETTER, *hallucination.LOWER_IS_BETTER)
    for name in lower:
        stats.register_metric(name, higher_is_better=False)
    tasks.register_wrapping_suite(contamination.PREFIX, load_contamination_tasks)


_register()
