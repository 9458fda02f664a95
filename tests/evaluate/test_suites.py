"""Built-in suites: the properties a user relies on (one right answer, balanced positions, reproducible)."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from assay.errors import EvalError
from assay.evaluate.suites import load_suite, suite_names
from assay.evaluate.suites.builtin import arithmetic_problems, knowledge_questions
from assay.evaluate.tasks import TaskKind


def test_knowledge_has_hundreds_of_well_formed_questions() -> None:
    qs = knowledge_questions()
    assert len(qs) >= 300
    assert len({q.id for q in qs}) == len(qs)
    normalised = [re.sub(r"\W+", " ", q.question.lower()).strip() for q in qs]
    assert len(set(normalised)) == len(normalised), "duplicate questions"
    for q in qs:
        assert len(q.choices) == 4, q.id
        assert 0 <= q.answer < 4, q.id
        assert len({c.strip().lower() for c in q.choices}) == 4, f"{q.id}: choices not distinct"
        assert all(c.strip() for c in q.choices), q.id
        assert q.question.strip().endswith(("?", "...", '"')), q.id


def test_knowledge_gold_positions_are_balanced_and_subjects_varied() -> None:
    qs = knowledge_questions()
    positions = Counter(q.answer for q in qs)
    assert set(positions) == {0, 1, 2, 3}
    assert max(positions.values()) - min(positions.values()) <= 1, positions
    subjects = Counter(q.subject for q in qs)
    assert set(subjects) == {"science", "geography", "history", "language", "everyday reasoning"}
    assert min(subjects.values()) >= 40


def test_knowledge_task_uses_the_harness_prompt() -> None:
    task = load_suite("builtin:knowledge")
    assert task.kind is TaskKind.MULTIPLE_CHOICE
    first = task.items[0]
    assert first.context == "Question: What gas do plants take in from the air to make their food?\nAnswer:"
    assert first.choices[first.gold] == "carbon dioxide"
    assert task.target_delimiter == " "
    assert set(task.metrics) == {"acc", "acc_norm"}
    assert task.version.startswith("1-") and len(task.version) > 4


def test_arithmetic_mc_answers_are_right_and_distractors_near() -> None:
    task = load_suite("builtin:arithmetic")
    assert len(task.items) == 400
    ops = Counter(it.meta["op"] for it in task.items)
    assert ops == {"add": 100, "sub": 100, "mul": 100, "div": 100}
    assert Counter(it.meta["level"] for it in task.items) == {1: 100, 2: 100, 3: 100, 4: 100}
    positions = Counter(it.gold for it in task.items)
    assert max(positions.values()) - min(positions.values()) <= 1
    for it in task.items:
        a, sym, b = re.match(r"Question: What is (\d+) ([-+*/]) (\d+)\?\nAnswer:$", it.context).groups()
        a, b = int(a), int(b)
        truth = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[sym]
        if sym == "/":
            assert a % b == 0, it.context
        assert it.choices[it.gold] == str(truth)
        assert len(set(it.choices)) == 4
        others = [int(c) for i, c in enumerate(it.choices) if i != it.gold]
        assert all(v >= 0 for v in others)
        assert all(abs(v - truth) <= max(100, 9 * truth) for v in others), it


def test_arithmetic_is_seeded_and_reproducible() -> None:
    assert load_suite("builtin:arithmetic") == load_suite("builtin:arithmetic")
    assert arithmetic_problems(seed=1)[:5] != arithmetic_problems(seed=2)[:5]


def test_arithmetic_gen_exact_match_targets_and_separate_fewshot_pool() -> None:
    mc = load_suite("builtin:arithmetic")
    gen = load_suite("builtin:arithmetic-gen")
    assert gen.kind is TaskKind.GENERATE
    assert [it.context for it in gen.items] == [it.context for it in mc.items]
    assert [it.gold for it in gen.items] == [it.choices[it.gold] for it in mc.items]
    assert "exact" in gen.generation.extract and "\n" in gen.generation.until
    assert gen.num_fewshot == 5 and len(gen.fewshot_pool) >= 5
    assert not {s.context for s in gen.fewshot_pool} & {it.context for it in gen.items}
    assert {s.meta["op"] for s in gen.fewshot_pool[:4]} == {"add", "sub", "mul", "div"}


def test_reference_prose_is_thousands_of_words_in_documents() -> None:
    task = load_suite("builtin:reference")
    assert task.kind is TaskKind.PERPLEXITY
    words = sum(len(it.text.split()) for it in task.items)
    assert words >= 3000
    assert len(task.items) >= 10
    assert len({it.text for it in task.items}) == len(task.items)
    assert all(150 <= len(it.text.split()) <= 500 for it in task.items)
    kl = load_suite("kl:builtin:reference")
    assert kl.kind is TaskKind.KL and [i.text for i in kl.items] == [i.text for i in task.items]


def test_unknown_suite_names_say_what_exists() -> None:
    with pytest.raises(EvalError, match="builtin:knowledge"):
        load_suite("builtin:trivia")
    with pytest.raises(EvalError, match="unknown task"):
        load_suite("nonsense")
    assert "mmlu:PATH" in suite_names() and "kl:builtin:reference" in suite_names()
