"""Rules about the paired comparison with the base: ``evaluation.no_regression`` and ``evaluation.must_improve``.

They read :class:`~assay.verdict.results.ComparisonResult`: each
:class:`~assay.evaluate.compare.MetricComparison` carries its judgement (``change``), computed once by the
comparison. The verdict adds one judgement of its own, *regressed*: a ``worse`` change whose interval also lies
beyond the policy's margin (:func:`regressed`); reports read it from the reasons.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from assay.evaluate.compare import MetricComparison
from assay.evaluate.stats import judge_change
from assay.formatting import num
from assay.verdict.outcome import Level, Reason, Stages, Status
from assay.verdict.results import ComparisonResult
from assay.verdict.rule import Rule

if TYPE_CHECKING:
    from assay.policy import EvaluationPolicy, Policy


def known(x: float | None) -> float | None:
    """``x`` unless it is missing or NaN (so a message says ``n/a``, never ``nan``)."""
    return None if x is None or math.isnan(x) else x


def interval(mc: MetricComparison) -> tuple[float, float] | None:
    """The entry's 95% interval, None when it is unknown."""
    lo, hi = mc.ci
    return None if math.isnan(lo) or math.isnan(hi) else (lo, hi)


def change_at(mc: MetricComparison, alpha: float) -> str:
    """The entry's judgement at significance ``alpha``: its own ``change`` when it was judged at that level (or
    was not comparable), else the same rule (:func:`~assay.evaluate.stats.judge_change`) at ``alpha``."""
    if mc.change == "not comparable" or mc.alpha == alpha:
        return mc.change
    return judge_change(mc.ci, known(mc.p_holm), higher_is_better=mc.higher_is_better, alpha=alpha)


def beyond_margin(mc: MetricComparison, margin: float) -> bool:
    """True when the whole interval lies more than ``margin`` on the worse side of zero."""
    ci = interval(mc)
    if ci is None:
        return False
    sign = 1 if mc.higher_is_better else -1
    return max(sign * ci[0], sign * ci[1]) < -margin


def regressed(task: str, metric: str, mc: MetricComparison, evaluation: EvaluationPolicy) -> bool:
    """A regression under the policy: a judged metric whose change is ``worse`` (interval on the worse side of
    zero and Holm-adjusted p below alpha, both computed once by the comparison) and whose interval also lies
    beyond the metric's margin."""
    margin = evaluation.margin(task, metric)
    return (margin is not None and change_at(mc, evaluation.alpha) == "worse"
            and beyond_margin(mc, margin))


class NoRegression(Rule):
    """No judged metric regressed: no metric is significantly worse (paired interval on the worse side of zero and
    Holm-adjusted paired test below ``evaluation.alpha``) with its interval also beyond the margin."""

    rule_id = "evaluation.no_regression"
    stage = "comparison"

    def __init__(self, policy: Policy) -> None:
        self.evaluation = policy.evaluation

    def check(self, stages: Stages) -> list[Reason]:
        absent = self.absent(stages, why="regressions not checked")
        if absent is not None:
            return absent
        cmp = self.result(stages, ComparisonResult)
        reasons: list[Reason] = []
        for task, metrics in (cmp.tasks if cmp is not None else {}).items():
            for metric, mc in metrics.items():
                margin = self.evaluation.margin(task, metric)
                if margin is None or not regressed(task, metric, mc, self.evaluation):
                    continue
                ci = interval(mc)
                assert ci is not None
                reasons.append(self.reason(
                    f"{task} {metric} regressed: delta {num(known(mc.delta), '+.4f')}, 95% interval "
                    f"[{ci[0]:+.4f}, {ci[1]:+.4f}] lies entirely beyond the margin of {margin:g} and the paired "
                    f"test agrees (p={num(known(mc.p_holm), '.3g')} after Holm)", f"comparison.{task}.{metric}",
                    Level.FAIL))
        return reasons


class MustImprove(Rule):
    """The candidate beats the base significantly on each listed task."""

    rule_id = "evaluation.must_improve"
    stage = "comparison"

    def __init__(self, policy: Policy) -> None:
        self.evaluation = policy.evaluation

    def _primary(self, task: str, metrics: Mapping[str, MetricComparison]) -> str | None:
        judged = [m for m in metrics if self.evaluation.margin(task, m) is not None]
        names = judged or list(metrics)
        return names[0] if names else None

    def check(self, stages: Stages) -> list[Reason]:
        if not self.evaluation.must_improve:
            return []
        out = stages.get(self.stage)
        if out is None or out.status is not Status.RAN:
            if out is not None and out.status is Status.BLOCKED:
                return []
            why = out.reason if out is not None and out.reason else "no comparison with the base"
            return [self.reason(f"improvement on {', '.join(self.evaluation.must_improve)} cannot be shown: {why}",
                                f"stages.{self.stage}", Level.UNDECIDED)]
        cmp = self.result(stages, ComparisonResult)
        reasons: list[Reason] = []
        for task in self.evaluation.must_improve:
            metrics = cmp.tasks.get(task) if cmp is not None else None
            metric = self._primary(task, metrics) if metrics else None
            if not metrics or metric is None:
                reasons.append(self.reason(f"{task} must improve but was not evaluated", f"comparison.{task}",
                                           Level.FAIL))
                continue
            mc = metrics[metric]
            if change_at(mc, self.evaluation.alpha) != "better":
                ci = interval(mc)
                p = known(mc.p_holm)
                ci_text = f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "unknown"
                p_text = f", p={p:.3g}" if p is not None else ""
                reasons.append(self.reason(
                    f"{task} {metric} must improve significantly but did not: delta {num(known(mc.delta), '+.4f')}, "
                    f"95% interval {ci_text}{p_text}", f"comparison.{task}.{metric}", Level.FAIL))
        return reasons
