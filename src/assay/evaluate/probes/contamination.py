"""Contamination evidence: did the candidate see a benchmark's test items, beyond what its base had seen?

``contamination:<task spec>`` (``contamination:builtin:knowledge``, ``contamination:mmlu:PATH``,
``contamination:my_task.yaml``) turns every multiple-choice or generation task the spec names into a probe task
``contamination:<task name>``. For each test item it scores two texts with the Min-K% probability membership
signal (Shi et al., 2023: the mean of the lowest ``k`` = 20% per-token log-probabilities of a text):

- the **published** text: the item's prompt, the target delimiter and its gold answer, as the benchmark has it;
- a **control** copy of the same item, perturbed so that it says the same kind of thing in a form no training set
  holds (:func:`perturb`): listed answer options re-ordered (and the answer letter moved with them); else every
  number changed (the same way in question and answer); else the words of each prompt line shuffled (a leading
  label such as ``Question:`` stays).

Per item: ``mink_published``, ``mink_control`` and ``mink_gap`` = published - control. A model that memorised the
published items gives them a higher Min-K% than their perturbed copies, so the gap grows. Perturbed text is also
less fluent, so every model has some gap; the signal is the candidate's gap against the **base's** gap on the same
items, which ``assay eval --base`` reports with a paired bootstrap interval (``mink_gap`` is registered as
lower-is-better, so a significant rise is marked like a regression). :func:`possible_contamination` turns a
comparison into findings with numbers; it is evidence, never a verdict on its own.

    [task] = load_contamination_tasks("builtin:knowledge", load_tasks)    # load_tasks from assay.evaluate.loading
    cmp = compare_results(evaluate_model(base, [task]), evaluate_model(cand, [task]))
    [finding] = possible_contamination(cmp)
    finding.flagged, finding.delta, finding.ci

Per-token log-probabilities come from the backend: ``backend.token_logprobs(texts)`` if it has one, else the
``hf`` backend's full next-token distributions (``token_logprobs_full``); other backends are refused clearly.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from assay.errors import EvalError
from assay.evaluate.probes.base import ProbeRunner, entry_change, entry_ci, entry_value
from assay.evaluate.tasks import GenerationSpec, Item, SpecLoader, Task, TaskKind

if TYPE_CHECKING:
    from assay.evaluate.backends.base import Backend
    from assay.evaluate.runner import ItemResult

PREFIX = "contamination"
K_PERCENT = 20.0
"""Share of a text's tokens (the least likely ones) whose log-probabilities Min-K% averages."""
SEED = 0
"""Seed of the perturbations (each item's generator is seeded by (SEED, item id))."""
CONTAMINATION_VERSION = "1"

_OPTION_LINE = re.compile(r"^(\s*)([A-Ja-j])([.):])(\s+)(.+?)\s*$")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


# --------------------------------------------------------------------------------------------- Min-K%
def min_k_prob(logprobs: Sequence[float], k_percent: float = K_PERCENT) -> float:
    """Mean of the lowest ``ceil(k% of n)`` token log-probabilities (NaN for an empty text)."""
    if not logprobs:
        return math.nan
    n = max(1, math.ceil(len(logprobs) * k_percent / 100.0))
    return float(sum(sorted(logprobs)[:n]) / n)


def token_logprobs(backend: Backend, texts: Sequence[str]) -> list[list[float]]:
    """``log P(token | preceding tokens)`` of every token of each text (the first conditioned on BOS/EOS)."""
    own = getattr(backend, "token_logprobs", None)
    if callable(own):
        return [[float(x) for x in row] for row in own(list(texts))]
    full = getattr(backend, "token_logprobs_full", None)
    if not callable(full):
        name = getattr(getattr(backend, "info", None), "backend", type(backend).__name__)
        raise EvalError(f"contamination probes need per-token log-probabilities, which the {name} backend does "
                        f"not provide; run them with the hf backend")
    import torch

    out: list[Any] = []
    for text in texts:
        ids, lp = full(text)
        if len(ids) < 2:
            out.append([])
            continue
        targets = torch.tensor(ids[1:], dtype=torch.long)
        out.append(lp[torch.arange(len(ids) - 1), targets].tolist())
    return out


# --------------------------------------------------------------------------------------------- perturbation
@dataclass(frozen=True)
class Perturbed:
    """A control copy of an item."""

    prompt: str
    """The perturbed prompt."""
    answer: str
    """The answer as it reads after the perturbation (a moved option letter, changed numbers)."""
    kind: str
    """``options-reordered``, ``numbers-changed`` or ``words-shuffled`` (``unchanged`` if nothing could move)."""


def _rng(item_id: str, seed: int) -> random.Random:
    return random.Random(int(hashlib.sha256(f"{seed}:{item_id}".encode()).hexdigest()[:16], 16))


def _derangement(n: int, rng: random.Random) -> list[int]:
    order = list(range(n))
    for _ in range(100):
        rng.shuffle(order)
        if all(i != j for i, j in enumerate(order)):
            return order
    return order[1:] + order[:1]


def _reorder_options(prompt: str, answer: str, rng: random.Random) -> Perturbed | None:
    lines = prompt.split("\n")
    found = [(i, m) for i, line in enumerate(lines) if (m := _OPTION_LINE.match(line))]
    if len(found) < 2:
        return None
    texts = [m.group(5) for _, m in found]
    letters = [m.group(2) for _, m in found]
    order = _derangement(len(texts), rng)
    for slot, (i, m) in enumerate(found):
        lines[i] = f"{m.group(1)}{m.group(2)}{m.group(3)}{m.group(4)}{texts[order[slot]]}"
    new_answer = answer
    stripped = answer.strip()
    if stripped in letters:
        old = letters.index(stripped)
        new_slot = order.index(old)
        new_answer = answer.replace(stripped, letters[new_slot], 1)
    return Perturbed("\n".join(lines), new_answer, "options-reordered")


def _change_numbers(prompt: str, answer: str, rng: random.Random) -> Perturbed | None:
    numbers = sorted(set(_NUMBER.findall(prompt)))
    if not numbers:
        return None
    mapping: dict[str, str] = {}
    for num in numbers:
        whole, _, frac = num.partition(".")
        for _ in range(20):
            digits = len(whole)
            lo = 10 ** (digits - 1) if digits > 1 else 0
            new_whole = str(rng.randint(lo, 10 ** digits - 1))
            new = new_whole + ("." + "".join(str(rng.randint(0, 9)) for _ in frac) if frac else "")
            if new != num:
                break
        mapping[num] = new

    def sub(text: str) -> str:
        return _NUMBER.sub(lambda m: mapping.get(m.group(0), m.group(0)), text)

    return Perturbed(sub(prompt), sub(answer), "numbers-changed")


def _shuffle_words(prompt: str, answer: str, rng: random.Random) -> Perturbed:
    lines = prompt.split("\n")
    changed = False
    for i, line in enumerate(lines):
        words = line.split()
        keep = 1 if words and words[0].endswith(":") else 0
        body = words[keep:]
        if len(body) < 3:
            continue
        shuffled = list(body)
        for _ in range(10):
            rng.shuffle(shuffled)
            if shuffled != body:
                break
        if shuffled != body:
            lines[i] = " ".join(words[:keep] + shuffled)
            changed = True
    return Perturbed("\n".join(lines), answer, "words-shuffled" if changed else "unchanged")


def perturb(prompt: str, answer: str, *, item_id: str, seed: int = SEED) -> Perturbed:
    """The control copy of one item (see the module docstring for the order of the rules); seeded by item id."""
    rng = _rng(item_id, seed)
    return (_reorder_options(prompt, answer, rng) or _change_numbers(prompt, answer, rng)
            or _shuffle_words(prompt, answer, rng))


# --------------------------------------------------------------------------------------------- tasks
def published_parts(task: Task, item: Item) -> tuple[str, str] | None:
    """(prompt, answer) of an item as the benchmark publishes it, or None if it has no gold answer."""
    gold = item.gold
    if isinstance(gold, tuple):
        gold = gold[0] if gold else None
    if task.kind == TaskKind.MULTIPLE_CHOICE and isinstance(gold, int) and 0 <= gold < len(item.choices):
        return item.context, task.target_delimiter + item.choices[gold]
    if task.kind == TaskKind.GENERATE and isinstance(gold, str):
        return item.context, task.target_delimiter + gold
    return None


class ContaminationProbe(ProbeRunner):
    """Min-K% of each item's published text and of its control copy."""

    def __init__(self, *, k_percent: float = K_PERCENT) -> None:
        self.k_percent = k_percent

    def run(self, backend: Backend, task: Task, items: Sequence[Item]) -> list[ItemResult]:
        from assay.evaluate.runner import ItemResult

        texts = [t for it in items for t in (it.context, it.text or "")]
        lps = token_logprobs(backend, texts)
        out = []
        for k, item in enumerate(items):
            pub = min_k_prob(lps[2 * k], self.k_percent)
            ctl = min_k_prob(lps[2 * k + 1], self.k_percent)
            out.append(ItemResult(id=item.id, metrics={"mink_gap": pub - ctl, "mink_published": pub,
                                                       "mink_control": ctl},
                                  extracted={"perturbation": str(item.meta.get("perturbation", ""))}))
        return out


METRICS = ("mink_gap",)
LOWER_IS_BETTER = ("mink_gap",)


def contamination_task(inner: Task, *, k_percent: float = K_PERCENT, seed: int = SEED) -> Task:
    """The contamination probe of one multiple-choice or generation task."""
    if inner.kind not in (TaskKind.MULTIPLE_CHOICE, TaskKind.GENERATE):
        raise EvalError(f"contamination probes need a multiple-choice or generation task with gold answers; "
                        f"{inner.name} is a {inner.kind.value} task")
    items = []
    kinds: dict[str, int] = {}
    for item in inner.items:
        parts = published_parts(inner, item)
        if parts is None:
            continue
        prompt, answer = parts
        ctl = perturb(prompt, answer, item_id=item.id, seed=seed)
        kinds[ctl.kind] = kinds.get(ctl.kind, 0) + 1
        items.append(Item(id=item.id, context=prompt + answer, text=ctl.prompt + ctl.answer,
                          meta={"perturbation": ctl.kind}))
    if not items:
        raise EvalError(f"{inner.name}: no item has a gold answer to test for contamination")
    mix = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    return Task(name=f"{PREFIX}:{inner.name}",
                version=f"{CONTAMINATION_VERSION}-k{k_percent:g}-s{seed}-{inner.version}",
                kind=TaskKind.PROBE, items=tuple(items), metrics=METRICS,
                generation=GenerationSpec(until=(), max_tokens=1, extract=("none",)),
                scorer=ContaminationProbe(k_percent=k_percent),
                source=f"{inner.source or inner.name}; controls: {mix}")


def load_contamination_tasks(arg: str | None, load: SpecLoader) -> list[Task]:
    """``contamination:<task spec>``: one probe task per task the inner spec names (resolved with ``load``,
    :func:`assay.evaluate.loading.load_tasks` when the registry calls it)."""
    if not arg:
        raise EvalError("contamination needs a task to test: contamination:builtin:knowledge, "
                        "contamination:mmlu:PATH or contamination:TASK.yaml")
    inner = [t for t in load(arg) if t.kind in (TaskKind.MULTIPLE_CHOICE, TaskKind.GENERATE)]
    if not inner:
        raise EvalError(f"contamination:{arg}: the task has no multiple-choice or generation items to test")
    return [contamination_task(t) for t in inner]


# --------------------------------------------------------------------------------------------- evidence
@dataclass(frozen=True)
class ContaminationFinding:
    """The Min-K% gap of a benchmark task, candidate against base."""

    task: str
    """The probe task (``contamination:<benchmark task>``)."""
    base_gap: float
    """The base's mean Min-K% gap (published - control)."""
    candidate_gap: float
    """The candidate's mean gap."""
    delta: float
    """candidate_gap - base_gap."""
    ci: tuple[float, float]
    """Paired bootstrap 95% interval of the delta."""
    p: float
    """Paired permutation p-value of the delta."""
    n: int
    """Items compared."""
    flagged: bool
    """Possible contamination: the gap rose significantly (interval above zero and Holm-adjusted p below alpha)."""
    note: str = ""
    """Why the gap was not compared (the candidate's tokenizer differs from the base's: Min-K% is per token)."""

    def message(self) -> str:
        """One line a report can show."""
        if self.note:
            return f"{self.task}: {self.note}"
        lo, hi = self.ci
        what = "possible contamination" if self.flagged else "no sign of contamination"
        return (f"{self.task}: {what}: Min-K% gap (published - control) {self.candidate_gap:+.3f} against the "
                f"base's {self.base_gap:+.3f}, change {self.delta:+.3f} (95% CI [{lo:+.3f}, {hi:+.3f}], "
                f"p={self.p:.3g}, n={self.n})")


def possible_contamination(comparison: Mapping[str, Any], *, alpha: float = 0.05) -> list[ContaminationFinding]:
    """A finding for every contamination task in a comparison (``compare_results`` or its JSON form)."""
    out = []
    for task, per in comparison.items():
        if not task.startswith(PREFIX + ":") or not isinstance(per, Mapping) or "mink_gap" not in per:
            continue
        e = per["mink_gap"]
        delta, ci = _num(entry_value(e, "delta")), entry_ci(e)
        p = _num(entry_value(e, "p_holm"))
        if math.isnan(p):
            p = _num(entry_value(e, "p"))
        change = entry_change(e, alpha=alpha, higher_is_better=False)  # a wider gap is the worse direction
        out.append(ContaminationFinding(
            task=task, base_gap=_num(entry_value(e, "base")), candidate_gap=_num(entry_value(e, "candidate")),
            delta=delta, ci=ci, p=p, n=int(entry_value(e, "n") or 0),
            flagged=bool(change == "worse" and delta > 0),
            note=str(entry_value(e, "note") or "") if change == "not comparable" else ""))
    return out


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def contamination_document(findings: Sequence[ContaminationFinding]) -> list[dict[str, Any]]:
    """JSON form of the findings (for reports)."""
    return [{"task": f.task, "base_gap": f.base_gap, "candidate_gap": f.candidate_gap, "delta": f.delta,
             "ci": list(f.ci), "p": f.p, "n": f.n, "flagged": f.flagged, "note": f.note, "message": f.message()}
            for f in findings]
