"""Turn measured cost and quality into the decision a team faces: keep paying the API, run an open model with
few-shot prompting, or fine-tune one.

Three options are costed over a horizon (default 12 months) at the given monthly volume:

- ``api``: the API price per task, nothing up front;
- ``few-shot``: the open base model self-hosted at the same throughput (a fine-tune runs at its base's speed), no
  training, but every prompt carries the few-shot examples (``few_shot_tokens`` more input tokens, which costs
  prefill time when the self-hosted cost is derived from throughput);
- ``fine-tune``: the fine-tuned model self-hosted, after the one-off training cost.

An option whose measured quality is below the required quality (given, else the API's measured quality when
known) is ruled out. The recommendation is the cheapest remaining option over the horizon; on a tie the status quo
(the API) wins. Every reason carries its numbers.

    >>> a = advise(CostInputs(api_per_task=0.15, self_per_task=0.01, training_cost=3000, monthly_tasks=5000),
    ...            quality=Quality(api=0.80, base=0.62, candidate=0.83))
    >>> a.recommendation, a.options[2].break_even_tasks
    ('fine-tune', 21429)

Without quality figures nothing tells the fine-tune from the few-shot base, so the cheaper few-shot option wins
and the headline says the quality is unmeasured.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from assay.deploy.cost import CostInputs, CostReport, compute_cost, cost_document
from assay.errors import DeployError

#: Metrics tried, in order, when no metric is named for the quality figure.
DEFAULT_METRICS = ("acc_norm", "acc", "exact_match", "exact", "strict", "flexible", "mc2")


@dataclass(frozen=True)
class Quality:
    """Measured quality (0..1, higher is better) of each option, when known."""

    api: float | None = None
    """The API's score on the team's task."""
    base: float | None = None
    """The open base model with few-shot prompting."""
    candidate: float | None = None
    """The fine-tuned model."""
    required: float | None = None
    """The least acceptable score (None: the API's score when known, else no gate)."""
    metric: str | None = None
    """What the scores measure (``arc_easy/acc`` or ``mean acc over 3 tasks``)."""


@dataclass(frozen=True)
class Option:
    """One way of doing the work, costed."""

    name: str
    """``api``, ``few-shot`` or ``fine-tune``."""
    per_task: float
    """Cost per task."""
    monthly: float
    """Running cost per month at the given volume."""
    upfront: float
    """One-off cost."""
    horizon_total: float
    """Upfront plus running cost over the horizon."""
    break_even_tasks: int | None
    """Tasks until it is cheaper than the API (0: from the first task; None: never). None for the API itself."""
    quality: float | None
    """Measured quality, when known."""
    acceptable: bool
    """False when its measured quality is below the required quality."""
    note: str
    """Why it is or is not acceptable, with numbers."""


@dataclass(frozen=True)
class Advice:
    """The recommendation and the numbers behind it."""

    recommendation: str
    """The chosen option's name."""
    headline: str
    """One sentence for the user."""
    reasons: tuple[str, ...]
    """The figures that decide it."""
    options: tuple[Option, ...]
    """Every option, costed (api, few-shot, fine-tune)."""
    monthly_tasks: int
    """Volume assumed."""
    horizon_months: float
    """Horizon the totals cover."""
    quality: Quality
    """Quality figures used."""
    cost: CostReport
    """The fine-tune's cost report (break-even, utilisation sweep, curve)."""


def advise(inputs: CostInputs, *, quality: Quality = Quality(), few_shot_tokens: int = 0,
           horizon_months: float = 12.0) -> Advice:
    """Cost the three options and recommend one. ``inputs.monthly_tasks`` is required."""
    if inputs.monthly_tasks is None or inputs.monthly_tasks <= 0:
        raise DeployError("advice needs the expected volume: --monthly-tasks N (N > 0)")
    if horizon_months <= 0:
        raise DeployError("--horizon-months must be positive")
    if few_shot_tokens < 0:
        raise DeployError("--few-shot-tokens must be zero or more")
    for label, q in (("api", quality.api), ("base", quality.base), ("candidate", quality.candidate),
                     ("required", quality.required)):
        if q is not None and not 0 <= q <= 1:
            raise DeployError(f"quality {label} must be between 0 and 1, got {q}")
    tuned = compute_cost(inputs)
    few_inputs = dataclasses.replace(inputs, training_cost=0.0,
                                     tokens_in=(inputs.tokens_in or 0) + few_shot_tokens
                                     if inputs.tokens_in is not None or few_shot_tokens else None)
    few = compute_cost(few_inputs)
    n, h = inputs.monthly_tasks, horizon_months
    required = quality.required if quality.required is not None else quality.api
    req_source = "required" if quality.required is not None else "the API's measured"

    def gate(q: float | None) -> tuple[bool, str]:
        if required is None:
            return True, "no quality gate (give --quality-required or the API's score)"
        if q is None:
            return True, "quality not measured: check it before switching"
        if q + 1e-12 >= required:
            return True, f"quality {q:.3f} meets {req_source} {required:.3f}"
        return False, f"quality {q:.3f} is below {req_source} {required:.3f}"

    api_ok, api_note = (True, "the status quo") if quality.api is None else gate(quality.api)
    options = [
        Option("api", tuned.api_per_task, n * tuned.api_per_task, 0.0, n * tuned.api_per_task * h, None,
               quality.api, api_ok, api_note),
        Option("few-shot", few.self_per_task, n * few.self_per_task, 0.0, n * few.self_per_task * h,
               0 if few.self_per_task < tuned.api_per_task else None, quality.base, *gate(quality.base)),
        Option("fine-tune", tuned.self_per_task, n * tuned.self_per_task, inputs.training_cost,
               inputs.training_cost + n * tuned.self_per_task * h, tuned.break_even_tasks, quality.candidate,
               *gate(quality.candidate)),
    ]
    candidates = [o for o in options if o.acceptable] or [options[0]]
    best = min(candidates, key=lambda o: (round(o.horizon_total, 6), o.name != "api"))
    api = options[0]
    reasons = [f"volume {n:,} tasks/month; totals over {h:g} months"]
    for o in options:
        line = (f"{o.name}: {_money(o.per_task)}/task, {_money(o.monthly)}/month"
                + (f" + {_money(o.upfront)} up front" if o.upfront else "")
                + f" = {_money(o.horizon_total)} over {h:g} months")
        if o.name != "api":
            if o.break_even_tasks is None:
                line += "; never cheaper than the API"
            else:
                months = o.break_even_tasks / n
                line += f"; break-even at {o.break_even_tasks:,} tasks ({months:.1f} months)"
        line += f"; {o.note}"
        reasons.append(line)
    if tuned.utilisation_sweep:
        worst = next((p for p in tuned.utilisation_sweep if p.break_even_tasks is not None), None)
        if worst is not None:
            reasons.append(f"the fine-tune pays back only at utilisation >= {worst.utilisation:.0%} "
                           "(see the utilisation sweep)")
    saving = api.horizon_total - best.horizon_total
    if best.name == "api":
        headline = "Keep paying the API: no acceptable open-model option is cheaper over the horizon."
    elif best.name == "few-shot":
        headline = (f"Run the open base model with few-shot prompting: {_money(saving)} cheaper than the API over "
                    f"{h:g} months, with no training cost.")
    else:
        headline = (f"Fine-tune: {_money(saving)} cheaper than the API over {h:g} months; the training cost is paid "
                    f"back after {tuned.break_even_tasks:,} tasks.")
    if best.name != "api" and best.quality is None:
        headline += " Its quality is not measured: run `assay vet` or `assay eval` before switching."
    if not [o for o in options if o.acceptable]:
        headline = "No option meets the required quality; the API is kept as the status quo."
    return Advice(recommendation=best.name, headline=headline, reasons=tuple(reasons), options=tuple(options),
                  monthly_tasks=n, horizon_months=h, quality=quality, cost=tuned)


def _money(x: float) -> str:
    return f"${x:,.2f}" if abs(x) >= 1 else f"${x:.4f}"


def _task_metrics(tasks: Any) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    if not isinstance(tasks, Mapping):
        return out
    for name, t in tasks.items():
        metrics = t.get("metrics") if isinstance(t, Mapping) else None
        if isinstance(metrics, Mapping):
            out[str(name)] = {str(k): float(v) for k, v in metrics.items()
                              if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return out


def _score(tasks: dict[str, dict[str, float]], metric: str | None) -> tuple[float | None, str | None]:
    if not tasks:
        return None, None
    if metric:
        task, _, m = metric.partition("/")
        if not m:
            raise DeployError(f"--metric wants TASK/METRIC (e.g. arc_easy/acc), got {metric!r}")
        value = tasks.get(task, {}).get(m)
        return value, metric
    values, names = [], set()
    for per in tasks.values():
        for m in DEFAULT_METRICS:
            if m in per and 0 <= per[m] <= 1:
                values.append(per[m])
                names.add(m)
                break
    if not values:
        return None, None
    return sum(values) / len(values), f"mean {'/'.join(sorted(names))} over {len(values)} task(s)"


def quality_from_document(doc: Any, *, metric: str | None = None) -> tuple[float | None, float | None, str | None]:
    """``(candidate, base, metric description)`` from an ``assay.eval/1`` or ``assay.vet/1`` document.

    With ``metric`` (``task/metric``) that figure; otherwise the mean over tasks of each task's first metric
    among :data:`DEFAULT_METRICS`.
    """
    schema = doc.get("schema") if isinstance(doc, Mapping) else None
    if schema == "assay.eval/1":
        ev: Any = doc
    elif schema == "assay.vet/1":
        # A vet document carries its evaluation stage's `assay.eval/1` document under "evaluation".
        ev = doc.get("evaluation")
        if not isinstance(ev, Mapping):
            stage = doc.get("stages", {}).get("evaluation") if isinstance(doc.get("stages"), Mapping) else None
            why = stage.get("reason") if isinstance(stage, Mapping) else None
            raise DeployError("the --eval vet document has no evaluation results"
                              + (f" (its evaluation stage: {why})" if why else "")
                              + "; vet with evaluation tasks (--task) or pass --quality-candidate")
    else:
        raise DeployError("the --eval file is neither an `assay eval --json` nor an `assay vet --json` document")
    cand, base = _task_metrics(ev.get("tasks")), _task_metrics(ev.get("base_tasks"))
    if not cand:
        raise DeployError("the --eval document has no evaluation results for the candidate")
    c, described = _score(cand, metric)
    b, _ = _score(base, metric)
    if c is None:
        raise DeployError(f"the --eval document has no {metric or 'accuracy-like'} metric for the candidate")
    return c, b, described


def advice_document(a: Advice) -> dict[str, Any]:
    """The ``assay.advise/1`` JSON document."""
    return {
        "schema": "assay.advise/1",
        "recommendation": a.recommendation,
        "headline": a.headline,
        "reasons": list(a.reasons),
        "monthly_tasks": a.monthly_tasks,
        "horizon_months": a.horizon_months,
        "quality": dataclasses.asdict(a.quality),
        "options": [dataclasses.asdict(o) for o in a.options],
        "cost": cost_document(a.cost),
    }
