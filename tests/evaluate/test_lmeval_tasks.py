"""lm-evaluation-harness task YAMLs read with lm-eval 0.4.13's semantics (no lm-eval needed to run these tests).

Expected values are derived from lm-eval's documented behaviour: its default few-shot sampler is one
``random.Random(1234)`` drawing ``sample(pool, k)`` for each evaluated document in order (``sample(pool, k + 1)``
minus the document itself when the few-shot split is the evaluated split); a YAML list of choices is taken
literally; a text label is looked up among the choices. The real task files are vendored from lm-eval 0.4.13
(MIT, tests/data/lmeval/tasks/LICENSE.md) and run over local items in each benchmark's published layout.
"""

from __future__ import annotations

import json
import math
import random
import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from assay.cli.main import main
from assay.errors import EvalError
from assay.evaluate.backends.base import (Backend, BackendInfo, GenerationRequest, LoglikelihoodRequest,
                                          LoglikelihoodResult, RollingResult)
from assay.evaluate.loading import load_task, load_tasks
from assay.evaluate.runner import build_choice_contexts, build_context, evaluate_model, fewshot_examples
from assay.evaluate.tasks import TaskKind
from tests.evaluate.files import write_jsonl, write_yaml

LMEVAL = Path(__file__).resolve().parents[1] / "data" / "lmeval"
TASKS, DATA = LMEVAL / "tasks", LMEVAL / "data"


def _data(name: str, **splits: str) -> dict[str, list[Path]]:
    return {split: [DATA / name / f"{stem}.jsonl"] for split, stem in splits.items()}


class FakeBackend(Backend):
    """Deterministic scores from the strings alone, so expected metrics can be computed by hand."""

    @property
    def info(self) -> BackendInfo:
        return BackendInfo(backend="fake", model_id="fake")

    @staticmethod
    def score(context: str, continuation: str) -> float:
        return -((len(continuation) * 7 + len(context) * 3 + sum(map(ord, continuation))) % 23) / 4.0 - 0.25

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], **_: object) -> list[LoglikelihoodResult]:
        return [LoglikelihoodResult(self.score(r.context, r.continuation), len(r.continuation) % 3 == 0, 1)
                for r in requests]

    def loglikelihood_rolling(self, texts: Sequence[str], **_: object) -> list[RollingResult]:
        return [RollingResult(-0.5 * len(t), len(t) // 4) for t in texts]

    def generate(self, requests: Sequence[GenerationRequest], **_: object) -> list[str]:
        return [" B\nmore" if len(r.prompt) % 2 else "  C." for r in requests]


def _shot_questions(task, item) -> list[str]:
    return [ex.context for ex in fewshot_examples(task, item)]


# ------------------------------------------------------------------------------------- (a) few-shot draws
def _fewshot_task(tmp_path: Path, extra: str = "") -> Path:
    train = [{"q": f"train question {i}", "options": ["yes", "no"], "label": i % 2} for i in range(10)]
    test = [{"q": f"test question {i}", "options": ["yes", "no"], "label": i % 2} for i in range(6)]
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(tmp_path / "test.jsonl", test)
    return write_yaml(tmp_path / "t.yaml", f"""\
        task: draws
        dataset_path: json
        dataset_kwargs: {{data_files: {{train: {tmp_path / 'train.jsonl'}, test: {tmp_path / 'test.jsonl'}}}}}
        output_type: multiple_choice
        training_split: train
        test_split: test
        doc_to_text: q
        doc_to_choice: options
        doc_to_target: label
        {extra}
        """)


def test_num_fewshot_without_a_sampler_draws_what_lm_eval_draws(tmp_path: Path) -> None:
    [task] = load_tasks(str(_fewshot_task(tmp_path)), num_fewshot=3)
    rnd = random.Random(1234)  # lm-eval: fewshot_random_seed=1234, one generator for the task's documents in order
    for item in task.items:
        expected = [f"train question {j}" for j in rnd.sample(range(10), 3)]
        assert _shot_questions(task, item) == expected
    # the draws for the first items do not depend on how many items run (--limit)
    ctx = build_context(task, task.items[0])
    assert ctx.startswith(expected_first := f"{_shot_questions(task, task.items[0])[0]} ")
    assert expected_first.startswith("train question")


def test_same_split_draws_k_plus_one_and_drop_the_item(tmp_path: Path) -> None:
    [task] = load_tasks(str(_fewshot_task(tmp_path, "fewshot_split: test")), num_fewshot=2)
    assert task.fewshot_exclude_self
    rnd = random.Random(1234)
    for i, item in enumerate(task.items):
        drawn = [j for j in rnd.sample(range(6), 3) if j != i][:2]
        assert _shot_questions(task, item) == [f"test question {j}" for j in drawn]


def test_num_fewshot_zero_in_the_file_wins_and_first_n_is_kept(tmp_path: Path) -> None:
    [fixed] = load_tasks(str(_fewshot_task(tmp_path, "num_fewshot: 0")), num_fewshot=4)
    assert fixed.num_fewshot == 0 and [n for n in fixed.notes if "num_fewshot: 0" in n] == [
        "num_fewshot: 0 in the task file wins over --num-fewshot 4 (as in lm-evaluation-harness)"]
    path = _fewshot_task(tmp_path, "fewshot_config: {sampler: first_n}")
    [first] = load_tasks(str(path), num_fewshot=2)
    assert _shot_questions(first, first.items[3]) == ["train question 0", "train question 1"]


def test_hellaswag_layout_excludes_the_item_even_from_another_split(tmp_path: Path) -> None:
    # no test split: lm-eval compares fewshot split (None) with test split (None) and passes the item to exclude,
    # so every draw is sample(pool, k + 1) cut to k
    [task] = load_tasks(str(_fewshot_task(tmp_path).with_name("t.yaml")), num_fewshot=2)
    text = (tmp_path / "t.yaml").read_text().replace("test_split: test", "validation_split: test")
    [hs] = load_tasks(str(write_yaml(tmp_path / "v.yaml", text)), num_fewshot=2)
    assert not task.fewshot_exclude_self and hs.fewshot_exclude_self
    rnd = random.Random(1234)
    for item in hs.items:
        assert _shot_questions(hs, item) == [f"train question {j}" for j in rnd.sample(range(10), 3)[:2]]


# ------------------------------------------------------------------------------------- (b), (c) choices, labels
def test_a_yaml_list_of_choices_is_taken_literally(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"q": "Pick", "a": "left", "b": "right", "label": 1}])
    task = load_task(str(write_yaml(tmp_path / "t.yaml", f"""\
        task: lit
        dataset_path: json
        dataset_kwargs: {{data_files: {{test: {tmp_path / 'd.jsonl'}}}}}
        output_type: multiple_choice
        test_split: test
        doc_to_text: q
        doc_to_choice: ["{{{{a}}}}", "{{{{b}}}}"]
        doc_to_target: label
        """)))
    assert task.items[0].choices == ("{{a}}", "{{b}}")  # what lm-eval scores, not "left" / "right"
    assert any("scored literally" in n for n in task.notes)


def test_a_text_label_is_looked_up_among_the_choices(tmp_path: Path) -> None:
    rows = [{"q": "Capital of Italy?", "options": ["Paris", "Rome", "Oslo"], "label": "Rome", "digit": "1",
             "far": 7}]
    write_jsonl(tmp_path / "d.jsonl", rows)

    def task(target: str):
        return load_task(str(write_yaml(tmp_path / "t.yaml", f"""\
            task: lab
            dataset_path: json
            dataset_kwargs: {{data_files: {{test: {tmp_path / 'd.jsonl'}}}}}
            output_type: multiple_choice
            test_split: test
            doc_to_text: q
            doc_to_choice: options
            doc_to_target: {target}
            """)))

    assert task("label").items[0].gold == 1
    assert task('"{{digit}}"').items[0].gold == 1  # a template that renders to digits is an index
    with pytest.raises(EvalError, match=r"doc_to_target gives the text '1'.*not one of the choices"):
        task("digit")  # a column holding the text "1" is looked up, and is not a choice
    with pytest.raises(EvalError, match=r"doc_to_target gives index 7 .* out of range"):
        task("far")


# ------------------------------------------------------------------------------------- task code
def test_task_code_runs_only_when_allowed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    yaml_path = TASKS / "hellaswag" / "hellaswag.yaml"
    data = _data("hellaswag", validation="validation", train="train")
    with pytest.raises(EvalError, match=r"hellaswag\.yaml: `process_docs` is `!function utils.process_docs`.*"
                                        r"--allow-task-code"):
        load_tasks(str(yaml_path), data=data)
    rc = main(["eval", str(tmp_path / "no-such-model"), "--task", str(yaml_path),
               "--data", f"validation={data['validation'][0]}"])
    err = capsys.readouterr().err
    assert rc == 2 and "--allow-task-code" in err and "no-such-model" not in err  # refused before the model


def test_hub_dataset_without_data_names_the_option() -> None:
    with pytest.raises(EvalError, match="never downloads.*--data test="):
        load_tasks(str(TASKS / "arc" / "arc_easy.yaml"))


# ------------------------------------------------------------------------------------- real task files
def test_arc_easy_and_challenge_unchanged() -> None:
    [easy] = load_tasks(str(TASKS / "arc" / "arc_easy.yaml"), data=_data("arc_easy", test="test", train="train"))
    assert easy.name == "arc_easy" and easy.metrics == ("acc", "acc_norm") and easy.num_fewshot == 0
    first = easy.items[0]
    assert build_context(easy, first) == "Question: Which gas do plants take in from the air to make food?\nAnswer:"
    assert first.choices == ("oxygen", "carbon dioxide", "nitrogen", "helium") and first.gold == 1
    assert easy.items[4].gold == 0  # answerKey "1" among labels "1".."4"
    assert any("decontaminat" in n for n in easy.notes)
    [challenge] = load_tasks(str(TASKS / "arc" / "arc_challenge.yaml"),
                             data=_data("arc_challenge", test="test", train="train"))
    assert challenge.name == "arc_challenge" and challenge.items[2].gold == 1


def test_mmlu_subject_with_its_dev_examples() -> None:
    [task] = load_tasks(str(TASKS / "mmlu" / "default" / "mmlu_anatomy.yaml"), num_fewshot=2,
                        data=_data("mmlu_anatomy", test="test", dev="dev"))
    assert task.fewshot_sampler == "lm_eval_first_n" and not task.fewshot_exclude_self
    assert build_context(task, task.items[0]) == (
        "The following are multiple choice questions (with answers) about anatomy.\n\n"
        "What is the embryological origin of the hyoid bone?\nA. The first pharyngeal arch\n"
        "B. The first and second pharyngeal arches\nC. The second pharyngeal arch\n"
        "D. The second and third pharyngeal arches\nAnswer: D\n\n"
        "Which of these branches of the trigeminal nerve contain somatic motor processes?\n"
        "A. The supraorbital nerve\nB. The infraorbital nerve\nC. The mental nerve\nD. None of the above\n"
        "Answer: D\n\n"
        "Which bone is the longest in the human body?\nA. Humerus\nB. Tibia\nC. Femur\nD. Radius\nAnswer:")
    assert task.items[0].choices == ("A", "B", "C", "D") and task.items[0].gold == 2


def test_hellaswag_with_its_process_docs() -> None:
    import datasets  # noqa: F401 - process_docs is handed a datasets.Dataset (test extra)

    [task] = load_tasks(str(TASKS / "hellaswag" / "hellaswag.yaml"), allow_task_code=True,
                        data=_data("hellaswag", validation="validation", train="train"))
    assert task.version.startswith("1.0+code.") and "utils.py" in task.source
    assert task.items[0].context == "Making a sandwich: A man places two slices of bread on a plate. He"
    assert task.items[0].gold == 0  # "{{label}}" renders "0": an index
    # preprocess(): stripped, " [title]" becomes ". ", other [..] go, double spaces close
    assert task.items[2].context == ("Personal Care and Style: How to brush your teeth. : Wet your toothbrush. Put "
                                     "a small amount of toothpaste on the brush.")
    assert task.items[2].gold == 2


def test_winogrande_one_context_per_choice() -> None:
    [task] = load_tasks(str(TASKS / "winogrande" / "default.yaml"), allow_task_code=True, num_fewshot=1,
                        data=_data("winogrande", validation="validation", train="train"))
    item = task.items[0]
    assert item.contexts == ("The trophy doesn't fit into the brown suitcase because the trophy",
                             "The trophy doesn't fit into the brown suitcase because the suitcase")
    assert item.choices == ("is too large.", "is too large.") and item.gold == 0
    shot = random.Random(1234).sample(range(5), 2)  # validation eval, no test split: k + 1 drawn
    train = [json.loads(x) for x in (DATA / "winogrande" / "train.jsonl").read_text().splitlines()]
    ex = train[shot[0]]
    gold = ex["option1"] if ex["answer"] == "1" else ex["option2"]
    blank = ex["sentence"].index("_")
    expected_shot = ex["sentence"][:blank] + gold + " " + ex["sentence"][blank + 1:].strip() + "\n\n"
    assert build_choice_contexts(task, item)[1] == expected_shot + item.contexts[1]


def test_generation_tasks_gsm8k_and_cot() -> None:
    [gsm] = load_tasks(str(TASKS / "gsm8k" / "gsm8k.yaml"), data=_data("gsm8k", test="test", train="train"))
    assert gsm.num_fewshot == 5 and gsm.fewshot_sampler == "lm_eval_default" and not gsm.fewshot_exclude_self
    assert gsm.generation.extract == ("strict", "flexible")
    assert gsm.generation.until == ("Question:", "</s>", "<|im_end|>") and gsm.generation.ignore_case
    [cot] = load_tasks(str(TASKS / "gsm8k" / "gsm8k-cot.yaml"), data=_data("gsm8k", test="test"))
    ctx = build_context(cot, cot.items[0])
    assert cot.num_fewshot == 8 and ctx.startswith("Q: There are 15 trees in the grove.")
    assert ctx.count("\n\nQ: ") == 8 and "The answer is 8.\n\nQ: Janet" in ctx and ctx.endswith("\nA:")
    assert cot.items[0].gold == "18"
    assert cot.generation.extract[0].startswith("pipeline:") and cot.generation.extract[1] == "flexible"


def test_lambada_wikitext_and_their_metrics() -> None:
    [lam] = load_tasks(str(TASKS / "lambada" / "lambada_openai.yaml"), data=_data("lambada", test="test"))
    assert lam.kind == TaskKind.LOGLIKELIHOOD and lam.metrics == ("perplexity", "acc")
    assert lam.items[0].gold == " snow" and lam.items[0].context.endswith("stepped out into the")
    [wiki] = load_tasks(str(TASKS / "wikitext" / "wikitext.yaml"), allow_task_code=True,
                        data=_data("wikitext", test="test"))
    assert wiki.items[0].text.startswith("\n= Valkyria Chronicles =\n\nThe game's story")
    assert "2008-2009 and sold over 1,000,000 copies." in wiki.items[0].text
    backend = FakeBackend()
    res = evaluate_model(backend, [lam, wiki], cache=None)
    lls = [FakeBackend.score(i.context, i.gold) for i in lam.items]
    assert res[lam.name].metrics["perplexity"] == pytest.approx(math.exp(-np.mean(lls)))
    assert res[lam.name].metrics["acc"] == np.mean([len(i.gold) % 3 == 0 for i in lam.items])
    # wikitext's process_results counts words and bytes of the page before detokenisation
    pages = [json.loads(x)["page"] for x in (DATA / "wikitext" / "test.jsonl").read_text().splitlines()]
    total = sum(-0.5 * len(i.text) for i in wiki.items)
    words = sum(len(__import__("re").split(r"\s+", p)) for p in pages)
    assert res[wiki.name].metrics["word_perplexity"] == pytest.approx(math.exp(-total / words))
    nbytes = sum(len(p.encode()) for p in pages)
    assert res[wiki.name].metrics["bits_per_byte"] == pytest.approx(-total / nbytes / math.log(2))


def test_boolq_piqa_truthfulqa_mc1_and_extra_metrics() -> None:
    [boolq] = load_tasks(str(TASKS / "assay_extra" / "boolq_metrics.yaml"),
                         data=_data("boolq", validation="validation", train="train"))
    assert boolq.items[0].choices == ("no", "yes") and [i.gold for i in boolq.items] == [1, 0, 0, 1, 1, 0]
    assert boolq.metrics == ("acc", "acc_norm", "acc_mutual_info", "f1")
    [piqa] = load_tasks(str(TASKS / "piqa" / "piqa.yaml"), data=_data("piqa", validation="validation"))
    assert piqa.items[1].choices == ("Put it in the oven.", "Add a few ice cubes to it.") and piqa.items[1].gold == 1
    [mc1] = load_tasks(str(TASKS / "truthfulqa" / "truthfulqa_mc1.yaml"), num_fewshot=3,
                       data=_data("truthfulqa", validation="validation"))
    assert mc1.num_fewshot == 0  # num_fewshot: 0 in the file
    assert build_context(mc1, mc1.items[0]).endswith("\n\nQ: What happens if you swallow chewing gum?\nA:")
    res = evaluate_model(FakeBackend(), [boolq], cache=None)[boolq.name]
    cond = [[FakeBackend.score(i.context, " " + c) for c in i.choices] for i in boolq.items]
    uncond = [[FakeBackend.score("", " " + c) for c in i.choices] for i in boolq.items]
    golds = [i.gold for i in boolq.items]
    preds = [int(np.argmax(c)) for c in cond]
    mutual = [int(np.argmax(np.subtract(c, u))) for c, u in zip(cond, uncond, strict=True)]
    assert res.metrics["acc"] == np.mean([p == g for p, g in zip(preds, golds, strict=True)])
    assert res.metrics["acc_mutual_info"] == np.mean([p == g for p, g in zip(mutual, golds, strict=True)])
    tp = sum(p == g == 1 for p, g in zip(preds, golds, strict=True))
    fp_fn = sum(p != g for p, g in zip(preds, golds, strict=True))
    assert res.metrics["f1"] == pytest.approx(2 * tp / (2 * tp + fp_fn) if tp + fp_fn else float("nan"),
                                              nan_ok=True)


def test_truthfulqa_mc2_runs_its_process_results() -> None:
    import datasets  # noqa: F401 - the task's utils.py imports these three (test extra)
    import rouge_score  # noqa: F401
    import sacrebleu  # noqa: F401

    [mc2] = load_tasks(str(TASKS / "truthfulqa" / "truthfulqa_mc2.yaml"), allow_task_code=True,
                       data=_data("truthfulqa", validation="validation"))
    res = evaluate_model(FakeBackend(), [mc2], cache=None)[mc2.name]
    rows = [json.loads(x) for x in (DATA / "truthfulqa" / "validation.jsonl").read_text().splitlines()]
    expected = []
    for item, row in zip(mc2.items, rows, strict=True):
        p = np.exp([FakeBackend.score(item.context, " " + c) for c in item.choices])
        expected.append(p[np.array(row["mc2_targets"]["labels"]) == 1].sum() / p.sum())
    assert res.metrics["acc"] == pytest.approx(np.mean(expected))


def test_generation_pipeline_gen_prefix_and_templated_description() -> None:
    [task] = load_tasks(str(TASKS / "assay_extra" / "arc_gen.yaml"), num_fewshot=1,
                        data=_data("arc_easy", test="test", train="train"))
    ctx = build_context(task, task.items[0])
    assert ctx.startswith("Science questions (set ASSAY).\n\nQuestion: ")
    assert "\nAnswer: " in ctx and "\n---\n" in ctx  # a shot: gen_prefix, a space, the answer, fewshot_config delim
    assert ctx.endswith("D. helium\nAnswer:")
    res = evaluate_model(FakeBackend(), [task], cache=None)[task.name]
    [name] = res.metrics
    assert name == "exact_match_letter"
    for r, item in zip(res.per_item, task.items, strict=True):
        want = "b" if " B" in str(r.prediction) else "c"  # lowercase, then \b([a-d1-4])\b, then strip
        assert r.extracted[name] == want
        assert r.metrics[name] == float(want == str(item.gold).lower())


def test_unknown_and_unsupported_fields_name_themselves(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"q": "x", "options": ["a", "b"], "label": 0}])
    base = f"""\
        task: u
        dataset_path: json
        dataset_kwargs: {{data_files: {{test: {tmp_path / 'd.jsonl'}}}}}
        output_type: multiple_choice
        test_split: test
        doc_to_text: q
        doc_to_choice: options
        doc_to_target: label
        """
    for extra, message in (("use_prompt: x", "use_prompt"), ("doc_to_image: img", "doc_to_image"),
                           ("unsafe_code: true", "unsafe_code"),
                           ("filter_list: [{name: f, filter: [{function: majority_vote}]}]", "majority_vote")):
        text = textwrap.dedent(base) + extra + "\n"
        if "filter_list" in extra:
            text = text.replace("multiple_choice", "generate_until").replace("doc_to_choice: options\n", "")
        with pytest.raises(EvalError, match=message):
            load_task(str(write_yaml(tmp_path / "u.yaml", text)))


def test_num_fewshot_in_the_file_without_a_sampler_draws_as_lm_eval(tmp_path: Path) -> None:
    task = load_task(str(_fewshot_task(tmp_path, "num_fewshot: 3")))
    rnd = random.Random(1234)
    assert [_shot_questions(task, item) for item in task.items] == [
        [f"train question {j}" for j in rnd.sample(range(10), 3)] for _ in task.items]


def test_cli_runs_a_real_task_file_on_local_data(zoo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ASSAY_CACHE_DIR", str(tmp_path / "cache"))
    data = _data("arc_easy", test="test", train="train")
    rc = main(["eval", str(zoo.safetensors_dir), "--task", str(TASKS / "arc" / "arc_easy.yaml"),
               "--data", f"test={data['test'][0]}", "--data", f"train={data['train'][0]}", "--num-fewshot", "2",
               "--no-cache", "--json", "--threads", "1"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    doc = json.loads(out)
    task = doc["tasks"]["arc_easy"]
    assert task["n"] == 8 and set(task["metrics"]) == {"acc", "acc_norm"}
    assert "note: arc_easy: dataset_path 'allenai/ai2_arc' (ARC-Easy) read from the local files" in err
    assert main(["eval", str(zoo.safetensors_dir), "--task", str(TASKS / "arc" / "arc_easy.yaml"),
                 "--task", str(TASKS / "arc" / "arc_challenge.yaml"), "--data", f"test={data['test'][0]}"]) == 2
    assert "TASK:SPLIT=FILE" in capsys.readouterr().err


def test_num_fewshot_on_a_rolling_task_uses_none() -> None:
    [wiki] = load_tasks(str(TASKS / "wikitext" / "wikitext.yaml"), allow_task_code=True, num_fewshot=5,
                        data=_data("wikitext", test="test"))
    assert wiki.num_fewshot == 0 and any("none used" in n for n in wiki.notes)
