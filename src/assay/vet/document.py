"""What ``assay vet`` found (:class:`VetResult`) and its ``assay.vet/1`` document (:func:`vet_document`).

    result = run_vet("./my-finetune", base="./base-model", policy=default_policy())
    result.verdict.outcome, result.stage("scan").status, result.exit_code(strict=True)
    vet_document(result)["schema"]    # 'assay.vet/1': verdict and reasons first, then every stage's document

Each stage's JSON document is written from its typed result only here; a stage whose document cannot be written
is one :class:`~assay.errors.ReportError` naming the stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from assay.errors import ReportError
from assay.model.ref import ModelRef
from assay.policy import Policy, policy_document
from assay.report.io import VET_SCHEMA
from assay.verdict import StageOutcome, Verdict, reason_document
from assay.vet.context import _plain, _why

SCHEMA = VET_SCHEMA


@dataclass(frozen=True)
class VetResult:
    """Everything ``assay vet`` found about one candidate."""

    candidate: ModelRef
    """The candidate's files."""
    base: ModelRef | None
    """The base it was compared with, if any."""
    base_source: str
    """Where the base came from: ``--base``, ``card`` (the card's base_model, found in the local HF cache) or
    ``none``, with the reason after a colon when there is none."""
    policy: Policy
    """The policy applied."""
    stages: tuple[StageOutcome, ...]
    """What each stage did, in :data:`STAGES` order."""
    verdict: Verdict
    """PASS / WARN / FAIL / NONE with reasons."""
    training: Mapping[str, Any] | None
    """``log_history`` from the candidate's ``trainer_state.json`` (for the loss curve), when present."""
    environment: Mapping[str, Any]
    """Versions of assay, Python, torch, transformers; the hardware."""
    started_at: str
    """UTC ISO-8601 time the vet started."""
    seconds: float
    """Wall time of the whole vet."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Documents added by callers (e.g. the demo's bench or cost figures), keyed like stages."""

    def stage(self, name: str) -> StageOutcome | None:
        """The outcome of stage ``name``."""
        return next((s for s in self.stages if s.name == name), None)

    def exit_code(self, *, strict: bool = False) -> int:
        """0 PASS (and WARN unless strict), 1 FAIL, 2 NONE."""
        return self.verdict.exit_code(strict=strict)


def _ref_doc(ref: ModelRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {"spec": ref.spec, "name": ref.name, "root": ref.root.as_posix(), "single_file": ref.single_file,
            "hf_id": ref.hf_id, "revision": ref.revision}


def vet_document(result: VetResult) -> dict[str, Any]:
    """The ``assay.vet/1`` document: verdict and reasons at the top, then every stage's own document.

    Each stage's document sits under its stage name (``scan``, ``lineage``, ``comparison``, ...), so a reason's
    ``evidence`` (``scan.findings[3]``) is a path into this document; ``stages`` says what ran and why not.
    """
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "verdict": result.verdict.outcome.value,
        "exit_code": result.verdict.exit_code(),
        "reasons": [reason_document(r) for r in result.verdict.reasons],
        "candidate": _ref_doc(result.candidate),
        "base": _ref_doc(result.base),
        "base_source": result.base_source,
        "policy": policy_document(result.policy),
        "stages": {s.name: {"status": s.status.value, "reason": s.reason, "seconds": s.seconds}
                   for s in result.stages},
    }
    for s in result.stages:
        try:
            doc[s.name] = s.document  # written from the stage's typed result now
        except Exception as exc:  # noqa: BLE001 - one clear line, never a half-written document
            raise ReportError(f"the {s.name} stage's document could not be written: {_why(exc)}") from exc
    doc["training"] = result.training
    for k, v in result.extra.items():
        doc[k] = _plain(v)
    doc["environment"] = dict(result.environment)
    doc["started_at"] = result.started_at
    doc["seconds"] = result.seconds
    out: dict[str, Any] = _plain(doc)
    return out
