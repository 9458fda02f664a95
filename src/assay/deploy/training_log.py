"""The trainer's state next to the card: ``trainer_state.json``, read once for the card and for vet's loss chart.

One reader (:func:`read_trainer_state`) finds the file the way the card finds its files (a top-level file of the
model reference, by name), reads at most :data:`TRAINER_STATE_MAX` bytes and parses them as JSON data only
(``training_args.bin``, a pickle, is never read). :mod:`assay.deploy.card` takes its loss curve, findings and
hyper-parameters from it; :func:`read_training_log` keeps the numeric fields a loss chart needs.

    >>> read_trainer_state(resolve("./my-finetune")).state["global_step"]
    40
    >>> read_training_log(resolve("./my-finetune"))
    {'path': 'trainer_state.json', 'log_history': [{'step': 10, 'epoch': 0.1, 'loss': 2.31}, ...]}
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from assay.model.ref import ModelRef

#: Largest trainer_state.json parsed (bytes); a bigger one is not parsed.
TRAINER_STATE_MAX = 64 * 1024 * 1024
#: The fields of a ``log_history`` row a loss chart keeps.
LOG_FIELDS = ("step", "epoch", "loss", "eval_loss", "learning_rate", "grad_norm")


@dataclass(frozen=True)
class TrainerState:
    """A ``trainer_state.json`` that is present, parsed or not."""

    state: Any
    """The parsed JSON (a dict for a real trainer state); None when it is too big or could not be read."""
    error: str | None = None
    """Why it could not be read (the exception's name), None when it was read or is merely too big."""
    too_big: bool = False
    """True when it is larger than :data:`TRAINER_STATE_MAX` (not parsed)."""


def read_trainer_state(ref: ModelRef) -> TrainerState | None:
    """The ``trainer_state.json`` at the top of ``ref`` (any letter case), None when there is none."""
    if ref.single_file:
        return None
    rel = next((r for r in ref.files if len(r.parts) == 1 and r.name.lower() == "trainer_state.json"), None)
    if rel is None:
        return None
    try:
        with ref.path(rel).open("rb") as fh:
            data = fh.read(TRAINER_STATE_MAX + 1)
        if len(data) > TRAINER_STATE_MAX:
            return TrainerState(state=None, too_big=True)
        return TrainerState(state=json.loads(data.decode("utf-8", errors="replace")))
    except (OSError, ValueError) as exc:
        return TrainerState(state=None, error=type(exc).__name__)


def read_training_log(ref: ModelRef) -> dict[str, Any] | None:
    """The rows of ``log_history`` with a step and a loss (only :data:`LOG_FIELDS`), or None."""
    found = read_trainer_state(ref)
    state = found.state if found is not None else None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        return None
    rows = [{k: h[k] for k in LOG_FIELDS if isinstance(h.get(k), (int, float))} for h in history if isinstance(h, dict)]
    rows = [r for r in rows if "step" in r and ("loss" in r or "eval_loss" in r)]
    return {"path": "trainer_state.json", "log_history": rows} if rows else None
