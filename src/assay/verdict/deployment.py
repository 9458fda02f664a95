"""Rules about whether the model may be used and what it costs to run: ``licence.allowed``, ``card.findings``,
``card.claims``, ``deploy.speed`` and ``cost.max_per_task``. They read
:class:`~assay.verdict.results.LicenceResult`, :class:`~assay.verdict.results.CardResult`,
:class:`~assay.verdict.results.BenchResult` and :class:`~assay.verdict.results.CostResult`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from assay.formatting import num
from assay.verdict.outcome import Level, Reason, Stages, Status
from assay.verdict.results import BenchResult, CardResult, CostResult, LicenceResult
from assay.verdict.rule import Rule

if TYPE_CHECKING:
    from assay.policy import CostPolicy, Policy


def _norm(lic: str) -> str:
    return lic.strip().lower()


def _cite(clause: str | None) -> str:
    """Where a licence rule comes from: the policy key, or the licence's own clause."""
    if not clause:
        return ""
    if clause.startswith("licence."):
        return f" (policy key {clause})"
    return f" (licence clause: {clause})"


class LicenceAllowed(Rule):
    """The licence is allowed, not denied, and its caps hold for the stated number of users."""

    rule_id = "licence.allowed"
    stage = "licence"

    def __init__(self, policy: Policy) -> None:
        self.licence = policy.licence

    def _constrained(self) -> bool:
        return bool(self.licence.allow or self.licence.deny or self.licence.monthly_active_users is not None)

    def check(self, stages: Stages) -> list[Reason]:
        out = stages.get(self.stage)
        if out is None or out.status is not Status.RAN:
            if not self._constrained() or (out is not None and out.status is Status.BLOCKED):
                return []
            return self.absent(stages, why="licence not checked") or []
        result = self.result(stages, LicenceResult) or LicenceResult(None, None)
        lic = result.licence
        reasons: list[Reason] = []
        if result.violations is not None:  # the licence stage already matched the policy (aliases, kinds, caps)
            for i, v in enumerate(result.violations):
                level = Level.FAIL if v.severity == "fail" else Level.WARN
                if level is Level.WARN and not self._constrained():
                    continue  # an unknown licence only matters when the policy restricts licences
                reasons.append(self.reason(f"{v.message}{_cite(v.clause)}", f"licence.violations[{i}]", level))
            return reasons
        if not lic:
            if self.licence.allow:
                reasons.append(self.reason("the model declares no licence, and the policy allows only "
                                           f"{', '.join(self.licence.allow)}", "licence", Level.FAIL))
            return reasons
        if _norm(lic) in {_norm(x) for x in self.licence.deny}:
            reasons.append(self.reason(f"licence {lic} is denied by the policy", "licence", Level.FAIL))
        elif self.licence.allow and _norm(lic) not in {_norm(x) for x in self.licence.allow}:
            reasons.append(self.reason(f"licence {lic} is not in the policy's allow list "
                                       f"({', '.join(self.licence.allow)})", "licence", Level.FAIL))
        return reasons


class CardFindings(Rule):
    """Problems the model-card review reports (licence laundering, claims that contradict measurements)."""

    rule_id = "card.findings"
    stage = "card"

    def check(self, stages: Stages) -> list[Reason]:
        card = self.result(stages, CardResult)
        if card is None:
            return []  # the card review is informative; its absence is shown in the stage list
        # unsupported claims with their numbers are CardClaims' reasons; the matching findings would repeat them
        by_claims = any(not c.supported for c in card.claims)
        reasons: list[Reason] = []
        for i, f in enumerate(card.findings):
            if by_claims and f.rule == "CARD-CLAIM-UNSUPPORTED":
                continue
            level = (Level.FAIL if f.severity in ("critical", "high") else Level.WARN if f.severity == "medium"
                     else None)
            if level is not None:
                reasons.append(self.reason(f.message or f.rule, f"card.findings[{i}]", level))
        return reasons


class CardClaims(Rule):
    """Scores the card claims (``model-index``) are not far above what vet measured on the same task."""

    rule_id = "card.claims"
    stage = "card"

    def check(self, stages: Stages) -> list[Reason]:
        card = self.result(stages, CardResult)
        if card is None:
            return []
        reasons: list[Reason] = []
        for i, c in enumerate(card.claims):
            if c.supported:
                continue
            task, _, metric = c.measured_key.partition("/")
            claimed = None if math.isnan(c.claimed) else c.claimed
            measured = None if math.isnan(c.measured) else c.measured
            reasons.append(self.reason(
                f"the card claims {c.claim.metric} {num(claimed, '.3f')} on "
                f"{c.claim.dataset or c.claim.dataset_type or task}, but vet measured "
                f"{num(measured, '.3f')} ({task} {metric})", f"card.claims[{i}]", Level.WARN))
        return reasons


class SpeedVsBase(Rule):
    """The candidate decodes no more than ``max_slowdown`` times slower than its base (same bench run)."""

    rule_id = "deploy.speed"
    stage = "bench"

    def __init__(self, max_slowdown: float | None) -> None:
        self.max_slowdown = max_slowdown

    def check(self, stages: Stages) -> list[Reason]:
        bench = self.result(stages, BenchResult)
        if self.max_slowdown is None or bench is None:
            return []  # a bench that did not run is StageRan's reason; no base: no ratio to judge
        ratio = bench.decode_ratio
        if ratio is None or ratio <= 0 or ratio >= 1 / self.max_slowdown:
            return []
        return [self.reason(f"the candidate decodes {1 / ratio:.2f}x slower than its base "
                            f"({num(bench.candidate_decode, ',.1f')} against {num(bench.base_decode, ',.1f')} "
                            f"tokens/s, measured in the same run), more than deploy.max_slowdown "
                            f"{self.max_slowdown:g}", "bench.ratios.decode_tokens_per_s", Level.WARN)]


class CostWithinBudget(Rule):
    """The self-hosted cost per task is at most ``cost.max_cost_per_task``."""

    rule_id = "cost.max_per_task"
    stage = "cost"

    def __init__(self, cost: CostPolicy) -> None:
        self.cost = cost

    def check(self, stages: Stages) -> list[Reason]:
        limit = self.cost.max_cost_per_task
        if limit is None:
            return []
        out = stages.get(self.stage)
        if out is None or out.status is not Status.RAN:
            if out is not None and out.status is Status.BLOCKED:
                return []
            level = Level.UNDECIDED if out is None or out.status is Status.ERROR else Level.WARN
            why = out.reason if out is not None and out.reason else "the cost stage did not run"
            return [self.reason(f"cost per task not checked against cost.max_cost_per_task ${limit:g}: {why}",
                                f"stages.{self.stage}", level)]
        result = self.result(stages, CostResult)
        cost = result.self_per_task if result is not None else None
        if cost is None:
            return [self.reason("the cost stage gave no self-hosted cost per task", "cost", Level.UNDECIDED)]
        if cost <= limit:
            return []
        level = Level.FAIL if self.cost.on_exceed == "fail" else Level.WARN
        basis = (result.self_per_task_basis if result is not None else None) or "given"
        return [self.reason(f"self-hosted cost per task ${cost:.6g} ({basis}) exceeds cost.max_cost_per_task "
                            f"${limit:g}", "cost.self_per_task", level)]
