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


def find_entry(comparison: Mapping[str, Any], task: str, metric: str) -> Any | None:
    """``comparison[task][metric]`` or None."""
    per = comparison.get(task) if isinstance(comparison, Mapping) else None
    if not isinstance(per, Mapping):
        return None
    return per.get(metric)
