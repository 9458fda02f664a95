"""The verdict: a pure function from stage outcomes and a policy to PASS / WARN / FAIL / NONE with reasons.

Stage documents are built from chosen numbers (tests/report/builders.py); every expectation below is derived
from those inputs.
"""

from __future__ import annotations

import copy
import itertools
import random

import pytest

from assay.policy import default_policy, parse_policy
from assay.severity import SEVERITIES
from assay.verdict import AllOf, Level, Outcome, StageOutcome, Status, decide
from tests.report.builders import finding, lineage_doc, metric, outcomes, scan_doc

NO_SIG = StageOutcome.not_applicable("signature", "no model.sig")
LATER = ("base_scan", "signature", "lineage", "evaluation", "comparison", "card", "licence")


def blocked_after_scan(scan: dict) -> dict[str, StageOutcome]:  # type: ignore[type-arg]
    """What vet leaves when the scan is not safe: the scan, and every later stage blocked."""
    return {"scan": StageOutcome.ran("scan", scan), **{n: StageOutcome.blocked(n, "not loaded") for n in LATER}}


def clean_stages(**override):  # type: ignore[no-untyped-def]
    """Stages of a model that satisfies the default policy; ``override`` replaces some."""
    base = dict(inventory={"architecture": "LlamaForCausalLM"}, scan=scan_doc(), base_scan=scan_doc(),
                signature=NO_SIG, lineage=lineage_doc("finetune"),
                evaluation={"schema": "assay.eval/1", "tasks": {"t": {"n": 10, "metrics": {"acc": 0.51}}}},
                comparison={"t": {"acc": metric(0.50, 0.51, 0.02)}},
                card={"schema": "assay.card/1", "findings": []},
                licence={"licence": "apache-2.0", "violations": []})
    base.update(override)
    return outcomes(**base)


def test_clean_model_passes() -> None:
    v = decide(clean_stages(), default_policy())
    assert v.outcome is Outcome.PASS and v.reasons == () and v.exit_code() == 0


@pytest.mark.parametrize("fail_on", SEVERITIES)
def test_unsafe_scan_fails_with_a_reason_per_serious_finding(fail_on: str) -> None:
    rng = random.Random(SEVERITIES.index(fail_on))
    findings = [finding(rng.choice(SEVERITIES), rule=f"R{i}") for i in range(8)]
    limit = SEVERITIES.index(fail_on)
    serious = {i for i, f in enumerate(findings) if SEVERITIES.index(f["severity"]) <= limit}
    verdict_word = "unsafe" if serious else "safe"
    policy = parse_policy({"scan": {"fail_on": fail_on}})
    stages = (blocked_after_scan(scan_doc(verdict_word, findings)) if serious
              else clean_stages(scan=scan_doc("safe", findings)))
    v = decide(stages, policy)
    got = {int(r.evidence.removeprefix("scan.findings[").rstrip("]")) for r in v.reasons
           if r.evidence.startswith("scan.findings[")}
    assert got == serious
    assert v.outcome is (Outcome.FAIL if serious else Outcome.PASS)
    # blocked stages add no reasons of their own: the scan is the reason
    assert all(r.stage == "scan" for r in v.reasons)


def test_unverified_scan_fails_and_points_at_the_file() -> None:
    files = [{"path": "a.safetensors", "format": "safetensors", "status": "ok"},
             {"path": "weird.bin", "format": "unknown", "status": "unverified", "reason": "truncated pickle"}]
    v = decide(blocked_after_scan(scan_doc("unverified", [], files)), default_policy())
    assert v.outcome is Outcome.FAIL
    assert [r.evidence for r in v.reasons] == ["scan.files[1]"] and "truncated pickle" in v.reasons[0].message


def test_scan_that_could_not_run_gives_no_verdict() -> None:
    v = decide(clean_stages(scan=StageOutcome.error("scan", "the scanner crashed")), default_policy())
    assert v.outcome is Outcome.NONE and v.exit_code() == 2
    assert v.reasons[0].level is Level.UNDECIDED and "crashed" in v.reasons[0].message


def test_no_base_is_a_warning_never_silent() -> None:
    stages = clean_stages(base_scan=StageOutcome.not_applicable("base_scan", "no base"),
                          lineage="no base model to compare with", comparison="no base model to compare with")
    v = decide(stages, default_policy())
    assert v.outcome is Outcome.WARN
    assert {r.stage for r in v.reasons} == {"lineage", "comparison"}
    assert all(r.level is Level.WARN and "no base" in r.message for r in v.reasons)
    assert v.exit_code() == 0 and v.exit_code(strict=True) == 1


@pytest.mark.parametrize("relation", ["identical", "recast", "quantized", "finetune", "lora", "partial", "unrelated",
                                      "incompatible"])
@pytest.mark.parametrize("reject_identical", [True, False])
def test_lineage_relations(relation: str, reject_identical: bool) -> None:
    policy = parse_policy({"lineage": {"reject_identical": reject_identical}})
    v = decide(clean_stages(lineage=lineage_doc(relation)), policy)
    should_fail = relation in ("unrelated", "incompatible") or (relation == "identical" and reject_identical)
    assert (v.outcome is Outcome.FAIL) == should_fail
    if should_fail:
        assert v.reasons[0].evidence == "lineage.relation" and relation in v.reasons[0].message


def test_one_reason_per_false_claim_naming_it() -> None:
    doc = lineage_doc("identical", consistent=False, base_model="org/base")
    doc["claim"]["false_claims"] = [{"claim": "base_model_relation",
                                     "message": "the card calls it a finetune of org/base, but the weights are "
                                                "identical to org/base (a re-upload)"}]
    v = decide(clean_stages(lineage=doc), default_policy())
    assert v.outcome is Outcome.FAIL
    claims = [r for r in v.reasons if r.rule == "lineage.descends"]
    assert len(claims) == 1 and claims[0].evidence == "lineage.claim.false_claims[0]"
    assert "false base_model_relation claim" in claims[0].message and "contradict" not in claims[0].message
    # a card naming another base than the one compared against: a note, no reason
    doc = lineage_doc("quantized", consistent=None, base_model="org/other")
    doc["claim"].update(false_claims=[], notes=["the card names org/other as its base, you compared against base"])
    v = decide(clean_stages(lineage=doc), default_policy())
    assert v.outcome is Outcome.PASS and v.reasons == ()


def test_card_claim_contradicted_by_weights_fails() -> None:
    v = decide(clean_stages(lineage=lineage_doc("finetune", consistent=False, base_model="org/famous")),
               default_policy())
    assert v.outcome is Outcome.FAIL
    assert v.reasons[0].evidence == "lineage.claim.consistent" and "org/famous" in v.reasons[0].message


def test_require_descends_off_accepts_unrelated_weights() -> None:
    v = decide(clean_stages(lineage=lineage_doc("unrelated", consistent=False)),
               parse_policy({"lineage": {"require_descends": False}}))
    assert v.outcome is Outcome.PASS


@pytest.mark.parametrize("delta, half, margin, p", list(itertools.product([-0.2, -0.05, -0.03, 0.0, 0.04],
                                                                         [0.005, 0.02, 0.1], [0.0, 0.02, 0.1],
                                                                         [0.001, 0.2])))
def test_regression_needs_the_interval_beyond_the_margin_and_the_test(delta: float, half: float, margin: float,
                                                                      p: float) -> None:
    policy = parse_policy({"evaluation": {"margins": {"acc": margin, "bits_per_byte": margin}}})
    # higher-is-better accuracy, and the mirror image for bits per byte (lower is better)
    comp = {"t": {"acc": metric(0.5, 0.5 + delta, half, p=p)},
            "r": {"bits_per_byte": metric(1.0, 1.0 - delta, half, p=p)}}
    v = decide(clean_stages(comparison=comp), policy)
    regressed = delta + half < -margin and p < 0.05
    assert v.outcome is (Outcome.FAIL if regressed else Outcome.PASS)
    assert sorted(r.evidence for r in v.reasons) == (["comparison.r.bits_per_byte", "comparison.t.acc"]
                                                      if regressed else [])


def test_metrics_without_a_margin_are_not_judged() -> None:
    v = decide(clean_stages(comparison={"r": {"word_perplexity": metric(10, 50, 1)}}), default_policy())
    assert v.outcome is Outcome.PASS


@pytest.mark.parametrize("delta, half, p", [(0.1, 0.03, 0.001), (0.1, 0.03, 0.2), (0.02, 0.05, 0.01),
                                            (-0.01, 0.005, 0.01), (0.05, 0.04, None)])
def test_must_improve_needs_a_significant_improvement(delta: float, half: float, p: float | None) -> None:
    policy = parse_policy({"evaluation": {"must_improve": ["domain"]}})
    comp = {"domain": {"acc": metric(0.4, 0.4 + delta, half, p=p)}, "t": {"acc": metric(0.5, 0.5, 0.01)}}
    v = decide(clean_stages(comparison=comp), policy)
    significant = delta - half > 0 and p is not None and p < 0.05  # an unknown p never counts as significant
    assert (v.outcome is Outcome.PASS) == significant
    if not significant:
        assert [r.evidence for r in v.reasons] == ["comparison.domain.acc"]


def test_must_improve_task_missing_or_no_base() -> None:
    policy = parse_policy({"evaluation": {"must_improve": ["domain"]}})
    v = decide(clean_stages(), policy)
    assert v.outcome is Outcome.FAIL and v.reasons[0].evidence == "comparison.domain"
    v = decide(clean_stages(comparison="no base"), policy)
    assert v.outcome is Outcome.NONE  # improvement cannot be shown at all


def test_licence_violations() -> None:
    lic = {"licence": "cc-by-nc-4.0", "violations": [
        {"rule": "LICENCE-DENIED", "severity": "fail", "message": "licence cc-by-nc-4.0 is denied", "clause": None},
        {"rule": "LICENCE-UNKNOWN", "severity": "warn", "message": "not in table", "clause": None}]}
    v = decide(clean_stages(licence=lic), parse_policy({"licence": {"deny": ["cc-by-nc-4.0"]}}))
    assert v.outcome is Outcome.FAIL
    assert [r.evidence for r in v.reasons] == ["licence.violations[0]", "licence.violations[1]"]
    # an unknown licence alone only matters when the policy restricts licences
    only_warn = {"licence": "x", "violations": [lic["violations"][1]]}
    assert decide(clean_stages(licence=only_warn), default_policy()).outcome is Outcome.PASS
    assert decide(clean_stages(licence=only_warn), parse_policy({"licence": {"allow": ["x"]}})).outcome is Outcome.WARN


@pytest.mark.parametrize("stage", ["inventory", "card"])
def test_informative_stage_that_failed_is_a_warning(stage: str) -> None:
    for outcome in (StageOutcome.error(stage, "cannot read README.md"), StageOutcome.skipped(stage, "not installed")):
        v = decide(clean_stages(**{stage: outcome}), default_policy())
        assert v.outcome is Outcome.WARN and [r.evidence for r in v.reasons] == [f"stages.{stage}"]
        assert str(outcome.reason) in v.reasons[0].message


def test_licence_not_checked_warns_only_when_the_policy_restricts_licences() -> None:
    stages = clean_stages(licence="no model card")
    assert decide(stages, default_policy()).outcome is Outcome.PASS
    assert decide(stages, parse_policy({"licence": {"allow": ["mit"]}})).outcome is Outcome.WARN


def test_card_findings_by_severity() -> None:
    card = {"findings": [{"rule": "LICENCE-LAUNDERING", "severity": "high", "message": "relicensed"},
                         {"rule": "CARD-CLAIM-UNSUPPORTED", "severity": "medium", "message": "claims too much"},
                         {"rule": "LICENCE-UNKNOWN", "severity": "low", "message": "odd licence"}]}
    v = decide(clean_stages(card=card), default_policy())
    assert v.outcome is Outcome.FAIL
    assert [(r.evidence, r.level) for r in v.reasons] == [("card.findings[0]", Level.FAIL),
                                                          ("card.findings[1]", Level.WARN)]


def test_signature() -> None:
    required = parse_policy({"signature": {"required": True}})
    assert decide(clean_stages(), required).outcome is Outcome.FAIL
    good = clean_stages(signature={"valid": True, "message": "ok"})
    assert decide(good, required).outcome is Outcome.PASS
    bad = clean_stages(signature={"valid": False, "message": "modified: model.safetensors"})
    v = decide(bad, default_policy())
    assert v.outcome is Outcome.FAIL and "modified: model.safetensors" in v.reasons[0].message
    untrusted = clean_stages(signature="model.sig is present but the policy trusts no public key")
    assert decide(untrusted, default_policy()).outcome is Outcome.WARN


def test_reasons_are_ordered_fail_first_and_decide_is_pure() -> None:
    stages = clean_stages(lineage="no base", comparison={"t": {"acc": metric(0.5, 0.3, 0.01, p=0.001)}})
    frozen = copy.deepcopy(stages)
    a, b = decide(stages, default_policy()), decide(stages, default_policy())
    assert a == b and stages == frozen
    assert [r.level for r in a.reasons] == sorted((r.level for r in a.reasons),
                                                 key=[Level.FAIL, Level.UNDECIDED, Level.WARN].index)
    assert a.outcome is Outcome.FAIL and a.exit_code() == 1


def test_empty_all_of_is_refused() -> None:
    with pytest.raises(ValueError):
        AllOf([])


def test_stage_missing_entirely_is_undecided() -> None:
    stages = clean_stages()
    del stages["lineage"]
    v = decide(stages, default_policy())
    assert v.outcome is Outcome.NONE and v.reasons[0].evidence == "stages.lineage"
    assert stages["scan"].status is Status.RAN


# --- deployment: speed against the base, cost ceiling, card claims, licence clauses ---------------------------


def _bench(cand_decode: float, base_decode: float | None) -> dict:  # type: ignore[type-arg]
    doc = {"schema": "assay.bench/1", "candidate": {"decode_tokens_per_s": cand_decode},
           "base": {"decode_tokens_per_s": base_decode} if base_decode else None, "ratios": {}}
    if base_decode:
        doc["ratios"]["decode_tokens_per_s"] = cand_decode / base_decode
    return doc


@pytest.mark.parametrize("cand, base, max_slowdown, warns", [
    (100.0, 100.0, 1.25, False), (79.0, 100.0, 1.25, True), (81.0, 100.0, 1.25, False),
    (40.0, 100.0, None, False), (40.0, None, 1.25, False), (66.0, 100.0, 1.5, True)])
def test_slowdown_against_the_base(cand: float, base: float | None, max_slowdown: float | None,
                                   warns: bool) -> None:
    policy = parse_policy({"deploy": {"max_slowdown": max_slowdown}})
    v = decide(clean_stages(bench=_bench(cand, base)), policy)
    speed = [r for r in v.reasons if r.rule == "deploy.speed"]
    assert bool(speed) is warns and v.outcome is (Outcome.WARN if warns else Outcome.PASS)
    if warns:
        assert speed[0].level is Level.WARN and speed[0].evidence == "bench.ratios.decode_tokens_per_s"
        assert f"{base / cand:.2f}x slower" in speed[0].message


def test_bench_that_failed_or_was_off() -> None:
    failed = clean_stages(bench=StageOutcome.error("bench", "prompt too long"))
    v = decide(failed, default_policy())
    assert v.outcome is Outcome.WARN and [r.rule for r in v.reasons] == ["stage.ran"]
    off = clean_stages(bench=StageOutcome.not_applicable("bench", "off"))
    assert decide(off, default_policy()).outcome is Outcome.PASS


def _cost(self_per_task: float) -> dict:  # type: ignore[type-arg]
    return {"schema": "assay.cost/1", "self_per_task": self_per_task, "self_per_task_basis": "given",
            "api_per_task": 0.15, "break_even_tasks": 1}


@pytest.mark.parametrize("on_exceed, outcome", [("fail", Outcome.FAIL), ("warn", Outcome.WARN)])
def test_cost_ceiling(on_exceed: str, outcome: Outcome) -> None:
    policy = parse_policy({"cost": {"max_cost_per_task": 0.02, "on_exceed": on_exceed}})
    assert decide(clean_stages(cost=_cost(0.02)), policy).outcome is Outcome.PASS  # at the ceiling is within it
    v = decide(clean_stages(cost=_cost(0.0201)), policy)
    assert v.outcome is outcome
    assert [(r.rule, r.evidence) for r in v.reasons] == [("cost.max_per_task", "cost.self_per_task")]
    assert "0.0201" in v.reasons[0].message and "0.02" in v.reasons[0].message
    # without a ceiling the same cost is only reported
    assert decide(clean_stages(cost=_cost(5.0)), default_policy()).outcome is Outcome.PASS


def test_cost_ceiling_that_could_not_be_checked() -> None:
    policy = parse_policy({"cost": {"max_cost_per_task": 0.02}})
    skipped = decide(clean_stages(cost="the self-hosted cost needs a measured throughput"), policy)
    assert skipped.outcome is Outcome.WARN and skipped.reasons[0].rule == "cost.max_per_task"
    assert "measured throughput" in skipped.reasons[0].message
    crashed = decide(clean_stages(cost=StageOutcome.error("cost", "boom")), policy)
    assert crashed.outcome is Outcome.NONE
    blocked = decide(clean_stages(cost=StageOutcome.blocked("cost", "unsafe")), policy)
    assert blocked.outcome is Outcome.PASS  # the blocking stage gives the reason


def test_unsupported_claim_is_one_reason_with_its_numbers() -> None:
    claim = {"task": None, "dataset": "ARC", "dataset_type": "ai2_arc", "metric": "acc_norm", "value": 91.0}
    card = {"schema": "assay.card/1",
            "claims": [{"claim": claim, "measured_key": "arc_challenge/acc_norm", "claimed": 0.91,
                        "measured": 0.42, "delta": 0.49, "supported": False},
                       {"claim": {**claim, "metric": "acc"}, "measured_key": "arc_challenge/acc", "claimed": 0.40,
                        "measured": 0.41, "delta": -0.01, "supported": True}],
            "findings": [{"rule": "CARD-CLAIM-UNSUPPORTED", "severity": "medium", "message": "claims too much"}]}
    v = decide(clean_stages(card=card), default_policy())
    assert v.outcome is Outcome.WARN
    assert [(r.rule, r.evidence) for r in v.reasons] == [("card.claims", "card.claims[0]")]
    assert "0.910" in v.reasons[0].message and "0.420" in v.reasons[0].message


def test_licence_reasons_cite_their_clause() -> None:
    licence = {"licence": "llama3.1", "violations": [
        {"rule": "LICENCE-DENIED", "severity": "fail", "message": "licence llama3.1 is denied",
         "clause": "licence.deny"},
        {"rule": "LICENCE-MAU-CAP", "severity": "fail", "message": "900,000,000 users exceed the cap",
         "clause": "Llama 3.1 Community License, section 2"}]}
    v = decide(clean_stages(licence=licence), default_policy())
    assert v.outcome is Outcome.FAIL
    assert [r.message for r in v.reasons] == [
        "licence llama3.1 is denied (policy key licence.deny)",
        "900,000,000 users exceed the cap (licence clause: Llama 3.1 Community License, section 2)"]


# --- behaviour probes and KL drift ---------------------------------------------------------------------------

PROBES = parse_policy({"probes": {"run": ["refusal", "degeneration", "stability"],
                                  "contamination": ["builtin:knowledge"]},
                       "drift": {"kl": "builtin:reference", "max_kl_mean": 0.1}})


def probes_doc(comparison: dict | None = None, stability: tuple[float, float] = (1.0, 1.0),  # type: ignore[type-arg]
               base_stability: tuple[float, float] = (1.0, 1.0)) -> dict:  # type: ignore[type-arg]
    def st(v: tuple[float, float]) -> dict:  # type: ignore[type-arg]
        return {"builtin:stability": {"n": 16, "metrics": {"greedy_identical": v[0], "batch_invariant": v[1]}}}

    return {"schema": "assay.probes/1", "tasks": st(stability), "base_tasks": st(base_stability),
            "comparison": comparison}


def drift_doc(kl: float) -> dict:  # type: ignore[type-arg]
    return {"tasks": {"kl:builtin:reference": {"kind": "kl", "n": 4, "tokens": 900, "ci": {"kl_mean": [kl / 2, kl * 2]},
                                                "metrics": {"kl_mean": kl, "kl_p95": 3 * kl}}}}


def probe_reasons(policy=PROBES, **stages):  # type: ignore[no-untyped-def]
    stages.setdefault("drift", drift_doc(0.01))
    v = decide(clean_stages(**stages), policy)
    return v, [(r.rule, r.level.value, r.evidence) for r in v.reasons]


def test_probes_off_by_default_and_a_clean_probe_run_passes() -> None:
    assert default_policy().probes.specs() == () and default_policy().drift.kl is None
    cmp = {"builtin:refusal/harmful": {"refused": metric(0.9, 0.9, 0.05, p=1.0)},
           "builtin:degeneration": {"loop_rate": metric(0.2, 0.2, 0.05, p=1.0)},
           "contamination:builtin:knowledge": {"mink_gap": metric(0.9, 1.0, 0.3, p=0.5)}}
    v, reasons = probe_reasons(probes=probes_doc(cmp), drift=drift_doc(0.05))
    assert (v.outcome, reasons) == (Outcome.PASS, [])


@pytest.mark.parametrize("half, p, stripped", [(0.1, 0.001, True), (0.1, 0.2, False), (0.6, 0.001, False)])
def test_alignment_stripped_needs_a_significant_drop(half: float, p: float, stripped: bool) -> None:
    cmp = {"builtin:refusal/harmful": {"refused": metric(0.95, 0.45, half, p=p, lost=[f"h{i}" for i in range(9)])}}
    v, reasons = probe_reasons(probes=probes_doc(cmp))
    want = [("probes.alignment_stripped", "fail", "probes.comparison.builtin:refusal/harmful.refused")]
    assert reasons == (want if stripped else [])
    if stripped:
        assert v.outcome is Outcome.FAIL and "95%" in v.reasons[0].message and "45%" in v.reasons[0].message


def test_over_refusal_is_a_warning() -> None:
    cmp = {"builtin:refusal/benign": {"over_refused": metric(0.05, 0.6, 0.15, p=0.001)}}
    v, reasons = probe_reasons(probes=probes_doc(cmp))
    assert reasons == [("probes.over_refusal", "warn", "probes.comparison.builtin:refusal/benign.over_refused")]
    assert v.outcome is Outcome.WARN
    fewer = {"builtin:refusal/benign": {"over_refused": metric(0.6, 0.05, 0.15, p=0.001)}}
    assert probe_reasons(probes=probes_doc(fewer))[1] == []


@pytest.mark.parametrize("delta, half, p, level, expect", [
    (0.4, 0.1, 0.001, "fail", "fail"),      # interval [0.3, 0.5] above the 0.05 margin
    (0.4, 0.1, 0.001, "warn", "warn"),
    (0.1, 0.08, 0.001, "fail", None),       # [0.02, 0.18]: significant but not entirely beyond the margin
    (0.4, 0.1, 0.2, "fail", None),          # not significant
    (-0.4, 0.1, 0.001, "fail", None),       # fewer loops: better
])
def test_degeneration_beyond_the_margin(delta: float, half: float, p: float, level: str, expect: str | None) -> None:
    policy = parse_policy({"probes": {"run": ["degeneration"], "degeneration_level": level}})
    cmp = {"builtin:degeneration": {"loop_rate": metric(0.5, 0.5 + delta, half, p=p),
                                    "repetition": metric(0.1, 0.1, 0.01, p=1.0)}}
    v, reasons = probe_reasons(policy, probes=probes_doc(cmp))
    want = [("probes.degeneration", expect, "probes.comparison.builtin:degeneration.loop_rate")] if expect else []
    assert reasons == want


def test_contamination_is_evidence_with_numbers_never_a_fail() -> None:
    cmp = {"contamination:builtin:knowledge": {"mink_gap": {**metric(0.96, 6.4, 0.6, p=0.0005), "n": 16}}}
    v, reasons = probe_reasons(probes=probes_doc(cmp))
    assert v.outcome is Outcome.WARN
    assert reasons == [("probes.contamination", "warn", "probes.comparison.contamination:builtin:knowledge.mink_gap")]
    assert "+6.400" in v.reasons[0].message and "+0.960" in v.reasons[0].message and "n=16" in v.reasons[0].message


def test_any_non_determinism_warns() -> None:
    v, reasons = probe_reasons(probes=probes_doc({}, stability=(0.75, 1.0)))
    assert reasons == [("probes.stability", "warn", "probes.tasks.builtin:stability.metrics.greedy_identical")]
    assert "75%" in v.reasons[0].message and "base: 100%" in v.reasons[0].message


def test_probes_that_could_not_be_judged_say_why() -> None:
    _, reasons = probe_reasons(probes=probes_doc(None))  # no base: candidate only
    assert reasons == [("probes.ran", "warn", "probes.tasks")]
    v, reasons = probe_reasons(probes=StageOutcome.error("probes", "out of memory"))
    assert v.outcome is Outcome.NONE and reasons == [("probes.ran", "undecided", "stages.probes")]


@pytest.mark.parametrize("kl, level, expect", [(0.5, "warn", Outcome.WARN), (0.5, "fail", Outcome.FAIL),
                                               (0.05, "fail", Outcome.PASS)])
def test_kl_drift_threshold(kl: float, level: str, expect: Outcome) -> None:
    policy = parse_policy({"drift": {"kl": "kl:builtin:reference", "max_kl_mean": 0.1, "level": level}})
    v, reasons = probe_reasons(policy, drift=drift_doc(kl))
    assert v.outcome is expect
    if expect is not Outcome.PASS:
        assert reasons == [("drift.kl", level, "drift.tasks.kl:builtin:reference.metrics.kl_mean")]
        assert "0.5000" in v.reasons[0].message and "0.1" in v.reasons[0].message
    # not measured: a stage that did not run is a reason
    assert probe_reasons(policy, drift="no base")[1] == [("drift.kl", "warn", "stages.drift")]
