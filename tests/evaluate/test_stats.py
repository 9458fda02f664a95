"""Paired statistics checked against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from assay.evaluate.runner import ItemResult, TaskResult
from assay.evaluate.compare import compare_results, eval_document, regressions
from assay.evaluate.stats import (aggregate, holm, mcnemar_exact, mde_paired, metric_spec, paired_bootstrap_ci,
                                  paired_permutation_p)
from assay.evaluate.tasks import TaskKind


def test_mcnemar_exact_on_hand_counted_discordant_pairs() -> None:
    # 8 items gained, 2 lost, 5 right for both, 5 wrong for both.
    base = np.array([0] * 8 + [1] * 2 + [1] * 5 + [0] * 5)
    cand = np.array([1] * 8 + [0] * 2 + [1] * 5 + [0] * 5)
    p, gained, lost = mcnemar_exact(base, cand)
    assert (gained, lost) == (8, 2)
    # two-sided binomial(10, 1/2): 2 * P(X <= 2) = 2 * (1 + 10 + 45) / 1024
    assert p == pytest.approx(112 / 1024)
    assert mcnemar_exact(base, base) == (1.0, 0, 0)


def test_holm_step_down_by_hand() -> None:
    # sorted: 0.01*3 = 0.03; 0.03*2 = 0.06; 0.04*1 = 0.04 -> kept monotone at 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    out = holm([float("nan"), 0.02])
    assert math.isnan(out[0]) and out[1] == pytest.approx(0.02)


def test_minimum_detectable_effect_formula() -> None:
    # (z_0.975 + z_0.8) * sd / sqrt(n) = (1.959964 + 0.841621) * 0.5 / 10
    assert mde_paired(0.5, 100) == pytest.approx(0.1400793, abs=1e-6)
    assert mde_paired(0.5, 400) == pytest.approx(0.1400793 / 2, abs=1e-6)


def test_paired_bootstrap_interval() -> None:
    spec = metric_spec("acc")
    rng = np.random.default_rng(1)
    base = rng.integers(0, 2, 200).astype(float)
    # a constant shift of every item gives a zero-width interval at the shift
    shifted = paired_bootstrap_ci(metric_spec("score"), {"score": base}, {"score": base + 0.25}, seed=3)
    assert shifted == pytest.approx((0.25, 0.25))
    cand = base.copy()
    cand[:30] = 1.0  # gains only
    lo, hi = paired_bootstrap_ci(spec, {"acc": base}, {"acc": cand}, seed=0)
    delta = cand.mean() - base.mean()
    assert lo <= delta <= hi and lo > 0
    assert paired_bootstrap_ci(spec, {"acc": base}, {"acc": cand}, seed=0) == (lo, hi)  # seeded
    # the interval is about +-1.96 paired standard errors
    d = cand - base
    se = d.std(ddof=1) / math.sqrt(d.size)
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_ratio_metrics_and_permutation_p() -> None:
    spec = metric_spec("bits_per_byte")
    base = {"logprob": np.array([-10.0, -20.0, -30.0]), "bytes": np.array([10.0, 10.0, 20.0])}
    assert aggregate(spec, base) == pytest.approx(60 / 40 / math.log(2))
    ppl = metric_spec("token_perplexity")
    assert aggregate(ppl, {"logprob": np.array([-2.0, -4.0]), "tokens": np.array([2.0, 2.0])}) == pytest.approx(
        math.exp(1.5))
    assert not spec.higher_is_better
    # identical models: every permutation is as extreme as the observed zero difference
    assert paired_permutation_p(spec, base, base, seed=0, n_perm=200) == 1.0
    worse = {"logprob": base["logprob"] * 2, "bytes": base["bytes"]}
    assert paired_permutation_p(spec, base, worse, seed=0, n_perm=2000) == pytest.approx(2 / 8, abs=0.05)


def _task(name: str, values: list[float], *, version: str = "1") -> TaskResult:
    items = tuple(ItemResult(id=str(i), metrics={"acc": v}) for i, v in enumerate(values))
    return TaskResult(task=name, version=version, kind=TaskKind.MULTIPLE_CHOICE, n=len(values),
                      metrics={"acc": float(np.mean(values))}, stderr={"acc": 0.0}, per_item=items)


def test_compare_results_pairs_by_id_and_reports_flips() -> None:
    base_vals = [1.0] * 30 + [0.0] * 10
    cand_vals = [0.0] * 12 + [1.0] * 18 + [1.0] * 2 + [0.0] * 8
    base = {"a": _task("a", base_vals), "b": _task("b", base_vals)}
    cand = {"a": _task("a", cand_vals), "b": _task("b", base_vals)}
    cmp = compare_results(base, cand, seed=0)
    a = cmp["a"]["acc"]
    assert a.delta == pytest.approx(-10 / 40)
    assert a.lost == tuple(str(i) for i in range(12)) and a.gained == ("30", "31")
    p_exact = mcnemar_exact(np.array(base_vals), np.array(cand_vals))[0]
    assert a.p == pytest.approx(p_exact) and a.test == "mcnemar-exact"
    assert a.p_holm == pytest.approx(min(1.0, 2 * p_exact))  # two tasks in the family
    assert cmp["b"]["acc"].p == 1.0 and cmp["b"]["acc"].p_holm == 1.0
    assert a.regression and regressions(cmp) == [("a", "acc")]
    sd = np.std(np.array(cand_vals) - np.array(base_vals), ddof=1)
    assert a.mde == pytest.approx(mde_paired(sd, 40))
    doc = eval_document(model="cand", results=cand, base="base", base_results=base, comparison=cmp)
    assert doc["schema"] == "assay.eval/1"
    assert doc["comparison"]["a"]["acc"]["ci"][1] < 0
    assert doc["tasks"]["a"]["n"] == 40 and "acc" in doc["tasks"]["a"]["stderr"]
    assert doc["regressions"] == [{"task": "a", "metric": "acc"}]


def test_compare_refuses_unpaired_results() -> None:
    from assay.errors import EvalError

    with pytest.raises(EvalError, match="same items"):
        compare_results({"a": _task("a", [1.0, 0.0])}, {"a": _task("a", [1.0, 0.0, 1.0])})
    with pytest.raises(EvalError, match="version"):
        compare_results({"a": _task("a", [1.0], version="1")}, {"a": _task("a", [1.0], version="2")})


def test_registered_lower_is_better_metric_regresses_when_it_rises() -> None:
    from assay.evaluate.stats import register_metric

    name = "test_stats_error_rate"
    spec = register_metric(name, higher_is_better=False)
    assert metric_spec(name) == spec and register_metric(name, higher_is_better=False) == spec  # idempotent
    with pytest.raises(ValueError, match="already registered"):
        register_metric(name, higher_is_better=True)
    with pytest.raises(ValueError, match="num and den"):
        register_metric("test_stats_bad_ratio", higher_is_better=False, kind="ratio")

    def result(values: list[float]) -> TaskResult:
        items = tuple(ItemResult(id=str(i), metrics={name: v}) for i, v in enumerate(values))
        return TaskResult(task="t", version="1", kind=TaskKind.PROBE, n=len(values),
                          metrics={name: float(np.mean(values))}, stderr={name: 0.0}, per_item=items)

    base, cand = [0.0] * 40, [1.0] * 20 + [0.0] * 20  # errors rose from 0 to half the items
    worse = compare_results({"t": result(base)}, {"t": result(cand)}, seed=0)["t"][name]
    assert not worse.higher_is_better and worse.delta == pytest.approx(0.5) and worse.regression
    better = compare_results({"t": result(cand)}, {"t": result(base)}, seed=0)["t"][name]
    assert not better.regression
