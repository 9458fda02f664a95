"""One reader of trainer_state.json: the card's loss curve and vet's loss chart read the same file the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import assay.deploy.training_log as training_log
from assay.deploy.card import read_card
from assay.deploy.training_log import read_trainer_state, read_training_log
from assay.model.ref import resolve

HISTORY = [{"step": 10, "epoch": 0.5, "loss": 2.4, "learning_rate": 1e-4, "note": "x"}, {"step": 20, "loss": 1.9},
           {"step": 20, "eval_loss": 2.0}, {"epoch": 1.0, "train_runtime": 12.0}]


def _model(root: Path, state_text: str, *, name: str = "trainer_state.json") -> Path:
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (root / "README.md").write_text("---\nlicense: apache-2.0\n---\n# m\n")
    (root / name).write_text(state_text)
    return root


def test_card_and_vet_read_the_same_history(tmp_path: Path) -> None:
    ref = resolve(str(_model(tmp_path / "m", json.dumps({"global_step": 20, "log_history": HISTORY}),
                             name="Trainer_State.json")))
    log = read_training_log(ref)
    assert log == {"path": "trainer_state.json", "log_history": [
        {"step": 10, "epoch": 0.5, "loss": 2.4, "learning_rate": 1e-4}, {"step": 20, "loss": 1.9},
        {"step": 20, "eval_loss": 2.0}]}
    curve = read_card(ref).loss_curve
    assert curve is not None and curve.train == ((10.0, 2.4), (20.0, 1.9)) and curve.eval == ((20.0, 2.0),)


def test_unreadable_and_oversized_states_give_no_curve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = resolve(str(_model(tmp_path / "broken", "{not json")))
    assert read_trainer_state(broken) == training_log.TrainerState(state=None, error="JSONDecodeError")
    assert read_training_log(broken) is None
    assert "CARD-TRAINER-STATE-INVALID" in {f.rule for f in read_card(broken).findings}

    big = resolve(str(_model(tmp_path / "big", json.dumps({"log_history": HISTORY}))))
    monkeypatch.setattr(training_log, "TRAINER_STATE_MAX", 16)
    assert read_trainer_state(big) == training_log.TrainerState(state=None, too_big=True)
    assert read_training_log(big) is None and read_card(big).loss_curve is None
