"""Built-in suites that need no download: general knowledge, arithmetic, reference prose.

Every suite is written for assay (no item is copied from a public dataset) and versioned: the version string
carries a digest of the data (or of the generator's settings), so the result cache can never mix old and new items.

- ``builtin:knowledge``: 342 four-choice questions (science, geography, history, language, everyday reasoning),
  one clearly right answer each, gold positions balanced over A-D. Prompt ``"Question: {q}\\nAnswer:"``, each
  choice scored as ``" {choice}"`` (lm-evaluation-harness's ARC style); metrics acc, acc_norm.
- ``builtin:arithmetic``: 400 seeded problems (add, sub, mul, div; four magnitudes each) as four-choice
  questions whose distractors sit near the answer.
- ``builtin:arithmetic-gen``: the same 400 problems as greedy generation scored by exact match, 5-shot from a
  separate seeded pool.
- ``builtin:reference``: 13 documents (3,300+ words) of plain English prose, for perplexity and KL drift.

    task = load_builtin("knowledge")
    task.items[0].context      # 'Question: What gas do plants take in ...?\\nAnswer:'
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

from assay.errors import EvalError
from assay.evaluate.tasks import GenerationSpec, Item, Task, TaskKind

KNOWLEDGE_FILE = "knowledge.jsonl"
REFERENCE_FILE = "reference.txt"

#: Bump the leading number whenever a prompt or generator rule changes; the data digest is appended.
KNOWLEDGE_VERSION = "1"
ARITHMETIC_VERSION = "1"
REFERENCE_VERSION = "1"

ARITHMETIC_SEED = 20261122
"""Seed of the evaluated arithmetic problems."""
ARITHMETIC_FEWSHOT_SEED = 7
"""Seed of the separate few-shot pool (never overlapping the evaluated problems)."""
ARITHMETIC_PER_CELL = 25
"""Problems per (operation, magnitude) cell: 4 operations x 4 magnitudes x 25 = 400."""
ARITHMETIC_GEN_FEWSHOT = 5
"""Default few-shot count of ``builtin:arithmetic-gen`` (a base model needs to see the answer format)."""


def _data_text(name: str) -> str:
    return resources.files("assay.evaluate.suites").joinpath("data", name).read_text(encoding="utf-8")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def question_prompt(question: str) -> str:
    """The lm-evaluation-harness style prompt every built-in multiple-choice suite uses."""
    return f"Question: {question}\nAnswer:"


# --------------------------------------------------------------------------------------------- knowledge


@dataclass(frozen=True)
class KnowledgeQuestion:
    """One row of ``data/knowledge.jsonl``."""

    id: str
    """Stable id, ``k001`` ..."""
    subject: str
    """science, geography, history, language or everyday reasoning."""
    question: str
    """The question text."""
    choices: tuple[str, ...]
    """Four answer texts."""
    answer: int
    """Index of the right choice."""


def knowledge_questions() -> list[KnowledgeQuestion]:
    """Every question of ``builtin:knowledge``, as stored (checked by the tests for the suite's properties)."""
    rows = []
    for n, line in enumerate(_data_text(KNOWLEDGE_FILE).splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            rows.append(KnowledgeQuestion(id=d["id"], subject=d["subject"], question=d["question"],
                                          choices=tuple(d["choices"]), answer=int(d["answer"])))
        except (ValueError, KeyError, TypeError) as exc:  # a packaging bug, but say where
            raise EvalError(f"built-in data {KNOWLEDGE_FILE} line {n} is malformed: {exc}") from exc
    return rows


def knowledge_task() -> Task:
    """``builtin:knowledge``: four-choice general knowledge, acc and acc_norm."""
    text = _data_text(KNOWLEDGE_FILE)
    items = tuple(Item(id=q.id, context=question_prompt(q.question), choices=q.choices, gold=q.answer,
                       meta={"subject": q.subject}) for q in knowledge_questions())
    return Task(name="builtin:knowledge", version=f"{KNOWLEDGE_VERSION}-{_digest(text)}",
                kind=TaskKind.MULTIPLE_CHOICE, items=items, fewshot_pool=items, metrics=("acc", "acc_norm"),
                source="builtin (assay, data/knowledge.jsonl)")


# --------------------------------------------------------------------------------------------- arithmetic

_OPS = ("add", "sub", "mul", "div")
_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}
# Operand ranges per magnitude level (1..4), chosen so every answer is a non-negative integer.
_ADD_RANGES = ((1, 9), (10, 99), (100, 999), (1000, 9999))
_MUL_RANGES = (((2, 9), (2, 9)), ((10, 99), (2, 9)), ((10, 99), (10, 99)), ((100, 999), (10, 99)))
_DIV_RANGES = (((2, 9), (2, 9)), ((2, 9), (10, 99)), ((10, 99), (10, 99)), ((10, 99), (100, 999)))


@dataclass(frozen=True)
class Problem:
    """One arithmetic problem."""

    op: str
    """add, sub, mul or div."""
    level: int
    """Magnitude level 1 (single digits) to 4 (four-digit numbers)."""
    a: int
    """Left operand."""
    b: int
    """Right operand."""
    answer: int
    """The exact integer result."""

    @property
    def question(self) -> str:
        """``What is 12 + 30?``"""
        return f"What is {self.a} {_SYMBOL[self.op]} {self.b}?"


def _problem(rng: random.Random, op: str, level: int) -> Problem:
    if op in ("add", "sub"):
        lo, hi = _ADD_RANGES[level - 1]
        a, b = rng.randint(lo, hi), rng.randint(lo, hi)
        if op == "sub" and a < b:
            a, b = b, a
        return Problem(op, level, a, b, a + b if op == "add" else a - b)
    if op == "mul":
        (alo, ahi), (blo, bhi) = _MUL_RANGES[level - 1]
        a, b = rng.randint(alo, ahi), rng.randint(blo, bhi)
        return Problem(op, level, a, b, a * b)
    (dlo, dhi), (qlo, qhi) = _DIV_RANGES[level - 1]
    divisor, quotient = rng.randint(dlo, dhi), rng.randint(qlo, qhi)
    return Problem(op, level, divisor * quotient, divisor, quotient)


def arithmetic_problems(*, seed: int = ARITHMETIC_SEED, per_cell: int = ARITHMETIC_PER_CELL,
                        exclude: frozenset[str] = frozenset()) -> list[Problem]:
    """``per_cell`` distinct problems for every (operation, magnitude), reproducible from ``seed``."""
    rng = random.Random(seed)
    out: list[Problem] = []
    seen = set(exclude)
    for op in _OPS:
        for level in range(1, 5):
            made = 0
            while made < per_cell:
                p = _problem(rng, op, level)
                if p.question in seen:
                    continue
                seen.add(p.question)
                out.append(p)
                made += 1
    return out


def _distractors(rng: random.Random, p: Problem) -> list[int]:
    """Three wrong answers near the right one: off by one, by ten, by an operand, or a slipped digit."""
    x = p.answer
    if p.op == "mul":
        near = [x + p.a, x - p.a, x + p.b, x - p.b, x + 10, x - 10, x + 1, x - 1]
    elif p.op == "div":
        near = [x + 1, x - 1, x + 2, x - 2, x + 10, x - 10, x * 10]
    else:
        near = [x + 1, x - 1, x + 10, x - 10, x + 2, x - 2, x + 100, x - 100]
    pool = sorted({v for v in near if v >= 0 and v != x})
    rng.shuffle(pool)
    return pool[:3]


def arithmetic_task() -> Task:
    """``builtin:arithmetic``: four choices per problem, gold positions balanced over A-D."""
    problems = arithmetic_problems()
    rng = random.Random(ARITHMETIC_SEED + 1)
    positions = list(range(len(problems)))
    rng.shuffle(positions)
    items = []
    for i, p in enumerate(problems):
        wrong = _distractors(rng, p)
        gold = positions[i] % 4
        choices = [str(v) for v in wrong[:gold]] + [str(p.answer)] + [str(v) for v in wrong[gold:]]
        items.append(Item(id=f"{p.op}{p.level}-{i:03d}", context=question_prompt(p.question),
                          choices=tuple(choices), gold=gold, meta={"op": p.op, "level": p.level}))
    fingerprint = _digest(json.dumps([[it.context, list(it.choices), it.gold] for it in items]))
    return Task(name="builtin:arithmetic", version=f"{ARITHMETIC_VERSION}-{fingerprint}",
                kind=TaskKind.MULTIPLE_CHOICE, items=tuple(items), fewshot_pool=tuple(items),
                metrics=("acc", "acc_norm"), source=f"builtin (assay, generated, seed {ARITHMETIC_SEED})")


def arithmetic_gen_task() -> Task:
    """``builtin:arithmetic-gen``: greedy generation until a newline, exact match on the integer answer."""
    problems = arithmetic_problems()
    pool = arithmetic_problems(seed=ARITHMETIC_FEWSHOT_SEED, per_cell=2,
                               exclude=frozenset(p.question for p in problems))
    # Interleave operations so the first few shots show every operation, small numbers first.
    pool = [p for _, p in sorted(enumerate(pool), key=lambda ip: (ip[0] % 2, ip[1].level, _OPS.index(ip[1].op)))]

    def item(prefix: str, i: int, p: Problem) -> Item:
        return Item(id=f"{prefix}{p.op}{p.level}-{i:03d}", context=question_prompt(p.question),
                    gold=str(p.answer), meta={"op": p.op, "level": p.level})

    items = tuple(item("", i, p) for i, p in enumerate(problems))
    shots = tuple(item("shot-", i, p) for i, p in enumerate(pool))
    fingerprint = _digest(json.dumps([[it.context, it.gold] for it in items + shots]))
    return Task(name="builtin:arithmetic-gen", version=f"{ARITHMETIC_VERSION}-{fingerprint}",
                kind=TaskKind.GENERATE, items=items, fewshot_pool=shots, num_fewshot=ARITHMETIC_GEN_FEWSHOT,
                fewshot_sampler="first_n",
                generation=GenerationSpec(until=("\n", "Question:"), max_tokens=16, extract=("exact", "flexible")),
                source=f"builtin (assay, generated, seed {ARITHMETIC_SEED}; few-shot seed {ARITHMETIC_FEWSHOT_SEED})")


# --------------------------------------------------------------------------------------------- reference


def split_documents(text: str) -> list[str]:
    """Documents of a plain text file: blocks separated by one or more blank lines, whitespace trimmed."""
    docs: list[str] = []
    block: list[str] = []
    for line in text.splitlines():
        if line.strip():
            block.append(line.strip())
        elif block:
            docs.append(" ".join(block))
            block = []
    if block:
        docs.append(" ".join(block))
    return docs


def reference_items() -> tuple[Item, ...]:
    """The documents of ``builtin:reference`` as perplexity/KL items."""
    return tuple(Item(id=f"doc{i:02d}", text=doc, meta={"words": len(doc.split())})
                 for i, doc in enumerate(split_documents(_data_text(REFERENCE_FILE)), 1))


def reference_version() -> str:
    """Version of the reference prose (also used by ``kl:builtin:reference``)."""
    return f"{REFERENCE_VERSION}-{_digest(_data_text(REFERENCE_FILE))}"


def reference_task() -> Task:
    """``builtin:reference``: rolling log-likelihood of each document (perplexity, bits per byte)."""
    return Task(name="builtin:reference", version=reference_version(), kind=TaskKind.PERPLEXITY,
                items=reference_items(), source="builtin (assay, data/reference.txt)")


# --------------------------------------------------------------------------------------------- registry

BUILTIN: dict[str, Callable[[], Task]] = {
    "knowledge": knowledge_task,
    "arithmetic": arithmetic_task,
    "arithmetic-gen": arithmetic_gen_task,
    "reference": reference_task,
}
"""Suite name (after ``builtin:``) -> task builder."""


def load_builtin(name: str) -> Task:
    """The built-in suite ``name`` (``knowledge``, ``arithmetic``, ``arithmetic-gen``, ``reference``)."""
    try:
        build = BUILTIN[name]
    except KeyError:
        raise EvalError(f"no built-in suite {name!r}; known: "
                        + ", ".join(f"builtin:{n}" for n in BUILTIN)) from None
    return build()
