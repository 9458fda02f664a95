"""Scoring rules (as lm-evaluation-harness defines them), the runner, and the result cache."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest

from assay.errors import EvalError
from assay.evaluate.backends.hf import HFBackend
from assay.evaluate.cache import ResultCache
from assay.evaluate.filters import INVALID, exact_match, extract_answer
from assay.evaluate.runner import build_choice_contexts, build_context, evaluate_model, fewshot_examples, score_choices
from assay.evaluate.tasks import GenerationSpec, Item, Task, TaskKind
from tests.factory.models import build_model, tiny_tokenizer


def test_acc_acc_norm_acc_bytes_differ_as_defined() -> None:
    # choice 0 is short, choice 1 long in characters, choice 2 has multi-byte characters
    item = Item(id="x", context="Q", choices=("ab", "abcdefgh", "éé"), gold=1)
    lls = [-4.0, -9.0, -5.0]
    m = score_choices(item, lls, [False, True, False])
    # acc: argmax ll -> 0; acc_norm: ll/chars = -2, -1.125, -2.5 -> 1; acc_bytes: ll/bytes = -2, -1.125, -1.25 -> 1
    assert m["acc"] == 0.0 and m["acc_norm"] == 1.0 and m["acc_bytes"] == 1.0 and m["exact_match"] == 1.0
    item2 = Item(id="y", context="Q", choices=("ab", "abcdef", "éé"), gold=2)
    m2 = score_choices(item2, [-4.0, -9.0, -4.2], [False] * 3)
    # chars: -2, -1.5, -2.1 -> 1 ; bytes: -2, -1.5, -1.05 -> 2
    assert m2["acc_norm"] == 0.0 and m2["acc_bytes"] == 1.0


def test_mc2_is_the_normalised_mass_of_right_answers() -> None:
    item = Item(id="z", context="Q", choices=("a", "b", "c"), gold=(0, 1))
    m = score_choices(item, [math.log(0.2), math.log(0.3), math.log(0.5)], [False] * 3)
    assert m["mc2"] == pytest.approx(0.5)
    assert m["acc"] == 0.0  # argmax is the wrong answer c


@pytest.mark.parametrize(("text", "strict", "flexible"), [
    ("She has 3 apples, buys 5 more.\n#### 8", "8", "8"),
    ("The answer is $1,234.", INVALID, "$1,234."),
    ("#### -12.5 and then 7", "-12.5", "7"),
    ("no number here", INVALID, INVALID),
])
def test_gsm8k_extraction(text: str, strict: str, flexible: str) -> None:
    assert extract_answer(text, "strict") == strict
    assert extract_answer(text, "flexible") == flexible


def test_exact_match_normalisation_like_gsm8k() -> None:
    ignore = (",", "\\$", "(?s).*#### ", "\\.$")
    reference = "Janet sells 16 - 3 - 4 = 9 eggs.\n#### 1,018"
    assert exact_match("$1,018.", reference, ignore_case=True, regexes_to_ignore=ignore) == 1.0
    assert exact_match("1018", reference, regexes_to_ignore=ignore) == 1.0
    assert exact_match("1019", reference, regexes_to_ignore=ignore) == 0.0
    assert exact_match("Paris!", "paris", ignore_case=True, ignore_punctuation=True) == 1.0
    assert exact_match("Paris!", "paris") == 0.0


def _mc_task(n: int = 6, **kw) -> Task:
    words = ["weights", "tokenizer", "card", "pickle", "signature", "hashes", "base", "cost"]
    items = tuple(Item(id=f"i{k}", context=f"Question {k}: which word comes next?\nAnswer:",
                       choices=tuple(words[(k + j) % len(words)] for j in range(4)), gold=k % 4) for k in range(n))
    return Task(name=kw.pop("name", "words"), version=kw.pop("version", "1"), kind=TaskKind.MULTIPLE_CHOICE,
                items=items, **kw)


@pytest.fixture(scope="module")
def backend() -> HFBackend:
    return HFBackend.from_model(build_model(seed=0), tiny_tokenizer(), model_id="tiny-seed0", threads=1)


def test_fewshot_first_n_skips_the_item_itself() -> None:
    task = _mc_task(num_fewshot=2)
    task = Task(**{**task.__dict__, "fewshot_pool": task.items})
    assert [e.id for e in fewshot_examples(task, task.items[0])] == ["i1", "i2"]
    assert [e.id for e in fewshot_examples(task, task.items[3])] == ["i0", "i1"]


def test_evaluate_and_resume_from_the_cache(backend: HFBackend, tmp_path: Path) -> None:
    cache = ResultCache(tmp_path / "c.sqlite3")
    task = _mc_task(8)
    partial = evaluate_model(backend, [task], limit=3, cache=cache)["words"]
    assert partial.n == 3 and partial.cached == 0
    full = evaluate_model(backend, [task], cache=cache)["words"]  # an interrupted run picks up where it stopped
    assert full.n == 8 and full.cached == 3
    again = evaluate_model(backend, [task], cache=cache)["words"]
    assert again.cached == 8 and again.metrics == full.metrics
    assert [r.loglikelihoods for r in again.per_item] == [r.loglikelihoods for r in full.per_item]
    uncached = evaluate_model(backend, [task], cache=None)["words"]
    assert uncached.metrics == full.metrics
    # per-item values reproduce the task metric, and its standard error is the sample one
    accs = np.array([r.metrics["acc"] for r in full.per_item])
    assert full.metrics["acc"] == pytest.approx(accs.mean())
    assert full.stderr["acc"] == pytest.approx(accs.std(ddof=1) / math.sqrt(8))
    # a new task version, or another model, is never served from the cache
    assert evaluate_model(backend, [_mc_task(8, version="2")], cache=cache)["words"].cached == 0
    other = HFBackend.from_model(build_model(seed=1), tiny_tokenizer(), model_id="tiny-seed1", threads=1)
    assert evaluate_model(other, [task], cache=cache)["words"].cached == 0


def test_generation_and_perplexity_tasks(backend: HFBackend) -> None:
    gen = Task(name="gen", version="1", kind=TaskKind.GENERATE,
               items=(Item(id="g", context="The quick brown", gold="x"),),
               generation=GenerationSpec(until=("\n",), max_tokens=6, extract=("exact", "flexible")))
    ppl = Task(name="ppl", version="1", kind=TaskKind.PERPLEXITY,
               items=(Item(id="d1", text="The quick brown fox jumps."), Item(id="d2", text="A small model.")))
    res = evaluate_model(backend, [gen, ppl])
    assert set(res["gen"].metrics) == {"exact_match", "exact_match_flexible"}
    item = res["ppl"].per_item[0]
    assert item.metrics["bytes"] == len("The quick brown fox jumps.") and item.metrics["words"] == 5
    total_lp = sum(r.metrics["logprob"] for r in res["ppl"].per_item)
    total_tok = sum(r.metrics["tokens"] for r in res["ppl"].per_item)
    assert res["ppl"].metrics["token_perplexity"] == pytest.approx(math.exp(-total_lp / total_tok))
    nbytes = len("The quick brown fox jumps.") + len("A small model.")
    assert res["ppl"].metrics["bits_per_byte"] == pytest.approx(-total_lp / nbytes / math.log(2))


def test_invalid_tasks_are_refused(backend: HFBackend) -> None:
    empty = Task(name="e", version="1", kind=TaskKind.MULTIPLE_CHOICE, items=())
    with pytest.raises(EvalError, match="no items"):
        evaluate_model(backend, [empty])
    bad = Task(name="b", version="1", kind=TaskKind.MULTIPLE_CHOICE,
               items=(Item(id="0", context="Q", choices=("a", "b"), gold=2),))
    with pytest.raises(EvalError, match="out of range"):
        evaluate_model(backend, [bad])
    with pytest.raises(EvalError, match="few-shot pool has 0"):
        evaluate_model(backend, [_mc_task(num_fewshot=2)])


# ------------------------------------------------------------------------------ per-item prompts (issue 6)
def _naive_loglikelihood(model, tok, context: str, continuation: str) -> float:
    """lm-evaluation-harness's reference: one full forward over context + continuation, nothing shared."""
    import torch

    ctx = tok(context)["input_ids"]
    whole = tok(context + continuation)["input_ids"]
    cont = whole[len(ctx):]
    assert whole[:len(ctx)] == ctx and cont
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([whole[:-1]])).logits[0, -len(cont):].float()
    return float(torch.log_softmax(logits, -1).gather(1, torch.tensor(cont)[:, None]).sum())


WINO = [
    ("The trophy didn't fit in the suitcase because _ was too big.", "the trophy", "the suitcase", "1"),
    ("The trophy didn't fit in the suitcase because _ was too small.", "the trophy", "the suitcase", "2"),
    ("Anna gave Mia her coat because _ was cold.", "Anna", "Mia", "2"),
    ("The cat chased the mouse until _ was tired and stopped running.", "the cat", "the mouse", "1"),
]
WINO_TRAIN = [
    ("Sam lent Tom a pen because _ had forgotten his own at home.", "Sam", "Tom", "2"),
    ("The bottle broke the glass table when _ fell on it from the shelf.", "the bottle", "the glass table", "1"),
    ("Ben is taller than Joe, so _ sat in the back row of the photo.", "Ben", "Joe", "1"),
]


def _wino_rows(rows) -> list[dict[str, str]]:
    return [{"qID": f"q{k}", "sentence": s, "option1": a, "option2": b, "answer": ans}
            for k, (s, a, b, ans) in enumerate(rows)]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


@pytest.mark.parametrize("sampler", ["first_n", "random"])
def test_winogrande_scores_each_choice_after_its_own_context(backend: HFBackend, tmp_path: Path,
                                                             sampler: str) -> None:
    from assay.evaluate.suites import load_suite

    _write_jsonl(tmp_path / "dev.jsonl", _wino_rows(WINO))
    _write_jsonl(tmp_path / "train.jsonl", _wino_rows(WINO_TRAIN))
    task = dataclasses.replace(load_suite(f"winogrande:{tmp_path}"), num_fewshot=2, fewshot_sampler=sampler)
    res = evaluate_model(backend, [task])["winogrande"]
    assert res.n == len(WINO)
    filled = {r[0]: r[0].replace("_", r[1] if r[3] == "1" else r[2]) for r in WINO_TRAIN}
    for item, (sentence, opt1, opt2, answer), got in zip(task.items, WINO, res.per_item, strict=True):
        target = sentence.split("_", 1)[1].strip()
        # a few-shot example reads as the sentence with its right option filled in
        shots = fewshot_examples(task, item)
        prefix = "".join(filled[ex.context] + "\n\n" for ex in shots)
        prompts = build_choice_contexts(task, item, backend)
        assert prompts == [prefix + sentence.split("_")[0] + opt for opt in (opt1, opt2)]
        naive = [_naive_loglikelihood(backend.model, backend.tokenizer, p, " " + target) for p in prompts]
        assert got.loglikelihoods == pytest.approx(naive, abs=1e-4)
        assert got.loglikelihoods[0] != got.loglikelihoods[1]
        assert got.metrics["acc"] == float(int(np.argmax(naive)) == int(answer) - 1)


def test_per_choice_contexts_must_match_the_choices(backend: HFBackend) -> None:
    bad = Task(name="b", version="1", kind=TaskKind.MULTIPLE_CHOICE,
               items=(Item(id="0", choices=("x", "x"), gold=0, contexts=("a",)),))
    with pytest.raises(EvalError, match="1 per-choice contexts for 2 choices"):
        evaluate_model(backend, [bad])
    plain = Item(id="0", context="Q", choices=("a", "b"), gold=0)
    assert dataclasses.replace(plain, contexts=("Q1", "Q2")).digest() != plain.digest()


MMLU_TWO_SUBJECTS = [
    *({"question": f"Astronomy question {k}?", "subject": "astronomy", "choices": ["a", "b", "c", "d"],
       "answer": k % 4} for k in range(3)),
    *({"question": f"Virology question {k}?", "subject": "virology", "choices": ["e", "f", "g", "h"],
       "answer": k % 4} for k in range(3)),
]


def test_mmlu_items_of_several_subjects_get_their_own_description_and_examples(backend: HFBackend,
                                                                               tmp_path: Path) -> None:
    from assay.evaluate.suites import load_suite

    _write_jsonl(tmp_path / "test.jsonl", MMLU_TWO_SUBJECTS)
    _write_jsonl(tmp_path / "dev.jsonl", [dict(r, question=r["question"].replace("question", "example"))
                                          for r in MMLU_TWO_SUBJECTS])
    task = dataclasses.replace(load_suite(f"mmlu:{tmp_path}"), num_fewshot=2)
    assert task.description == ""  # two subjects: the description is per item
    for item in task.items:
        subject = item.meta["subject"]
        other = "virology" if subject == "astronomy" else "astronomy"
        prompt = build_context(task, item, backend)
        assert prompt.startswith(f"The following are multiple choice questions (with answers) about {subject}.\n\n")
        assert prompt.count("The following are multiple choice questions") == 1
        title = subject.capitalize()
        assert prompt.count(f"{title} example") == 2 and other.capitalize() not in prompt
        assert f"{title} example 0?" in prompt and f"{title} example 1?" in prompt  # first_n of its own subject
        assert prompt.endswith(item.context)
    res = evaluate_model(backend, [task])["mmlu"]
    assert res.n == 6
    too_many = dataclasses.replace(task, num_fewshot=4)
    with pytest.raises(EvalError, match="pool for group 'astronomy' has 3"):
        evaluate_model(backend, [too_many])
