"""Match a model card's claimed scores (``model-index``) with the scores a vet measured.

A card names a benchmark its own way (``ai2_arc``, ``ARC (25-Shot)``, ``allenai/ai2_arc``) and a metric its own
way (``accuracy``, ``acc_norm``); assay's tasks have their own names (``builtin:arc_challenge``). This module pairs
them (:data:`CLAIM_ALIASES`, :data:`METRIC_ALIASES`) and hands each pair to :func:`assay.deploy.card.check_claims`.

    >>> measured = measured_scores(document_metrics(evaluation_document))  # {("arc_challenge", "acc"): 0.41}
    >>> checks, unmatched = match_claims(read_card(ref), measured)
    >>> [(c.measured_key, c.supported) for c in checks]
    >>> card_with_claims(ref, base=base_ref, evaluation=evaluation_document)["claims_unmatched"]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from assay.deploy.card import CardReport, ClaimCheck, EvalClaim, card_document, check_claims, read_card
from assay.jsonable import to_jsonable
from assay.model.ref import ModelRef

#: Names model cards use in ``model-index`` for the benchmarks assay runs (measured task -> dataset ids / names).
CLAIM_ALIASES: Mapping[str, tuple[str, ...]] = {
    "arc_challenge": ("ai2_arc", "allenai/ai2_arc", "arc", "arc-challenge", "ARC-Challenge",
                      "AI2 Reasoning Challenge"),
    "arc_easy": ("arc-easy", "ARC-Easy", "ARC Easy"),
    "hellaswag": ("Rowan/hellaswag", "HellaSwag"),
    "mmlu": ("cais/mmlu", "hails/mmlu_no_train", "lukaemon/mmlu", "MMLU"),
    "truthfulqa_mc2": ("truthful_qa", "truthfulqa", "TruthfulQA"),
    "winogrande": ("allenai/winogrande", "WinoGrande"),
    "gsm8k": ("openai/gsm8k", "GSM8K"),
}
#: Metric names cards use -> the metric assay reports.
METRIC_ALIASES: Mapping[str, str] = {"accuracy": "acc", "normalizedaccuracy": "acc_norm", "accnorm": "acc_norm",
                                     "em": "exact_match", "exactmatch": "exact_match", "mc2": "mc2", "acc": "acc"}


def _name_key(text: str | None) -> str:
    """Letters and digits only, lower case, without a parenthesised suffix (``ARC (25-Shot)`` -> ``arc``)."""
    return re.sub(r"[^a-z0-9]+", "", re.sub(r"\(.*?\)", "", (text or "").lower()))


def _claim_names(claim: EvalClaim) -> set[str]:
    names: set[str] = set()
    for raw in (claim.dataset_type, claim.dataset, claim.task):
        if raw:
            names |= {_name_key(raw), _name_key(str(raw).rsplit("/", 1)[-1])}
    return names - {""}


def _task_names(task: str) -> set[str]:
    short = task.rsplit(":", 1)[-1]
    names = {_name_key(task), _name_key(short)}
    for alias in CLAIM_ALIASES.get(short, ()):
        names |= {_name_key(alias), _name_key(alias.rsplit("/", 1)[-1])}
    return names - {""}


def _metric_key(metric: str) -> str:
    base = metric.split(",", 1)[0]
    return METRIC_ALIASES.get(_name_key(base), base.lower())


def measured_scores(metrics_by_task: Mapping[str, Mapping[str, Any] | None] | None) -> dict[tuple[str, str], float]:
    """``(task, metric) -> value`` of the candidate's higher-is-better scores in 0..1 (what card claims state),
    from its metrics by task (:attr:`TaskResult.metrics <assay.evaluate.runner.TaskResult.metrics>` of each task,
    or an ``assay.eval/1`` document's ``tasks[name]["metrics"]``, see :func:`document_metrics`)."""
    from assay.evaluate.stats import metric_direction

    out: dict[tuple[str, str], float] = {}
    for task, metrics in (metrics_by_task or {}).items():
        for metric, value in (metrics or {}).items():
            if (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
                    and metric_direction(metric) > 0):
                out[(str(task), str(metric))] = float(value)
    return out


def document_metrics(evaluation: Mapping[str, Any] | None) -> dict[str, Mapping[str, Any] | None]:
    """The candidate's metrics by task in a saved ``assay.eval/1`` document."""
    return {str(task): (t or {}).get("metrics") for task, t in ((evaluation or {}).get("tasks") or {}).items()}


def match_claims(report: CardReport, measured: Mapping[tuple[str, str], float]
                 ) -> tuple[list[ClaimCheck], list[EvalClaim]]:
    """Pair each ``model-index`` claim of a card with what vet measured; ``(checks, unmatched claims)``.

    A claim matches a measured task when its dataset id, dataset name or task name is the task's name (or its
    name after the suite prefix, or a name cards use for that benchmark, :data:`CLAIM_ALIASES`) and its metric
    is the same metric (:data:`METRIC_ALIASES`). The comparison itself is :func:`assay.deploy.card.check_claims`
    (percentages scaled, a claim more than its tolerance above the measurement is unsupported); the returned
    checks name the measured ``task/metric``.
    """
    checks: list[ClaimCheck] = []
    unmatched: list[EvalClaim] = []
    for claim in report.eval_results:
        names = _claim_names(claim)
        hit = next(((task, metric, value) for (task, metric), value in measured.items()
                    if names & _task_names(task) and _metric_key(metric) == _metric_key(claim.metric)), None)
        if hit is None:
            unmatched.append(claim)
            continue
        task, metric, value = hit
        # check_claims matches on the claim's own names: hand it the measurement under one of them
        label = next(_name_key(x) for x in (claim.dataset_type, claim.dataset, claim.task) if _name_key(x))
        found = check_claims(replace(report, eval_results=(claim,)), {f"{label}/{claim.metric}": value})
        checks += [replace(c, measured_key=f"{task}/{metric}") for c in found]
    return checks, unmatched


@dataclass(frozen=True)
class CardReview:
    """A card read, with its claimed scores checked against what a vet measured."""

    report: CardReport
    """The card review."""
    claims: tuple[ClaimCheck, ...]
    """Each claim matched to a measured task."""
    unmatched: tuple[EvalClaim, ...]
    """Claims no measured task matched."""
    basis: str
    """What the claims were checked against."""


def review_card(ref: ModelRef, *, base: ModelRef | None,
                measured: Mapping[tuple[str, str], float] | None) -> CardReview:
    """Read the card of ``ref`` (``base``: the base whose licence the card is checked against) and check its
    claims against ``measured``, the candidate's scores as :func:`measured_scores` gives them (None or empty when
    nothing was measured)."""
    report = read_card(ref, base=base)
    claims, unmatched = match_claims(report, measured) if measured else ([], list(report.eval_results))
    return CardReview(report, tuple(claims), tuple(unmatched),
                      "the candidate's scores measured by this vet" if measured
                      else "nothing measured (evaluation did not run), so no claim was checked")


def card_with_claims(ref: ModelRef, *, base: ModelRef | None,
                     evaluation: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``assay.card/1`` document of :func:`review_card`; ``claims_unmatched`` lists the claims no measured
    task matched."""
    review = review_card(ref, base=base, measured=measured_scores(document_metrics(evaluation)))
    doc = dict(card_document(review.report, claims=list(review.claims)))
    doc["claims_unmatched"] = to_jsonable(list(review.unmatched))
    doc["claims_basis"] = review.basis
    return doc
