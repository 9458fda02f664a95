"""Typed stage results: the verdict decides from frozen dataclasses built in code (no dicts), a stage's JSON is
written from its result only when the vet document is written, and a report of a saved ``vet.json`` renders the
saved verdict and judgement words as they were saved, never judging again.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from assay.cli.main import main
from assay.deploy.licences import Violation
from assay.evaluate.compare import MetricComparison
from assay.evaluate.stats import judge_change
from assay.policy import default_policy, parse_policy
from assay.provenance.lineage import LineageReport, Relation
from assay.report import get_renderer
from assay.report.base import comparison_rows
from assay.report.markdown import plain
from assay.scan import scan_document
from assay.scan.findings import FileResult, Finding, ScanReport, ScanVerdict
from assay.schemas import validate
from assay.severity import Severity
from assay.verdict import (BaseClaim, ComparisonResult, FalseClaim, Level, LicenceResult, LineageResult, Outcome,
                           ScanResult, StageOutcome, Stages, decide)
from assay.vet import STAGES, vet_document
from tests.report.builders import make_result

CLEAN_FILE = FileResult("model.safetensors", "safetensors", "clean")


def lineage_report(relation: Relation) -> LineageReport:
    """The lineage report of a fine-tune of ``org/base`` whose card names that base."""
    claim = {"base_is_claimed": True, "base_model": "org/base", "base_model_relation": "finetune",
             "consistent": True, "reason": "the weights descend from org/base", "notes": [], "false_claims": []}
    return LineageReport(relation=relation, claim=claim,
                         layers=(), tensors=(), candidate="cand", base="base", summary=f"{relation.value} of base",
                         compared=10, identical=2, changed=8, unrelated=0, rel_change=0.01, cosine=0.999)


def mc(metric: str, base: float, cand: float, ci: tuple[float, float], p: float, *, alpha: float = 0.05,
       higher_is_better: bool = True, n: int = 200) -> MetricComparison:
    """A comparison entry judged as the comparison judges it (:func:`judge_change` at ``alpha``)."""
    return MetricComparison(metric=metric, base=base, candidate=cand, delta=cand - base, ci=ci, p=p, p_holm=p,
                            test="mcnemar-exact", mde=0.05, n=n, higher_is_better=higher_is_better,
                            change=judge_change(ci, p, higher_is_better=higher_is_better, alpha=alpha),
                            interval="tango-score", alpha=alpha)


def typed_stages(**override: StageOutcome) -> dict[str, StageOutcome]:
    """Every stage the default policy reads, each a typed result built in code."""
    report = ScanReport(verdict=ScanVerdict.SAFE, findings=(), files=(CLEAN_FILE,), fail_on=Severity.MEDIUM,
                        model="cand")
    stages = {
        "scan": StageOutcome.ran("scan", ScanResult.of(report), seconds=0.1),
        "base_scan": StageOutcome.ran("base_scan", ScanResult.of(report)),
        "signature": StageOutcome.not_applicable("signature", "no model.sig"),
        "lineage": StageOutcome.ran("lineage", LineageResult.of(lineage_report(Relation.FINETUNE))),
        "comparison": StageOutcome.ran("comparison", ComparisonResult(
            {"builtin:knowledge": {"acc": mc("acc", 0.50, 0.51, (-0.02, 0.04), 0.4)}})),
        "licence": StageOutcome.ran("licence", LicenceResult("apache-2.0", ())),
    }
    stages.update(override)
    return stages


def reasons_of(stages: Stages, policy_data: dict[str, object] | None = None) -> list[tuple[str, str, str]]:
    policy = parse_policy(policy_data) if policy_data else default_policy()
    return [(r.rule, r.level.value, r.evidence) for r in decide(stages, policy).reasons]


def test_typed_results_of_a_clean_model_pass() -> None:
    v = decide(typed_stages(), default_policy())
    assert v.outcome is Outcome.PASS and v.reasons == ()


@pytest.mark.parametrize("fail_on", ["critical", "high", "medium", "low", "info"])
def test_scan_rule_reads_the_typed_findings(fail_on: str) -> None:
    findings = tuple(Finding(f"R{s.value}", s, "pytorch_model.bin", "data.pkl@12", "calls posix.system")
                     for s in (Severity.LOW, Severity.CRITICAL, Severity.MEDIUM))
    serious = [i for i, f in enumerate(findings) if f.severity >= Severity(fail_on)]
    verdict = ScanVerdict.UNSAFE if serious else ScanVerdict.SAFE
    report = ScanReport(verdict=verdict, findings=findings, files=(CLEAN_FILE,), fail_on=Severity(fail_on))
    got = reasons_of(typed_stages(scan=StageOutcome.ran("scan", ScanResult.of(report))),
                     {"scan": {"fail_on": fail_on}})
    # most severe first, each pointing at its finding in the document
    expected = sorted(serious, key=lambda i: findings[i].severity, reverse=True)
    assert got == [("scan.safe", "fail", f"scan.findings[{i}]") for i in expected]


def test_a_stage_document_is_written_from_its_result_when_asked() -> None:
    report = ScanReport(verdict=ScanVerdict.SAFE, findings=(), files=(CLEAN_FILE,), fail_on=Severity.MEDIUM,
                        model="cand")
    outcome = StageOutcome.ran("scan", ScanResult.of(report))
    assert outcome.document == scan_document(report)
    validate(dict(outcome.document or {}))
    # a saved document is read into the same typed fields and written back unchanged
    saved = json.loads(json.dumps(scan_document(report)))
    back = StageOutcome.read("scan", saved)
    assert back.document is saved
    assert isinstance(back.result, ScanResult) and back.result.verdict == "safe" and back.result.files == (
        CLEAN_FILE,)


def test_a_result_built_without_its_report_refuses_to_write_a_document() -> None:
    """The verdict can decide from the typed fields alone; an incomplete document is never written from them."""
    partial = StageOutcome.ran("lineage", LineageResult("unrelated"))
    assert [r.rule for r in decide({**typed_stages(), "lineage": partial}, default_policy()).reasons] == [
        "lineage.descends"]
    with pytest.raises(ValueError, match="LineageResult built without its LineageReport"):
        _ = partial.document


def test_lineage_rules_read_relation_and_false_claims() -> None:
    unrelated = LineageResult("unrelated", BaseClaim("org/famous", False, (
        FalseClaim("base_model", "the weights share no tensor with org/famous"),)))
    got = reasons_of(typed_stages(lineage=StageOutcome.ran("lineage", unrelated)))
    assert got == [("lineage.descends", "fail", "lineage.relation"),
                   ("lineage.descends", "fail", "lineage.claim.false_claims[0]")]
    identical = LineageResult("identical", BaseClaim("org/base", True, ()))
    assert reasons_of(typed_stages(lineage=StageOutcome.ran("lineage", identical))) == [
        ("lineage.not_identical", "fail", "lineage.relation")]


def test_regression_is_the_stored_judgement_beyond_the_margin() -> None:
    drop = mc("acc", 0.61, 0.35, (-0.30, -0.22), 1e-6)
    assert drop.change == "worse"
    got = reasons_of(typed_stages(comparison=StageOutcome.ran("comparison", ComparisonResult(
        {"domain": {"acc": drop}}))))
    assert got == [("evaluation.no_regression", "fail", "comparison.domain.acc")]
    # lower is better: a rise of bits per byte is the worse side
    bpb = mc("bits_per_byte", 1.10, 1.90, (0.70, 0.90), 1e-4, higher_is_better=False)
    got = reasons_of(typed_stages(comparison=StageOutcome.ran("comparison", ComparisonResult(
        {"ref": {"bits_per_byte": bpb}}))))
    assert got == [("evaluation.no_regression", "fail", "comparison.ref.bits_per_byte")]


def test_the_verdict_uses_the_judgement_made_at_the_policy_alpha() -> None:
    # judged at alpha 0.01 (p = 0.03): no significant change, although at 0.05 it would be worse
    entry = mc("acc", 0.60, 0.50, (-0.15, -0.05), 0.03, alpha=0.01)
    assert entry.change == "no significant change"
    assert judge_change(entry.ci, entry.p_holm, higher_is_better=True, alpha=0.05) == "worse"
    stages = typed_stages(comparison=StageOutcome.ran("comparison", ComparisonResult({"domain": {"acc": entry}})))
    assert reasons_of(stages, {"evaluation": {"alpha": 0.01}}) == []
    # the same entry under a policy at 0.05 is judged at that level (the one rule, applied once, in the verdict)
    assert reasons_of(stages, {"evaluation": {"alpha": 0.05}}) == [
        ("evaluation.no_regression", "fail", "comparison.domain.acc")]


def test_licence_rule_reads_typed_violations() -> None:
    lic = LicenceResult("cc-by-nc-4.0", (Violation("LICENCE-DENIED", "fail", "cc-by-nc-4.0",
                                                   "licence cc-by-nc-4.0 is denied by the policy", "licence.deny"),))
    v = decide(typed_stages(licence=StageOutcome.ran("licence", lic)), parse_policy({"licence": {"deny": ["nc"]}}))
    assert [(r.rule, r.level, r.evidence, r.message) for r in v.reasons] == [
        ("licence.allowed", Level.FAIL, "licence.violations[0]",
         "licence cc-by-nc-4.0 is denied by the policy (policy key licence.deny)")]


def test_a_nan_interval_is_never_a_regression() -> None:
    unknown = MetricComparison(metric="acc", base=0.6, candidate=0.3, delta=-0.3, ci=(math.nan, math.nan),
                               p=math.nan, p_holm=math.nan, test="none", mde=math.nan, n=0, higher_is_better=True,
                               change="no significant change")
    assert reasons_of(typed_stages(comparison=StageOutcome.ran("comparison", ComparisonResult(
        {"domain": {"acc": unknown}})))) == []


# --- a report of a saved vet.json renders the saved words ---------------------------------------------------


def _saved(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    """A vet result judged at alpha 0.01, saved as vet.json: one entry is ``no significant change`` at that level
    (it would be ``worse`` at 0.05), one regressed, one better."""
    policy = parse_policy({"evaluation": {"alpha": 0.01}})
    cmp = {"builtin:knowledge": {"acc": mc("acc", 0.60, 0.50, (-0.15, -0.05), 0.03, alpha=0.01)},
           "domain": {"acc": mc("acc", 0.30, 0.70, (0.30, 0.50), 1e-5, alpha=0.01)},
           "builtin:arithmetic": {"acc": mc("acc", 0.61, 0.35, (-0.30, -0.22), 1e-6, alpha=0.01)}}
    stages: dict[str, StageOutcome] = {n: StageOutcome.not_applicable(n, "not in this test") for n in STAGES}
    stages["inventory"] = StageOutcome.error("inventory", "not read in this test", seconds=0.1)
    stages.update(typed_stages(comparison=StageOutcome.ran("comparison", ComparisonResult(cmp))))
    doc = vet_document(make_result(stages, policy=policy, tmp=tmp_path))
    validate(doc)  # every stage document written from its typed result matches its published schema
    path = tmp_path / "vet.json"
    path.write_text(get_renderer("json").render(doc))
    return path, doc


def test_a_saved_result_reports_its_saved_judgements(tmp_path: Path) -> None:
    path, doc = _saved(tmp_path)
    assert doc["verdict"] == "FAIL"
    saved = json.loads(path.read_text())
    assert {t: e["acc"]["change"] for t, e in saved["comparison"].items()} == {
        "builtin:knowledge": "no significant change", "domain": "better", "builtin:arithmetic": "worse"}
    rows = {r["task"]: r["status"] for r in comparison_rows(saved)}
    assert rows == {"builtin:knowledge": "no significant change", "domain": "better",
                    "builtin:arithmetic": "regressed"}
    out = tmp_path / "report.md"
    assert main(["report", str(path), "--format", "md", "--out", str(out)]) == 1
    md = out.read_text()
    assert "**FAIL**" in md
    lines = {t: next(x for x in md.splitlines() if f"`{t}`" in x) for t in rows}
    assert lines["builtin:knowledge"].endswith("| no significant change |")
    assert lines["domain"].endswith("| better |")
    assert "regressed" in lines["builtin:arithmetic"]
    for reason in saved["reasons"]:
        assert plain(reason["message"]) in md  # the saved reasons, word for word (Markdown-escaped)


def test_a_report_renders_an_edited_judgement_as_saved(tmp_path: Path) -> None:
    """The report does not judge the numbers: a saved judgement is what it shows (whoever wrote it)."""
    path, _ = _saved(tmp_path)
    saved = json.loads(path.read_text())
    saved["comparison"]["domain"]["acc"]["change"] = "no significant change"
    path.write_text(json.dumps(saved))
    out = tmp_path / "report.txt"
    main(["report", str(path), "--format", "terminal", "--out", str(out)])
    line = next(x for x in out.read_text().splitlines() if "domain" in x)
    assert "no significant change" in line and "better" not in line
