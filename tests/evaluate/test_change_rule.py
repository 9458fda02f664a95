"""One statistical rule: a change is better or worse only when the paired interval and the Holm-adjusted paired test
agree; it is judged once (``MetricComparison.change``) and every consumer renders that judgement.

Issue 13: a metric with 0 items gained and 4 lost (McNemar p = 0.125, 0.75 after Holm) was called a regression and
``assay eval`` exited 1, because a 2,000-draw bootstrap interval excluded zero; on a 12-item task the flag depended
on the resampling seed, and reports painted non-significant changes green or red.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from assay.evaluate.compare import (TOKEN_LEVEL_METRICS, compare_results, comparison_document, eval_document,
                                    regressions)
from assay.evaluate.runner import ItemResult, TaskResult
from assay.evaluate.stats import N_DRAWS, judge_change, mcnemar_exact, tango_interval
from assay.evaluate.tasks import TaskKind


# ------------------------------------------------------------------------------------------- Tango's interval
def test_tango_interval_reproduces_published_examples() -> None:
    # Fagerland, Lydersen & Laake (2014), airway hyper-responsiveness (Bentur et al. 2009): a, b, c, d = 1, 1, 7, 12;
    # the Tango asymptotic score interval for p1 - p2 = (b - c) / N = -0.2857 is -0.5172 to -0.0260.
    lo, hi = tango_interval(gained=1, lost=7, n=21)
    assert (lo, hi) == pytest.approx((-0.5172, -0.0260), abs=5e-5)
    # Newcombe (1998), paired example a, b, c, d = 36, 12, 2, 0 (N = 50): Tango's interval 0.0611 to 0.3447.
    assert tango_interval(12, 2, 50) == pytest.approx((0.0611, 0.3447), abs=5e-5)
    # mirror image: swapping gained and lost negates the interval
    assert tango_interval(2, 12, 50) == pytest.approx((-0.3447, -0.0611), abs=5e-5)
    # no discordant item: symmetric around zero; every item gained: the upper limit is 1
    lo0, hi0 = tango_interval(0, 0, 10)
    assert lo0 == pytest.approx(-hi0) and 0 < hi0 < 0.5
    assert tango_interval(10, 0, 10)[1] == 1.0


@pytest.mark.parametrize("n", [12, 40, 200])
def test_tango_interval_agrees_with_the_mcnemar_score_test(n: int) -> None:
    # At zero difference the score statistic is McNemar's (b - c) / sqrt(b + c): the interval excludes 0 exactly
    # when that test rejects at 5%.
    for gained in range(0, min(n, 25)):
        for lost in range(0, min(n - gained, 25)):
            lo, hi = tango_interval(gained, lost, n)
            assert lo <= (gained - lost) / n <= hi
            if gained + lost == 0:
                assert lo < 0 < hi
                continue
            z = abs(gained - lost) / math.sqrt(gained + lost)
            if abs(z - 1.959964) < 1e-3:
                continue
            assert (lo > 0 or hi < 0) == (z > 1.959964), (gained, lost, n)


# ------------------------------------------------------------------------------------------- the rule
def test_judge_change_needs_interval_and_test() -> None:
    assert judge_change((0.01, 0.2), 0.01, higher_is_better=True) == "better"
    assert judge_change((0.01, 0.2), 0.2, higher_is_better=True) == "no significant change"  # test disagrees
    assert judge_change((-0.01, 0.2), 0.001, higher_is_better=True) == "no significant change"  # interval does
    assert judge_change((-0.2, -0.01), 0.01, higher_is_better=True) == "worse"
    assert judge_change((0.01, 0.2), 0.01, higher_is_better=False) == "worse"  # perplexity rose
    assert judge_change((0.01, 0.2), None, higher_is_better=True) == "no significant change"
    assert judge_change((float("nan"), 0.2), 0.01, higher_is_better=True) == "no significant change"
    assert judge_change(None, 0.01, higher_is_better=True) == "no significant change"


def _results(values: dict[str, list[float]], metric: str = "acc", tokenizer: str = "") -> dict[str, TaskResult]:
    out = {}
    for name, vals in values.items():
        items = tuple(ItemResult(id=str(i), metrics={metric: v}) for i, v in enumerate(vals))
        out[name] = TaskResult(task=name, version="1", kind=TaskKind.MULTIPLE_CHOICE, n=len(vals),
                               metrics={metric: float(np.mean(vals))}, stderr={metric: 0.0}, per_item=items,
                               tokenizer=tokenizer)
    return out


def _issue_case() -> tuple[dict[str, TaskResult], dict[str, TaskResult]]:
    # 12 items, 0 gained and 4 lost; five more tasks in the Holm family on which nothing changed.
    base_vals = [1.0] * 8 + [0.0] * 4
    cand_vals = [0.0] * 4 + [1.0] * 4 + [0.0] * 4
    other = [1.0, 0.0] * 6
    base = _results({"small": base_vals, **{f"t{k}": other for k in range(5)}})
    cand = _results({"small": cand_vals, **{f"t{k}": other for k in range(5)}})
    return base, cand


def test_zero_gained_four_lost_is_no_significant_change() -> None:
    base, cand = _issue_case()
    cmp = compare_results(base, cand, seed=0)
    small = cmp["small"]["acc"]
    assert (len(small.gained), len(small.lost)) == (0, 4)
    assert small.p == pytest.approx(0.125) and small.p_holm == pytest.approx(0.75)
    assert small.interval == "tango-score" and small.ci[1] < 0  # the interval alone would have said "worse"
    assert small.change == "no significant change" and not small.regression
    assert regressions(cmp) == []
    doc = eval_document(model="c", results=cand, base="b", base_results=base, comparison=cmp)
    assert doc["comparison"]["small"]["acc"]["change"] == "no significant change"
    assert doc["regressions"] == []


def test_the_judgement_does_not_move_with_the_seed() -> None:
    base, cand = _issue_case()
    changes = {compare_results(base, cand, seed=s)["small"]["acc"].change for s in range(25)}
    assert changes == {"no significant change"}
    # a ratio metric (bootstrap interval, permutation test) near nothing and one clearly worse
    rng = np.random.default_rng(7)
    lp = -rng.uniform(20, 60, 60)
    nbytes = rng.integers(30, 90, 60).astype(float)

    def ratio(scale: np.ndarray) -> dict[str, TaskResult]:
        items = tuple(ItemResult(id=str(i), metrics={"logprob": float(lp[i] * scale[i]), "bytes": float(nbytes[i])})
                      for i in range(60))
        return {"ref": TaskResult(task="ref", version="1", kind=TaskKind.PERPLEXITY, n=60,
                                  metrics={"bits_per_byte": 0.0}, stderr={}, per_item=items)}

    ones = np.ones(60)
    noisy = 1 + rng.normal(0, 0.01, 60)
    worse = 1.3 + rng.normal(0, 0.01, 60)
    for cand_scale, expected in ((noisy, "no significant change"), (worse, "worse")):
        seen = set()
        for s in range(6):
            mc = compare_results(ratio(ones), ratio(cand_scale), seed=s)["ref"]["bits_per_byte"]
            assert mc.interval == "bca-bootstrap"
            seen.add(mc.change)
        assert seen == {expected}


def test_bootstrap_and_permutation_use_ten_thousand_draws() -> None:
    import inspect

    assert N_DRAWS >= 10_000
    assert inspect.signature(compare_results).parameters["n_boot"].default >= 10_000


def test_significant_changes_are_better_or_worse() -> None:
    base_vals = [0.0] * 30 + [1.0] * 30
    cand_vals = [1.0] * 30 + [1.0] * 30  # 30 gained, none lost
    cmp = compare_results(_results({"a": base_vals}), _results({"a": cand_vals}), seed=0)
    assert cmp["a"]["acc"].change == "better"
    p = mcnemar_exact(np.array(base_vals), np.array(cand_vals))[0]
    assert cmp["a"]["acc"].p == pytest.approx(p) and p < 1e-8
    cmp = compare_results(_results({"a": cand_vals}), _results({"a": base_vals}), seed=0)
    assert cmp["a"]["acc"].change == "worse" and regressions(cmp) == [("a", "acc")]


# ------------------------------------------------------------------------------------------- comparable metrics
def _ppl_results(scale: float, tokenizer: str, tokens: float) -> dict[str, TaskResult]:
    items = tuple(ItemResult(id=str(i), metrics={"logprob": -30.0 * scale - i, "tokens": tokens + i % 3,
                                                 "bytes": 40.0 + i, "words": 8.0})
                  for i in range(30))
    return {"ref": TaskResult(task="ref", version="1", kind=TaskKind.PERPLEXITY, n=30,
                              metrics={"token_perplexity": 0.0, "bits_per_byte": 0.0}, stderr={}, per_item=items,
                              tokenizer=tokenizer)}


def test_token_level_metrics_are_not_compared_across_tokenizers() -> None:
    base = _ppl_results(1.0, "tokA", 10.0)
    cand = _ppl_results(1.5, "tokB", 6.0)
    cmp = compare_results(base, cand, seed=0)["ref"]
    tp = cmp["token_perplexity"]
    assert tp.change == "not comparable" and "tokenizer" in tp.note and math.isnan(tp.ci[0])
    assert not tp.regression
    bpb = cmp["bits_per_byte"]  # per byte: independent of the tokenizer, still compared
    assert bpb.change == "worse" and not bpb.note
    doc = comparison_document(tp)
    assert doc["change"] == "not comparable" and doc["note"] == tp.note
    # same tokenizer: compared as usual
    same = compare_results(base, _ppl_results(1.5, "tokA", 10.0), seed=0)["ref"]
    assert same["token_perplexity"].change == "worse"
    # an explicit answer wins over the digests
    forced = compare_results(base, _ppl_results(1.5, "tokA", 10.0), seed=0, same_tokenizer=False)["ref"]
    assert forced["token_perplexity"].change == "not comparable"
    assert "kl_mean" in TOKEN_LEVEL_METRICS and "mink_gap" in TOKEN_LEVEL_METRICS
    assert "bits_per_byte" not in TOKEN_LEVEL_METRICS and "acc" not in TOKEN_LEVEL_METRICS


def test_bca_interval_agrees_with_scipy() -> None:
    from scipy.stats import bootstrap

    from assay.evaluate.stats import metric_spec, paired_bootstrap_ci

    spec = metric_spec("bits_per_byte")
    for seed in range(3):
        rng = np.random.default_rng(seed)
        n = 80
        b = {"logprob": -rng.lognormal(3, 0.6, n), "bytes": rng.integers(20, 80, n).astype(float)}
        c = {"logprob": b["logprob"] * rng.lognormal(0.02, 0.1, n), "bytes": b["bytes"]}
        mine = paired_bootstrap_ci(spec, b, c, seed=seed, n_boot=20_000)

        def delta(bn, bd, cn, cd, axis=-1):  # type: ignore[no-untyped-def]
            return (bn.sum(axis) / bd.sum(axis) - cn.sum(axis) / cd.sum(axis)) / math.log(2)

        ref = bootstrap((b["logprob"], b["bytes"], c["logprob"], c["bytes"]), delta, paired=True, vectorized=True,
                        n_resamples=20_000, method="BCa", rng=np.random.default_rng(seed + 100)).confidence_interval
        width = ref.high - ref.low
        assert mine[0] == pytest.approx(ref.low, abs=0.05 * width)
        assert mine[1] == pytest.approx(ref.high, abs=0.05 * width)


def test_documents_with_the_judgement_match_their_published_schema() -> None:
    from assay.cli.common import to_jsonable
    from assay.schemas import validate

    base = _ppl_results(1.0, "tokA", 10.0)
    cand = _ppl_results(1.5, "tokB", 6.0)
    cmp = compare_results(base, cand, seed=0)
    settings = {"limit": None, "num_fewshot": None, "seed": 0, "backend": "hf", "dtype": "float32", "device": "cpu"}
    info = {"backend": "hf", "model_id": "m", "settings": {"dtype": "float32", "device": "cpu", "max_length": 512}}
    doc = to_jsonable(eval_document(model="c", results=cand, base="b", base_results=base, comparison=cmp,
                                    model_info=info, base_info=info, settings=settings))
    validate(doc)
    assert doc["comparison"]["ref"]["token_perplexity"]["ci"] == [None, None]
    assert doc["comparison"]["ref"]["bits_per_byte"]["change"] == "worse"
