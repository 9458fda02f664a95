"""``assay vet``: every stage in order, one verdict under a policy, and the evidence behind it.

``vet`` is a table of stages (:data:`STAGE_TABLE`), run in order by a loop. Each :class:`Stage` has a name, what it
requires (:class:`Requirement`: "candidate scanned safe", "a base that scanned safe", "evaluation ran"...) and a
``run(context) -> StageOutcome``. A stage whose requirement is not met is recorded as blocked, skipped or not
applicable with the requirement's reason, and the vet goes on; a stage that fails records an ``error`` and the vet
goes on. A stage that ran leaves its typed result (:mod:`assay.verdict.results`: ``ScanResult``,
``LineageResult``, ``ComparisonResult`` ...); the verdict reads those, and each stage's JSON document is written
from its result only in :func:`vet_document`. Adding a stage is one entry in the table (and its typed result and
rule in :mod:`assay.verdict`).

    inventory -> hardware -> scan -> base_scan -> signature -> lineage -> evaluation -> comparison -> probes
    -> drift -> card -> licence -> bench -> cost

An ``unsafe`` or ``not verified`` candidate is never loaded: every stage after ``scan`` that could load it requires
"candidate scanned safe" and is *blocked* with that reason (the card and licence, read as text, are still shown).
The base (``--base``, else the card's ``base_model`` in the local Hugging Face cache) is scanned before it is ever
loaded. Evaluation, probes and KL drift load each model once (:func:`assay.evaluate.pair.compare_models`: the base
first, its results possibly from the cache, then the candidate). docs/DESIGN.md draws the table with what each
stage requires and produces.

    >>> from assay.policy import default_policy
    >>> result = run_vet("./my-finetune", base="./base-model", policy=default_policy(), out_dir=Path("vet-out"))
    >>> result.verdict.outcome, [r.message for r in result.verdict.reasons]
    >>> vet_document(result)["schema"]
    'assay.vet/1'

Bad input (a base that does not exist, a candidate that is not a model, an unwritable ``out_dir``) raises an
:class:`~assay.errors.AssayError` before any long work starts. Reports are written atomically
(:mod:`assay.report.io`), so an interrupted vet never leaves a half-written report under its final name.
"""

from __future__ import annotations

import datetime as _dt
import importlib.util
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from assay.deploy.claims import match_claims, review_card
from assay.deploy.training_log import read_training_log
from assay.evaluate.policy_tasks import kl_tasks, probe_tasks
from assay.environment import environment
from assay.errors import AssayError, ModelError, PolicyError, ReportError, debugging
from assay.model.formats import Format, detect
from assay.model.ref import ModelRef, resolve
from assay.policy import CostPolicy, Policy, policy_document
from assay.progress import NULL_PROGRESS, Progress
from assay.report.io import VET_SCHEMA, check_out_dir, write_reports
from assay.verdict import (BenchResult, CardResult, ComparisonResult, CostResult, DriftResult, DriftTask,
                           EvaluationResult, HardwareResult, InventoryResult, LicenceResult, LineageResult,
                           ProbesResult, ProbesRun, ScanResult, SignatureResult, StageOutcome, StageResult, Status,
                           Verdict, decide, reason_document)

if TYPE_CHECKING:
    from assay.evaluate.pair import ModelComparison
    from assay.evaluate.tasks import Task
    from assay.model.inventory import Inventory
    from assay.scan import ScanReport

__all__ = ["SCHEMA", "STAGES", "STAGE_TABLE", "VET_FORMATS", "Requirement", "Stage", "VetContext", "VetResult",
           "environment", "match_claims", "run_vet", "vet_document"]

SCHEMA = VET_SCHEMA
R = TypeVar("R")
#: Weight formats ``assay vet`` can take as a candidate (others are refused as bad input).
VET_FORMATS = frozenset({Format.SAFETENSORS, Format.GGUF, Format.TORCH_ZIP, Format.PICKLE})


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


def _weight_formats(ref: ModelRef) -> set[Format]:
    found: set[Format] = set()
    for rel in ref.files:
        path = ref.path(rel)
        if not path.is_file():  # follows links: a Hugging Face cache snapshot is links into its blobs
            continue
        try:
            fmt = detect(path)
        except AssayError:
            continue
        if fmt in VET_FORMATS:
            found.add(fmt)
    return found


def _require_model(ref: ModelRef, role: str) -> None:
    """Refuse, as bad input, a reference with no weights file vet can read (e.g. a lone ONNX or text file)."""
    if not _weight_formats(ref):
        if ref.single_file:
            try:
                content = detect(ref.path(ref.files[0])).value
            except AssayError:
                content = "unreadable"
            what = f"{ref.spec} is not a weights file (its content is {content})"
        else:
            what = f"folder {ref.spec} has no weights file"
        raise ModelError(f"the {role} is not a model assay can vet: {what}; supported formats are safetensors, "
                         "GGUF, torch archive and pickle")


def _timed(name: str, fn: Callable[[], StageResult], progress: Progress) -> StageOutcome:
    """Run one stage; an AssayError inside it becomes an ``error`` outcome (the vet goes on)."""
    progress.start(f"vet: {name}")
    t0 = time.perf_counter()
    try:
        result = fn()
        return StageOutcome.ran(name, result, seconds=round(time.perf_counter() - t0, 3))
    except AssayError as exc:
        return StageOutcome.error(name, exc.diagnostics(), seconds=round(time.perf_counter() - t0, 3))
    except Exception as exc:  # noqa: BLE001 - one stage's failure is recorded; the vet goes on to a verdict
        return StageOutcome.error(name, _internal(exc), seconds=round(time.perf_counter() - t0, 3))
    finally:
        progress.finish(f"vet: {name}")


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


# --- stages -----------------------------------------------------------------------------------------------


def _inventory(ctx: VetContext) -> StageOutcome:
    """The inventory document (headers only); the :class:`~assay.model.inventory.Inventory` is handed on."""
    from assay.model.inventory import open_model

    def run() -> InventoryResult:
        ctx.state.inventory = open_model(ctx.candidate.spec)
        return InventoryResult(ctx.state.inventory)

    return _timed("inventory", run, ctx.progress)


def _hardware(ctx: VetContext) -> StageOutcome:
    """Memory at 16/8/4 bits plus the key/value cache, and the devices it fits (from the headers alone)."""
    from assay.deploy.hardware import hardware_fit, shape_from_inventory

    inv, policy = ctx.state.inventory, ctx.policy
    if inv is None:
        return StageOutcome.skipped("hardware", "no inventory, so the model's size is unknown")
    if getattr(inv, "adapter", None) is not None:
        return StageOutcome.skipped("hardware", "the candidate is an adapter: it needs its base's memory plus its own "
                                                "few parameters (`assay bench BASE --fit-only` estimates the base)")
    if not getattr(inv, "parameters", None):
        return StageOutcome.skipped("hardware", "the parameter count could not be read from the headers, so the "
                                                "memory needed is unknown")

    def run() -> HardwareResult:
        return HardwareResult(hardware_fit(shape_from_inventory(inv), context=policy.deploy.context,
                                           batch=policy.deploy.batch))

    return _timed("hardware", run, NULL_PROGRESS)


def _scan(ctx: VetContext, ref: ModelRef, role: str) -> ScanResult:
    """Scan ``ref``; the report is handed on as ``state.scans[role]`` (the evaluation backend asks for it)."""
    from assay.scan import Severity, scan_model

    policy = ctx.policy
    report = scan_model(ref, fail_on=Severity(policy.scan.fail_on), allow_globals=list(policy.scan.allow_globals),
                        allow_remote_code=policy.scan.allow_remote_code, deep=False, progress=ctx.progress)
    ctx.state.scans[role] = report
    return ScanResult.of(report)


def _scan_candidate(ctx: VetContext) -> StageOutcome:
    """Scan the candidate; nothing later loads it unless it is safe."""
    return _timed("scan", lambda: _scan(ctx, ctx.candidate, "candidate"), ctx.progress)


def _scan_base(ctx: VetContext) -> StageOutcome:
    """Choose the base (``--base``, else the card's ``base_model`` in the local HF cache) and scan it before it is
    ever loaded."""
    state = ctx.state
    if state.base is None:
        state.base, state.base_source = _base_from_card(ctx.result("inventory", InventoryResult))
        if state.base is not None:
            try:
                _require_model(state.base, "base")
            except ModelError as exc:
                state.base, state.base_source = None, f"none: {exc.message}"
    base = state.base
    if base is None:
        return StageOutcome.not_applicable("base_scan", f"no base: {ctx.no_base_reason}")
    return _timed("base_scan", lambda: _scan(ctx, base, "base"), ctx.progress)


def _signature(ctx: VetContext) -> StageOutcome:
    """Verify ``model.sig`` (or ``FILE.sig``) against the policy's trusted keys, when there is one."""
    ref, policy = ctx.candidate, ctx.policy
    sig = ref.root / (ref.files[0].name + ".sig") if ref.single_file else ref.root / "model.sig"
    if not sig.is_file():
        if policy.signature.required:
            return StageOutcome.not_applicable("signature", f"the candidate carries no signature ({sig.name})")
        return StageOutcome.not_applicable("signature", f"no {sig.name} in the candidate, and the policy does not "
                                                        "require one")
    if not policy.signature.trusted_keys:
        return StageOutcome.skipped("signature", f"{sig.name} is present but the policy trusts no public key "
                                                 "(signature.trusted_keys), so it was not verified")
    from assay.provenance.signing import verify_model

    def run() -> SignatureResult:
        last: SignatureResult | None = None
        for key in policy.signature.trusted_keys:
            try:
                pem = Path(key).read_bytes()
            except OSError as exc:
                raise PolicyError(f"cannot read trusted key {key} (signature.trusted_keys): "
                                  f"{exc.strerror or exc}") from exc
            v = verify_model(ref, public_key_pem=pem, signature_path=sig)
            last = SignatureResult(v.valid, v.message, key, v)
            if v.valid:
                return last
        assert last is not None
        return last

    return _timed("signature", run, NULL_PROGRESS)


def _base_from_card(inventory: InventoryResult | None) -> tuple[ModelRef | None, str]:
    claimed = inventory.card_base_model if inventory is not None else None
    if not claimed:
        return None, "none: no --base given and the model card names no base_model"
    try:
        ref = resolve(str(claimed))
    except ModelError as exc:
        return None, f"none: the card's base_model {claimed} is not available locally ({exc.message})"
    return ref, "card"


def _lineage(cand: ModelRef, base: ModelRef, progress: Progress) -> LineageResult:
    from assay.provenance.lineage import compare_lineage

    # Both were scanned safe before this point, so torch archives may be read with weights_only=True.
    return LineageResult.of(compare_lineage(cand, base, allow_pickle=True, progress=progress))


def _lineage_stage(ctx: VetContext) -> StageOutcome:
    """Lineage of the candidate against the base (both scanned safe)."""
    cand, base = ctx.candidate, ctx.safe_base
    assert base is not None  # required: a base that scanned safe
    return _timed("lineage", lambda: _lineage(cand, base, ctx.progress), ctx.progress)


def _load_tasks(specs: Sequence[str]) -> list[Task]:
    """The evaluation tasks, each checked as `assay eval` checks it; a bad spec raises (bad input, exit 2)."""
    from assay.evaluate.loading import load_tasks
    from assay.evaluate.runner import validate_task

    loaded = [t for s in specs for t in load_tasks(s)]
    for t in loaded:
        validate_task(t)
    return loaded


def _check_trusted_keys(policy: Policy) -> None:
    """Refuse a ``signature.trusted_keys`` entry that is not a readable PEM public key, before any work."""
    if not policy.signature.trusted_keys:
        return
    from assay.provenance.signing import _load_public

    for key in policy.signature.trusted_keys:
        try:
            _load_public(Path(key).read_bytes())
        except OSError as exc:
            raise PolicyError(f"cannot read trusted key {key} (signature.trusted_keys): "
                              f"{exc.strerror or exc}") from exc
        except AssayError as exc:
            raise PolicyError(f"trusted key {key} (signature.trusted_keys): {exc.message}") from exc


def _open_backend(ref: ModelRef, scanned: Any, progress: Progress) -> Any:
    """Load a model that scanned safe (``scanned``: its scan report) for evaluation."""
    from assay.evaluate.backends.hf import HFBackend, load_after_scan

    if not ref.single_file and (ref.root / "adapter_config.json").is_file():
        return load_after_scan(ref, dtype="float32", progress=progress)  # scans the adapter's base too
    # lazy: a base whose results all come from the result cache is never loaded (vetting ten fine-tunes of one
    # base loads it once)
    return HFBackend.from_ref(ref, scanned=scanned, dtype="float32", lazy=True)


def _models(ctx: VetContext) -> ModelComparison:
    """Evaluation, probes and KL drift with each model loaded once: the base first (its results may come from
    the cache; its KL distributions are recorded while it is loaded), then the candidate. Run by the first stage
    that needs it; the others read the same result."""
    state, settings = ctx.state, ctx.settings
    if state.models is None:
        from assay.evaluate.cache import ResultCache
        from assay.evaluate.pair import compare_models

        cache = ResultCache()
        try:
            state.models = compare_models(
                ctx.candidate, ctx.safe_base, open_backend=lambda role, ref: _open_backend(ref, state.scans.get(role),
                                                                                         ctx.progress),
                tasks=settings.eval_tasks or None, probes=settings.probes, kl=settings.kl, limit=settings.limit,
                kl_limit=ctx.policy.drift.limit, seed=0, alpha=ctx.policy.evaluation.alpha, cache=cache,
                progress=ctx.progress, explain=_why, label="vet: ")
        finally:
            cache.close()
    return state.models


def _evaluation(ctx: VetContext) -> StageOutcome:
    """The candidate (and the base) on the evaluation tasks: an ``assay.eval/1`` result with the comparison."""
    models = _models(ctx)
    secs = round(models.seconds["evaluation"], 3)
    why = models.errors.get("evaluation")
    if why is not None:
        return StageOutcome.error("evaluation", why, seconds=secs)
    base_results = models.base.results if models.base is not None else None
    base = ctx.base
    return StageOutcome.ran("evaluation", EvaluationResult(
        model=ctx.candidate.spec, results=models.candidate.results or {},
        base=base.spec if base_results is not None and base is not None else None, base_results=base_results,
        comparison=models.comparison, settings={"backend": "hf", "dtype": "float32", "limit": ctx.settings.limit,
                                                "tasks": list(ctx.settings.tasks)}), seconds=secs)


def _comparison(ctx: VetContext) -> StageOutcome:
    """The paired comparison of the evaluation, each entry with its judgement."""
    evaluation = ctx.result("evaluation", EvaluationResult)
    return StageOutcome.ran("comparison", ComparisonResult(
        (evaluation.comparison if evaluation is not None and evaluation.base is not None else None) or {}))


def _probes(ctx: VetContext) -> StageOutcome:
    """The behaviour probes: compared with the base once here; written as ``assay.probes/1``
    (:func:`assay.evaluate.policy_tasks.probes_document`)."""
    from assay.evaluate.compare import compare_results

    models = _models(ctx)
    secs = round(models.seconds["probes"], 3)
    if "probes" in models.errors:
        return StageOutcome.error("probes", models.errors["probes"], seconds=secs)
    cand, base = ctx.candidate, ctx.safe_base
    cand_results = models.candidate.probes or {}
    base_results = models.base.probes if models.base is not None else None
    try:
        comparison = (compare_results(base_results, cand_results, alpha=ctx.policy.probes.alpha)
                      if base_results is not None else None)
    except Exception as exc:  # noqa: BLE001 - recorded; the vet goes on to a verdict
        return StageOutcome.error("probes", _why(exc), seconds=secs)
    run = ProbesRun(cand, base, cand_results, base_results, ctx.policy)
    return StageOutcome.ran("probes", ProbesResult.of(run, comparison), seconds=secs)


def _drift(ctx: VetContext) -> StageOutcome:
    """KL drift of the candidate from the base on the policy's ``drift.kl`` text."""
    models = _models(ctx)
    secs = round(models.seconds["drift"], 3)
    if "drift" in models.errors or models.kl is None:
        return StageOutcome.error("drift", models.errors.get("drift", "the KL comparison did not run"), seconds=secs)
    return StageOutcome.ran("drift", DriftResult({name: DriftTask.of(r) for name, r in models.kl.items()}),
                            seconds=secs)


def _card(ctx: VetContext) -> StageOutcome:
    """The card review, its claimed scores checked against what this vet measured. The card is read as text
    (nothing is loaded or unpickled), so a reviewer still sees what an unsafe model claims to be; the base's
    licence is read only from a base that scanned safe."""
    evaluation = ctx.result("evaluation", EvaluationResult)

    def run() -> CardResult:
        review = review_card(ctx.candidate, base=ctx.safe_base,
                             evaluation=evaluation.document() if evaluation is not None else None)
        return CardResult.of(review.report, review.claims, review.unmatched, review.basis)

    return _timed("card", run, ctx.progress)


def _licence(ctx: VetContext) -> StageOutcome:
    """The licence the card declares, against the policy's allow and deny lists."""
    card = ctx.result("card", CardResult)
    assert card is not None  # required: a model card read
    return _timed("licence", lambda: _licence_result(card, ctx.policy), ctx.progress)


def _licence_result(card: CardResult, policy: Policy) -> LicenceResult:
    from assay.deploy.licences import check_licence, lookup, normalise

    report = card.report
    lic = report.licence if report is not None else None
    violations = check_licence(lic, allow=list(policy.licence.allow), deny=list(policy.licence.deny),
                               monthly_active_users=policy.licence.monthly_active_users)
    return LicenceResult(normalise(lic) if lic else None, tuple(violations), lookup(lic),
                         report.base_licence if report is not None else None,
                         report.base_licence_source if report is not None else None)


def _bench(ctx: VetContext) -> StageOutcome:
    """Speed and memory (optional, slow): only models that scanned safe are loaded."""
    bench_base = ctx.safe_base
    note = None if bench_base is not None else f"no base measured ({ctx.bad_base or ctx.no_base_reason}): no ratios"
    return _timed("bench", lambda: _bench_result(ctx.candidate, bench_base, note, ctx.policy, ctx.progress),
                  ctx.progress)


def _bench_result(cand: ModelRef, base: ModelRef | None, base_note: str | None, policy: Policy,
                  progress: Progress) -> BenchResult:
    """Speed and memory of the candidate (and its base, in the same run); both scanned safe before this."""
    from assay.deploy.bench import run_bench

    d = policy.deploy
    report = run_bench(cand, base=base, prompt_tokens=d.prompt_tokens, output_tokens=d.output_tokens,
                       batch_sizes=(d.batch,), repeats=d.repeats, warmup=1, isolate=d.isolate, progress=progress)
    return BenchResult.of(report, notes=(base_note,) if base_note else ())


def _cost(ctx: VetContext) -> StageOutcome:
    """Cost per task self-hosted and via the API, and break-even, from the policy's prices and the bench."""
    c, bench = ctx.policy.cost, ctx.outcomes.get("bench")
    if not c.configured():
        return StageOutcome.not_applicable("cost", "no cost inputs (the policy's cost section, or --cost-from FILE)")
    if c.api_per_task is None and c.api_input_per_mtok is None and c.api_output_per_mtok is None:
        return StageOutcome.skipped("cost", "no API price to compare with (cost.api_per_task, or "
                                            "cost.api_input_per_mtok / cost.api_output_per_mtok with tokens per task)")
    bench_doc = None
    if c.self_per_task is None:
        if c.gpu_price_per_hour is None:
            return StageOutcome.skipped("cost", "the self-hosted cost needs cost.self_per_task, or "
                                                "cost.gpu_price_per_hour with a bench")
        if bench is None or bench.status is Status.NOT_APPLICABLE:
            return StageOutcome.skipped("cost", "the self-hosted cost needs a measured throughput: run with --bench "
                                                "(policy deploy.bench) or give cost.self_per_task")
        if bench.status is Status.BLOCKED:
            return StageOutcome.blocked("cost", bench.reason or "the bench was blocked")
        if bench.status is not Status.RAN:
            return StageOutcome.skipped("cost", f"no measured throughput: the bench {bench.status.value} "
                                                f"({bench.reason})")
        bench_doc = _plain(bench.document)  # the cost model reads the bench's figures as assay.bench/1 has them

    def run() -> CostResult:
        from assay.deploy.cost import compute_cost, inputs_from_policy

        return CostResult.of(compute_cost(inputs_from_policy(c, bench_doc)))

    return _timed("cost", run, NULL_PROGRESS)


# --- the table and its runner -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One step of ``assay vet``: its name (and key in the document), what it requires, what it does."""

    name: str
    """Stage name, also the key of its document in ``assay.vet/1``."""
    action: Callable[[VetContext], StageOutcome]
    """What it does once its requirements are met."""
    requires: tuple[Requirement, ...] = ()
    """Checked in order; the first one not met decides the stage's outcome instead of :attr:`action`."""
    produces: str = ""
    """What its document holds (for docs and the progress)."""

    def unmet(self, ctx: VetContext) -> StageOutcome | None:
        """The outcome when a requirement is not met, else None."""
        return next((o for r in self.requires if (o := r.check(self.name, ctx)) is not None), None)

    def run(self, ctx: VetContext) -> StageOutcome:
        """The stage's outcome in ``ctx``: its first unmet requirement's, else what :attr:`action` returns."""
        return self.unmet(ctx) or self.action(ctx)


_SAFE = (CANDIDATE_SAFE,)
STAGE_TABLE: tuple[Stage, ...] = (
    Stage("inventory", _inventory, produces="assay.inventory/1: files, formats, tensors, parameters, config, card"),
    Stage("hardware", _hardware, produces="assay.fit/1: memory at 16/8/4 bits and the devices it fits"),
    Stage("scan", _scan_candidate, produces="assay.scan/1 of the candidate"),
    Stage("base_scan", _scan_base, _SAFE, produces="the base chosen, and its assay.scan/1"),
    Stage("signature", _signature, _SAFE, produces="the model.sig verification"),
    Stage("lineage", _lineage_stage, (*_SAFE, A_BASE, SAFE_BASE), produces="assay.lineage/1 against the base"),
    Stage("evaluation", _evaluation, (*_SAFE, EVAL_EXTRA, TASKS),
          produces="assay.eval/1 of candidate and base on the tasks"),
    Stage("comparison", _comparison, (*_SAFE, EVAL_EXTRA.but(reason="no evaluation"),
                                      TASKS.but(status=Status.SKIPPED), EVALUATION_RAN, A_BASE, SAFE_BASE),
          produces="the paired comparison, task -> metric"),
    Stage("probes", _probes, (*_SAFE, PROBES_ASKED, EVAL_EXTRA),
          produces="assay.probes/1: refusal, degeneration, stability, contamination"),
    Stage("drift", _drift, (*_SAFE, DRIFT_ASKED, EVAL_EXTRA, A_BASE.but(reason="KL drift needs a base model ({why})"),
                            SAFE_BASE), produces="assay.drift/1: KL from the base"),
    # read as text (README front matter, config, GGUF metadata), nothing loaded: shown for an unsafe model too
    Stage("card", _card, produces="assay.card/1 with the claims checked against the evaluation"),
    Stage("licence", _licence, (CARD_READ,), produces="assay.licence/1"),
    Stage("bench", _bench, (*_SAFE, BENCH_ASKED, BENCH_EXTRA), produces="assay.bench/1: speed and memory"),
    Stage("cost", _cost, _SAFE, produces="assay.cost/1: cost per task and break-even"),
)
"""Every stage of ``assay vet``, in the order they run (and appear in reports)."""
#: The order stages run (and appear in reports).
STAGES = tuple(s.name for s in STAGE_TABLE)


def run_vet(candidate: str, *, base: str | None = None, policy: Policy, tasks: Sequence[str] | None = None,
            limit: int | None = None, out_dir: Path | None = None, revision: str | None = None,
            formats: Sequence[str] = ("json", "html", "md", "sarif", "cyclonedx"),
            progress: Progress = NULL_PROGRESS, bench: bool | None = None,
            cost: CostPolicy | None = None, download: bool = False) -> VetResult:
    """Vet ``candidate`` (against ``base``, else the card's ``base_model`` when cached) under ``policy``.

    ``tasks`` and ``limit`` override the policy's evaluation tasks and item limit; ``bench`` overrides
    ``deploy.bench`` and ``cost`` the policy's cost section (the document's policy shows what was applied). With
    ``out_dir``, the reports in ``formats`` are written there atomically (see
    :func:`assay.report.io.write_reports`). Raises :class:`AssayError` for bad input (unresolvable candidate or
    base, a candidate that is not a model, an unwritable ``out_dir``).
    """
    if bench is not None and bench != policy.deploy.bench:
        policy = replace(policy, deploy=replace(policy.deploy, bench=bench))
    if cost is not None:
        policy = replace(policy, cost=cost)
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    if out_dir is not None:
        check_out_dir(out_dir)
    cand_ref = resolve(candidate, revision=revision, download=download)
    _require_model(cand_ref, "candidate")
    base_ref: ModelRef | None = None
    if base is not None:
        base_ref = resolve(base, download=download)
        _require_model(base_ref, "base")
    # Bad input is refused here, before any scan or model load: evaluation, probe and KL task specs, trusted keys.
    specs = tuple(tasks) if tasks else tuple(policy.evaluation.tasks)
    settings = VetSettings(tasks=specs, eval_tasks=tuple(_load_tasks(specs)) if specs else (),
                           limit=limit if limit is not None else policy.evaluation.limit,
                           probes=tuple(probe_tasks(policy)) if policy.probes.specs() else (),
                           kl=tuple(kl_tasks(policy)))
    _check_trusted_keys(policy)
    ctx = VetContext(candidate=cand_ref, policy=policy, settings=settings, progress=progress,
                     state=VetState(base=base_ref, base_source="--base"))

    progress.start("vet", total=len(STAGE_TABLE))
    outcomes: dict[str, StageOutcome] = {}
    for stage in STAGE_TABLE:
        outcome = stage.run(replace(ctx, outcomes=MappingProxyType(dict(outcomes))))
        outcomes[outcome.name] = outcome
        progress.advance("vet")
        state = outcome.status.value if outcome.reason is None else f"{outcome.status.value}: {outcome.reason}"
        progress.note(f"{outcome.name}: {state}")
    progress.finish("vet")

    base_ref, base_source = ctx.state.base, ctx.state.base_source
    if base_ref is None and base_source == "--base":
        base_source = "none: no base given"
    stages = tuple(outcomes[n] for n in STAGES if n in outcomes)
    result = VetResult(candidate=cand_ref, base=base_ref, base_source=base_source, policy=policy, stages=stages,
                       verdict=decide({s.name: s for s in stages}, policy), training=read_training_log(cand_ref),
                       environment=environment(), started_at=started, seconds=round(time.perf_counter() - t0, 3))
    if out_dir is not None:
        write_reports(vet_document(result), out_dir, formats=formats)
    return result


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
