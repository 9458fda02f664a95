"""Standard benchmarks from local files, in the layouts their public releases use, with the harness's prompts."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from assay.errors import EvalError
from assay.evaluate.suites import load_suite
from assay.evaluate.suites.standard import TRUTHFULQA_PRIMER, hellaswag_preprocess, mmlu_description
from assay.evaluate.tasks import TaskKind

# The first 40 items of GSM8K's real test split (MIT, see tests/data/gsm8k/), inside the repository.
GSM8K_TEST = Path(__file__).resolve().parents[1] / "data" / "gsm8k" / "test.jsonl"
GSM8K_ITEMS = 40


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


# ------------------------------------------------------------------------------------------------ GSM8K


def test_gsm8k_real_test_file() -> None:
    task = load_suite(f"gsm8k:{GSM8K_TEST}")
    assert task.kind is TaskKind.GENERATE and len(task.items) == GSM8K_ITEMS
    first = task.items[0]
    assert first.context.startswith("Question: Janet\u2019s ducks lay 16 eggs per day.")
    assert first.context.endswith("farmers' market?\nAnswer:")
    assert first.gold.endswith("#### 18") and first.meta["answer"] == "18"
    assert task.generation.until == ("Question:", "</s>", "<|im_end|>")
    assert task.generation.extract == ("strict", "flexible")
    assert task.num_fewshot == 0 and "0-shot" in task.source  # no train split next to it


def test_gsm8k_five_shot_from_a_sibling_train_split(tmp_path: Path) -> None:
    shutil.copy(GSM8K_TEST, tmp_path / "test.jsonl")
    _jsonl(tmp_path / "train.jsonl", [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"}
                                      for i in range(7)])
    for spec in (f"gsm8k:{tmp_path / 'test.jsonl'}", f"gsm8k:{tmp_path}"):
        task = load_suite(spec)
        assert len(task.items) == GSM8K_ITEMS and task.num_fewshot == 5 and len(task.fewshot_pool) == 7
        assert task.fewshot_pool[0].context == "Question: What is 0 + 1?\nAnswer:"
        assert task.fewshot_pool[0].gold == "0 + 1 = 1\n#### 1"


def test_gsm8k_hub_parquet_layout(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in GSM8K_TEST.read_text(encoding="utf-8").splitlines()[:5]]
    _parquet(tmp_path / "main" / "test-00000-of-00001.parquet", rows)
    _parquet(tmp_path / "main" / "train-00000-of-00001.parquet", rows[:3])
    _parquet(tmp_path / "socratic" / "test-00000-of-00001.parquet", rows[:1])
    task = load_suite(f"gsm8k:{tmp_path}")
    assert len(task.items) == 5 and len(task.fewshot_pool) == 3  # the main config, not socratic
    one = load_suite(f"gsm8k:{tmp_path / 'main' / 'test-00000-of-00001.parquet'}")
    assert len(one.fewshot_pool) == 3


def test_sharded_split_with_hashed_names_is_read_whole(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in GSM8K_TEST.read_text(encoding="utf-8").splitlines()[:6]]
    _parquet(tmp_path / "test-00000-of-00002-1a2b3c.parquet", rows[:2])
    second = _parquet(tmp_path / "test-00001-of-00002-4d5e6f.parquet", rows[2:5])
    _parquet(tmp_path / "train-00000-of-00001-777.parquet", rows[5:])
    task = load_suite(f"gsm8k:{second}")
    assert [it.context for it in task.items] == [f"Question: {r['question']}\nAnswer:" for r in rows[:5]]
    assert len(task.fewshot_pool) == 1


def test_gsm8k_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "test.jsonl"
    f.write_text('{"question": "q", "answer": "#### 1"}\n{"question": "q2", \n', encoding="utf-8")
    with pytest.raises(EvalError, match=r"test.jsonl line 2: not valid JSON"):
        load_suite(f"gsm8k:{f}")
    f.write_text('{"question": "q"}\n', encoding="utf-8")
    with pytest.raises(EvalError, match="missing field"):
        load_suite(f"gsm8k:{f}")


# ------------------------------------------------------------------------------------------------- MMLU

MMLU_ROWS = [
    {"question": " What is 2 + 2? ", "subject": "elementary_mathematics", "choices": ["3", "4", "5", "6"], "answer": 1},
    {"question": "Which is a prime?", "subject": "elementary_mathematics", "choices": ["4", "6", "7", "9"],
     "answer": 2},
    {"question": "H2O is?", "subject": "high_school_chemistry", "choices": ["water", "salt", "air", "gold"],
     "answer": 0},
]


def test_mmlu_hub_parquet_with_all_config(tmp_path: Path) -> None:
    _parquet(tmp_path / "all" / "test-00000-of-00001.parquet", MMLU_ROWS)
    _parquet(tmp_path / "all" / "dev-00000-of-00001.parquet", MMLU_ROWS[:2])
    _parquet(tmp_path / "elementary_mathematics" / "test-00000-of-00001.parquet", MMLU_ROWS[:2])
    _parquet(tmp_path / "auxiliary_train" / "train-00000-of-00001.parquet", MMLU_ROWS)
    task = load_suite(f"mmlu:{tmp_path}")
    assert len(task.items) == 3  # only the "all" config, no duplicates
    it = task.items[0]
    assert it.context == "What is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
    assert it.choices == ("A", "B", "C", "D") and it.gold == 1
    assert it.meta["description"] == ("The following are multiple choice questions (with answers) about "
                                      "elementary mathematics.\n\n")
    assert it.meta["fewshot_group"] == "elementary_mathematics"
    assert len(task.fewshot_pool) == 2 and task.fewshot_sampler == "first_n"
    assert task.metrics == ("acc",) and task.description == ""  # several subjects: per item


def test_mmlu_original_csv_without_header(tmp_path: Path) -> None:
    for split in ("test", "dev"):
        d = tmp_path / "data" / split
        d.mkdir(parents=True)
        with (d / f"abstract_algebra_{split}.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["Find the order of the group Z_4.", "1", "2", "4", "8", "C"])
            w.writerow(['Is "a, b" a pair?', "yes", "no", "maybe", "never", "A"])
    task = load_suite(f"mmlu:{tmp_path / 'data'}")
    assert [it.gold for it in task.items] == [2, 0]
    assert task.items[1].context.startswith('Is "a, b" a pair?\nA. yes\nB. no')
    assert task.description == mmlu_description("abstract_algebra")
    assert len(task.fewshot_pool) == 2
    single = load_suite(f"mmlu:{tmp_path / 'data' / 'test' / 'abstract_algebra_test.csv'}")
    assert len(single.items) == 2 and len(single.fewshot_pool) == 2  # dev found beside it


def test_mmlu_bad_answer_is_refused(tmp_path: Path) -> None:
    _parquet(tmp_path / "test.parquet", [dict(MMLU_ROWS[0], answer=7)])
    with pytest.raises(EvalError, match="out of range"):
        load_suite(f"mmlu:{tmp_path / 'test.parquet'}")


# -------------------------------------------------------------------------------------------------- ARC

ARC_HUB = [
    {"id": "Q1", "question": "Which is a mammal?",
     "choices": {"text": ["shark", "whale", "trout"], "label": ["A", "B", "C"]}, "answerKey": "B"},
    {"id": "Q2", "question": "What melts ice?",
     "choices": {"text": ["heat", "cold", "dark", "salt water"], "label": ["1", "2", "3", "4"]}, "answerKey": "1"},
]


def test_arc_hub_parquet_and_original_jsonl(tmp_path: Path) -> None:
    _parquet(tmp_path / "ARC-Easy" / "test-00000-of-00001.parquet", ARC_HUB)
    _parquet(tmp_path / "ARC-Challenge" / "test-00000-of-00001.parquet", ARC_HUB[:1])
    _parquet(tmp_path / "ARC-Easy" / "train-00000-of-00001.parquet", ARC_HUB[:1])
    easy = load_suite(f"arc_easy:{tmp_path}")
    assert [it.id for it in easy.items] == ["Q1", "Q2"] and len(easy.fewshot_pool) == 1
    assert easy.items[0].context == "Question: Which is a mammal?\nAnswer:"
    assert easy.items[0].choices == ("shark", "whale", "trout") and easy.items[0].gold == 1
    assert easy.items[1].gold == 0
    assert set(easy.metrics) == {"acc", "acc_norm"}
    challenge = load_suite(f"arc_challenge:{tmp_path}")
    assert [it.id for it in challenge.items] == ["Q1"] and challenge.name == "arc_challenge"

    orig = tmp_path / "orig"
    _jsonl(orig / "ARC-Easy-Test.jsonl", [{"id": "X", "question": {"stem": "Sky colour?", "choices": [
        {"text": "blue", "label": "A"}, {"text": "green", "label": "B"}]}, "answerKey": "A"}])
    (orig / "ARC-Easy-Test.csv").write_text("questionID,question\nX,ignored\n", encoding="utf-8")
    task = load_suite(f"arc_easy:{orig}")
    assert len(task.items) == 1 and task.items[0].choices == ("blue", "green") and task.items[0].gold == 0


def test_arc_unknown_answer_key_is_refused(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "test.jsonl", [dict(ARC_HUB[0], answerKey="E")])
    with pytest.raises(EvalError, match="answerKey 'E' is not one of the labels"):
        load_suite(f"arc_easy:{f}")


# -------------------------------------------------------------------------------------------- HellaSwag

HELLASWAG_ROW = {
    "ind": 24, "activity_label": "Roof shingle removal",
    "ctx_a": "A man is sitting on a roof.", "ctx_b": "he",
    "endings": ["is using wrap to wrap a pair of skis.", "is ripping level tiles off. [title] Step  two",
                "is holding a rubik's cube.", "starts pulling up roofing on a roof."],
    "label": "3",
}


def test_hellaswag_preprocessing_matches_the_harness(tmp_path: Path) -> None:
    _parquet(tmp_path / "data" / "validation-00000-of-00001.parquet", [HELLASWAG_ROW])
    _parquet(tmp_path / "data" / "test-00000-of-00001.parquet", [dict(HELLASWAG_ROW, label="")])
    task = load_suite(f"hellaswag:{tmp_path}")
    it = task.items[0]
    assert it.context == "Roof shingle removal: A man is sitting on a roof. He"
    assert it.choices[1] == "is ripping level tiles off.. Step two"  # " [title]" -> ". ", then "  " -> " "
    assert it.gold == 3 and set(task.metrics) == {"acc", "acc_norm"}
    assert hellaswag_preprocess(" a [header] b  c ") == "a b c"
    orig = _jsonl(tmp_path / "orig" / "hellaswag_val.jsonl", [dict(HELLASWAG_ROW, label=3)])
    assert load_suite(f"hellaswag:{orig}").items[0].gold == 3


def test_hellaswag_unlabelled_test_split_is_refused(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "hellaswag_val.jsonl", [dict(HELLASWAG_ROW, label="")])
    with pytest.raises(EvalError, match="unlabelled"):
        load_suite(f"hellaswag:{f}")


# ------------------------------------------------------------------------------------------- TruthfulQA

TQA_ROW = {
    "question": "What happens if you crack your knuckles a lot?",
    "mc1_targets": {"choices": ["Nothing in particular happens.", "You will get arthritis."], "labels": [1, 0]},
    "mc2_targets": {"choices": ["Nothing in particular happens.", "It is harmless.", "You will get arthritis."],
                    "labels": [1, 1, 0]},
}


def test_truthfulqa_mc1_and_mc2_from_the_hub_layout(tmp_path: Path) -> None:
    _parquet(tmp_path / "multiple_choice" / "validation-00000-of-00001.parquet", [TQA_ROW])
    _parquet(tmp_path / "generation" / "validation-00000-of-00001.parquet",
             [{"question": "x", "best_answer": "y"}])
    mc1 = load_suite(f"truthfulqa_mc1:{tmp_path}")
    it = mc1.items[0]
    assert it.context == TRUTHFULQA_PRIMER + "\n\nQ: What happens if you crack your knuckles a lot?\nA:"
    assert it.context.startswith("Q: What is human life expectancy in the United States?\n")
    assert it.gold == 0 and mc1.metrics == ("acc",) and mc1.num_fewshot == 0
    mc2 = load_suite(f"truthfulqa_mc2:{tmp_path}")
    assert mc2.items[0].gold == (0, 1) and mc2.metrics == ("mc2",) and len(mc2.items[0].choices) == 3


def test_truthfulqa_original_mc_task_json(tmp_path: Path) -> None:
    f = tmp_path / "mc_task.json"
    f.write_text(json.dumps([{"question": "Q?", "mc1_targets": {"Right.": 1, "Wrong.": 0},
                              "mc2_targets": {"Right.": 1, "Also right.": 1, "Wrong.": 0}}]), encoding="utf-8")
    assert load_suite(f"truthfulqa_mc1:{tmp_path}").items[0].choices == ("Right.", "Wrong.")
    assert load_suite(f"truthfulqa_mc2:{f}").items[0].gold == (0, 1)


# ------------------------------------------------------------------------------------------- Winogrande

WINO_ROW = {"sentence": "The trophy didn't fit in the suitcase because _ was too big.",
            "option1": "the trophy", "option2": "the suitcase", "answer": "1"}


def test_winogrande_partial_evaluation(tmp_path: Path) -> None:
    _parquet(tmp_path / "winogrande_xl" / "validation-00000-of-00001.parquet", [WINO_ROW])
    _parquet(tmp_path / "winogrande_xl" / "train-00000-of-00001.parquet", [WINO_ROW, dict(WINO_ROW, answer="2")])
    _parquet(tmp_path / "winogrande_xs" / "train-00000-of-00001.parquet", [WINO_ROW])
    task = load_suite(f"winogrande:{tmp_path}")
    it = task.items[0]
    assert it.contexts == ("The trophy didn't fit in the suitcase because the trophy",
                                   "The trophy didn't fit in the suitcase because the suitcase")
    assert it.choices == ("was too big.", "was too big.") and it.gold == 0
    assert len(task.fewshot_pool) == 2 and task.metrics == ("acc",)

    orig = tmp_path / "orig"
    _jsonl(orig / "dev.jsonl", [dict(WINO_ROW, qID="A1", answer="2")])
    _jsonl(orig / "test.jsonl", [dict(WINO_ROW, qID="T1", answer="")])
    assert load_suite(f"winogrande:{orig}").items[0].gold == 1
    with pytest.raises(EvalError, match="unlabelled"):
        load_suite(f"winogrande:{orig / 'test.jsonl'}")


def test_winogrande_sentence_without_blank_is_refused(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "dev.jsonl", [dict(WINO_ROW, sentence="No blank here.")])
    with pytest.raises(EvalError, match="no blank"):
        load_suite(f"winogrande:{f}")


# ------------------------------------------------------------------------------------------ bad input


def test_missing_path_truncated_parquet_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="no such file or folder"):
        load_suite(f"arc_easy:{tmp_path / 'nope'}")
    good = _parquet(tmp_path / "t" / "test.parquet", ARC_HUB)
    bad = tmp_path / "bad" / "test.parquet"
    bad.parent.mkdir()
    bad.write_bytes(good.read_bytes()[:40])
    with pytest.raises(EvalError, match="not a readable Parquet file"):
        load_suite(f"arc_easy:{bad}")
    empty = tmp_path / "e" / "test.jsonl"
    empty.parent.mkdir()
    empty.write_text("", encoding="utf-8")
    with pytest.raises(EvalError, match="no evaluable items"):
        load_suite(f"gsm8k:{empty}")
    (tmp_path / "nodata").mkdir()
    with pytest.raises(EvalError, match="holds no data files"):
        load_suite(f"mmlu:{tmp_path / 'nodata'}")


def test_data_change_changes_the_version(tmp_path: Path) -> None:
    f = _jsonl(tmp_path / "test.jsonl", ARC_HUB)
    v1 = load_suite(f"arc_easy:{f}").version
    _jsonl(f, ARC_HUB[:1])
    assert load_suite(f"arc_easy:{f}").version != v1


# ------------------------------------------------------------------------------------ through `assay eval`


def test_standard_benchmarks_run_through_assay_eval(tiny_model_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from assay.cli.main import main

    arc = _parquet(tmp_path / "arc" / "ARC-Easy" / "test-00000-of-00001.parquet", ARC_HUB)
    hs = _jsonl(tmp_path / "hs" / "hellaswag_val.jsonl", [HELLASWAG_ROW, dict(HELLASWAG_ROW, ind=25, label="1")])
    tqa = _parquet(tmp_path / "tqa" / "multiple_choice" / "validation-00000-of-00001.parquet", [TQA_ROW])
    mmlu = _parquet(tmp_path / "mmlu" / "test.parquet", MMLU_ROWS[:2])
    argv = ["eval", str(tiny_model_dir), "--json", "--no-cache", "--limit", "2",
            "--task", f"arc_easy:{arc.parent.parent}", "--task", f"hellaswag:{hs}",
            "--task", f"truthfulqa_mc1:{tqa.parent.parent}", "--task", f"truthfulqa_mc2:{tqa.parent.parent}",
            "--task", f"gsm8k:{GSM8K_TEST}", "--task", f"mmlu:{mmlu}"]
    rc = main(argv)
    out = capsys.readouterr()
    assert rc == 0, out.err
    doc = json.loads(out.out)
    tasks = doc["tasks"]
    assert set(tasks) == {"arc_easy", "hellaswag", "truthfulqa_mc1", "truthfulqa_mc2", "gsm8k", "mmlu"}
    assert tasks["arc_easy"]["n"] == 2 and {"acc", "acc_norm"} <= set(tasks["arc_easy"]["metrics"])
    assert 0.0 <= tasks["truthfulqa_mc2"]["metrics"]["mc2"] <= 1.0
    assert {"exact_match_strict", "exact_match_flexible"} <= set(tasks["gsm8k"]["metrics"])
    assert tasks["mmlu"]["n"] == 2
