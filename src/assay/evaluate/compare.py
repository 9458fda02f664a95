"""Compare a candidate with its base, item by item, and build the ``assay.eval/1`` JSON document.

For each task both models ran, and each metric: base and candidate values, the delta, a 95% paired interval
(Tango's score interval for 0/1 metrics such as accuracy; a seeded BCa bootstrap over 10,000 paired resamples
otherwise), a p-value (exact McNemar for 0/1 metrics, a paired permutation test otherwise), the Holm adjustment
of that p-value across tasks (one family per metric name), the minimum detectable effect for that many items
(two-sided, alpha 0.05, power 0.8), the items that flipped, and **the judgement**, :attr:`MetricComparison.change`,
computed once here by :func:`assay.evaluate.stats.judge_change`: ``better`` / ``worse`` only when the interval
lies entirely on that side of zero *and* the Holm-adjusted p-value is below alpha, ``no significant change``
otherwise, ``not comparable`` for a per-token metric of two models with different tokenizers. The verdict, the
JSON and every report render that field; none of them judges again.

    cmp = compare_results(base_results, cand_results, seed=0)
    cmp["capitals"]["acc"].change, cmp["capitals"]["acc"].ci, cmp["capitals"]["acc"].lost
    doc = eval_document(model="./ft", results=cand_results, base="./base", base_results=base_results,
                        comparison=cmp)

A **regression** (what ``assay eval`` exits 1 for) is a ``worse`` change: :func:`regressions` lists them. Under a
policy, ``assay vet`` also requires the interval to lie beyond the metric's margin.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from assay.errors import EvalError
from assay.evaluate.runner import TaskResult
from assay.evaluate.stats import (N_DRAWS, Change, aggregate, holm, is_binary, judge_change, mcnemar_exact,
                                  mde_paired, metric_spec, paired_bootstrap_ci, paired_permutation_p, tango_interval)

SCHEMA = "assay.eval/1"

#: Metrics computed per token of the model's own tokenizer: comparing them across two tokenizers compares
#: different units (a model with a coarser tokenizer has fewer, harder tokens), so they are not compared then.
#: Accuracy and per-byte or per-word metrics (bits per byte, byte and word perplexity) do not depend on it.
TOKEN_LEVEL_METRICS = frozenset({"token_perplexity", "kl_mean", "kl_p95", "kl_reverse_mean", "top1_agreement",
                                 "mink_gap", "mink_published", "mink_control"})
TOKENIZER_NOTE = ("not compared: the candidate's tokenizer differs from the base's, so a per-token metric counts "
                  "different units; compare accuracy or bits per byte instead")


@dataclass(frozen=True)
class MetricComparison:
    """Candidate against base on one metric of one task."""

    metric: str
    """Metric name."""
    base: float
    """The base model's value."""
    candidate: float
    """The candidate's value."""
    delta: float
    """candidate - base."""
    ci: tuple[float, float]
    """95% paired interval of the delta (see :attr:`interval`)."""
    p: float
    """Two-sided p-value: exact McNemar for 0/1 metrics, paired permutation otherwise."""
    p_holm: float
    """p adjusted by Holm across the tasks compared on this metric."""
    test: str
    """``mcnemar-exact`` or ``paired-permutation``."""
    mde: float
    """Minimum detectable effect for this many items (alpha 0.05 two-sided, power 0.8)."""
    n: int
    """Items compared."""
    higher_is_better: bool
    """Direction of the metric."""
    gained: tuple[str, ...] = ()
    """0/1 metrics: ids of items the candidate gets right and the base wrong."""
    lost: tuple[str, ...] = ()
    """0/1 metrics: ids of items the base gets right and the candidate wrong."""
    change: Change = "no significant change"
    """The judgement (:func:`assay.evaluate.stats.judge_change`): ``better`` / ``worse`` only when the interval
    lies entirely on that side of zero and ``p_holm`` is below :attr:`alpha`; ``not comparable`` when the
    metric was not compared (:attr:`note` says why)."""
    interval: str = "tango-score"
    """How :attr:`ci` was computed: ``tango-score`` (0/1 metrics) or ``bca-bootstrap`` (10,000 paired resamples)."""
    alpha: float = 0.05
    """Significance level of :attr:`change`."""
    note: str = ""
    """Why a metric was not compared, or what limits it."""

    @property
    def regression(self) -> bool:
        """True when the change is significantly worse (interval and Holm-adjusted test agree)."""
        return self.change == "worse"


def compare_results(base: Mapping[str, TaskResult], cand: Mapping[str, TaskResult], *, seed: int = 0,
                    n_boot: int = N_DRAWS, confidence: float = 0.95, alpha: float = 0.05,
                    same_tokenizer: bool | None = None) -> dict[str, dict[str, MetricComparison]]:
    """Paired comparison of every task and metric both result sets have (items paired by id).

    ``same_tokenizer``: whether both models tokenise text the same way (None: unknown, then the task results'
    own :attr:`~assay.evaluate.runner.TaskResult.tokenizer` digests decide when both have one). When the
    tokenizers differ, the metrics in :data:`TOKEN_LEVEL_METRICS` are reported ``not comparable`` with a note
    and take no part in the Holm family or the judgement.
    """
    out: dict[str, dict[str, MetricComparison]] = {}
    for name, c in cand.items():
        b = base.get(name)
        if b is None:
            continue
        if b.version != c.version:
            raise EvalError(f"task {name}: base ran version {b.version}, candidate {c.version}; they cannot be "
                            f"paired")
        b_by_id = {r.id: r for r in b.per_item}
        ids = [r.id for r in c.per_item if r.id in b_by_id]
        if len(ids) != len(c.per_item) or len(ids) != len(b.per_item):
            raise EvalError(f"task {name}: base and candidate were not run on the same items")
        c_by_id = {r.id: r for r in c.per_item}
        differ = _tokenizers_differ(same_tokenizer, b, c)
        out[name] = {}
        for metric in c.metrics:
            if metric not in b.metrics:
                continue
            spec = metric_spec(metric)
            bv = {k: np.array([float(b_by_id[i].metrics[k]) for i in ids]) for k in spec.keys}
            cv = {k: np.array([float(c_by_id[i].metrics[k]) for i in ids]) for k in spec.keys}
            base_val, cand_val = aggregate(spec, bv), aggregate(spec, cv)
            nan = float("nan")
            if differ and metric in TOKEN_LEVEL_METRICS:
                out[name][metric] = MetricComparison(
                    metric=metric, base=base_val, candidate=cand_val, delta=cand_val - base_val, ci=(nan, nan),
                    p=nan, p_holm=nan, test="none", mde=nan, n=len(ids), higher_is_better=spec.higher_is_better,
                    change="not comparable", interval="none", alpha=alpha, note=TOKENIZER_NOTE)
                continue
            gained: tuple[str, ...] = ()
            lost: tuple[str, ...] = ()
            if spec.kind == "mean" and is_binary(bv[metric]) and is_binary(cv[metric]):
                p, _, _ = mcnemar_exact(bv[metric], cv[metric])
                test = "mcnemar-exact"
                gained = tuple(i for i, x, y in zip(ids, bv[metric], cv[metric], strict=True) if y > x)
                lost = tuple(i for i, x, y in zip(ids, bv[metric], cv[metric], strict=True) if y < x)
                ci = tango_interval(len(gained), len(lost), len(ids), confidence=confidence)
                interval = "tango-score"
            else:
                ci = paired_bootstrap_ci(spec, bv, cv, seed=seed, n_boot=n_boot, confidence=confidence)
                p = paired_permutation_p(spec, bv, cv, seed=seed, n_perm=n_boot)
                test, interval = "paired-permutation", "bca-bootstrap"
            out[name][metric] = MetricComparison(
                metric=metric, base=base_val, candidate=cand_val, delta=cand_val - base_val, ci=ci, p=p,
                p_holm=p, test=test, mde=_mde(spec, bv, cv, len(ids), seed=seed, n_boot=n_boot), n=len(ids),
                higher_is_better=spec.higher_is_better, gained=gained, lost=lost, interval=interval, alpha=alpha)
    return _judge(_holm_across_tasks(out))


def _tokenizers_differ(same_tokenizer: bool | None, b: TaskResult, c: TaskResult) -> bool:
    if same_tokenizer is not None:
        return not same_tokenizer
    tb, tc = getattr(b, "tokenizer", ""), getattr(c, "tokenizer", "")
    return bool(tb and tc and tb != tc)


def _judge(cmp: dict[str, dict[str, MetricComparison]]) -> dict[str, dict[str, MetricComparison]]:
    for per in cmp.values():
        for metric, mc in per.items():
            if mc.change != "not comparable":
                per[metric] = replace(mc, change=judge_change(mc.ci, mc.p_holm, higher_is_better=mc.higher_is_better,
                                                              alpha=mc.alpha))
    return cmp


def _mde(spec: Any, bv: Mapping[str, np.ndarray], cv: Mapping[str, np.ndarray], n: int, *, seed: int,
         n_boot: int) -> float:
    """MDE from the standard deviation of per-item differences.

    When the two models agree on every item that deviation is 0 and says nothing about power, so the larger
    of the two models' own per-item deviations is used; when that is 0 too, the MDE is not estimable (NaN).
    """
    if n < 2:
        return float("nan")
    if spec.kind == "mean":
        sd = float(np.std(cv[spec.name] - bv[spec.name], ddof=1))
        if sd == 0.0:
            sd = max(float(np.std(bv[spec.name], ddof=1)), float(np.std(cv[spec.name], ddof=1)))
        return mde_paired(sd, n) if sd > 0 else float("nan")
    # ratio metrics: the bootstrap standard error of the delta plays the role of sd / sqrt(n) (descriptive, not
    # a judgement, so 2,000 draws are enough)
    lo, hi = paired_bootstrap_ci(spec, bv, cv, seed=seed, n_boot=min(n_boot, 2000), confidence=0.6826894921370859,
                                 method="percentile")
    se = (hi - lo) / 2.0
    return mde_paired(se * np.sqrt(n), n)


def _holm_across_tasks(cmp: dict[str, dict[str, MetricComparison]]) -> dict[str, dict[str, MetricComparison]]:
    metrics = {m for per in cmp.values() for m in per}
    for metric in metrics:
        tasks = [t for t in cmp if metric in cmp[t] and cmp[t][metric].change != "not comparable"]
        adjusted = holm([cmp[t][metric].p for t in tasks])
        for t, ph in zip(tasks, adjusted, strict=True):
            cmp[t][metric] = replace(cmp[t][metric], p_holm=ph)
    return cmp


def regressions(cmp: Mapping[str, Mapping[str, MetricComparison]]) -> list[tuple[str, str]]:
    """(task, metric) pairs judged ``worse``: interval entirely on the worse side of zero and Holm p below alpha."""
    return [(t, m) for t, per in cmp.items() for m, mc in per.items() if mc.regression]


def task_document(r: TaskResult) -> dict[str, Any]:
    """The ``tasks`` entry of one task."""
    return {"n": r.n, "version": r.version, "kind": r.kind.value, "num_fewshot": r.num_fewshot,
            "metrics": dict(r.metrics), "stderr": dict(r.stderr), "source": r.source, "cached_items": r.cached}


def comparison_document(mc: MetricComparison) -> dict[str, Any]:
    """The ``comparison`` entry of one task and metric."""
    return {"base": mc.base, "candidate": mc.candidate, "delta": mc.delta, "ci": list(mc.ci), "p": mc.p,
            "p_holm": mc.p_holm, "test": mc.test, "mde": mc.mde, "n": mc.n, "higher_is_better": mc.higher_is_better,
            "regression": mc.regression, "change": mc.change, "interval": mc.interval, "alpha": mc.alpha,
            "note": mc.note, "gained": list(mc.gained), "lost": list(mc.lost)}


def eval_document(*, model: str, results: Mapping[str, TaskResult], base: str | None = None,
                  base_results: Mapping[str, TaskResult] | None = None,
                  comparison: Mapping[str, Mapping[str, MetricComparison]] | None = None,
                  model_info: Mapping[str, Any] | None = None, base_info: Mapping[str, Any] | None = None,
                  settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``assay.eval/1`` document (what ``assay eval --json`` prints)."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "model": model,
        "base": base,
        "model_info": dict(model_info or {}),
        "base_info": dict(base_info or {}) if base else None,
        "settings": dict(settings or {}),
        "tasks": {name: task_document(r) for name, r in results.items()},
        "base_tasks": {name: task_document(r) for name, r in (base_results or {}).items()} if base else None,
        "comparison": {t: {m: comparison_document(mc) for m, mc in per.items()}
                       for t, per in (comparison or {}).items()} if base else None,
    }
    doc["regressions"] = [{"task": t, "metric": m} for t, m in regressions(comparison or {})] if base else []
    return doc
