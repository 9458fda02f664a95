"""The stages of ``assay vet`` and their table: :data:`STAGE_TABLE`, each a :class:`Stage` with a name, what it
requires and what it does.

    inventory -> hardware -> scan -> base_scan -> signature -> lineage -> evaluation -> comparison -> probes
    -> drift -> card -> licence -> bench -> cost

Each stage function takes the :class:`~assay.vet.context.VetContext` and returns its
:class:`~assay.verdict.outcome.StageOutcome` with its typed result (:mod:`assay.verdict.results`). Adding a stage is
one function here and one :class:`Stage` entry in the table (and its typed result and rule in :mod:`assay.verdict`)::

    stage = STAGE_TABLE[STAGES.index("lineage")]
    stage.requires     # (CANDIDATE_SAFE, A_BASE, SAFE_BASE): the first one not met decides the outcome
    stage.run(ctx)     # StageOutcome("lineage", RAN, LineageResult(...)) once they are met
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.deploy.claims import measured_scores, review_card
from assay.errors import AssayError, ModelError, PolicyError
from assay.model.ref import ModelRef, resolve
from assay.policy import Policy
from assay.progress import NULL_PROGRESS, Progress
from assay.verdict import (BenchResult, CardResult, ComparisonResult, CostResult, DriftResult, DriftTask,
                           EvaluationResult, HardwareResult, InventoryResult, LicenceResult, LineageResult,
                           ProbesResult, ProbesRun, ScanResult, SignatureResult, StageOutcome, StageResult, Status)
from assay.vet.context import (A_BASE, BENCH_ASKED, BENCH_EXTRA, CANDIDATE_SAFE, CARD_READ, DRIFT_ASKED,
                               EVAL_EXTRA, EVALUATION_RAN, PROBES_ASKED, SAFE_BASE, TASKS, Requirement, VetContext,
                               _internal, _why)
from assay.vet.inputs import _require_model

if TYPE_CHECKING:
    from assay.evaluate.pair import ModelComparison
    from assay.deploy.bench import BenchReport

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
        measured = (measured_scores({name: r.metrics for name, r in evaluation.results.items()})
                    if evaluation is not None else None)
        review = review_card(ctx.candidate, base=ctx.safe_base, measured=measured)
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
    measured: BenchReport | None = None
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
        measured = bench.result.report if isinstance(bench.result, BenchResult) else None
        if measured is None:
            return StageOutcome.skipped("cost", "no measured throughput: the bench left no report")

    def run() -> CostResult:
        from assay.deploy.cost import compute_cost, inputs_from_policy

        return CostResult.of(compute_cost(inputs_from_policy(c, measured)))

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
