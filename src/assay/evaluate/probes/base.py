"""What every behaviour probe shares: the hook the runner calls, and reading a comparison entry.

A probe that needs more than one greedy generation per item (sampling, repeats, per-token log-probabilities) is
the :attr:`Task.scorer` of its task and implements :meth:`ProbeRunner.run`; the runner calls it inside its normal,
cached path (``assay.evaluate.runner._score``), so base results are cached like any other task's.

    class MyProbe(ProbeRunner):
        def run(self, backend, task, items):
            return [ItemResult(id=it.id, metrics={"x": 1.0}) for it in items]
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from assay.errors import EvalError
from assay.evaluate.tasks import Item

if TYPE_CHECKING:
    from assay.evaluate.backends.base import Backend
    from assay.evaluate.runner import ItemResult
    from assay.evaluate.tasks import Task


class ProbeRunner(abc.ABC):
    """The scorer of a probe task that drives the backend itself."""

    @abc.abstractmethod
    def run(self, backend: Backend, task: Task, items: Sequence[Item]) -> list[ItemResult]:
        """Per-item results for ``items`` (in order), computed on ``backend``."""

    def __call__(self, item: Item, text: str) -> Mapping[str, float]:
        raise EvalError(f"item {item.id}: this probe is run through its run() method, not scored from one "
                        f"generated text (the evaluation runner in use does not support it)")


def entry_value(entry: Any, key: str) -> Any:
    """A field of one comparison entry: a :class:`MetricComparison` or its JSON form (``comparison.T.M``)."""
    if isinstance(entry, Mapping):
        return entry.get(key)
    return getattr(entry, key, None)


def entry_ci(entry: Any) -> tuple[float, float]:
    """The entry's interval as floats (NaN when missing)."""
    ci = entry_value(entry, "ci")
    if not isinstance(ci, (list, tuple)) or len(ci) != 2 or ci[0] is None or ci[1] is None:
        return (math.nan, math.nan)
    return (float(ci[0]), float(ci[1]))


def entry_change(entry: Any, *, alpha: float | None = None, higher_is_better: bool | None = None) -> str:
    """The judgement of one comparison entry (``better`` | ``worse`` | ``no significant change`` |
    ``not comparable``): its own ``change`` field, computed once by
    :func:`assay.evaluate.compare.compare_results`. The rule itself (:func:`assay.evaluate.stats.judge_change`)
    is applied here only to an entry that has no such field (a document from an older assay) or that was judged
    at another ``alpha`` than the one asked for.
    """
    from assay.evaluate.stats import CHANGES, judge_change

    change = entry_value(entry, "change")
    own_alpha = entry_value(entry, "alpha")
    if change in CHANGES and (alpha is None or change == "not comparable" or own_alpha == alpha):
        return str(change)
    p = entry_value(entry, "p_holm")
    if p is None:
        p = entry_value(entry, "p")
    hib = entry_value(entry, "higher_is_better")
    if not isinstance(hib, bool):
        hib = higher_is_better if higher_is_better is not None else True
    return judge_change(entry_ci(entry), p if isinstance(p, (int, float)) else None, higher_is_better=hib,
                        alpha=alpha if alpha is not None else 0.05)


def find_entry(comparison: Mapping[str, Any], task: str, metric: str) -> Any | None:
    """``comparison[task][metric]`` or None."""
    per = comparison.get(task) if isinstance(comparison, Mapping) else None
    if not isinstance(per, Mapping):
        return None
    return per.get(metric)
