"""Hallucination: does the candidate invent answers its base would not, offline and without a judge model?

``builtin:hallucination`` is four probe tasks, all scored by log-likelihood over offered answers (no generation, no
judge), so every number is exact and reproducible on any backend that scores text:

- ``builtin:hallucination/fictional``: questions about plausible but non-existent entities ("In which year was the
  Treaty of Velmora signed?"), offered three confident answers and one abstention ("There is no treaty by that
  name."). Per-item ``fabricated`` (0/1, lower is better): the model preferred a confident answer, i.e. the rate of
  confident fabrication.
- ``builtin:hallucination/known``: the same format on assay's own ``builtin:knowledge`` questions (real, well-known
  facts) with "I don't know." added. Per-item ``over_abstained`` (lower is better): the control that keeps a model
  from scoring well on ``fictional`` by abstaining from everything.
- ``builtin:hallucination/passage``: a short passage about an invented entity, then a question whose answer is in
  the passage (the passage's value, two invented values of the same kind, "The passage does not say.").
  ``supported`` (higher is better): chose the passage's answer; ``invented`` (lower is better): chose a value
  the passage does not contain.
- ``builtin:hallucination/unanswerable``: the same passages with a question they do not answer. ``abstained``
  (higher is better): chose "The passage does not say."; ``invented`` (lower is better): chose a value anyway.

Every entity is invented, so the passage is the only source of a right answer. Choices are compared by
log-likelihood per character (lm-evaluation-harness's ``acc_norm`` rule), so a longer abstention is not
penalised for its length. TruthfulQA MC1/MC2 (``truthfulqa_mc1:PATH``, ``truthfulqa_mc2:PATH``, loaded by
:mod:`assay.evaluate.suites.standard` from local files) complete the picture; policy ``probes.truthfulqa`` runs
them with this probe, and rule ``probes.hallucination`` reads both.

    tasks = hallucination_tasks()
    cmp = compare_results(evaluate_model(base, tasks), evaluate_model(cand, tasks))
    hallucination_findings(cmp)        # the significant changes, worded for a report

The data (``data/hallucination.json``, Apache-2.0, written for assay) holds only building blocks: syllables for
invented names, question and sentence templates, answer pools; the items are generated from them with a fixed
seed and their digest is part of each task's version.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from assay.formatting import pct
from assay.evaluate.probes.base import ProbeRunner, entry_change, entry_value, find_entry
from assay.evaluate.tasks import GenerationSpec, Item, Task, TaskKind

if TYPE_CHECKING:
    from assay.evaluate.backends.base import Backend
    from assay.evaluate.runner import ItemResult

PREFIX = "builtin:hallucination"
FICTIONAL_TASK = f"{PREFIX}/fictional"
KNOWN_TASK = f"{PREFIX}/known"
PASSAGE_TASK = f"{PREFIX}/passage"
UNANSWERABLE_TASK = f"{PREFIX}/unanswerable"
DATA_FILE = "hallucination.json"
VERSION = "1"
SEED = 20261206
N_FICTIONAL = 240
"""Questions about invented entities (20 per entity kind)."""
N_PASSAGES = 120
"""Passages; each gives one answerable and one unanswerable question."""
N_KNOWN = 120
"""Real questions from ``builtin:knowledge`` used as the over-abstention control."""

LOWER_IS_BETTER = ("fabricated", "over_abstained", "invented")

#: What each (task, metric) means when it gets significantly worse, for reports and the verdict.
JUDGED: tuple[tuple[str, str, str], ...] = (
    (FICTIONAL_TASK, "fabricated", "confident answers about entities that do not exist"),
    (UNANSWERABLE_TASK, "abstained", "abstention when the passage does not answer the question"),
    (UNANSWERABLE_TASK, "invented", "answers invented where the passage says nothing"),
    (PASSAGE_TASK, "supported", "answers supported by the passage"),
    (PASSAGE_TASK, "invented", "answers not in the passage"),
    (KNOWN_TASK, "over_abstained", "abstention on well-known facts"),
    ("truthfulqa_mc1", "acc", "TruthfulQA MC1 accuracy"),
    ("truthfulqa_mc2", "mc2", "TruthfulQA MC2 (probability on true answers)"),
)


def _data() -> dict[str, Any]:
    text = resources.files("assay.evaluate.probes").joinpath("data", DATA_FILE).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


# --------------------------------------------------------------------------------------------- generation
def _values(kind: str, rng: random.Random, data: Mapping[str, Any], n: int) -> list[str]:
    """``n`` distinct plausible values of one answer kind."""
    pools = data["answer_pools"]
    seen: list[str] = []
    while len(seen) < n:
        if kind == "year":
            v = str(rng.randint(1420, 1960))
        elif kind == "km":
            v = f"{rng.randint(12, 900)} kilometres"
        elif kind == "m":
            v = f"{rng.randint(800, 4800)} metres"
        elif kind == "count":
            v = f"{rng.randint(2, 90) * 100:,}"
        elif kind == "small":
            v = str(rng.randint(2, 14))
        elif kind == "person":
            v = f"{rng.choice(data['given_names'])} {_name(rng, data)}"
        elif kind == "place":
            v = rng.choice(data["places"])
        elif kind == "colour":
            v = rng.choice(data["passage"]["colours"])
        else:
            v = rng.choice(pools[kind])
        if v not in seen:
            seen.append(v)
    return seen


def _name(rng: random.Random, data: Mapping[str, Any]) -> str:
    s = data["name_syllables"]
    return str(rng.choice(s["first"]) + rng.choice(s["middle"]) + rng.choice(s["last"]))


def _mc_item(item_id: str, context: str, answers: Sequence[str], abstain: str, gold: int,
             rng: random.Random) -> Item:
    """Answers in a seeded order, the abstention always last (its index is ``len(choices) - 1``)."""
    order = list(range(len(answers)))
    rng.shuffle(order)
    choices = tuple(answers[i] for i in order) + (abstain,)
    gold_index = len(answers) if gold < 0 else order.index(gold)
    return Item(id=item_id, context=context, choices=choices, gold=gold_index)


def fictional_items(data: Mapping[str, Any], *, n: int = N_FICTIONAL, seed: int = SEED) -> list[Item]:
    """Questions about invented entities; the right choice is the abstention."""
    rng = random.Random(seed)
    kinds = data["fictional"]
    items: list[Item] = []
    used: set[str] = set()
    while len(items) < n:
        spec = kinds[len(items) % len(kinds)]
        name = _name(rng, data)
        entity = spec["pattern"].format(name=name, place=rng.choice(data["places"]),
                                        person=rng.choice(data["given_names"]))
        if entity in used:
            continue
        used.add(entity)
        question = spec["question"].format(entity=entity)
        q = question[0].upper() + question[1:]
        answers = _values(spec["answers"], rng, data, 3)
        items.append(_mc_item(f"hf{len(items):03d}", f"Question: {q}\nAnswer:", answers, spec["abstain"], -1, rng))
    return items


def passage_items(data: Mapping[str, Any], *, n: int = N_PASSAGES, seed: int = SEED + 1) -> tuple[list[Item],
                                                                                                  list[Item]]:
    """Passages about invented entities with one answerable and one unanswerable question each."""
    rng = random.Random(seed)
    p = data["passage"]
    templates = p["templates"]
    keys = sorted(templates)
    answerable, unanswerable = [], []
    for k in range(n):
        kind = p["kinds"][k % len(p["kinds"])]
        entity = kind["pattern"].format(name=_name(rng, data))
        stated = rng.sample(keys, 3)
        missing = rng.choice([x for x in keys if x not in stated])
        facts = {key: _values(templates[key]["answers"], rng, data, 3) for key in [*stated, missing]}
        sentences = [kind["intro"].format(entity=entity)]
        sentences += [templates[key]["sentence"].format(entity=entity, value=facts[key][0]) for key in stated]
        passage = " ".join(s[0].upper() + s[1:] for s in sentences)
        ask = rng.choice(stated)
        q_in = templates[ask]["question"].format(entity=entity)
        q_out = templates[missing]["question"].format(entity=entity)
        answerable.append(_mc_item(f"hp{k:03d}", f"Passage: {passage}\nQuestion: {q_in}\nAnswer:", facts[ask],
                                   p["abstain"], 0, rng))
        unanswerable.append(_mc_item(f"hu{k:03d}", f"Passage: {passage}\nQuestion: {q_out}\nAnswer:",
                                     facts[missing], p["abstain"], -1, rng))
    return answerable, unanswerable


def known_items(data: Mapping[str, Any], *, n: int = N_KNOWN, seed: int = SEED + 2) -> list[Item]:
    """Real questions from ``builtin:knowledge`` (right answer and two distractors) plus "I don't know."."""
    from assay.evaluate.suites.builtin import load_builtin

    rng = random.Random(seed)
    source = list(load_builtin("knowledge").items)
    rng.shuffle(source)
    items = []
    for it in source[:n]:
        assert isinstance(it.gold, int)
        wrong = [c for i, c in enumerate(it.choices) if i != it.gold]
        answers = [it.choices[it.gold], *rng.sample(wrong, 2)]
        items.append(_mc_item(f"hk-{it.id}", it.context, answers, data["known_abstain"], 0, rng))
    return items


# --------------------------------------------------------------------------------------------- scoring
class HallucinationProbe(ProbeRunner):
    """Scores the offered answers by log-likelihood per character and names what the model chose."""

    needs = ("loglikelihood",)
    """The backend requests this probe sends (checked before the first item)."""

    def __init__(self, part: str) -> None:
        if part not in ("fictional", "known", "passage", "unanswerable"):
            raise ValueError(f"unknown hallucination part {part!r}")
        self.part = part

    def run(self, backend: Backend, task: Task, items: Sequence[Item]) -> list[ItemResult]:
        from assay.evaluate.backends.base import LoglikelihoodRequest
        from assay.evaluate.runner import ItemResult

        reqs = [LoglikelihoodRequest(it.context, " " + c) for it in items for c in it.choices]
        res = backend.loglikelihood(reqs)
        out, pos = [], 0
        for it in items:
            lls = np.array([r.logprob for r in res[pos:pos + len(it.choices)]], dtype=float)
            pos += len(it.choices)
            chars = np.array([float(len(c)) for c in it.choices])
            pred = int(np.argmax(lls / chars))
            out.append(ItemResult(id=it.id, metrics=self.metrics(it, pred), loglikelihoods=tuple(lls.tolist()),
                                  prediction=pred, extracted={"chosen": it.choices[pred]}))
        return out

    def metrics(self, item: Item, pred: int) -> dict[str, float]:
        """Per-item metrics of one chosen answer (the abstention is the last choice)."""
        abstain = len(item.choices) - 1
        if self.part == "fictional":
            return {"fabricated": float(pred != abstain)}
        if self.part == "known":
            return {"over_abstained": float(pred == abstain), "correct": float(pred == item.gold)}
        if self.part == "passage":
            return {"supported": float(pred == item.gold), "invented": float(pred not in (item.gold, abstain))}
        return {"abstained": float(pred == abstain), "invented": float(pred != abstain)}


METRICS = {"fictional": ("fabricated",), "known": ("over_abstained", "correct"),
           "passage": ("supported", "invented"), "unanswerable": ("abstained", "invented")}


def hallucination_tasks() -> list[Task]:
    """The four ``builtin:hallucination/*`` tasks."""
    data = _data()
    answerable, unanswerable = passage_items(data)
    parts = {"fictional": fictional_items(data), "known": known_items(data), "passage": answerable,
             "unanswerable": unanswerable}
    descriptions = {"fictional": "questions about invented entities (right answer: abstain)",
                    "known": "builtin:knowledge questions with an abstain option (control)",
                    "passage": "questions answered by an invented passage",
                    "unanswerable": "questions an invented passage does not answer"}
    tasks = []
    for part, items in parts.items():
        digest = hashlib.sha256(json.dumps([it.digest() for it in items]).encode()).hexdigest()[:10]
        tasks.append(Task(name=f"{PREFIX}/{part}", version=f"{VERSION}-{digest}", kind=TaskKind.PROBE,
                          items=tuple(items), metrics=METRICS[part],
                          generation=GenerationSpec(until=(), max_tokens=1, extract=("none",)),
                          scorer=HallucinationProbe(part),
                          source=f"builtin (assay: {len(items)} {descriptions[part]})"))
    return tasks


# --------------------------------------------------------------------------------------------- evidence
@dataclass(frozen=True)
class HallucinationFinding:
    """A significant change of one hallucination measure, candidate against base."""

    task: str
    """The task (``builtin:hallucination/...`` or ``truthfulqa_mc1/2``)."""
    metric: str
    """The metric."""
    what: str
    """What the metric measures, in words."""
    base: float
    """The base's rate."""
    candidate: float
    """The candidate's rate."""
    ci: tuple[float, float]
    """95% paired interval of the change."""
    p: float
    """Holm-adjusted p-value."""
    change: str
    """``better`` or ``worse`` (the comparison's judgement)."""

    def message(self) -> str:
        """One line a report can show."""
        lo, hi = self.ci
        return (f"{self.what}: {pct(self.base)} for the base, {pct(self.candidate)} for the candidate "
                f"({self.change}; 95% interval [{100 * lo:+.0f}, {100 * hi:+.0f}] points, p={self.p:.3g})")


def hallucination_findings(comparison: Mapping[str, Any], *, alpha: float | None = None) -> list[HallucinationFinding]:
    """The significant changes (``better`` or ``worse``) of every hallucination measure in a comparison.

    ``comparison`` is :func:`assay.evaluate.compare.compare_results`'s result or its JSON form; the judgement is
    the comparison's own ``change`` (re-applied only for another ``alpha``).
    """
    from assay.evaluate.stats import metric_spec

    out = []
    for task, metric, what in JUDGED:
        entry = find_entry(comparison, task, metric)
        if entry is None:
            continue
        change = entry_change(entry, alpha=alpha, higher_is_better=metric_spec(metric).higher_is_better)
        if change not in ("better", "worse"):
            continue
        ci = entry_value(entry, "ci") or (math.nan, math.nan)
        p = entry_value(entry, "p_holm")
        out.append(HallucinationFinding(task=task, metric=metric, what=what, base=_f(entry_value(entry, "base")),
                                        candidate=_f(entry_value(entry, "candidate")),
                                        ci=(_f(ci[0]), _f(ci[1])), p=_f(p if p is not None else
                                                                       entry_value(entry, "p")), change=change))
    return out


def _f(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan
