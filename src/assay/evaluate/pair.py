"""A candidate and its base on the same tasks, each model loaded once: what ``assay eval --base`` and ``assay vet``
both run.

The base goes first (its per-item results may come from the result cache; its next-token distributions for KL
drift are recorded while it is loaded), then the candidate; each model runs the evaluation tasks, then the
behaviour probes, then KL drift, and is closed before the next is opened. The paired comparison of the
evaluation tasks (:func:`assay.evaluate.compare.compare_results`) is part of the result.

    run = compare_models(cand_ref, base_ref, open_backend=lambda role, ref: load_after_scan(ref),
                         tasks=tasks, kl=kl_tasks, limit=50, cache=ResultCache())
    run.candidate.results["capitals"].metrics, run.comparison["capitals"]["acc"].change, run.kl

By default a failure propagates (``assay eval`` stops with one error line). With ``explain``, a failure of one
part (``evaluation``, ``probes`` or ``drift``) is recorded in :attr:`ModelComparison.errors` as ``explain(exc)``
and the other parts go on (``assay vet`` records it as that stage's error and still reaches a verdict); a model
that cannot be loaded fails all three parts, and nothing after it runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from assay.evaluate.backends.base import Backend, BackendInfo
from assay.evaluate.cache import ResultCache
from assay.evaluate.compare import MetricComparison, compare_results
from assay.evaluate.kl import KLResult, KLSession
from assay.evaluate.runner import TaskResult, evaluate_model
from assay.evaluate.tasks import Task
from assay.progress import NULL_PROGRESS, Progress

Role = Literal["base", "candidate"]
Part = Literal["evaluation", "probes", "drift"]
PARTS: tuple[Part, ...] = ("evaluation", "probes", "drift")
"""What a paired run does with each loaded model, in order."""

M = TypeVar("M")
"""A model as the caller names it: a resolved :class:`~assay.model.ref.ModelRef`, or a server's model name."""


@dataclass(frozen=True)
class ModelRun:
    """What one model produced while it was loaded."""

    info: BackendInfo | None = None
    """The backend's description of the model (name, tokenizer, dtype...); None when it was not loaded."""
    results: Mapping[str, TaskResult] | None = None
    """Evaluation results by task name; None when the evaluation did not run for this model."""
    probes: Mapping[str, TaskResult] | None = None
    """Behaviour probe results by task name; None when no probe ran."""
    server: Mapping[str, Any] | None = None
    """What the openai backend's probe found about the server (None for a local backend)."""


@dataclass(frozen=True)
class ModelComparison:
    """Both models' results, their paired comparison and the KL drift of the candidate from the base."""

    candidate: ModelRun
    """The candidate's run."""
    base: ModelRun | None
    """The base's run; None without a base."""
    comparison: Mapping[str, Mapping[str, MetricComparison]] | None
    """Task -> metric -> comparison of the evaluation tasks; None unless both models were evaluated."""
    kl: Mapping[str, KLResult] | None
    """KL drift by task name; None unless it was measured."""
    errors: Mapping[Part, str] = field(default_factory=dict)
    """Why a part failed (only with ``explain``)."""
    seconds: Mapping[Part, float] = field(default_factory=dict)
    """Wall time of each part over both models (loading a model counts to ``evaluation``)."""


def compare_models(candidate: M, base: M | None, *, open_backend: Callable[[Role, M], Backend],
                   tasks: Sequence[Task] | None = None, probes: Sequence[Task] = (), kl: Sequence[Task] = (),
                   limit: int | None = None, kl_limit: int | None = None, seed: int = 0, alpha: float = 0.05,
                   cache: ResultCache | None = None, progress: Progress = NULL_PROGRESS,
                   explain: Callable[[BaseException], str] | None = None,
                   label: str | None = None) -> ModelComparison:
    """Run ``tasks`` (each cut to ``limit`` items), ``probes`` and the KL ``kl`` tasks (cut to ``kl_limit``
    documents, measured only with a base) on the base, then on the candidate, each opened by
    ``open_backend(role, model)`` once and closed after; ``tasks=None`` runs no evaluation. ``seed`` seeds the
    comparison and the KL bootstrap; ``alpha`` is the significance level the comparison judges each change at
    (:attr:`~assay.evaluate.compare.MetricComparison.change`, judged once there). With ``label``, each part
    reports ``progress.start(label + part)``. With ``explain``, failures are recorded instead of raised (see the
    module docstring)."""
    errors: dict[Part, str] = {}
    seconds: dict[Part, float] = dict.fromkeys(PARTS, 0.0)
    runs: dict[Role, dict[str, Any]] = {}
    kl_results: dict[str, KLResult] | None = None

    def part(name: Part, fn: Callable[[], Any]) -> Any:
        if name in errors:
            return None
        t0 = time.perf_counter()
        if label is not None:
            progress.start(f"{label}{name}")
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - with explain, one part's failure is recorded; the others go on
            if explain is None:
                raise
            errors[name] = explain(exc)
            return None
        finally:
            if label is not None:
                progress.finish(f"{label}{name}")
            seconds[name] += time.perf_counter() - t0

    roles: list[tuple[Role, M]] = [("base", base)] if base is not None else []
    roles.append(("candidate", candidate))
    with ExitStack() as stack:
        session: KLSession | None = None
        if kl and base is not None:
            def open_session() -> KLSession:
                return stack.enter_context(KLSession(kl, limit=kl_limit, seed=seed))

            session = part("drift", open_session)
        for role, model in roles:
            t0 = time.perf_counter()
            try:
                backend = open_backend(role, model)
            except Exception as exc:  # noqa: BLE001 - a model that cannot be loaded fails every part that needs it
                if explain is None:
                    raise
                why = f"the {role} could not be loaded: {explain(exc)}"
                for name in PARTS:
                    errors.setdefault(name, why)
                break
            seconds["evaluation"] += time.perf_counter() - t0
            run: dict[str, Any] = runs.setdefault(role, {"info": backend.info})
            try:
                _run_one(role, backend, run, part, session=session, tasks=tasks, probes=probes, limit=limit,
                         cache=cache, progress=progress)
            finally:
                backend.close()
            kl_results = run.pop("kl", kl_results)

    cand, base_run = ModelRun(**runs.get("candidate", {})), (ModelRun(**runs["base"]) if "base" in runs else None)
    comparison = None
    if base_run is not None and base_run.results is not None and cand.results is not None:
        try:
            comparison = compare_results(base_run.results, cand.results, seed=seed, alpha=alpha)
        except Exception as exc:  # noqa: BLE001 - with explain, recorded as the evaluation's failure
            if explain is None:
                raise
            errors["evaluation"] = explain(exc)
    return ModelComparison(candidate=cand, base=base_run, comparison=comparison, kl=kl_results, errors=errors,
                           seconds=seconds)


def _run_one(role: Role, backend: Backend, run: dict[str, Any], part: Callable[[Part, Callable[[], Any]], Any], *,
             session: KLSession | None, tasks: Sequence[Task] | None, probes: Sequence[Task], limit: int | None,
             cache: ResultCache | None, progress: Progress) -> None:
    """One loaded model: the evaluation tasks, the probes, then its side of the KL drift (into ``run``)."""
    if tasks is not None:
        run["results"] = part("evaluation", lambda: evaluate_model(backend, tasks, limit=limit, cache=cache,
                                                                   progress=progress))
        caps = getattr(backend, "capabilities", None)
        if caps is not None:
            run["server"] = caps.to_json()
    if probes:
        run["probes"] = part("probes", lambda: evaluate_model(backend, probes, cache=cache, progress=progress))
    if session is not None:
        if role == "base":
            part("drift", lambda: session.record_base(backend, progress=progress))
        else:
            run["kl"] = part("drift", lambda: session.compare(backend, progress=progress))
