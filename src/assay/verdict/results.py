"""The typed result of each stage of ``assay vet``: frozen data the verdict's rules read.

Each stage of :data:`assay.vet.STAGE_TABLE` leaves one of these in its :class:`~assay.verdict.outcome.StageOutcome`.
A result holds the stage's own objects (the :class:`~assay.scan.findings.ScanReport`, the
:class:`~assay.evaluate.compare.MetricComparison` of every task and metric, the card's
:class:`~assay.deploy.card.CardReport` ...) and writes its JSON document (``assay.<kind>/1``) only when asked,
when the ``assay.vet/1`` document is written::

    scan = ScanResult.of(scan_model(ref))
    scan.verdict, scan.findings[0].severity        # what ScanSafe reads
    scan.document()["schema"]                      # 'assay.scan/1'

Judgements are made once, where the numbers are computed, and stored here: a comparison entry carries its
``change`` (``better`` / ``worse`` / ``no significant change`` / ``not comparable``, from
:func:`assay.evaluate.compare.compare_results`); the verdict adds ``regressed`` (beyond the policy's margin) as a
reason; reports render both and never judge again.

:func:`read_result` reads a saved stage document (``vet.json["scan"]``) back into its typed result, so a saved
result can be judged again under another policy (the saved document itself is written back unchanged); a document
from an older assay whose comparison entries carry no ``change`` is judged once here, as
:func:`assay.evaluate.stats.judge_change` judges a fresh comparison. A result built from the typed fields alone
(``LineageResult("unrelated")``) can be judged, but refuses to write a document: it would be incomplete.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from assay.deploy.bench import bench_document, fit_document
from assay.deploy.card import CardFinding, ClaimCheck, EvalClaim, card_document, claim_findings
from assay.deploy.cost import cost_document
from assay.deploy.licences import Licence, Violation
from assay.evaluate.compare import MetricComparison, comparison_document, eval_document
from assay.evaluate.kl import KLResult, kl_document
from assay.evaluate.policy_tasks import probes_document
from assay.evaluate.stats import CHANGES, judge_change, metric_direction
from assay.jsonable import as_mapping, to_jsonable
from assay.model.inventory import inventory_document
from assay.provenance.lineage import lineage_document
from assay.provenance.signing import verify_document
from assay.scan import scan_document
from assay.scan.findings import FileResult, Finding, ScanReport
from assay.severity import SEVERITIES, Severity

if TYPE_CHECKING:
    from assay.deploy.bench import BenchReport
    from assay.deploy.card import CardReport
    from assay.deploy.cost import CostReport
    from assay.deploy.hardware import FitReport
    from assay.evaluate.runner import TaskResult
    from assay.model.inventory import Inventory
    from assay.model.ref import ModelRef
    from assay.policy import Policy
    from assay.provenance.lineage import LineageReport
    from assay.provenance.signing import VerifyResult

T = TypeVar("T")

Comparisons = Mapping[str, Mapping[str, MetricComparison]]
"""Task -> metric -> paired comparison of the candidate with its base."""


def _source(obj: T | None, result: str, source: str) -> T:
    """The stage's own object a result writes its document from; a result built without it (from the fields the
    verdict reads alone) has no complete document, and writing one is refused rather than left incomplete."""
    if obj is None:
        raise ValueError(f"a {result} built without its {source} has no complete document to write")
    return obj


def _float(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def _finite(x: Any) -> float | None:
    v = _float(x)
    return v if v is not None and math.isfinite(v) else None


def _text(x: Any) -> str | None:
    return None if x is None else str(x)


# --- safety -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanResult:
    """The scan of the candidate (or the base): ``scan`` and ``base_scan``."""

    verdict: str
    """``safe``, ``unsafe`` or ``unverified`` (anything else: the scan gave no usable verdict)."""
    findings: tuple[Finding, ...] = ()
    """Every finding, in the order of the document's ``findings``."""
    files: tuple[FileResult, ...] = ()
    """One entry per file, in the order of the document's ``files``."""
    report: ScanReport | None = None
    """The scanner's report, when the scan ran in this process (its document is written from it)."""

    @classmethod
    def of(cls, report: ScanReport) -> ScanResult:
        """The result of a scan that ran."""
        return cls(report.verdict.value, report.findings, report.files, report)

    @property
    def safe(self) -> bool:
        """True only for a ``safe`` verdict."""
        return self.verdict == "safe"

    def document(self) -> dict[str, Any]:
        """``assay.scan/1``."""
        return scan_document(_source(self.report, "ScanResult", "ScanReport"))

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> ScanResult:
        """A saved ``assay.scan/1``. A finding of unknown severity counts as ``info``."""
        findings = tuple(Finding(rule=str(f.get("rule")),
                                 severity=Severity(f["severity"]) if f.get("severity") in SEVERITIES
                                 else Severity.INFO,
                                 path=str(f.get("path") or "?"), location=_text(f.get("location")),
                                 message=str(f.get("message")), evidence=_text(f.get("evidence")))
                         for f in (as_mapping(x) for x in doc.get("findings") or []))
        files = tuple(FileResult(path=str(f.get("path")), format=str(f.get("format")),
                                 status=str(f.get("status", "")).lower().replace(" ", "_"),
                                 reason=_text(f.get("reason") or f.get("message")))
                      for f in (as_mapping(x) for x in doc.get("files") or []))
        return cls(str(doc.get("verdict", "")).lower().replace(" ", "_"), findings, files)


@dataclass(frozen=True)
class SignatureResult:
    """The check of ``model.sig`` against the policy's trusted keys: ``signature``."""

    valid: bool
    """True only when the signature verifies with a trusted key and every file matches it."""
    message: str
    """What the check found, for the user."""
    key: str | None = None
    """The trusted key it was checked with (the last one tried when none verifies)."""
    verification: VerifyResult | None = None
    """The verifier's result (its document is written from it)."""

    def document(self) -> dict[str, Any]:
        """``assay.verify/1`` and the key."""
        return {**verify_document(_source(self.verification, "SignatureResult", "VerifyResult")), "key": self.key}

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> SignatureResult:
        """A saved signature document."""
        return cls(doc.get("valid") is True, str(doc.get("message") or "the signature does not verify"),
                   _text(doc.get("key")))


# --- lineage ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FalseClaim:
    """A claim of the card that the weights contradict."""

    claim: str
    """What is claimed (``base_model``, ``adapter``, ...)."""
    message: str
    """What the weights show instead."""


@dataclass(frozen=True)
class BaseClaim:
    """What the card claims about the base, against what the weights show."""

    base_model: Any = None
    """The card's ``base_model`` (a name or a list of names), None when it names none."""
    consistent: bool | None = None
    """Whether the weights agree with the claim (None: not checked)."""
    false_claims: tuple[FalseClaim, ...] | None = None
    """Each claim the weights contradict (None: a document from before these were listed)."""
    notes: tuple[str, ...] = ()
    """Remarks on the claim."""

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> BaseClaim:
        """The ``claim`` object of ``assay.lineage/1``."""
        raw = doc.get("false_claims")
        false = None if raw is None else tuple(FalseClaim(str(f.get("claim")), str(f.get("message")))
                                               for f in raw if isinstance(f, Mapping))
        consistent = doc.get("consistent")
        return cls(doc.get("base_model"), consistent if isinstance(consistent, bool) else None, false,
                   tuple(str(n) for n in doc.get("notes") or []))


@dataclass(frozen=True)
class LineageResult:
    """How the candidate's weights relate to the base's: ``lineage``."""

    relation: str
    """``identical``, ``recast``, ``quantized``, ``finetune``, ``lora_merge``, ``unrelated``, ``incompatible`` ..."""
    claim: BaseClaim = field(default_factory=BaseClaim)
    """The card's base claim, checked against the weights."""
    report: LineageReport | None = None
    """The lineage report (its document is written from it)."""

    @classmethod
    def of(cls, report: LineageReport) -> LineageResult:
        """The result of a lineage comparison that ran."""
        return cls(report.relation.value, BaseClaim.from_document(report.claim or {}), report)

    def document(self) -> dict[str, Any]:
        """``assay.lineage/1``."""
        return lineage_document(_source(self.report, "LineageResult", "LineageReport"))

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> LineageResult:
        """A saved ``assay.lineage/1``."""
        return cls(str(doc.get("relation")), BaseClaim.from_document(as_mapping(doc.get("claim"))))


# --- evaluation -------------------------------------------------------------------------------------------


def metric_comparison_from_document(metric: str, e: Mapping[str, Any]) -> MetricComparison:
    """A saved ``comparison.TASK.METRIC`` entry. Its stored ``change`` is kept; an entry from an older assay that
    has none is judged here once, by :func:`assay.evaluate.stats.judge_change` (unknown numbers are NaN, which
    judge as ``no significant change``)."""
    nan = math.nan

    def f(key: str) -> float:
        v = _float(e.get(key))
        return nan if v is None else v

    ci_doc = e.get("ci")
    ci = ((_f_or_nan(ci_doc[0]), _f_or_nan(ci_doc[1])) if isinstance(ci_doc, (list, tuple)) and len(ci_doc) == 2
          else (nan, nan))
    p = f("p")
    p_holm = _float(e.get("p_holm"))
    hib = e.get("higher_is_better")
    higher = hib if isinstance(hib, bool) else metric_direction(metric) > 0
    alpha = _float(e.get("alpha"))
    n = e.get("n")
    change = e.get("change")
    if change not in CHANGES:
        change = judge_change(ci, p_holm if p_holm is not None else (None if math.isnan(p) else p),
                              higher_is_better=higher, alpha=alpha if alpha is not None else 0.05)
    return MetricComparison(
        metric=metric, base=f("base"), candidate=f("candidate"), delta=f("delta"), ci=ci, p=p,
        p_holm=p if p_holm is None else p_holm, test=str(e.get("test") or ""), mde=f("mde"),
        n=n if isinstance(n, int) and not isinstance(n, bool) else 0, higher_is_better=higher,
        gained=_ids(e.get("gained")), lost=_ids(e.get("lost")), change=change,
        interval=str(e.get("interval") or ""), alpha=alpha if alpha is not None else 0.05,
        note=str(e.get("note") or ""))


def _f_or_nan(x: Any) -> float:
    """``x`` as a float, NaN when it is not a number."""
    v = _float(x)
    return math.nan if v is None else v


def _ids(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in v) if isinstance(v, (list, tuple)) else ()


def comparisons_from_document(doc: Mapping[str, Any] | None) -> dict[str, dict[str, MetricComparison]]:
    """A saved comparison (task -> metric -> entry) as typed entries; anything that is not an entry is skipped."""
    return {str(task): {str(m): metric_comparison_from_document(str(m), e) for m, e in metrics.items()
                        if isinstance(e, Mapping)}
            for task, metrics in (doc or {}).items() if isinstance(metrics, Mapping)}


def comparisons_document(cmp: Comparisons) -> dict[str, dict[str, dict[str, Any]]]:
    """Task -> metric -> ``comparison`` entry, as ``assay.eval/1`` writes it."""
    return {t: {m: comparison_document(mc) for m, mc in per.items()} for t, per in cmp.items()}


@dataclass(frozen=True)
class EvaluationResult:
    """The candidate (and its base) on the evaluation tasks: ``evaluation``."""

    model: str
    """The candidate as given."""
    results: Mapping[str, TaskResult]
    """The candidate's results by task."""
    base: str | None = None
    """The base as given, when it was evaluated."""
    base_results: Mapping[str, TaskResult] | None = None
    """The base's results by task."""
    comparison: Comparisons | None = None
    """The paired comparison, when both were evaluated."""
    settings: Mapping[str, Any] = field(default_factory=dict)
    """Backend, dtype, limit and tasks."""

    def document(self) -> dict[str, Any]:
        """``assay.eval/1``."""
        out: dict[str, Any] = to_jsonable(eval_document(
            model=self.model, results=self.results, base=self.base, base_results=self.base_results,
            comparison=self.comparison, settings=self.settings))
        return out


@dataclass(frozen=True)
class ComparisonResult:
    """The paired comparison of the candidate with its base: ``comparison``."""

    tasks: Comparisons
    """Task -> metric -> comparison, each entry with its judgement (:attr:`MetricComparison.change`)."""

    def document(self) -> dict[str, Any]:
        """Task -> metric -> entry (the ``comparison`` of ``assay.eval/1``)."""
        out: dict[str, Any] = to_jsonable(comparisons_document(self.tasks))
        return out

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> ComparisonResult:
        """A saved comparison."""
        return cls(comparisons_from_document(doc))


# --- card, licence, bench, cost ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CardResult:
    """The model-card review with its claimed scores checked against what vet measured: ``card``."""

    findings: tuple[CardFinding, ...] = ()
    """What the review found (licence laundering, missing facts, unsupported claims ...), document order."""
    claims: tuple[ClaimCheck, ...] = ()
    """Each claimed score matched to a measurement."""
    report: CardReport | None = None
    """The card review (its document is written from it)."""
    unmatched: tuple[EvalClaim, ...] = ()
    """Claims no measured task matched."""
    basis: str = ""
    """What the claims were checked against."""

    @classmethod
    def of(cls, report: CardReport, claims: Sequence[ClaimCheck], unmatched: Sequence[EvalClaim],
           basis: str) -> CardResult:
        """The result of a card review."""
        return cls(tuple(report.findings) + tuple(claim_findings(list(claims))), tuple(claims), report,
                   tuple(unmatched), basis)

    def document(self) -> dict[str, Any]:
        """``assay.card/1``, with ``claims_unmatched`` and ``claims_basis``."""
        doc = dict(card_document(_source(self.report, "CardResult", "CardReport"), claims=list(self.claims)))
        doc["claims_unmatched"] = to_jsonable(list(self.unmatched))
        doc["claims_basis"] = self.basis
        return doc

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> CardResult:
        """A saved ``assay.card/1``."""
        findings = tuple(CardFinding(str(f.get("rule")), str(f.get("severity", "low")), _text(f.get("path")),
                                     _text(f.get("location")), str(f.get("message") or f.get("rule")),
                                     _text(f.get("evidence")))
                         for f in doc.get("findings") or [] if isinstance(f, Mapping))
        claims = []
        for c in doc.get("claims") or []:
            if not isinstance(c, Mapping):
                continue
            cl = as_mapping(c.get("claim"))
            claims.append(ClaimCheck(
                EvalClaim(_text(cl.get("task")), _text(cl.get("dataset")), _text(cl.get("dataset_type")),
                          str(cl.get("metric")), _f_or_nan(cl.get("value"))),
                str(c.get("measured_key", "")), _f_or_nan(c.get("claimed")), _f_or_nan(c.get("measured")),
                _f_or_nan(c.get("delta")), c.get("supported") is not False))
        return cls(findings, tuple(claims))


@dataclass(frozen=True)
class LicenceResult:
    """The declared licence against the policy's allow and deny lists: ``licence``."""

    licence: str | None
    """The licence id (normalised), None when the model declares none."""
    violations: tuple[Violation, ...] | None = ()
    """What the intended use breaks (None: a document from before the stage matched the policy itself)."""
    terms: Licence | None = None
    """The licence's key terms, when assay knows it."""
    base_licence: str | None = None
    """The base's licence, when known."""
    base_licence_source: str | None = None
    """Where the base's licence was read."""

    def document(self) -> dict[str, Any]:
        """``assay.licence/1``."""
        return {"schema": "assay.licence/1", "licence": self.licence, "terms": to_jsonable(self.terms),
                "violations": to_jsonable(list(self.violations or ())), "base_licence": self.base_licence,
                "base_licence_source": self.base_licence_source}

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> LicenceResult:
        """A saved ``assay.licence/1``."""
        lic = doc.get("licence") or doc.get("license")
        violations = None
        if "violations" in doc:
            violations = tuple(Violation(str(v.get("rule")), str(v.get("severity")), _text(v.get("licence")),
                                         str(v.get("message")), _text(v.get("clause")))
                               for v in doc.get("violations") or [] if isinstance(v, Mapping))
        return cls(_text(lic) if lic else None, violations, None, _text(doc.get("base_licence")),
                   _text(doc.get("base_licence_source")))


@dataclass(frozen=True)
class BenchResult:
    """Speed and memory of the candidate (and its base, in the same run): ``bench``."""

    candidate_decode: float | None
    """The candidate's decode speed, tokens/s."""
    base_decode: float | None = None
    """The base's decode speed, tokens/s (same run)."""
    decode_ratio: float | None = None
    """Candidate / base decode speed."""
    report: BenchReport | None = None
    """The bench report (its document is written from it)."""
    notes: tuple[str, ...] = ()
    """Caveats added by vet (why no base was measured)."""

    @classmethod
    def of(cls, report: BenchReport, notes: Sequence[str] = ()) -> BenchResult:
        """The result of a bench run."""
        return cls(_finite(report.candidate.decode_tokens_per_s),
                   _finite(report.base.decode_tokens_per_s) if report.base is not None else None,
                   _finite(report.ratios.get("decode_tokens_per_s")), report, tuple(notes))

    def document(self) -> dict[str, Any]:
        """``assay.bench/1``."""
        doc = bench_document(_source(self.report, "BenchResult", "BenchReport"))
        if self.notes:
            doc["notes"] = [*doc["notes"], *self.notes]
        return doc

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> BenchResult:
        """A saved ``assay.bench/1``."""
        return cls(_finite(as_mapping(doc.get("candidate")).get("decode_tokens_per_s")),
                   _finite(as_mapping(doc.get("base")).get("decode_tokens_per_s")),
                   _finite(as_mapping(doc.get("ratios")).get("decode_tokens_per_s")))


@dataclass(frozen=True)
class CostResult:
    """Cost per task self-hosted and via the API, and break-even: ``cost``."""

    self_per_task: float | None
    """Self-hosted cost per task (None: not established)."""
    self_per_task_basis: str | None = None
    """How it was established (given, from the bench ...)."""
    report: CostReport | None = None
    """The cost report (its document is written from it)."""

    @classmethod
    def of(cls, report: CostReport) -> CostResult:
        """The result of the cost model."""
        return cls(_finite(report.self_per_task), report.self_per_task_basis, report)

    def document(self) -> dict[str, Any]:
        """``assay.cost/1``."""
        return cost_document(_source(self.report, "CostResult", "CostReport"))

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> CostResult:
        """A saved ``assay.cost/1``."""
        return cls(_finite(doc.get("self_per_task")), _text(doc.get("self_per_task_basis")))


# --- behaviour probes and drift ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbesRun:
    """What the probes stage ran: both models' probe results and the policy that chose the probes."""

    candidate: ModelRef
    """The candidate."""
    base: ModelRef | None
    """The base, when it ran the probes."""
    results: Mapping[str, TaskResult]
    """The candidate's probe results by task."""
    base_results: Mapping[str, TaskResult] | None
    """The base's, when it ran them."""
    policy: Policy
    """The policy (its ``probes`` section: limit, probes, alpha)."""


@dataclass(frozen=True)
class ProbesResult:
    """The behaviour probes on the candidate (and its base), compared pairwise: ``probes``."""

    metrics: Mapping[str, Mapping[str, float]]
    """The candidate's probe metrics: task -> metric -> value."""
    base_metrics: Mapping[str, Mapping[str, float]] | None = None
    """The base's, when it ran the probes."""
    comparison: Comparisons | None = None
    """Paired comparison (Holm across the probe tasks), None without a base."""
    run: ProbesRun | None = None
    """The probe run the document is written from (with its refusal and contamination summaries)."""

    @classmethod
    def of(cls, run: ProbesRun, comparison: Comparisons | None) -> ProbesResult:
        """The result of a probe run and its comparison."""
        return cls({t: dict(r.metrics) for t, r in run.results.items()},
                   {t: dict(r.metrics) for t, r in run.base_results.items()} if run.base_results is not None
                   else None, comparison, run)

    def document(self) -> dict[str, Any]:
        """``assay.probes/1``."""
        r = _source(self.run, "ProbesResult", "ProbesRun")
        return probes_document(r.candidate, r.base, r.results, r.base_results, r.policy, comparison=self.comparison)

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> ProbesResult:
        """A saved ``assay.probes/1``."""
        def metrics(tasks: Any) -> dict[str, dict[str, float]]:
            return {str(t): {str(k): float(v) for k, v in as_mapping(as_mapping(r).get("metrics")).items()
                             if _float(v) is not None}
                    for t, r in as_mapping(tasks).items()}

        cmp = doc.get("comparison")
        return cls(metrics(doc.get("tasks")), metrics(doc.get("base_tasks")) if doc.get("base_tasks") else None,
                   comparisons_from_document(cmp) if isinstance(cmp, Mapping) else None)


@dataclass(frozen=True)
class DriftTask:
    """KL drift of the candidate from the base on one text."""

    comparable: bool
    """False when the tokenizers differ (nothing was measured; :attr:`note` says why)."""
    kl_mean: float | None = None
    """Mean KL(candidate || base), nats per token."""
    kl_p95: float | None = None
    """95th percentile of the per-token KL."""
    ci: tuple[float, float] | None = None
    """Bootstrap 95% interval of :attr:`kl_mean`."""
    note: str = ""
    """Why it was not measured."""
    result: KLResult | None = None
    """The measurement (its document is written from it)."""

    @classmethod
    def of(cls, r: KLResult) -> DriftTask:
        """One measured text (a value that is not a finite number is unknown: None)."""
        lo, hi = _finite(r.ci[0]), _finite(r.ci[1])
        return cls(r.comparable, _finite(r.mean), _finite(r.p95), (lo, hi) if lo is not None and hi is not None
                   else None, r.note, r)

    @classmethod
    def from_document(cls, t: Mapping[str, Any]) -> DriftTask:
        """A saved ``drift.tasks.NAME``."""
        m = as_mapping(t.get("metrics"))
        ci = as_mapping(t.get("ci")).get("kl_mean")
        lo, hi = (_float(ci[0]), _float(ci[1])) if isinstance(ci, (list, tuple)) and len(ci) == 2 else (None, None)
        return cls(t.get("comparable") is not False, _float(m.get("kl_mean")), _float(m.get("kl_p95")),
                   (lo, hi) if lo is not None and hi is not None else None, str(t.get("note") or ""))


@dataclass(frozen=True)
class DriftResult:
    """KL drift of the candidate from the base on the policy's texts: ``drift``."""

    tasks: Mapping[str, DriftTask]
    """By text (task) name."""

    def document(self) -> dict[str, Any]:
        """``assay.drift/1``."""
        tasks = {name: kl_document(_source(t.result, "DriftTask", "KLResult")) for name, t in self.tasks.items()}
        out: dict[str, Any] = to_jsonable({"schema": "assay.drift/1", "tasks": tasks})
        return out

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> DriftResult:
        """A saved ``assay.drift/1``."""
        return cls({str(n): DriftTask.from_document(t) for n, t in as_mapping(doc.get("tasks")).items()
                    if isinstance(t, Mapping)})


# --- informative stages -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryResult:
    """What the candidate is, from its headers: ``inventory``."""

    inventory: Inventory
    """The inventory."""

    @property
    def card_base_model(self) -> str | None:
        """The first ``base_model`` the card names, None when it names none."""
        claimed = as_mapping(self.inventory.card).get("base_model")
        if isinstance(claimed, list):
            claimed = claimed[0] if claimed else None
        return str(claimed) if claimed else None

    def document(self) -> dict[str, Any]:
        """``assay.inventory/1``."""
        out: dict[str, Any] = to_jsonable(inventory_document(self.inventory))
        return out


@dataclass(frozen=True)
class HardwareResult:
    """Memory at 16/8/4 bits and the devices it fits, from the headers alone: ``hardware``."""

    fit: FitReport
    """Memory needed at each precision and the devices it fits."""
    source: str = "headers (estimate, nothing loaded)"
    """Where the shape came from."""

    def document(self) -> dict[str, Any]:
        """``assay.fit/1``."""
        out: dict[str, Any] = to_jsonable({"schema": "assay.fit/1", "source": self.source,
                                           **fit_document(self.fit)})
        return out


READERS: Mapping[str, Callable[[Mapping[str, Any]], Any]] = {
    "scan": ScanResult.from_document, "base_scan": ScanResult.from_document,
    "signature": SignatureResult.from_document, "lineage": LineageResult.from_document,
    "comparison": ComparisonResult.from_document, "card": CardResult.from_document,
    "licence": LicenceResult.from_document, "bench": BenchResult.from_document,
    "cost": CostResult.from_document, "probes": ProbesResult.from_document, "drift": DriftResult.from_document,
}
"""Stage name -> reader of its saved document, for every stage the verdict reads."""


def read_result(stage: str, doc: Mapping[str, Any]) -> Any:
    """A saved stage document read back into its typed result; None for a stage the verdict does not read
    (inventory, hardware, evaluation: their saved document is kept as it is)."""
    reader = READERS.get(stage)
    return reader(doc) if reader is not None else None
