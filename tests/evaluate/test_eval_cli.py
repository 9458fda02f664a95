"""`assay eval` end to end on factory models: JSON document, paired comparison, exit codes, item log."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from assay.cli.main import main
from assay.evaluate.backends.base import LoglikelihoodRequest
from assay.evaluate.backends.hf import HFBackend
from tests.factory.hostile import torch_zip
from tests.factory.models import build_model, save_safetensors_folder, tiny_tokenizer

WORDS = ["weights", "tokenizer", "card", "pickle", "signature", "hashes", "base", "cost", "model", "fox", "dog",
         "files"]
N_ITEMS = 40


@pytest.fixture(scope="module")
def setup(zoo, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A task the base (seed 0) answers perfectly by construction, and an unrelated candidate (seed 1)."""
    root = tmp_path_factory.mktemp("evalcli")
    tok = tiny_tokenizer()
    base_backend = HFBackend.from_model(build_model(seed=0), tok, model_id="seed0", threads=1)
    rows = []
    for k in range(N_ITEMS):
        question = f"Item {k}: the next word is"
        options = [WORDS[(k * 5 + j * 3) % len(WORDS)] for j in range(4)]
        lls = [r.logprob for r in base_backend.loglikelihood([LoglikelihoodRequest(question, " " + o)
                                                               for o in options])]
        rows.append({"question": question, "options": options, "label": lls.index(max(lls))})
    (root / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (root / "task.yaml").write_text("name: words\ndata: items.jsonl\nprompt: question\nchoices: options\n"
                                    "label: label\nmetrics: [acc]\n", encoding="utf-8")
    cand = save_safetensors_folder(build_model(seed=1), tok, root / "candidate")
    return {"task": root / "task.yaml", "base": zoo.safetensors_dir, "cand": cand, "root": root}


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASSAY_CACHE_DIR", str(tmp_path / "cache"))


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    rc = main(["eval", *args, "--json", "--threads", "1"])
    out = capsys.readouterr().out
    return rc, json.loads(out)


def test_regression_against_the_base_exits_1(setup, capsys, tmp_path: Path) -> None:
    log = tmp_path / "items.jsonl"
    rc, doc = _run(capsys, str(setup["cand"]), "--base", str(setup["base"]), "--task", str(setup["task"]),
                   "--log-items", str(log))
    assert rc == 1
    assert doc["schema"] == "assay.eval/1"
    assert doc["base_tasks"]["words"]["metrics"]["acc"] == 1.0
    c = doc["comparison"]["words"]["acc"]
    assert c["base"] == 1.0 and c["delta"] == pytest.approx(doc["tasks"]["words"]["metrics"]["acc"] - 1.0)
    assert c["ci"][1] < 0 and c["regression"] and c["test"] == "mcnemar-exact"
    assert len(c["lost"]) == round(-c["delta"] * N_ITEMS) and c["gained"] == []
    assert doc["regressions"] == [{"task": "words", "metric": "acc"}]
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 2 * N_ITEMS
    first = lines[0]
    assert first["model"] == "candidate" and len(first["loglikelihoods"]) == 4
    assert first["prediction"] == first["loglikelihoods"].index(max(first["loglikelihoods"]))


def test_improvement_exits_0_and_the_base_comes_from_the_cache(setup, capsys) -> None:
    rc, doc = _run(capsys, str(setup["base"]), "--base", str(setup["cand"]), "--task", str(setup["task"]))
    assert rc == 0
    assert doc["comparison"]["words"]["acc"]["ci"][0] > 0
    rc2, doc2 = _run(capsys, str(setup["base"]), "--base", str(setup["cand"]), "--task", str(setup["task"]),
                     "--limit", "10")
    assert rc2 in (0, 1)
    assert doc2["tasks"]["words"]["n"] == 10 and doc2["tasks"]["words"]["cached_items"] == 10
    assert doc2["base_tasks"]["words"]["cached_items"] == 10


def test_single_model_human_output(setup, capsys) -> None:
    rc = main(["eval", str(setup["base"]), "--task", str(setup["task"]), "--limit", "5", "--no-cache",
               "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0 and "words" in out and "acc" in out


@pytest.mark.parametrize("args", [
    ["{root}/missing-model", "--task", "{task}"],
    ["{base}", "--task", "{root}/missing.yaml"],
    ["{base}", "--task", "{task}", "--limit", "0"],
    ["{base}", "--task", "{task}", "--task", "{task}"],
    ["{root}/notamodel", "--task", "{task}"],
])
def test_bad_input_exits_2(setup, capsys, args: list[str]) -> None:
    (setup["root"] / "notamodel").mkdir(exist_ok=True)
    (setup["root"] / "notamodel" / "readme.txt").write_text("hello")
    fmt = {k: str(v) for k, v in setup.items()}
    rc = main(["eval", *[a.format(**fmt) for a in args], "--threads", "1"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and "Traceback" not in err


def test_unsafe_model_exits_1_without_loading(setup, capsys, tmp_path: Path) -> None:
    folder = tmp_path / "booby"
    folder.mkdir()
    shutil.copy(setup["base"] / "config.json", folder / "config.json")
    marker = tmp_path / "pwned"
    (folder / "pytorch_model.bin").write_bytes(torch_zip(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()))
    rc = main(["eval", str(folder), "--task", str(setup["task"]), "--threads", "1"])
    assert rc == 1 and not marker.exists()
    assert "scanned unsafe" in capsys.readouterr().err


def test_help_teaches_with_examples(capsys) -> None:
    assert main(["eval", "--help"]) == 0
    out = capsys.readouterr().out
    assert "assay eval ./my-finetune --base ./base" in out and "lm-evaluation-harness" in out


def test_kl_tasks_run_next_to_the_others(setup, capsys, tmp_path: Path) -> None:
    docs = tmp_path / "docs.txt"
    docs.write_text("The quick brown fox jumps over the lazy dog.\n\nA small model is still a model.\n")
    rc, doc = _run(capsys, str(setup["cand"]), "--base", str(setup["base"]), "--task", f"kl:{docs}",
                   "--task", str(setup["task"]), "--limit", "4")
    kl = doc["tasks"][f"kl:{docs}"]
    assert kl["kind"] == "kl" and kl["metrics"]["kl_mean"] > 0
    assert doc["tasks"]["words"]["n"] == 4
    rc_same, same = _run(capsys, str(setup["base"]), "--base", str(setup["base"]), "--task", f"kl:{docs}")
    assert rc_same == 0 and same["tasks"][f"kl:{docs}"]["metrics"]["kl_mean"] == 0.0
    assert main(["eval", str(setup["base"]), "--task", f"kl:{docs}"]) == 2
    assert "give --base" in capsys.readouterr().err


def test_winogrande_choices_are_scored_after_their_own_contexts(setup, capsys, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [("The trophy didn't fit in the suitcase because _ was too big.", "the trophy", "the suitcase", "1"),
            ("Anna gave Mia her coat because _ was cold.", "Anna", "Mia", "2"),
            ("The dog chased the fox until _ was tired.", "the dog", "the fox", "1")]
    data = tmp_path / "winogrande"
    data.mkdir()
    (data / "dev.jsonl").write_text("".join(json.dumps({"qID": f"w{k}", "sentence": s, "option1": a, "option2": b,
                                                        "answer": ans}) + "\n"
                                            for k, (s, a, b, ans) in enumerate(rows)), encoding="utf-8")
    log = tmp_path / "items.jsonl"
    rc, doc = _run(capsys, str(setup["base"]), "--task", f"winogrande:{data}", "--log-items", str(log))
    assert rc == 0 and doc["tasks"]["winogrande"]["n"] == 3
    lines = {d["id"]: d for d in map(json.loads, log.read_text().splitlines())}
    model = AutoModelForCausalLM.from_pretrained(setup["base"], dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(setup["base"])
    for k, (sentence, opt1, opt2, _ans) in enumerate(rows):
        before, after = sentence.split("_")
        naive = []
        for opt in (opt1, opt2):  # lm-evaluation-harness: one full forward of context + " " + rest of sentence
            ctx = tok(before + opt)["input_ids"]
            whole = tok(before + opt + " " + after.strip())["input_ids"]
            with torch.inference_mode():
                logp = torch.log_softmax(model(input_ids=torch.tensor([whole[:-1]])).logits[0].float(), -1)
            naive.append(float(sum(logp[t - 1, whole[t]] for t in range(len(ctx), len(whole)))))
        got = lines[f"w{k}"]["loglikelihoods"]
        assert got[0] != got[1]
        assert got == pytest.approx(naive, abs=1e-4)


def test_bad_batch_size_and_task_folder_exit_2_with_a_clear_message(setup, capsys, tmp_path: Path) -> None:
    rc = main(["eval", str(setup["base"]), "--task", str(setup["task"]), "--batch-size", "0", "--threads", "1"])
    assert rc == 2 and capsys.readouterr().err.strip() == "error: --batch-size must be a positive number"
    rc = main(["eval", str(setup["base"]), "--task", str(tmp_path), "--threads", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "is a folder" in err and "not found" not in err


def test_a_missing_model_is_refused_before_the_base_is_evaluated(setup, capsys, monkeypatch) -> None:
    import assay.evaluate.runner as runner

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("the base was evaluated before the candidate was found")

    monkeypatch.setattr(runner, "evaluate_model", must_not_run)
    rc = main(["eval", str(setup["root"] / "no-such-model"), "--base", str(setup["base"]),
               "--task", str(setup["task"]), "--threads", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: no such model") and len(err.strip().splitlines()) == 1


def test_org_name_with_revision_from_the_local_cache(setup, capsys, tmp_path: Path, monkeypatch) -> None:
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "hub" / "models--acme--tiny"
    shutil.copytree(setup["base"], repo / "snapshots" / sha)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    rc, doc = _run(capsys, "acme/tiny", "--revision", "main", "--task", str(setup["task"]), "--limit", "4")
    assert rc == 0 and doc["schema"] == "assay.eval/1" and doc["tasks"]["words"]["n"] == 4
    rc = main(["eval", "acme/tiny", "--revision", "nope", "--task", str(setup["task"]), "--threads", "1"])
    assert rc == 2 and "not in the local Hugging Face cache" in capsys.readouterr().err
