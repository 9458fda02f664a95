"""``builtin:hallucination``: invented entities, passage-grounded and unanswerable questions, paired with the base."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from assay.errors import PolicyError
from assay.evaluate.backends.base import (Backend, BackendInfo, GenerationRequest, LoglikelihoodRequest,
                                          LoglikelihoodResult, RollingResult)
from assay.evaluate.compare import compare_results, eval_document
from assay.evaluate.loading import load_tasks
from assay.evaluate.probes.hallucination import (FICTIONAL_TASK, KNOWN_TASK, PASSAGE_TASK, UNANSWERABLE_TASK,
                                                 hallucination_findings, hallucination_tasks)
from assay.evaluate.runner import evaluate_model
from assay.policy import parse_policy
from assay.verdict import StageOutcome, rules_for

ABSTAIN = re.compile(r"no such|no (treaty|river|mountain|island)|do not know|don't know|does not say", re.I)


class Scripted(Backend):
    """A model whose preference is a rule: it abstains (or never does) and, when it answers, picks the answer the
    prompt states if ``grounded``."""

    def __init__(self, *, abstains: bool, grounded: bool = True, name: str = "scripted") -> None:
        self.abstains, self.grounded, self.name = abstains, grounded, name

    @property
    def info(self) -> BackendInfo:
        return BackendInfo(backend="test", model_id=self.name)

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], **_: object) -> list[LoglikelihoodResult]:
        out = []
        for r in requests:
            text = r.continuation.strip()
            score = -1.0
            if ABSTAIN.search(text):
                score = 0.0 if self.abstains else -5.0
            elif self.grounded and text in r.context:
                score = -0.5
            out.append(LoglikelihoodResult(logprob=score * len(text), is_greedy=False, n_tokens=1))
        return out

    def loglikelihood_rolling(self, texts: Sequence[str], **_: object) -> list[RollingResult]:
        raise NotImplementedError

    def generate(self, requests: Sequence[GenerationRequest], **_: object) -> list[str]:
        raise NotImplementedError


def test_the_items_are_what_they_claim() -> None:
    tasks = {t.name: t for t in load_tasks("builtin:hallucination")}
    assert set(tasks) == {FICTIONAL_TASK, KNOWN_TASK, PASSAGE_TASK, UNANSWERABLE_TASK}
    assert len(tasks[FICTIONAL_TASK].items) >= 200 and len(tasks[PASSAGE_TASK].items) >= 100
    assert sum(len(t.items) for t in tasks.values()) >= 400
    for task in tasks.values():
        assert len({it.id for it in task.items}) == len(task.items)
        for it in task.items:
            assert ABSTAIN.search(it.choices[-1])  # the abstention is always the last choice
            assert len(set(it.choices)) == len(it.choices)
    for it in tasks[FICTIONAL_TASK].items:
        assert it.gold == len(it.choices) - 1
    knowledge = " ".join(it.context for it in load_tasks("builtin:knowledge")[0].items)
    names = {re.search(r"(?:of|Mount|composer \w+|chemist \w+) ([A-Z][a-z]+)", it.context) for it in
             tasks[FICTIONAL_TASK].items}
    assert all(n is None or n.group(1) not in knowledge for n in names)
    for it in tasks[PASSAGE_TASK].items:
        passage = it.context.split("\nQuestion:")[0]
        answers = it.choices[:-1]
        assert answers[it.gold] in passage  # the right answer is stated...
        assert all(a not in passage for i, a in enumerate(answers) if i != it.gold)  # ...and only it
    for it in tasks[UNANSWERABLE_TASK].items:
        passage = it.context.split("\nQuestion:")[0]
        assert it.gold == len(it.choices) - 1 and all(a not in passage for a in it.choices[:-1])
    # generated with a fixed seed: the same items (and versions) every time
    again = {t.name: t for t in hallucination_tasks()}
    assert all(again[n].version == t.version and again[n].items == t.items for n, t in tasks.items())


def test_scoring_names_what_the_model_chose() -> None:
    tasks = hallucination_tasks()
    careful = evaluate_model(Scripted(abstains=True), tasks)
    assert careful[FICTIONAL_TASK].metrics["fabricated"] == 0.0
    assert careful[UNANSWERABLE_TASK].metrics["abstained"] == 1.0
    assert careful[KNOWN_TASK].metrics["over_abstained"] == 1.0  # the control catches abstaining from everything
    reckless = evaluate_model(Scripted(abstains=False), tasks)
    assert reckless[FICTIONAL_TASK].metrics["fabricated"] == 1.0
    assert reckless[UNANSWERABLE_TASK].metrics["invented"] == 1.0
    assert reckless[PASSAGE_TASK].metrics["supported"] == 1.0 and reckless[PASSAGE_TASK].metrics["invented"] == 0.0
    ungrounded = evaluate_model(Scripted(abstains=False, grounded=False), tasks)
    assert ungrounded[PASSAGE_TASK].metrics["invented"] > 0.5


def _probes_stage(base_results, cand_results) -> StageOutcome:  # type: ignore[no-untyped-def]
    cmp = compare_results(base_results, cand_results)
    doc = eval_document(model="c", results=cand_results, base="b", base_results=base_results, comparison=cmp)
    return StageOutcome.ran("probes", {"schema": "assay.probes/1", "tasks": doc["tasks"],
                                       "base_tasks": doc["base_tasks"], "comparison": doc["comparison"]})


def test_a_candidate_that_fabricates_more_than_its_base_is_flagged() -> None:
    tasks = hallucination_tasks()
    base = evaluate_model(Scripted(abstains=True, name="base"), tasks)
    cand = evaluate_model(Scripted(abstains=False, name="cand"), tasks)
    cmp = compare_results(base, cand)
    assert cmp[FICTIONAL_TASK]["fabricated"].change == "worse"
    assert cmp[KNOWN_TASK]["over_abstained"].change == "better"
    worse = {(f.task, f.metric) for f in hallucination_findings(cmp) if f.change == "worse"}
    assert worse == {(FICTIONAL_TASK, "fabricated"), (UNANSWERABLE_TASK, "abstained"),
                     (UNANSWERABLE_TASK, "invented")}
    stages = {"probes": _probes_stage(base, cand)}
    policy = parse_policy({"probes": {"run": ["hallucination"]}})
    reasons = [r for r in rules_for(policy).check(stages) if r.rule == "probes.hallucination"]
    assert len(reasons) == 3 and {r.level.value for r in reasons} == {"warn"}
    assert any("entities that do not exist" in r.message for r in reasons)
    assert all(r.evidence.startswith("probes.comparison.builtin:hallucination/") for r in reasons)
    strict = parse_policy({"probes": {"run": ["hallucination"], "hallucination_level": "fail"}})
    assert {r.level.value for r in rules_for(strict).check(stages) if r.rule == "probes.hallucination"} == {"fail"}
    # the other way round: less fabrication, but abstaining from everything costs passage answers and known facts
    back = {"probes": _probes_stage(cand, base)}
    flagged = {r.evidence.rsplit(".", 1)[1] for r in rules_for(policy).check(back) if r.rule == "probes.hallucination"}
    assert flagged == {"supported", "over_abstained"}
    # without hallucination in probes.run the rule is not part of the policy
    assert not [r for r in rules_for(parse_policy({"probes": {"run": ["stability"]}})).check(stages)
                if r.rule == "probes.hallucination"]


def test_on_tiny_factory_models_paired_against_the_base() -> None:
    from assay.evaluate.backends.hf import HFBackend
    from tests.factory.models import build_model, tiny_tokenizer

    tasks = hallucination_tasks()
    base = HFBackend.from_model(build_model(seed=0), tiny_tokenizer(), model_id="tiny-0", threads=1)
    same = evaluate_model(base, tasks, limit=24)
    again = evaluate_model(base, tasks, limit=24)
    cmp = compare_results(same, again)
    assert all(mc.change == "no significant change" and mc.delta == 0 for per in cmp.values() for mc in per.values())
    other = HFBackend.from_model(build_model(seed=3), tiny_tokenizer(), model_id="tiny-3", threads=1)
    cand = evaluate_model(other, tasks, limit=24)
    for name, result in cand.items():
        assert result.n == 24 and all(0.0 <= v <= 1.0 for v in result.metrics.values())
        items = {it.id: it for it in next(t for t in tasks if t.name == name).items}
        assert all(r.extracted["chosen"] == items[r.id].choices[r.prediction] for r in result.per_item)
    cmp = compare_results(same, cand)
    assert set(cmp) == {FICTIONAL_TASK, KNOWN_TASK, PASSAGE_TASK, UNANSWERABLE_TASK}
    assert cmp[FICTIONAL_TASK]["fabricated"].test == "mcnemar-exact"
    policy = parse_policy({"probes": {"run": ["hallucination"]}})
    reasons = rules_for(policy).check({"probes": _probes_stage(same, cand)})
    assert all(r.level.value == "warn" for r in reasons if r.rule == "probes.hallucination")  # WARN by default


def test_policy_probes_hallucination_and_truthfulqa() -> None:
    p = parse_policy({"probes": {"run": ["hallucination"], "truthfulqa": "data/truthfulqa"}})
    assert p.probes.hallucination_level == "warn"
    assert p.probes.specs() == ("builtin:hallucination", "truthfulqa_mc1:data/truthfulqa",
                                "truthfulqa_mc2:data/truthfulqa")
    with pytest.raises(PolicyError, match="hallucination_level"):
        parse_policy({"probes": {"run": ["hallucination"], "hallucination_level": "maybe"}})
    with pytest.raises(PolicyError, match="add hallucination to probes.run"):
        parse_policy({"probes": {"truthfulqa": "data/truthfulqa"}})


def test_truthfulqa_comparisons_count_as_hallucination_evidence() -> None:
    entry = {"base": 0.40, "candidate": 0.30, "delta": -0.10, "ci": [-0.15, -0.05], "p": 0.001, "p_holm": 0.001,
             "higher_is_better": True, "change": "worse", "alpha": 0.05}
    found = hallucination_findings({"truthfulqa_mc1": {"acc": entry}})
    assert [(f.task, f.metric, f.change) for f in found] == [("truthfulqa_mc1", "acc", "worse")]
    assert "TruthfulQA MC1" in found[0].message() and "40%" in found[0].message()


def test_the_backend_is_asked_for_log_likelihoods_before_the_first_item() -> None:
    asked: list[set[str]] = []

    class Recording(Scripted):
        def preflight(self, needs):  # type: ignore[no-untyped-def]
            asked.append(set(needs))

    evaluate_model(Recording(abstains=True), hallucination_tasks(), limit=2)
    assert asked == [{"loglikelihood"}]
