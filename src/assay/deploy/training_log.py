"""The loss curve a trainer left next to the card: ``log_history`` from ``trainer_state.json``.

Read as JSON data only (never ``training_args.bin``, a pickle), capped at :data:`TRAINER_STATE_MAX` bytes, a link
refused; only the numeric fields a loss chart needs are kept.

    >>> read_training_log(resolve("./my-finetune"))
    {'path': 'trainer_state.json', 'log_history': [{'step': 10, 'epoch': 0.1, 'loss': 2.31}, ...]}
"""

from __future__ import annotations

import json
from typing import Any

from assay.model.ref import ModelRef

#: Largest trainer_state.json read for the loss curve.
TRAINER_STATE_MAX = 32 * 1024 * 1024


def read_training_log(ref: ModelRef) -> dict[str, Any] | None:
    """``log_history`` from ``trainer_state.json`` (read as JSON data only), or None."""
    if ref.single_file:
        return None
    path = ref.root / "trainer_state.json"
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > TRAINER_STATE_MAX:
            return None
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        return None
    keep = ("step", "epoch", "loss", "eval_loss", "learning_rate", "grad_norm")
    rows = [{k: h[k] for k in keep if isinstance(h, dict) and isinstance(h.get(k), (int, float))}
            for h in history if isinstance(h, dict)]
    rows = [r for r in rows if "step" in r and ("loss" in r or "eval_loss" in r)]
    return {"path": "trainer_state.json", "log_history": rows} if rows else None
