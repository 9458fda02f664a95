"""`assay advise`: the recommendation follows the numbers and the quality gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assay.cli.main import main
from assay.deploy.advise import Quality, advise, quality_from_document
from assay.deploy.cost import CostInputs
from assay.errors import DeployError

BASE = ["--api-per-task", "0.15", "--self-per-task", "0.01", "--training-cost", "3000"]


def run(capsys: pytest.CaptureFixture[str], args: list[str]) -> dict:
    assert main(["advise", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_high_volume_fine_tune_pays(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run(capsys, [*BASE, "--monthly-tasks", "5000", "--quality-api", "0.8", "--quality-base", "0.6",
                       "--quality-candidate", "0.82"])
    assert doc["schema"] == "assay.advise/1" and doc["recommendation"] == "fine-tune"
    opts = {o["name"]: o for o in doc["options"]}
    # By hand: API 5000 * 0.15 * 12 = 9000; fine-tune 3000 + 5000 * 0.01 * 12 = 3600.
    assert opts["api"]["horizon_total"] == pytest.approx(9000)
    assert opts["fine-tune"]["horizon_total"] == pytest.approx(3600)
    assert opts["fine-tune"]["break_even_tasks"] == 21429
    assert not opts["few-shot"]["acceptable"]  # 0.6 < the API's 0.8
    assert doc["cost"]["break_even_tasks"] == 21429
    assert any("21,429" in r for r in doc["reasons"])


def test_low_volume_keeps_the_api(capsys: pytest.CaptureFixture[str]) -> None:
    # 100 tasks/month: API 180 over a year; fine-tune 3000 + 12 = 3012; few-shot ruled out by quality.
    doc = run(capsys, [*BASE, "--monthly-tasks", "100", "--quality-api", "0.8", "--quality-base", "0.5"])
    assert doc["recommendation"] == "api"
    assert "Keep paying the API" in doc["headline"]


def test_few_shot_wins_when_good_enough() -> None:
    a = advise(CostInputs(api_per_task=0.15, self_per_task=0.01, training_cost=3000, monthly_tasks=5000),
               quality=Quality(api=0.8, base=0.81, candidate=0.85))
    assert a.recommendation == "few-shot"
    # Few-shot examples cost prefill time when the cost is derived from throughput: 1000 more input tokens at
    # 1000 tok/s add 1 s per task ($1/h -> $0.000278).
    inputs = CostInputs(api_per_task=0.01, decode_tokens_per_s=10, prefill_tokens_per_s=1000, hardware_per_hour=3.6,
                        tokens_in=0, tokens_out=10, training_cost=100, monthly_tasks=1000)
    b = advise(inputs, few_shot_tokens=1000)
    opts = {o.name: o for o in b.options}
    assert opts["fine-tune"].per_task == pytest.approx(0.001)
    assert opts["few-shot"].per_task == pytest.approx(0.002)


def test_no_option_good_enough(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run(capsys, [*BASE, "--monthly-tasks", "5000", "--quality-required", "0.9", "--quality-api", "0.5",
                       "--quality-base", "0.4", "--quality-candidate", "0.6"])
    assert doc["recommendation"] == "api" and "No option meets" in doc["headline"]


def test_quality_from_eval_and_vet_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eval_doc = {"schema": "assay.eval/1", "tasks": {"a": {"metrics": {"acc": 0.7, "acc_norm": 0.9}},
                                                    "b": {"metrics": {"acc": 0.5}}},
                "base_tasks": {"a": {"metrics": {"acc": 0.4, "acc_norm": 0.5}}, "b": {"metrics": {"acc": 0.3}}}}
    cand, base, what = quality_from_document(eval_doc)
    assert cand == pytest.approx((0.9 + 0.5) / 2) and base == pytest.approx((0.5 + 0.3) / 2)
    assert "2 task" in what
    assert quality_from_document(eval_doc, metric="a/acc")[:2] == (0.7, 0.4)
    vet_doc = {"schema": "assay.vet/1", "evaluation": eval_doc}  # a vet carries its evaluation stage's document
    assert quality_from_document(vet_doc)[:2] == (cand, base)
    path = tmp_path / "vet.json"
    path.write_text(json.dumps(vet_doc))
    doc = run(capsys, [*BASE, "--monthly-tasks", "5000", "--eval", str(path), "--quality-required", "0.65"])
    opts = {o["name"]: o for o in doc["options"]}
    assert opts["fine-tune"]["quality"] == pytest.approx(0.7) and opts["fine-tune"]["acceptable"]
    assert not opts["few-shot"]["acceptable"]
    assert doc["recommendation"] == "fine-tune"
    with pytest.raises(DeployError):
        quality_from_document({"schema": "assay.scan/1"})


@pytest.mark.slow
def test_real_vet_and_eval_documents_are_read_alike(tiny_model_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """`advise --eval` takes what `assay vet --json` and `assay eval --json` really print, with the same figures."""
    task = ["--task", "builtin:knowledge", "--limit", "6"]
    assert main(["vet", str(tiny_model_dir), "--base", str(tiny_model_dir), *task, "--json"]) in (0, 1)
    vet_path = tmp_path / "vet.json"
    vet_path.write_text(capsys.readouterr().out)
    assert main(["eval", str(tiny_model_dir), "--base", str(tiny_model_dir), *task, "--no-cache", "--json"]) in (0, 1)
    eval_path = tmp_path / "eval.json"
    eval_path.write_text(capsys.readouterr().out)
    acc = json.loads(eval_path.read_text())["tasks"]["builtin:knowledge"]["metrics"]["acc_norm"]
    for path in (vet_path, eval_path):
        doc = run(capsys, [*BASE, "--monthly-tasks", "5000", "--eval", str(path)])
        opts = {o["name"]: o for o in doc["options"]}
        assert opts["fine-tune"]["quality"] == pytest.approx(acc)
        assert opts["few-shot"]["quality"] == pytest.approx(acc)  # the base is the same model
    # A vet without evaluation tasks says so and names the way out.
    no_eval = {**json.loads(vet_path.read_text()), "evaluation": None,
               "stages": {"evaluation": {"status": "not_applicable", "reason": "no evaluation tasks in the policy"}}}
    vet_path.write_text(json.dumps(no_eval))
    assert main(["advise", *BASE, "--monthly-tasks", "5000", "--eval", str(vet_path)]) == 2
    err = capsys.readouterr().err
    assert "no evaluation tasks in the policy" in err and "--quality-candidate" in err


def test_human_output_and_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["advise", *BASE, "--monthly-tasks", "5000"]) == 0
    out = capsys.readouterr().out
    # No quality figures: the untrained few-shot option is as good as far as anyone knows, and cheaper.
    assert "Recommendation: few-shot" in out and "not measured" in out
    assert main(["advise", *BASE, "--monthly-tasks", "0"]) == 2
    assert "--monthly-tasks" in capsys.readouterr().err
    assert main(["advise", *BASE, "--monthly-tasks", "10", "--quality-api", "80"]) == 2
    assert "between 0 and 1" in capsys.readouterr().err
    assert main(["advise", *BASE]) == 2  # --monthly-tasks is required
