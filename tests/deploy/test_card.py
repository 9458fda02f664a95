"""Model-card reading, the transparency score and the licence cross-checks, on cards written here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from assay.cli.main import main
from assay.deploy.card import RUBRIC, card_document, check_claims, read_card
from assay.model.ref import resolve

COMPLETE_BODY = """
# Llama-3.1-8B-support-bot

## Training procedure
LoRA fine-tune of the base on 12k support conversations, 3 epochs, then merged.

### Training hyperparameters
- learning_rate: 2e-05
- train_batch_size: 8
- num_epochs: 3
- optimizer: adamw_torch

## Evaluation
See model-index.

## Intended uses
Answering customer-support questions about our product, in English.

## Limitations and bias
Makes up order numbers when asked about orders it cannot see.
"""

TEMPLATE_BODY = """
# Model Card for Model ID

## Uses

### Direct Use

[More Information Needed]

## Training Details

### Training Procedure

[More Information Needed]

## Bias, Risks, and Limitations

[More Information Needed]
"""


def write_model(root: Path, front: dict[str, Any] | None, body: str = "", *,
                trainer_state: dict[str, Any] | None = None, raw_front: str | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model_type": "llama"}))
    if front is not None or raw_front is not None:
        fm = raw_front if raw_front is not None else yaml.safe_dump(front, sort_keys=False)
        (root / "README.md").write_text(f"---\n{fm}---\n{body}", encoding="utf-8")
    if trainer_state is not None:
        (root / "trainer_state.json").write_text(json.dumps(trainer_state))
    return root


COMPLETE_FRONT = {
    "license": "llama3.1",
    "base_model": "meta-llama/Llama-3.1-8B-Instruct",
    "base_model_relation": "finetune",
    "datasets": ["acme/support-conversations"],
    "model-index": [{"name": "Llama-3.1-8B-support-bot", "results": [
        {"task": {"type": "text-generation"}, "dataset": {"name": "ARC Easy", "type": "arc_easy"},
         "metrics": [{"type": "acc", "value": 81.2}]}]}],
}
STATE = {"log_history": [{"step": 10, "loss": 2.4}, {"step": 20, "loss": 1.9}, {"step": 20, "eval_loss": 2.0},
                         {"step": 30, "loss": 1.6}, {"step": 30, "eval_loss": 1.8}], "max_steps": 30}


def test_complete_card_scores_100_with_no_findings(tmp_path: Path) -> None:
    ref = resolve(write_model(tmp_path / "m", COMPLETE_FRONT, COMPLETE_BODY, trainer_state=STATE))
    r = read_card(ref)
    assert r.transparency_score == 100 and r.missing == ()
    assert sum(points for _, points in RUBRIC) == 100
    assert r.base_model == ("meta-llama/Llama-3.1-8B-Instruct",) and r.base_model_relation == "finetune"
    assert r.licence == "llama3.1" and r.licence_terms is not None and r.licence_terms.mau_cap == 700_000_000
    assert r.hyperparameters["learning_rate"] == "2e-05" and r.hyperparameters["max_steps"] == "30"
    assert [c.metric for c in r.eval_results] == ["acc"] and r.eval_results[0].value == 81.2
    assert r.loss_curve is not None and r.loss_curve.first == 2.4 and r.loss_curve.last == 1.6
    assert len(r.loss_curve.eval) == 2
    assert "customer-support" in (r.intended_use or "") and "order numbers" in (r.limitations or "")
    assert r.findings == ()


def test_template_placeholders_count_as_missing(tmp_path: Path) -> None:
    ref = resolve(write_model(tmp_path / "m", {"license": "apache-2.0"}, TEMPLATE_BODY))
    r = read_card(ref)
    assert r.transparency_score == 10  # only the licence
    assert set(r.missing) == {item for item, _ in RUBRIC} - {"licence"}
    assert r.training_procedure is None and r.intended_use is None and r.limitations is None


def test_no_card_at_all(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = resolve(write_model(tmp_path / "m", None))
    r = read_card(ref)
    assert r.card_path is None and r.transparency_score == 0
    assert [f.rule for f in r.findings] == ["CARD-MISSING"]
    assert main(["card", str(tmp_path / "m"), "--json"]) == 0  # medium finding: reported, not a failure
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "assay.card/1" and doc["transparency_score"] == 0


def test_licence_laundering_by_name_heuristic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    front = {**COMPLETE_FRONT, "license": "apache-2.0"}
    front["model-index"] = [{"name": "SuperHelper-8B", "results": []}]
    path = write_model(tmp_path / "m", front, COMPLETE_BODY)
    r = read_card(resolve(path))
    rules = {f.rule: f for f in r.findings}
    assert rules["LICENCE-LAUNDERING"].severity == "high"
    assert "name heuristic" in r.base_licence_source and r.base_licence == "llama3.1"
    assert "Section 1.b.i" in rules["LICENCE-LAUNDERING"].evidence
    assert "LICENCE-NAMING" in rules and "Llama" in rules["LICENCE-NAMING"].message
    rc = main(["card", str(path), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1
    assert "LICENCE-LAUNDERING" in [f["rule"] for f in doc["findings"]]


def test_laundering_from_the_base_card_beats_the_heuristic(tmp_path: Path) -> None:
    base = write_model(tmp_path / "base", {"license": "cc-by-nc-4.0"}, "# base\n")
    cand = write_model(tmp_path / "cand", {"license": "mit", "base_model": "someone/unknown-base"}, "# c\n")
    r = read_card(resolve(cand), base=resolve(base))
    assert r.base_licence == "cc-by-nc-4.0" and r.base_licence_source == "base card"
    assert [f.rule for f in r.findings if f.rule.startswith("LICENCE-")] == ["LICENCE-LAUNDERING"]
    # Without the base, the unknown name gives no base licence and so no finding.
    r2 = read_card(resolve(cand))
    assert r2.base_licence is None and not [f for f in r2.findings if f.rule == "LICENCE-LAUNDERING"]


def test_same_licence_or_compatible_or_permissive_base_is_fine(tmp_path: Path) -> None:
    same = write_model(tmp_path / "a", {"license": "llama3.1", "base_model": "meta-llama/Llama-3.1-8B"},
                       "# Llama-3.1-tuned\n")
    assert not [f for f in read_card(resolve(same)).findings if f.rule == "LICENCE-LAUNDERING"]
    sa = write_model(tmp_path / "b", {"license": "gpl-3.0"}, "# x\n")
    base_sa = write_model(tmp_path / "bb", {"license": "cc-by-sa-4.0"}, "# x\n")
    assert not read_card(resolve(sa), base=resolve(base_sa)).findings
    perm = write_model(tmp_path / "c", {"license": "cc-by-nc-4.0", "base_model": "mistralai/Mistral-7B-v0.1"}, "")
    assert not [f for f in read_card(resolve(perm)).findings if f.rule.startswith("LICENCE-")]


def test_dropped_licence_and_missing_fields(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m", {"base_model": "google/gemma-2-2b"}, "# gemma-tune\n")
    r = read_card(resolve(path))
    rules = [f.rule for f in r.findings]
    assert "LICENCE-DROPPED" in rules and "LICENCE-MISSING" in rules
    assert r.transparency_score == 15 and "licence" in r.missing and "datasets" in r.missing


def test_other_licence_with_licence_name(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m", {"license": "other", "license_name": "qwen-research"}, "")
    r = read_card(resolve(path))
    assert r.licence == "qwen-research" and r.licence_terms.commercial_use == "no"


def test_broken_front_matter_and_diverged_loss(tmp_path: Path) -> None:
    path = write_model(tmp_path / "m", None, "# body\n", raw_front="license: [apache\nbase_model: x\n",
                       trainer_state={"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 3.0}]})
    r = read_card(resolve(path))
    rules = [f.rule for f in r.findings]
    assert "CARD-FRONT-MATTER-INVALID" in rules and "CARD-LOSS-DIVERGED" in rules
    nan = write_model(tmp_path / "n", {"license": "mit"}, "",
                      trainer_state={"log_history": [{"step": 1, "loss": 1.0}, {"step": 2, "loss": float("nan")}]})
    assert "CARD-LOSS-NAN" in [f.rule for f in read_card(resolve(nan)).findings]
    junk = write_model(tmp_path / "j", {"license": "mit"}, "")
    (junk / "trainer_state.json").write_text("{not json")
    assert "CARD-TRAINER-STATE-INVALID" in [f.rule for f in read_card(resolve(junk)).findings]


def test_claims_against_measurements(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_model(tmp_path / "m", COMPLETE_FRONT, COMPLETE_BODY)
    r = read_card(resolve(path))
    [ok] = check_claims(r, {"arc_easy/acc": 0.80})
    assert ok.supported and ok.claimed == pytest.approx(0.812)
    [bad] = check_claims(r, {"arc_easy": 0.40})
    assert not bad.supported and bad.delta == pytest.approx(0.412)
    assert check_claims(r, {"hellaswag/acc": 0.5}) == []
    assert check_claims(r, {"arc_easy/acc_norm": 0.1}) == []
    doc = card_document(r, claims=[bad])
    assert "CARD-CLAIM-UNSUPPORTED" in [f["rule"] for f in doc["findings"]]
    assert main(["card", str(path), "--measured", "arc_easy/acc=0.4"]) == 0
    out = capsys.readouterr().out
    assert "unsupported" in out and "CARD-CLAIM-UNSUPPORTED" in out
    assert main(["card", str(path), "--measured", "arc_easy"]) == 2


def test_factory_card_and_gguf_metadata(zoo, capsys: pytest.CaptureFixture[str]) -> None:
    r = read_card(resolve(str(zoo.safetensors_dir)))
    assert r.licence == "apache-2.0" and r.base_model == ("assay-tests/tiny-llama-base",)
    assert r.datasets == ("assay-tests/tiny-corpus",)
    g = read_card(resolve(str(zoo.gguf_f32)))
    assert g.card_path is None or g.card_path.endswith(".gguf")
    assert main(["card", str(zoo.safetensors_dir)]) == 0
    assert "transparency" in capsys.readouterr().out


def test_missing_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["card", str(tmp_path / "nope")]) == 2
    assert "no such model" in capsys.readouterr().err


def test_base_licence_from_the_local_hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "hub"
    snap = cache / "models--acme--base-7b" / "snapshots" / "0123abc"
    write_model(snap, {"license": "gemma"}, "# base\n")
    (cache / "models--acme--base-7b" / "refs").mkdir()
    (cache / "models--acme--base-7b" / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    cand = write_model(tmp_path / "cand", {"license": "mit", "base_model": "acme/base-7b"}, "# c\n")
    r = read_card(resolve(cand))
    assert r.base_licence == "gemma" and r.base_licence_source == "base card (local Hugging Face cache)"
    assert "LICENCE-LAUNDERING" in [f.rule for f in r.findings]


def test_hostile_front_matter_is_not_constructed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "ran"
    path = write_model(tmp_path / "m", None, "# x\n",
                       raw_front=f"license: mit\nx: !!python/object/apply:os.system ['touch {marker}']\n")
    r = read_card(resolve(path))
    assert not marker.exists()
    assert "CARD-FRONT-MATTER-INVALID" in [f.rule for f in r.findings] and r.licence is None
    (path / "README.md").write_bytes(b"---\nlicense: mit\n---\n\xff\xfe\x00 binary junk")
    assert read_card(resolve(path)).licence == "mit"


def test_measured_scores_outside_0_1_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_model(tmp_path / "m", COMPLETE_FRONT, COMPLETE_BODY)
    assert main(["card", str(path), "--measured", "arc_easy/acc=43"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --measured scores are between 0 and 1") and len(err.strip().splitlines()) == 1


def test_card_takes_download_and_revision_like_the_other_commands(zoo, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["card", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "--download" in help_text and "--revision" in help_text and "Exit codes" in help_text
    # a local folder needs no download: the flag is accepted and changes nothing
    assert main(["card", str(zoo.safetensors_dir), "--download", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["schema"] == "assay.card/1"
