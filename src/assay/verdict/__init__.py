"""The verdict: stage results + policy -> PASS, WARN, FAIL or NONE, with the reasons and where the evidence is.

A pure function over plain data, in four parts:

- :mod:`.outcome` what a stage leaves (:class:`StageOutcome`: its status and its typed result) and what the
  verdict says (:class:`Verdict`, :class:`Reason`, :class:`Level`, :class:`Outcome`);
- :mod:`.results` the typed result of each stage (:class:`ScanResult`, :class:`LineageResult`,
  :class:`ComparisonResult`, :class:`CardResult`, :class:`LicenceResult` ...), which write their JSON documents
  only when the ``assay.vet/1`` document is written, and read saved ones back;
- the rules, one module per family, each a small object over the typed results: :mod:`.safety` (scan,
  signature), :mod:`.lineage`, :mod:`.evaluation` (regressions, must-improve), :mod:`.deployment` (licence,
  card, speed, cost), :mod:`.behaviour` (probes, KL drift), on the base of :mod:`.rule`;
- :mod:`.decide` the rules a policy enforces, composed, and the outcome::

    stages = {"scan": StageOutcome.ran("scan", ScanResult.of(report)),
              "lineage": StageOutcome.skipped("lineage", "no base")}
    verdict = decide(stages, default_policy())
    verdict.outcome        # 'WARN'  (lineage could not run: a reason, never silent)
    verdict.reasons[0]     # Reason(rule='lineage.descends', stage='lineage', message=..., evidence='stages.lineage')

Evidence is a path into the ``assay.vet/1`` document, e.g. ``scan.findings[3]`` or
``comparison.builtin:knowledge.acc``. Outcome: any FAIL reason -> FAIL; else any undecided reason -> NONE;
else any WARN -> WARN; else PASS.

Rule ids (stable): ``scan.safe``, ``signature.valid``, ``lineage.descends``, ``lineage.not_identical``,
``evaluation.no_regression``, ``evaluation.must_improve``, ``licence.allowed``, ``card.findings``,
``card.claims``, ``deploy.speed``, ``cost.max_per_task``, ``probes.ran``, ``probes.alignment_stripped``,
``probes.over_refusal``, ``probes.degeneration``, ``probes.contamination``, ``probes.hallucination``,
``probes.stability``, ``drift.kl``, ``stage.ran``.
"""

from __future__ import annotations

from assay.verdict.behaviour import (BENIGN_TASK, DEGENERATION_JUDGED, DEGENERATION_TASK, HARMFUL_TASK,
                                     STABILITY_TASK, AlignmentStripped, Contamination, Degeneration, DriftKL,
                                     Hallucination, OverRefusal, ProbesRan, Stability)
from assay.verdict.decide import decide, outcome_of, rules_for
from assay.verdict.deployment import CardClaims, CardFindings, CostWithinBudget, LicenceAllowed, SpeedVsBase
from assay.verdict.evaluation import MustImprove, NoRegression, beyond_margin, change_at, regressed
from assay.verdict.lineage import NOT_DESCENDED, DescendsFromBase, NotIdentical
from assay.verdict.outcome import (Level, Outcome, Reason, StageOutcome, StageResult, Stages, Status, Verdict,
                                   reason_document)
from assay.verdict.results import (BaseClaim, BenchResult, CardResult, ComparisonResult, CostResult, DriftResult,
                                   DriftTask, EvaluationResult, FalseClaim, HardwareResult, InventoryResult,
                                   LicenceResult, LineageResult, ProbesResult, ProbesRun, ScanResult, SignatureResult,
                                   read_result)
from assay.verdict.rule import AllOf, Rule, StageRan
from assay.verdict.safety import ScanSafe, SignatureValid

__all__ = [
    "BENIGN_TASK", "DEGENERATION_JUDGED", "DEGENERATION_TASK", "HARMFUL_TASK", "NOT_DESCENDED", "STABILITY_TASK",
    "AlignmentStripped", "AllOf", "BaseClaim", "BenchResult", "CardClaims", "CardFindings", "CardResult",
    "ComparisonResult", "Contamination", "CostResult", "CostWithinBudget", "Degeneration", "DescendsFromBase",
    "DriftKL", "DriftResult", "DriftTask", "EvaluationResult", "FalseClaim", "Hallucination", "HardwareResult",
    "InventoryResult", "Level", "LicenceAllowed", "LicenceResult", "LineageResult", "MustImprove",
    "NoRegression", "NotIdentical", "Outcome", "OverRefusal", "ProbesRan", "ProbesResult", "ProbesRun",
    "Reason", "Rule",
    "ScanResult", "ScanSafe", "SignatureResult", "SignatureValid", "SpeedVsBase", "Stability", "StageOutcome",
    "StageRan", "StageResult", "Stages", "Status", "Verdict", "beyond_margin", "change_at", "decide",
    "outcome_of", "read_result", "reason_document", "regressed", "rules_for",
]
