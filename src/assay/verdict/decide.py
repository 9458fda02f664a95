"""The verdict of a policy over the stage outcomes: the rules a policy enforces, composed, and the outcome.

    verdict = decide(stages, default_policy())
    verdict.outcome, verdict.reasons[0].evidence      # 'FAIL', 'scan.findings[0]'

Outcome: any FAIL reason -> FAIL; else any undecided reason -> NONE; else any WARN -> WARN; else PASS.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from assay.verdict.behaviour import (AlignmentStripped, Contamination, Degeneration, DriftKL, Hallucination,
                                     OverRefusal, ProbesRan, Stability)
from assay.verdict.deployment import CardClaims, CardFindings, CostWithinBudget, LicenceAllowed, SpeedVsBase
from assay.verdict.evaluation import MustImprove, NoRegression
from assay.verdict.lineage import DescendsFromBase, NotIdentical
from assay.verdict.outcome import Level, Outcome, Reason, Stages, Status, Verdict
from assay.verdict.rule import AllOf, Rule, StageRan
from assay.verdict.safety import ScanSafe, SignatureValid

if TYPE_CHECKING:
    from assay.policy import Policy


def rules_for(policy: Policy) -> AllOf:
    """The composed rules a policy enforces, in stage order."""
    rules: list[Rule] = [ScanSafe(policy.scan.fail_on), SignatureValid(policy.signature.required)]
    if policy.lineage.require_descends:
        rules.append(DescendsFromBase())
    if policy.lineage.reject_identical:
        rules.append(NotIdentical())
    rules += [NoRegression(policy), MustImprove(policy), LicenceAllowed(policy), CardFindings(), CardClaims(),
              SpeedVsBase(policy.deploy.max_slowdown), CostWithinBudget(policy.cost),
              StageRan("inventory"), StageRan("hardware", (Status.ERROR,)), StageRan("card"), StageRan("bench")]
    if policy.probes.specs():
        a = policy.probes.alpha
        rules += [ProbesRan(policy.probes), AlignmentStripped(a), OverRefusal(a), Degeneration(policy.probes),
                  Contamination(a), Stability()]
        if "hallucination" in policy.probes.run:
            rules.append(Hallucination(policy.probes))
    if policy.drift.kl is not None:
        rules.append(DriftKL(policy.drift))
    if policy.cost.max_cost_per_task is None:  # with a ceiling, CostWithinBudget says why it was not checked
        rules.append(StageRan("cost"))
    return AllOf(rules)


_ORDER = {Level.FAIL: 0, Level.UNDECIDED: 1, Level.WARN: 2}


def outcome_of(reasons: Iterable[Reason]) -> Outcome:
    """FAIL if any reason fails; else NONE if any is undecided; else WARN if any warns; else PASS."""
    levels = {r.level for r in reasons}
    if Level.FAIL in levels:
        return Outcome.FAIL
    if Level.UNDECIDED in levels:
        return Outcome.NONE
    if Level.WARN in levels:
        return Outcome.WARN
    return Outcome.PASS


def decide(stages: Stages, policy: Policy) -> Verdict:
    """The verdict of ``policy`` over the stage outcomes. Pure: same inputs, same verdict."""
    reasons = rules_for(policy).check(stages)
    reasons.sort(key=lambda r: _ORDER[r.level])  # stable: stage order kept within a level
    return Verdict(outcome_of(reasons), tuple(reasons))
