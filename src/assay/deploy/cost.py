"""Cost per task self-hosted and through a paid API, and the volume at which fine-tuning pays for itself.

The arithmetic is small and explicit, so a reviewer can redo it by hand:

- API cost per task: given, or ``tokens_in * input_price + tokens_out * output_price`` (prices per million tokens).
- Self-hosted cost per task: given, or derived from measured throughput and the hardware's hourly price:
  ``seconds = tokens_in / prefill_tok_s + tokens_out / decode_tok_s`` (the prefill term only when a prefill rate
  is known), ``cost = price_per_hour / 3600 * seconds / utilisation``. Utilisation is the share of the paid hours
  that does useful work: an idle GPU still costs money, so half the utilisation doubles the cost per task.
- Break-even: the one-off training cost is paid back after ``training_cost / (api - self)`` tasks, rounded up;
  never (None) when the API is not dearer per task.

    >>> r = compute_cost(CostInputs(api_per_task=0.15, self_per_task=0.01, training_cost=3000))
    >>> r.break_even_tasks
    21429
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from assay.errors import DeployError

if TYPE_CHECKING:
    from assay.deploy.bench import BenchReport
    from assay.policy import CostPolicy

#: Utilisation levels the sweep shows (share of paid hardware time doing useful work).
SWEEP_UTILISATIONS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
#: Number of points on the cumulative cost curve.
CURVE_POINTS = 21


@dataclass(frozen=True)
class CostInputs:
    """Everything the cost model needs; each figure either given directly or derived from the ones below it."""

    api_per_task: float | None = None
    """API price per task (currency units)."""
    api_input_per_mtok: float | None = None
    """API price per million input tokens (used with ``tokens_in`` when ``api_per_task`` is not given)."""
    api_output_per_mtok: float | None = None
    """API price per million output tokens (used with ``tokens_out``)."""
    self_per_task: float | None = None
    """Self-hosted cost per task, when known directly."""
    decode_tokens_per_s: float | None = None
    """Measured output (decode) throughput of the self-hosted model, tokens per second, all streams together."""
    prefill_tokens_per_s: float | None = None
    """Measured input (prefill) throughput, tokens per second; None ignores the prompt's processing time."""
    hardware_per_hour: float | None = None
    """Price of the hardware per hour (rented GPU, or amortised purchase plus power)."""
    utilisation: float = 1.0
    """Share of paid hardware hours doing useful work, in (0, 1]."""
    tokens_in: int | None = None
    """Input (prompt) tokens per task."""
    tokens_out: int | None = None
    """Output tokens per task."""
    training_cost: float = 0.0
    """One-off cost of fine-tuning (data, compute, people)."""
    monthly_tasks: int | None = None
    """Expected tasks per month (for monthly costs and payback time)."""
    source: dict[str, Any] = field(default_factory=dict)
    """Where derived inputs came from (e.g. the bench document's model and hardware), copied into the report."""


@dataclass(frozen=True)
class SweepPoint:
    """Self-hosted cost and break-even at one utilisation."""

    utilisation: float
    """Share of paid hours doing useful work."""
    self_per_task: float
    """Self-hosted cost per task at this utilisation."""
    break_even_tasks: int | None
    """Tasks to pay back the training cost at this utilisation (None: never)."""


@dataclass(frozen=True)
class CurvePoint:
    """Cumulative cost of both options after a number of tasks (for a chart)."""

    tasks: int
    """Tasks done so far."""
    self_hosted: float
    """Training cost plus self-hosted running cost so far."""
    api: float
    """API cost so far."""


@dataclass(frozen=True)
class CostReport:
    """Costs per task and per month, break-even volume, and how it moves with utilisation."""

    inputs: CostInputs
    """The inputs as given."""
    api_per_task: float
    """API cost per task."""
    api_per_task_basis: str
    """How it was obtained: ``given`` or ``per-token prices``."""
    self_per_task: float
    """Self-hosted cost per task (at the given utilisation)."""
    self_per_task_basis: str
    """``given`` or ``throughput and hardware price``."""
    seconds_per_task: float | None
    """Hardware seconds one task takes at full load (when derived from throughput)."""
    tasks_per_hour: float | None
    """Tasks per fully used hardware hour (when derived from throughput)."""
    saving_per_task: float
    """``api_per_task - self_per_task`` (negative: the API is cheaper)."""
    break_even_tasks: int | None
    """Tasks after which the training cost is paid back, rounded up; None if self-hosting never pays."""
    monthly_self: float | None
    """Self-hosted running cost per month (training excluded), when the volume is given."""
    monthly_api: float | None
    """API cost per month, when the volume is given."""
    payback_months: float | None
    """Months until break-even at the given volume (None: never, or no volume given)."""
    utilisation_sweep: tuple[SweepPoint, ...]
    """Self-hosted cost and break-even at several utilisations (empty when the self cost was given directly)."""
    curve: tuple[CurvePoint, ...]
    """Cumulative cost of both options against volume, from 0 to past break-even (or a year of volume)."""
    notes: tuple[str, ...]
    """Caveats worth showing next to the figures."""


def _positive(name: str, value: float | None, *, allow_zero: bool = True) -> None:
    if value is None:
        return
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise DeployError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} number, got {value}")


def _break_even(training_cost: float, api: float, self_cost: float) -> int | None:
    # Decimal from the shortest repr, so 3000 / (0.15 - 0.01) is 21428.57... and not a float artefact.
    saving = Decimal(repr(api)) - Decimal(repr(self_cost))
    if saving <= 0:
        return None
    tasks = Decimal(repr(training_cost)) / saving
    return int(tasks.to_integral_value(rounding=ROUND_CEILING))


def _api_per_task(inp: CostInputs) -> tuple[float, str]:
    if inp.api_per_task is not None:
        return inp.api_per_task, "given"
    if inp.api_input_per_mtok is None and inp.api_output_per_mtok is None:
        raise DeployError("the API price is missing: give --api-per-task, or --api-input-per-mtok / "
                          "--api-output-per-mtok with --tokens-in / --tokens-out")
    cost = 0.0
    for price, tokens, what in ((inp.api_input_per_mtok, inp.tokens_in, "input"),
                                (inp.api_output_per_mtok, inp.tokens_out, "output")):
        if price is None:
            continue
        if tokens is None:
            flag = "--tokens-in" if what == "input" else "--tokens-out"
            raise DeployError(f"an API price per million {what} tokens needs {flag}")
        cost += tokens * price / 1e6
    return cost, "per-token prices"


def _seconds_per_task(inp: CostInputs) -> float:
    if inp.tokens_out is None:
        raise DeployError("deriving the self-hosted cost from throughput needs --tokens-out (output tokens per task)")
    assert inp.decode_tokens_per_s is not None
    seconds = inp.tokens_out / inp.decode_tokens_per_s
    if inp.prefill_tokens_per_s and inp.tokens_in:
        seconds += inp.tokens_in / inp.prefill_tokens_per_s
    return seconds


def compute_cost(inputs: CostInputs) -> CostReport:
    """Compute the :class:`CostReport`. Raises :class:`DeployError` for missing or impossible inputs."""
    inp = inputs
    for name in ("api_per_task", "api_input_per_mtok", "api_output_per_mtok", "self_per_task", "hardware_per_hour",
                 "training_cost"):
        _positive(name.replace("_", "-"), getattr(inp, name))
    _positive("decode throughput", inp.decode_tokens_per_s, allow_zero=False)
    _positive("prefill throughput", inp.prefill_tokens_per_s, allow_zero=False)
    for name in ("tokens_in", "tokens_out", "monthly_tasks"):
        _positive(name.replace("_", "-"), getattr(inp, name))
    if not (0 < inp.utilisation <= 1):
        raise DeployError(f"utilisation must be in (0, 1], got {inp.utilisation} "
                          "(0.5 means half the paid hours do work)")

    api, api_basis = _api_per_task(inp)
    notes: list[str] = []
    if inp.api_per_task is not None and (inp.api_input_per_mtok is not None or inp.api_output_per_mtok is not None):
        notes.append("--api-per-task given: the API's per-token prices were not used")
    seconds: float | None = None
    tasks_per_hour: float | None = None
    sweep: list[SweepPoint] = []
    if inp.self_per_task is not None:
        self_cost, self_basis = inp.self_per_task, "given"
        if inp.decode_tokens_per_s is not None or inp.hardware_per_hour is not None:
            notes.append("--self-per-task given: throughput and hardware price were not used")
    else:
        if inp.decode_tokens_per_s is None or inp.hardware_per_hour is None:
            raise DeployError("the self-hosted cost is missing: give --self-per-task, or a throughput (--bench FILE "
                              "or --throughput) with --gpu-price-per-hour")
        seconds = _seconds_per_task(inp)
        tasks_per_hour = 3600.0 / seconds if seconds > 0 else math.inf
        full = inp.hardware_per_hour / 3600.0 * seconds
        self_cost, self_basis = full / inp.utilisation, "throughput and hardware price"
        levels = sorted(set(SWEEP_UTILISATIONS) | {inp.utilisation})
        sweep = [SweepPoint(u, full / u, _break_even(inp.training_cost, api, full / u)) for u in levels]
        if inp.prefill_tokens_per_s is None and inp.tokens_in:
            notes.append("no prefill throughput: the prompt's processing time is not counted")

    break_even = _break_even(inp.training_cost, api, self_cost)
    monthly_self = monthly_api = payback = None
    if inp.monthly_tasks is not None:
        monthly_self = inp.monthly_tasks * self_cost
        monthly_api = inp.monthly_tasks * api
        if break_even is not None and inp.monthly_tasks > 0:
            payback = break_even / inp.monthly_tasks
    if break_even is None:
        notes.append("the API costs no more per task than self-hosting: the training cost is never paid back")

    span = max(break_even or 0, 12 * (inp.monthly_tasks or 0))
    if span == 0:
        span = 1000
    top = int(math.ceil(span * 1.5))
    curve = tuple(CurvePoint(t, inp.training_cost + t * self_cost, t * api)
                  for t in sorted({round(top * i / (CURVE_POINTS - 1)) for i in range(CURVE_POINTS)}))
    return CostReport(inputs=inp, api_per_task=api, api_per_task_basis=api_basis, self_per_task=self_cost,
                      self_per_task_basis=self_basis, seconds_per_task=seconds, tasks_per_hour=tasks_per_hour,
                      saving_per_task=api - self_cost, break_even_tasks=break_even, monthly_self=monthly_self,
                      monthly_api=monthly_api, payback_months=payback, utilisation_sweep=tuple(sweep),
                      curve=curve, notes=tuple(notes))


def inputs_from_bench(doc: dict[str, Any], *, batch_size: int | None = None) -> dict[str, Any]:
    """Throughput fields for :class:`CostInputs` from a saved ``assay.bench/1`` document (``assay cost --bench``).

    See :func:`inputs_from_bench_rows`; a document that is not a bench, or whose rows are malformed, is refused
    with one line.
    """
    if not isinstance(doc, dict) or doc.get("schema") != "assay.bench/1":
        raise DeployError("the --bench file is not an assay bench document (expected \"schema\": \"assay.bench/1\"; "
                          "make one with `assay bench MODEL --json > bench.json`)")
    cand_doc = doc.get("candidate")
    cand: dict[str, Any] = cand_doc if isinstance(cand_doc, dict) else {}
    rows = cand.get("batches")
    if not isinstance(rows, list) or not rows:
        raise DeployError("the bench document has no throughput measurements (candidate.batches is empty)")
    try:
        measured = [(int(r["batch_size"]), float(r["decode_tokens_per_s"]),
                     float(r["prefill_tokens_per_s"]) if r.get("prefill_tokens_per_s") else None) for r in rows]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DeployError(f"the bench document is malformed ({type(exc).__name__}: {exc})") from exc
    hw_doc = doc.get("hardware")
    hw: dict[str, Any] = hw_doc if isinstance(hw_doc, dict) else {}
    return inputs_from_bench_rows(measured, model=cand.get("model"), hardware=hw.get("description"),
                                  batch_size=batch_size)


def inputs_from_bench_report(report: BenchReport, *, batch_size: int | None = None) -> dict[str, Any]:
    """Throughput fields for :class:`CostInputs` from a bench just measured (``assay vet --bench``)."""
    measured = [(b.batch_size, b.decode_tokens_per_s, b.prefill_tokens_per_s or None)
                for b in report.candidate.batches]
    if not measured:
        raise DeployError("the bench has no throughput measurements (no batch size was measured)")
    return inputs_from_bench_rows(measured, model=report.candidate.model,
                                  hardware=report.hardware.description if report.hardware else None,
                                  batch_size=batch_size)


def inputs_from_bench_rows(rows: Sequence[tuple[int, float, float | None]], *, model: Any, hardware: Any,
                           batch_size: int | None = None) -> dict[str, Any]:
    """Throughput fields for :class:`CostInputs` from measured ``(batch size, decode tok/s, prefill tok/s)``
    rows: the batch size with the highest decode throughput (or ``batch_size``), since a server batches
    requests; returns ``decode_tokens_per_s``, ``prefill_tokens_per_s`` and a ``source`` description."""
    if batch_size is not None:
        picked = [r for r in rows if r[0] == batch_size]
        if not picked:
            raise DeployError(f"the bench document has no batch size {batch_size} "
                              f"(measured: {', '.join(str(r[0]) for r in rows)})")
        row = picked[0]
    else:
        row = max(rows, key=lambda r: r[1])
    return {"decode_tokens_per_s": row[1], "prefill_tokens_per_s": row[2],
            "source": {"bench_model": model, "batch_size": row[0], "hardware": hardware}}


def cost_document(r: CostReport) -> dict[str, Any]:
    """The ``assay.cost/1`` JSON document."""
    from dataclasses import asdict

    inputs = {k: v for k, v in asdict(r.inputs).items()}
    return {
        "schema": "assay.cost/1",
        "inputs": inputs,
        "api_per_task": r.api_per_task,
        "api_per_task_basis": r.api_per_task_basis,
        "self_per_task": r.self_per_task,
        "self_per_task_basis": r.self_per_task_basis,
        "seconds_per_task": r.seconds_per_task,
        "tasks_per_hour": r.tasks_per_hour,
        "saving_per_task": r.saving_per_task,
        "break_even_tasks": r.break_even_tasks,
        "monthly_self": r.monthly_self,
        "monthly_api": r.monthly_api,
        "payback_months": r.payback_months,
        "utilisation_sweep": [asdict(p) for p in r.utilisation_sweep],
        "curve": [asdict(p) for p in r.curve],
        "notes": list(r.notes),
    }


def inputs_from_policy(cost: CostPolicy, bench: BenchReport | None) -> CostInputs:
    """The :class:`~assay.deploy.cost.CostInputs` of the policy's ``cost`` section and the bench just measured."""
    derived: dict[str, Any] = {}
    if cost.self_per_task is None and bench is not None:
        derived = inputs_from_bench_report(bench)
    return CostInputs(api_per_task=cost.api_per_task, api_input_per_mtok=cost.api_input_per_mtok,
                      api_output_per_mtok=cost.api_output_per_mtok, self_per_task=cost.self_per_task,
                      decode_tokens_per_s=derived.get("decode_tokens_per_s"),
                      prefill_tokens_per_s=derived.get("prefill_tokens_per_s"),
                      hardware_per_hour=cost.gpu_price_per_hour if cost.self_per_task is None else None,
                      utilisation=cost.utilisation, tokens_in=cost.tokens_in, tokens_out=cost.tokens_out,
                      training_cost=cost.training_cost, monthly_tasks=cost.monthly_volume,
                      source=derived.get("source", {"self_per_task": "given by the policy"}))
