"""What a stage of ``assay vet`` reads and what it requires: :class:`VetContext` and :class:`Requirement`.

Before each stage the loop (:mod:`assay.vet.run`) hands it a frozen :class:`VetContext`: the candidate, the policy,
the :class:`VetSettings` fixed before the first stage, the progress observer, the outcomes so far and the
:class:`VetState` earlier stages handed on (the inventory, the scan reports, the base chosen, the models' results).
A :class:`Requirement` says why it is not met in a context, and what the stage is marked then::

    CANDIDATE_SAFE.check("lineage", ctx)   # StageOutcome(..., BLOCKED, "the candidate scanned unsafe, so it is
                                           #   never loaded"), or None once the scan said safe

The requirement constants (``CANDIDATE_SAFE``, ``A_BASE``, ``SAFE_BASE``, ``EVAL_EXTRA`` ...) are what the stage
table (:mod:`assay.vet.stages`) names. A stage's failure is told in one line by :func:`_why`.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

from assay.errors import AssayError, debugging
from assay.model.ref import ModelRef
from assay.policy import Policy
from assay.progress import Progress
from assay.verdict import CardResult, ScanResult, StageOutcome, Status

if TYPE_CHECKING:
    from assay.evaluate.pair import ModelComparison
    from assay.evaluate.tasks import Task
    from assay.model.inventory import Inventory
    from assay.scan import ScanReport

R = TypeVar("R")


# --- a failure, in one line -------------------------------------------------------------------------------


def _internal(exc: BaseException) -> str:
    """A stage's unexpected failure as one line (with --debug it is re-raised, traceback and all)."""
    if debugging():
        raise exc
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"internal error: {type(exc).__name__}: {first[:300]} (run with --debug for details)"


def _plain(doc: Any) -> Any:
    from assay.jsonable import to_jsonable

    return to_jsonable(doc)


def _why(exc: BaseException) -> str:
    return exc.diagnostics() if isinstance(exc, AssayError) else _internal(exc)



# --- the context stages read ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VetSettings:
    """What to evaluate, fixed before the first stage (bad task, probe or KL specs are refused before it)."""

    tasks: tuple[str, ...]
    """Evaluation task specs (``--task``, else the policy's ``evaluation.tasks``)."""
    eval_tasks: tuple[Task, ...]
    """Those tasks, loaded and checked as ``assay eval`` checks them."""
    limit: int | None
    """Items per evaluation task (``--limit``, else the policy's ``evaluation.limit``)."""
    probes: tuple[Task, ...]
    """The behaviour probe tasks of the policy's ``probes`` section, already cut to ``probes.limit``."""
    kl: tuple[Task, ...]
    """The KL drift task of the policy's ``drift.kl`` (empty when off)."""

    @property
    def anything_to_evaluate(self) -> bool:
        """True when a model will be loaded for evaluation, probes or drift."""
        return bool(self.tasks or self.probes or self.kl)


@dataclass
class VetState:
    """What stages hand on to later stages besides their documents: live objects, the base chosen, the models'
    results. One per vet, written by the stage that produces each field."""

    base: ModelRef | None
    """The base: from ``--base``, else chosen by ``base_scan`` from the card's ``base_model``."""
    base_source: str
    """``--base``, ``card`` or ``none: why``."""
    inventory: Inventory | None = None
    """The candidate's inventory (``inventory``)."""
    scans: dict[str, ScanReport] = field(default_factory=dict)
    """Scan reports by ``candidate`` / ``base`` (the evaluation backend is handed the report it loads under)."""
    models: ModelComparison | None = None
    """Evaluation, probes and drift of both models, run once by the first stage that needs them."""


@dataclass(frozen=True)
class VetContext:
    """What a stage reads: the refs, policy, settings, progress observer and the outcomes so far."""

    candidate: ModelRef
    """The candidate's files."""
    policy: Policy
    """The policy applied (with ``bench`` and ``cost`` overrides already in it)."""
    settings: VetSettings
    """What to evaluate."""
    progress: Progress
    """The observer every stage reports progress to."""
    state: VetState
    """What earlier stages handed on."""
    outcomes: Mapping[str, StageOutcome] = field(default_factory=dict)
    """The outcomes of the stages before this one, by name (read-only)."""

    @property
    def base(self) -> ModelRef | None:
        """The base, if there is one (safe or not)."""
        return self.state.base

    @property
    def candidate_safe(self) -> bool:
        """True when the candidate's scan ran and said ``safe``."""
        return _scan_is_safe(self.outcomes.get("scan"))

    @property
    def base_ok(self) -> bool:
        """True when there is a base and it scanned safe (so it may be loaded)."""
        return self.base is not None and _scan_is_safe(self.outcomes.get("base_scan"))

    @property
    def safe_base(self) -> ModelRef | None:
        """The base when it may be loaded, else None."""
        return self.base if self.base_ok else None

    @property
    def no_base_reason(self) -> str | None:
        """Why there is no base (None when there is one)."""
        return self.state.base_source.split(": ", 1)[1] if self.base is None else None

    @property
    def bad_base(self) -> str | None:
        """Why the base is not loaded although there is one (None when it is safe, or there is none)."""
        if self.base is None or self.base_ok:
            return None
        scan = self.result("base_scan", ScanResult)
        word = (scan.verdict if scan is not None else None) or "not scanned"
        return f"the base {self.base.name} scanned {word}, so it is not loaded"

    def result(self, stage: str, kind: type[R]) -> R | None:
        """The typed result of an earlier stage when it ran and is a ``kind``, else None."""
        outcome = self.outcomes.get(stage)
        found = outcome.result if outcome is not None and outcome.status is Status.RAN else None
        return found if isinstance(found, kind) else None


def _scan_is_safe(outcome: StageOutcome | None) -> bool:
    return (outcome is not None and outcome.status is Status.RAN and isinstance(outcome.result, ScanResult)
            and outcome.result.safe)


# --- requirements -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """What a stage needs before it can run, and what it is marked when that is missing."""

    label: str
    """What is required, as docs/DESIGN.md and the table below name it."""
    unmet: Callable[[VetContext], str | None]
    """Why it is not met in this context, or None when it is."""
    status: Status = Status.BLOCKED
    """The stage's status when it is not met."""
    reason: str = "{why}"
    """The stage's reason when it is not met; ``{why}`` is what :attr:`unmet` said."""

    def but(self, *, status: Status | None = None, reason: str | None = None) -> Requirement:
        """The same requirement, marking a stage differently when it is not met."""
        return replace(self, status=status or self.status, reason=self.reason if reason is None else reason)

    def check(self, stage: str, ctx: VetContext) -> StageOutcome | None:
        """The outcome of ``stage`` when this requirement is not met, else None."""
        why = self.unmet(ctx)
        if why is None:
            return None
        return StageOutcome(stage, self.status, None, self.reason.format(why=why))


def _eval_extra_missing() -> str | None:
    """The eval extra (torch, transformers) is the one part of assay that may be missing from an install."""
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    return ", ".join(missing) or None


_EVAL_EXTRA = "evaluation needs the eval extra (torch, transformers): pip install 'assay[eval]'"
_PROBES_OFF = "off (policy probes.run and probes.contamination are empty)"
_DRIFT_OFF = "off (policy drift.kl)"
_NO_TASKS = "no evaluation tasks in the policy"


def _candidate_unsafe(ctx: VetContext) -> str | None:
    if ctx.candidate_safe:
        return None
    scan = ctx.result("scan", ScanResult)
    word = (scan.verdict if scan is not None else None) or "not scanned"
    return f"the candidate scanned {word.replace('_', ' ')}, so it is never loaded"


CANDIDATE_SAFE = Requirement("candidate scanned safe", _candidate_unsafe)
A_BASE = Requirement("a base", lambda ctx: ctx.no_base_reason, Status.SKIPPED, "no base model to compare with ({why})")
SAFE_BASE = Requirement("a base that scanned safe", lambda ctx: ctx.bad_base, Status.ERROR)
EVAL_EXTRA = Requirement("the eval extra, when anything is evaluated",
                         lambda ctx: _EVAL_EXTRA if ctx.settings.anything_to_evaluate and _eval_extra_missing()
                         else None, Status.SKIPPED)
TASKS = Requirement("evaluation tasks", lambda ctx: None if ctx.settings.tasks else _NO_TASKS, Status.NOT_APPLICABLE)
EVALUATION_RAN = Requirement("evaluation ran", lambda ctx: None if (
    (o := ctx.outcomes.get("evaluation")) is not None and o.status is Status.RAN) else "the evaluation failed",
    Status.ERROR)
PROBES_ASKED = Requirement("probes in the policy", lambda ctx: None if ctx.settings.probes else _PROBES_OFF,
                           Status.NOT_APPLICABLE)
DRIFT_ASKED = Requirement("drift.kl in the policy", lambda ctx: None if ctx.settings.kl else _DRIFT_OFF,
                          Status.NOT_APPLICABLE)
CARD_READ = Requirement("a model card read", lambda ctx: None if ctx.result("card", CardResult) is not None else
                        "no model card was read, so the licence is unknown", Status.SKIPPED)
BENCH_ASKED = Requirement("deploy.bench in the policy", lambda ctx: None if ctx.policy.deploy.bench else
                          "off (policy deploy.bench is false; `assay vet --bench` measures speed and memory)",
                          Status.NOT_APPLICABLE)
BENCH_EXTRA = Requirement("the eval extra", lambda ctx: "the bench needs the eval extra (torch, transformers): "
                          "pip install 'assay[eval]'" if _eval_extra_missing() else None, Status.SKIPPED)
