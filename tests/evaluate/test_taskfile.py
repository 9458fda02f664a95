"""Task YAMLs: assay's format, lm-evaluation-harness's fields over local files, refusals and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assay.errors import EvalError
from assay.evaluate.loading import load_task, load_tasks, registered_suites
from assay.evaluate.runner import build_context
from assay.evaluate.tasks import TaskKind, register_suite
from assay.evaluate.tasks import Item, Task
from tests.evaluate.files import write_jsonl, write_yaml

ROWS = [
    {"question": "Capital of France?", "options": ["Paris", "Rome", "Oslo"], "label": 0, "answer_text": "Paris"},
    {"question": "Capital of Italy?", "options": ["Paris", "Rome", "Oslo"], "label": 1, "answer_text": "Rome"},
    {"question": "Capital of Norway?", "options": ["Paris", "Rome", "Oslo"], "label": 2, "answer_text": "Oslo"},
]


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "test.jsonl", ROWS)
    write_jsonl(tmp_path / "train.jsonl", [dict(r, question="Train " + r["question"]) for r in ROWS])
    return tmp_path


def test_lm_eval_yaml_with_every_supported_field(data: Path) -> None:
    path = write_yaml(data / "caps.yaml", f"""\
        task: caps
        tag: [geography]
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {data / 'test.jsonl'}
            train: {data / 'train.jsonl'}
        output_type: multiple_choice
        test_split: test
        fewshot_split: train
        fewshot_config:
          sampler: first_n
        num_fewshot: 2
        description: "Geography.\\n\\n"
        doc_to_text: "Q: {{{{question}}}}\\nA:"
        doc_to_choice: options
        doc_to_target: label
        target_delimiter: " "
        fewshot_delimiter: "\\n###\\n"
        metric_list:
          - metric: acc
            aggregation: mean
            higher_is_better: true
          - metric: acc_norm
          - metric: acc_bytes
          - metric: exact_match
        metadata:
          version: 2.0
        """)
    task = load_task(str(path))
    assert task.name == "caps" and task.version == "2.0" and task.kind == TaskKind.MULTIPLE_CHOICE
    assert task.metrics == ("acc", "acc_norm", "acc_bytes", "exact_match")
    assert [i.gold for i in task.items] == [0, 1, 2]
    assert task.items[0].choices == ("Paris", "Rome", "Oslo")
    assert task.num_fewshot == 2 and task.fewshot_sampler == "lm_eval_first_n"
    # the prompt lm-evaluation-harness builds: description, k examples, delimiters, the question
    assert build_context(task, task.items[2]) == (
        "Geography.\n\n"
        "Q: Train Capital of France?\nA: Paris\n###\n"
        "Q: Train Capital of Italy?\nA: Rome\n###\n"
        "Q: Capital of Norway?\nA:")


def test_lm_eval_templates_choices_and_targets(data: Path) -> None:
    path = write_yaml(data / "t.yaml", f"""\
        task: t
        dataset_path: json
        dataset_kwargs:
          data_files: {{test: {data / 'test.jsonl'}}}
        output_type: multiple_choice
        test_split: test
        doc_to_text: question
        doc_to_choice: "{{{{options}}}}"
        doc_to_target: "{{{{answer_text}}}}"
        """)
    task = load_task(str(path))
    assert task.items[1].context == "Capital of Italy?"
    assert [i.gold for i in task.items] == [0, 1, 2]  # target text mapped to its choice index
    literal = write_yaml(data / "lit.yaml", f"""\
        task: lit
        dataset_path: json
        dataset_kwargs:
          data_files: {{test: {data / 'test.jsonl'}}}
        output_type: multiple_choice
        test_split: test
        doc_to_text: "{{{{question | regex_replace('Capital', 'Capitol')}}}}"
        doc_to_choice: ["yes", "no"]
        doc_to_target: "{{{{ 0 if label == 0 else 1 }}}}"
        """)
    t2 = load_task(str(literal))
    assert t2.items[0].context == "Capitol of France?"
    assert t2.items[0].choices == ("yes", "no") and [i.gold for i in t2.items] == [0, 1, 1]


def test_csv_and_parquet_data(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "d.csv").write_text("q,a,b,label\nOne?,x,y,1\nTwo?,x,y,0\n", encoding="utf-8")
    csv_task = load_task(str(write_yaml(tmp_path / "c.yaml", f"""\
        task: c
        dataset_path: csv
        dataset_kwargs: {{data_files: {{test: {tmp_path / 'd.csv'}}}}}
        output_type: multiple_choice
        test_split: test
        doc_to_text: q
        doc_to_choice: "{{{{[a, b]}}}}"
        doc_to_target: label
        """)))
    assert [i.gold for i in csv_task.items] == [1, 0] and csv_task.items[0].choices == ("x", "y")
    pq.write_table(pa.table({"q": ["One?"], "choices": [["x", "y", "z"]], "label": [2]}), tmp_path / "d.parquet")
    own = load_task(str(write_yaml(tmp_path / "p.yaml", """\
        name: p
        data: d.parquet
        prompt: "{{q}}"
        choices: choices
        label: label
        """)))
    assert own.items[0].choices == ("x", "y", "z") and own.items[0].gold == 2


def test_lm_eval_generate_until_with_gsm8k_filters(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "g.jsonl", [{"question": "2+2?", "answer": "so 4\n#### 4"}])
    task = load_task(str(write_yaml(tmp_path / "g.yaml", f"""\
        task: g
        dataset_path: json
        dataset_kwargs: {{data_files: {{test: {tmp_path / 'g.jsonl'}}}}}
        output_type: generate_until
        test_split: test
        doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
        doc_to_target: "{{{{answer}}}}"
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
            ignore_case: true
            ignore_punctuation: false
            regexes_to_ignore: [",", "\\\\$", "(?s).*#### ", "\\\\.$"]
        generation_kwargs:
          until: ["Question:", "</s>"]
          do_sample: false
          temperature: 0.0
          max_gen_toks: 64
        filter_list:
          - name: strict-match
            filter: [{{function: regex, regex_pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"}}, {{function: take_first}}]
          - name: flexible-extract
            filter: [{{function: regex, group_select: -1, regex_pattern: "(-?[$0-9.,]{{2,}})|(-?[0-9]+)"}},
                     {{function: take_first}}]
        """)))
    assert task.kind == TaskKind.GENERATE
    assert task.generation.extract == ("strict", "flexible")
    assert task.generation.until == ("Question:", "</s>") and task.generation.max_tokens == 64
    assert task.generation.ignore_case and task.generation.regexes_to_ignore[2] == "(?s).*#### "
    assert task.items[0].gold == "so 4\n#### 4"


@pytest.mark.parametrize(("extra", "message"), [
    ("process_docs: !function utils.process_docs", "!function"),
    ("process_results: foo", "process_results must be"),
    ("use_prompt: 'promptsource:x'", "use_prompt"),
    ("fewshot_config: {sampler: balanced}", "sampler 'balanced' is not supported"),
    ("metric_list: [{metric: mcc}]", "metric 'mcc' is not supported"),
    ("metric_list: [{metric: acc, aggregation: median}]", "aggregation 'median'"),
    ("fewshot_config: {sampler: first_n, bogus: 1}", "fewshot_config field.s. bogus"),
    ("repeats: 4", "repeats"),
])
def test_unsupported_lm_eval_fields_are_refused(data: Path, extra: str, message: str) -> None:
    path = write_yaml(data / "bad.yaml", f"""\
        task: bad
        dataset_path: json
        dataset_kwargs: {{data_files: {{test: {data / 'test.jsonl'}, train: {data / 'train.jsonl'}}}}}
        output_type: multiple_choice
        test_split: test
        training_split: train
        doc_to_text: question
        doc_to_choice: options
        doc_to_target: label
        {extra}
        """)
    with pytest.raises(EvalError, match=message):
        load_task(str(path))


def test_hub_datasets_are_refused(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "hub.yaml", """\
        task: arc
        dataset_path: allenai/ai2_arc
        output_type: multiple_choice
        doc_to_text: question
        doc_to_choice: options
        doc_to_target: label
        """)
    with pytest.raises(EvalError, match="never downloads"):
        load_task(str(path))


def test_own_format_with_random_fewshot_and_generation(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", ROWS)
    task = load_task(str(write_yaml(tmp_path / "own.yaml", """\
        name: own
        version: "3"
        kind: generate
        data: d.jsonl
        prompt: "Q: {{question}}\\nA:"
        label: answer_text
        num_fewshot: 1
        fewshot_sampler: random
        fewshot_seed: 7
        generation: {until: ["\\n"], max_tokens: 8, extract: [exact, "regex:([A-Z]\\\\w+)"], ignore_case: true}
        """)))
    assert task.kind == TaskKind.GENERATE and task.version == "3"
    assert task.generation.extract == ("exact", "regex:([A-Z]\\w+)")
    ctx = build_context(task, task.items[0])
    assert ctx.endswith("Q: Capital of France?\nA:") and ctx.count("Q: ") == 2
    assert "France" not in ctx.split("\n\n")[0]  # an item is never its own example
    assert build_context(task, task.items[0]) == ctx  # seeded


def test_perplexity_task(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "docs.jsonl", [{"body": "One document."}, {"body": "Another one."}])
    spec = write_yaml(tmp_path / "ppl.yaml", "name: ppl\nkind: perplexity\ndata: docs.jsonl\ntext: body\n")
    task = load_task(str(spec))
    assert task.kind == TaskKind.PERPLEXITY and task.items[1].text == "Another one."


# ----------------------------------------------------------------------------------------- bad input
def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text(json.dumps(ROWS[0]) + "\n{not json\n", encoding="utf-8")
    path = write_yaml(tmp_path / "t.yaml", "data: d.jsonl\nprompt: question\nchoices: options\nlabel: label\n")
    with pytest.raises(EvalError, match=r"d\.jsonl:2: malformed JSON line"):
        load_task(str(path))


def test_label_out_of_range(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [dict(ROWS[0], label=3)])
    path = write_yaml(tmp_path / "t.yaml", "data: d.jsonl\nprompt: question\nchoices: options\nlabel: label\n")
    with pytest.raises(EvalError, match="label 3 .* out of range for 3 choices"):
        load_task(str(path))


def test_empty_task(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text("\n", encoding="utf-8")
    path = write_yaml(tmp_path / "t.yaml", "data: d.jsonl\nprompt: question\nchoices: options\nlabel: label\n")
    with pytest.raises(EvalError, match="empty task"):
        load_task(str(path))


def test_template_with_a_missing_field(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", ROWS)
    path = write_yaml(tmp_path / "t.yaml", "data: d.jsonl\nprompt: '{{questoin}}'\nchoices: options\nlabel: label\n")
    with pytest.raises(EvalError, match="missing field.*questoin.*row 1"):
        load_task(str(path))


def test_unknown_fields_and_specs(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", ROWS)
    path = write_yaml(tmp_path / "t.yaml",
                      "data: d.jsonl\nprompt: question\nchoices: options\nlabel: label\nshots: 3\n")
    with pytest.raises(EvalError, match="unknown field.*shots"):
        load_task(str(path))
    with pytest.raises(EvalError, match="task file not found"):
        load_tasks(str(tmp_path / "missing.yaml"))
    with pytest.raises(EvalError, match="unknown task 'nosuchsuite:x'"):
        load_tasks("nosuchsuite:x")


def test_registered_suites_resolve_with_and_without_argument() -> None:
    seen: list[str | None] = []

    def loader(arg: str | None) -> Task:
        seen.append(arg)
        return Task(name=f"demo:{arg}", version="1", kind=TaskKind.MULTIPLE_CHOICE,
                    items=(Item(id="0", context="Q", choices=("a", "b"), gold=0),))

    register_suite("enginetest", loader)
    assert "enginetest" in registered_suites()
    assert load_task("enginetest:abc").name == "demo:abc"
    assert load_task("enginetest").name == "demo:None"
    assert seen == ["abc", None]
