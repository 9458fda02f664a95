"""What a stage of ``assay vet`` leaves behind and what the verdict says: the plain data the rules work over.

A stage that ran leaves a :class:`StageOutcome` holding its *typed* result (one of the frozen dataclasses of
:mod:`assay.verdict.results`); its JSON document is written from that result only when the ``assay.vet/1``
document is written (:attr:`StageOutcome.document`). A stage that did not run leaves its status and why::

    StageOutcome.ran("scan", ScanResult.of(report), seconds=0.4)
    StageOutcome.skipped("lineage", "no base model to compare with (no --base given)")
    StageOutcome.read("scan", saved_vet["scan"])   # a saved stage document, read back into its typed result

The verdict (:class:`Verdict`) is an :class:`Outcome` and its :class:`Reason` s, each naming its evidence as a
path into the ``assay.vet/1`` document.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, assert_never, runtime_checkable

from assay.verdict.results import read_result


class Level(enum.StrEnum):
    """How much a reason weighs."""

    FAIL = "fail"
    """The policy is violated."""
    UNDECIDED = "undecided"
    """Something the policy needs could not be established (a stage crashed, a required comparison is missing)."""
    WARN = "warn"
    """A check could not run or is weak; the reviewer should look."""


class Outcome(enum.StrEnum):
    """The verdict."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    NONE = "NONE"


class Status(enum.StrEnum):
    """What happened to a stage."""

    RAN = "ran"
    """The stage produced its result."""
    SKIPPED = "skipped"
    """The stage could not run (no base, no backend): a WARN reason names why."""
    BLOCKED = "blocked"
    """Not run on purpose because an earlier stage failed (an unsafe candidate is never loaded)."""
    NOT_APPLICABLE = "not_applicable"
    """Nothing to do (no signature present and none required)."""
    ERROR = "error"
    """The stage started and failed: no verdict can rely on it."""


@runtime_checkable
class StageResult(Protocol):
    """A stage's typed result: frozen data the rules read, which writes its own JSON document."""

    def document(self) -> Mapping[str, Any]:
        """The stage's JSON document (``assay.<kind>/1``), written from the typed fields."""


@dataclass(frozen=True)
class StageOutcome:
    """The result of one stage of ``assay vet``."""

    name: str
    """Stage name: inventory, scan, signature, lineage, evaluation, comparison, card, licence, ..."""
    status: Status
    """What happened."""
    result: StageResult | None = None
    """The stage's typed result when it ran (None for a saved document no reader knows, see :meth:`read`)."""
    reason: str | None = None
    """Why it did not run (or how it failed)."""
    seconds: float | None = None
    """Wall time spent in the stage."""
    saved: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    """The saved document this outcome was read from (:meth:`read`); written back unchanged."""

    @property
    def document(self) -> Mapping[str, Any] | None:
        """The stage's JSON document, written from :attr:`result` (or the saved document it was read from).

        For writing ``assay.vet/1`` only: the verdict's rules read :attr:`result`, never this."""
        if self.saved is not None:
            return self.saved
        return None if self.result is None else self.result.document()

    @classmethod
    def ran(cls, name: str, result: StageResult | Mapping[str, Any], *,
            seconds: float | None = None) -> StageOutcome:
        """A stage that produced ``result`` (a mapping is a saved stage document: see :meth:`read`)."""
        if isinstance(result, Mapping):
            return cls.read(name, result, seconds=seconds)
        return cls(name, Status.RAN, result, None, seconds)

    @classmethod
    def read(cls, name: str, document: Mapping[str, Any], *, seconds: float | None = None) -> StageOutcome:
        """A stage that ran, from its saved document (``vet.json[name]``): the document is read back into the
        stage's typed result (:func:`assay.verdict.results.read_result`) for the rules, and written back
        unchanged."""
        return cls(name, Status.RAN, read_result(name, document), None, seconds, saved=document)

    @classmethod
    def skipped(cls, name: str, reason: str) -> StageOutcome:
        """A stage that could not run, and why."""
        return cls(name, Status.SKIPPED, None, reason)

    @classmethod
    def blocked(cls, name: str, reason: str) -> StageOutcome:
        """A stage not run because an earlier one failed."""
        return cls(name, Status.BLOCKED, None, reason)

    @classmethod
    def not_applicable(cls, name: str, reason: str) -> StageOutcome:
        """A stage with nothing to do."""
        return cls(name, Status.NOT_APPLICABLE, None, reason)

    @classmethod
    def error(cls, name: str, reason: str, *, seconds: float | None = None) -> StageOutcome:
        """A stage that failed while running."""
        return cls(name, Status.ERROR, None, reason, seconds)


Stages = Mapping[str, StageOutcome]
"""Stage outcomes by stage name."""


@dataclass(frozen=True)
class Reason:
    """One reason for the verdict."""

    rule: str
    """Stable rule id, e.g. ``scan.safe``, ``lineage.descends``, ``evaluation.no_regression``."""
    stage: str
    """The stage whose result triggered it."""
    message: str
    """One sentence for a reviewer."""
    evidence: str
    """Path into the ``assay.vet/1`` document, e.g. ``scan.findings[3]``."""
    level: Level
    """FAIL, UNDECIDED or WARN."""


@dataclass(frozen=True)
class Verdict:
    """PASS / WARN / FAIL / NONE and the reasons behind it."""

    outcome: Outcome
    """The verdict."""
    reasons: tuple[Reason, ...]
    """Every reason, most serious first."""

    def exit_code(self, *, strict: bool = False) -> int:
        """0 for PASS (and WARN unless ``strict``), 1 for FAIL (and WARN when ``strict``), 2 for NONE."""
        match self.outcome:
            case Outcome.PASS:
                return 0
            case Outcome.WARN:
                return 1 if strict else 0
            case Outcome.FAIL:
                return 1
            case Outcome.NONE:
                return 2
            case _ as unreachable:
                assert_never(unreachable)


def reason_document(r: Reason) -> dict[str, str]:
    """A reason as it appears in ``assay.vet/1``."""
    return {"rule": r.rule, "stage": r.stage, "message": r.message, "evidence": r.evidence, "level": r.level.value}
