"""Paired statistics for comparing a candidate with its base on the same items, and the one rule that judges them.

- :func:`tango_interval`: Tango's (1998) score interval for the difference of two paired proportions, the
  interval of a 0/1 metric (accuracy). It inverts the score test whose value at zero difference is McNemar's
  statistic, so interval and test agree, and it needs no resampling (no seed).
- :func:`paired_bootstrap_ci`: for other metrics, a seeded BCa interval (scipy) of ``metric(candidate) -
  metric(base)`` over :data:`N_DRAWS` paired item resamples (both models together, so the pairing is kept).
- :func:`mcnemar_exact`: exact McNemar test on the discordant items of a 0/1 metric (binomial test, p = 1/2).
- :func:`paired_permutation_p`: for other metrics, swap each item's two values at random (seeded).
- :func:`holm`: Holm's step-down adjustment of a family of p-values.
- :func:`judge_change`: **the** rule: a change is ``better`` or ``worse`` only when its paired interval lies
  entirely on that side of zero *and* its Holm-adjusted paired test is below alpha; otherwise it is ``no
  significant change``. Every consumer (verdict, JSON, every report) reads the judgement this rule produced.
- :func:`mde_paired`: the smallest true difference a two-sided paired test at level alpha detects with the given
  power, for n items.

Metrics are either per-item means (accuracy, exact match) or ratios of per-item sums (perplexity, bits per byte);
:class:`MetricSpec` says which, so every function works on both. A module that defines its own metrics (the
behaviour probes) declares their direction with :func:`register_metric`.

    >>> tango_interval(gained=7, lost=1, n=21)
    (0.0260, 0.5172)
    >>> judge_change((0.026, 0.517), p_holm=0.07, higher_is_better=True)
    'no significant change'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

_CHUNK = 2_000_000  # resampled values held in memory at once

#: Resamples of every bootstrap interval and permutation test (enough that a verdict does not move with the
#: seed except for a change right at the threshold).
N_DRAWS = 10_000

Change = Literal["better", "worse", "no significant change", "not comparable"]
"""How a compared metric moved, as judged once by :func:`judge_change` (``not comparable``: the metric was not
compared, e.g. a per-token metric across different tokenizers)."""
CHANGES: tuple[Change, ...] = ("better", "worse", "no significant change", "not comparable")


@dataclass(frozen=True)
class MetricSpec:
    """How a task-level metric is computed from per-item values."""

    name: str
    """Metric name as reported (``acc``, ``bits_per_byte``...)."""
    higher_is_better: bool = True
    """Direction used to call a difference a regression."""
    kind: str = "mean"
    """``mean`` of the per-item value named :attr:`name`, or ``ratio`` of sums of :attr:`num` over :attr:`den`."""
    num: str = ""
    """Per-item key summed as numerator (ratio metrics)."""
    den: str = ""
    """Per-item key summed as denominator (ratio metrics)."""
    transform: str = "identity"
    """Applied to the ratio: ``identity``, ``exp_neg`` (perplexity: exp(-x)) or ``neg_log2`` (-x / ln 2)."""

    @property
    def keys(self) -> tuple[str, ...]:
        """Per-item keys this metric reads."""
        return (self.name,) if self.kind == "mean" else (self.num, self.den)


_LN2 = math.log(2.0)

METRICS: dict[str, MetricSpec] = {
    "token_perplexity": MetricSpec("token_perplexity", False, "ratio", "logprob", "tokens", "exp_neg"),
    "word_perplexity": MetricSpec("word_perplexity", False, "ratio", "logprob", "words", "exp_neg"),
    "byte_perplexity": MetricSpec("byte_perplexity", False, "ratio", "logprob", "bytes", "exp_neg"),
    "bits_per_byte": MetricSpec("bits_per_byte", False, "ratio", "logprob", "bytes", "neg_log2"),
}
"""Metrics that are not higher-is-better means: the ratio metrics, and whatever :func:`register_metric` adds.
Every other name is a higher-is-better per-item mean."""

_TRANSFORMS = ("identity", "exp_neg", "neg_log2")


def register_metric(name: str, *, higher_is_better: bool, kind: str = "mean", num: str = "", den: str = "",
                    transform: str = "identity") -> MetricSpec:
    """Declare how a metric is aggregated and which direction is better (for metrics defined outside this module).

        register_metric("over_refused", higher_is_better=False)

    Registering a name again with the same definition is harmless (modules may be reloaded); a different
    definition of a name already registered raises ``ValueError``, so two modules cannot silently disagree about
    which way a metric points.
    """
    if not name:
        raise ValueError("a metric needs a name")
    if kind not in ("mean", "ratio"):
        raise ValueError(f"metric {name}: kind must be 'mean' or 'ratio' (got {kind!r})")
    if kind == "ratio" and not (num and den):
        raise ValueError(f"metric {name}: a ratio metric needs num and den")
    if transform not in _TRANSFORMS:
        raise ValueError(f"metric {name}: transform must be one of {', '.join(_TRANSFORMS)} (got {transform!r})")
    spec = MetricSpec(name, higher_is_better, kind, num, den, transform)
    known = METRICS.get(name)
    if known is not None and known != spec:
        raise ValueError(f"metric {name} is already registered as {known}")
    METRICS[name] = spec
    return spec


#: Lower-is-better metric names (and prefixes: ``word_perplexity_stderr`` follows ``word_perplexity``) for metrics
#: whose spec may not be registered in this process (probes and drift register theirs when they are imported;
#: a saved document is judged without importing them).
LOWER_IS_BETTER = ("bits_per_byte", "perplexity", "word_perplexity", "token_perplexity", "byte_perplexity",
                   "kl_mean", "kl_p95", "kl", "repetition", "loop_rate", "empty_rate", "over_refused", "mink_gap",
                   "fabricated", "over_abstained", "invented", "ll_batch_diff")


def metric_direction(metric: str, entry: Mapping[str, Any] | None = None) -> int:
    """+1 when higher is better, -1 when lower is better: a comparison entry's own ``higher_is_better`` first,
    then the registered :class:`MetricSpec`, then :data:`LOWER_IS_BETTER`. The one place that decides it."""
    if entry is not None and isinstance(entry.get("higher_is_better"), bool):
        return 1 if entry["higher_is_better"] else -1
    name = metric.split(",")[0]
    if name in METRICS:
        return 1 if METRICS[name].higher_is_better else -1
    return -1 if any(name == m or name.startswith(m + "_") for m in LOWER_IS_BETTER) else 1


def metric_spec(name: str) -> MetricSpec:
    """The :class:`MetricSpec` of a metric name (a higher-is-better per-item mean unless listed in METRICS)."""
    return METRICS.get(name) or MetricSpec(name)


def _transform(spec: MetricSpec, ratio: np.ndarray) -> np.ndarray:
    if spec.transform == "exp_neg":
        out: np.ndarray = np.exp(-ratio)
        return out
    if spec.transform == "neg_log2":
        return -ratio / _LN2
    return ratio


def aggregate(spec: MetricSpec, values: Mapping[str, np.ndarray]) -> float:
    """The task-level value of a metric over all items."""
    if spec.kind == "mean":
        x = np.asarray(values[spec.name], dtype=float)
        return float(x.mean()) if x.size else float("nan")
    num = float(np.sum(values[spec.num]))
    den = float(np.sum(values[spec.den]))
    return float(_transform(spec, np.array(num / den))) if den else float("nan")


def _resampled(spec: MetricSpec, values: Mapping[str, np.ndarray], counts: np.ndarray) -> np.ndarray:
    """Metric over bootstrap resamples given as item counts (shape [B, n])."""
    if spec.kind == "mean":
        x = np.asarray(values[spec.name], dtype=float)
        means: np.ndarray = counts @ x / x.size
        return means
    num = counts @ np.asarray(values[spec.num], dtype=float)
    den = counts @ np.asarray(values[spec.den], dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return _transform(spec, num / den)


def _boot_counts(rng: np.random.Generator, n: int, n_boot: int) -> list[np.ndarray]:
    """Resample counts (each row sums to n) in memory-bounded chunks."""
    rows = max(1, _CHUNK // max(n, 1))
    out = []
    done = 0
    while done < n_boot:
        b = min(rows, n_boot - done)
        idx = rng.integers(0, n, size=(b, n))
        counts = np.zeros((b, n), dtype=float)
        np.add.at(counts, (np.repeat(np.arange(b), n), idx.ravel()), 1.0)
        out.append(counts)
        done += b
    return out


def mean_stderr(values: Sequence[float] | np.ndarray) -> float:
    """Standard error of a mean (sample standard deviation / sqrt(n)), as lm-evaluation-harness reports it."""
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return float("nan")
    return float(x.std(ddof=1) / math.sqrt(x.size))


def bootstrap_stderr(spec: MetricSpec, values: Mapping[str, np.ndarray], *, seed: int = 0,
                     n_boot: int = 1000) -> float:
    """Standard error of a metric by bootstrap over items (used for ratio metrics)."""
    n = len(next(iter(values.values())))
    if n < 2:
        return float("nan")
    if spec.kind == "mean":
        return mean_stderr(values[spec.name])
    rng = np.random.default_rng(seed)
    boots = np.concatenate([_resampled(spec, values, c) for c in _boot_counts(rng, n, n_boot)])
    return float(np.nanstd(boots, ddof=1))


def paired_bootstrap_ci(spec: MetricSpec, base: Mapping[str, np.ndarray], cand: Mapping[str, np.ndarray], *,
                        seed: int = 0, n_boot: int = N_DRAWS, confidence: float = 0.95,
                        method: str = "BCa") -> tuple[float, float]:
    """Interval of ``metric(cand) - metric(base)`` over ``n_boot`` paired item resamples (seeded).

    ``method`` is ``BCa`` (bias-corrected and accelerated, Efron 1987; the default) or ``percentile``. Every
    metric is a mean or a ratio of sums, so the jackknife that BCa's acceleration needs is computed in closed
    form (each leave-one-out value is the full sums minus one item), in O(n) rather than the O(n^2) of a generic
    jackknife such as :func:`scipy.stats.bootstrap`'s (whose BCa this reproduces; see the tests). When BCa is
    undefined (every resample gives the same delta) the percentile interval is returned.
    """
    n = len(base[spec.keys[0]])
    if n == 0:
        return (float("nan"), float("nan"))
    b = {k: np.asarray(base[k], dtype=float) for k in spec.keys}
    c = {k: np.asarray(cand[k], dtype=float) for k in spec.keys}
    if all(np.array_equal(b[k], c[k]) for k in spec.keys):
        return (0.0, 0.0)  # the same per-item values: every resample gives a delta of exactly 0
    deltas = _boot_deltas(spec, b, c, np.random.default_rng(seed), n, n_boot)
    alpha = (1.0 - confidence) / 2.0
    qs = [alpha, 1.0 - alpha]
    if method == "BCa" and n >= 3:
        adjusted = _bca_levels(spec, b, c, deltas, n, alpha)
        if adjusted is not None:
            qs = adjusted
    elif method not in ("BCa", "percentile"):
        raise ValueError(f"unknown interval method {method!r} (BCa or percentile)")
    lo, hi = np.nanquantile(deltas, qs)
    return (float(lo), float(hi))


def _sums_delta(spec: MetricSpec, sums: Mapping[tuple[str, str], np.ndarray], count: float | np.ndarray
                ) -> np.ndarray:
    """``metric(cand) - metric(base)`` from sums of the per-item values (vectorised)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if spec.kind == "mean":
            return np.asarray((sums[("c", spec.name)] - sums[("b", spec.name)]) / count, dtype=float)
        return np.asarray(_transform(spec, sums[("c", spec.num)] / sums[("c", spec.den)])
                          - _transform(spec, sums[("b", spec.num)] / sums[("b", spec.den)]), dtype=float)


def _boot_deltas(spec: MetricSpec, base: Mapping[str, np.ndarray], cand: Mapping[str, np.ndarray],
                 rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """The delta of each of ``n_boot`` paired resamples (item indices drawn with replacement, in chunks)."""
    if spec.kind == "mean":
        vectors = {("c", spec.name): cand[spec.name] - base[spec.name]}
    else:
        vectors = {(side, k): v[k] for side, v in (("b", base), ("c", cand)) for k in spec.keys}
    rows = max(1, _CHUNK // max(n, 1))
    out = []
    done = 0
    while done < n_boot:
        m = min(rows, n_boot - done)
        idx = rng.integers(0, n, size=(m, n))
        sums = {key: v[idx].sum(axis=1) for key, v in vectors.items()}
        if spec.kind == "mean":
            sums[("b", spec.name)] = np.zeros(m)
        out.append(_sums_delta(spec, sums, float(n)))
        done += m
    return np.concatenate(out)


def _bca_levels(spec: MetricSpec, base: Mapping[str, np.ndarray], cand: Mapping[str, np.ndarray],
                deltas: np.ndarray, n: int, alpha: float) -> list[float] | None:
    """BCa's adjusted quantile levels, or None when they are undefined."""
    from scipy.stats import norm

    full = {(side, k): float(np.sum(v[k])) for side, v in (("b", base), ("c", cand)) for k in spec.keys}
    theta = float(_sums_delta(spec, {k: np.array(v) for k, v in full.items()}, float(n)))
    finite = deltas[np.isfinite(deltas)]
    if finite.size == 0 or not math.isfinite(theta):
        return None
    share = (np.sum(finite < theta) + 0.5 * np.sum(finite == theta)) / finite.size
    if share <= 0.0 or share >= 1.0:
        return None
    z0 = float(norm.ppf(share))
    leave_out = {(side, k): full[(side, k)] - v[k] for side, v in (("b", base), ("c", cand)) for k in spec.keys}
    jack = _sums_delta(spec, leave_out, float(n - 1))
    if not np.all(np.isfinite(jack)):
        return None
    dev = jack.mean() - jack
    denom = 6.0 * float(np.sum(dev ** 2)) ** 1.5
    accel = float(np.sum(dev ** 3)) / denom if denom > 0 else 0.0
    levels = []
    for q in (alpha, 1.0 - alpha):
        z = float(norm.ppf(q))
        levels.append(float(norm.cdf(z0 + (z0 + z) / (1.0 - accel * (z0 + z)))))
    return levels if all(0.0 < x < 1.0 for x in levels) else None


def tango_interval(gained: int, lost: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Tango's score interval for ``p(candidate) - p(base)`` of paired 0/1 outcomes.

    ``gained``: items the candidate gets right and the base wrong; ``lost``: the reverse; ``n``: all items.
    The interval is every difference D whose score statistic
    ``(gained - lost - n*D) / sqrt(n * (2*q(D) + D*(1 - D)))`` lies within the normal quantile, where q(D) is the
    restricted maximum-likelihood estimate of the probability of a lost item given D (Tango, Statistics in
    Medicine 1998;17:891-908). At D = 0 the statistic is McNemar's, so the interval excludes 0 exactly when the
    (asymptotic) McNemar test rejects. Deterministic: no resampling.

        tango_interval(7, 1, 21)    # (0.0260, 0.5172): Fagerland, Lydersen & Laake 2014, airway example
    """
    if n <= 0:
        return (float("nan"), float("nan"))
    if gained < 0 or lost < 0 or gained + lost > n:
        raise ValueError(f"gained {gained} and lost {lost} do not fit in {n} items")
    from scipy.optimize import brentq
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2.0))
    b, c = float(gained), float(lost)
    est = (b - c) / n

    def score(d: float) -> float:
        big_a = 2.0 * n
        big_b = -b - c + (2.0 * n - b + c) * d
        big_c = -c * d * (1.0 - d)
        q = (math.sqrt(max(big_b * big_b - 4.0 * big_a * big_c, 0.0)) - big_b) / (2.0 * big_a)
        var = n * (2.0 * q + d * (1.0 - d))
        num = b - c - n * d
        if var <= 0.0:
            return 0.0 if num == 0 else math.copysign(math.inf, num)
        return num / math.sqrt(var)

    tol = 1e-12
    lo = -1.0 if est <= -1.0 else brentq(lambda d: score(d) - z, -1.0 + tol, est, xtol=1e-12)
    hi = 1.0 if est >= 1.0 else brentq(lambda d: score(d) + z, est, 1.0 - tol, xtol=1e-12)
    return (float(lo), float(hi))


def judge_change(ci: tuple[float, float] | Sequence[Any] | None, p_holm: float | None, *, higher_is_better: bool,
                 alpha: float = 0.05) -> Change:
    """The one rule: ``better``/``worse`` only when the paired interval lies entirely on that side of zero
    **and** the Holm-adjusted paired test is below ``alpha``; ``no significant change`` otherwise (also when the
    interval or the p-value is unknown).

    A regression under a policy is a ``worse`` change whose interval also lies beyond the policy's margin; a
    ``must_improve`` success is a ``better`` change.
    """
    if ci is None or len(ci) != 2 or p_holm is None:
        return "no significant change"
    try:
        lo, hi, p = float(ci[0]), float(ci[1]), float(p_holm)
    except (TypeError, ValueError):
        return "no significant change"
    if any(math.isnan(x) for x in (lo, hi, p)) or p >= alpha:
        return "no significant change"
    sign = 1.0 if higher_is_better else -1.0
    lo, hi = sorted((sign * lo, sign * hi))
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "no significant change"


def is_binary(x: np.ndarray) -> bool:
    """True if every value is 0 or 1."""
    arr = np.asarray(x, dtype=float)
    return bool(np.all((arr == 0.0) | (arr == 1.0)))


def mcnemar_exact(base: np.ndarray, cand: np.ndarray) -> tuple[float, int, int]:
    """Exact McNemar test of paired 0/1 outcomes: ``(p, gained, lost)``.

    ``gained`` counts items the candidate gets right and the base wrong, ``lost`` the reverse; p is the two-sided
    binomial test of ``gained`` out of ``gained + lost`` against 1/2 (1.0 when no item differs).
    """
    from scipy.stats import binomtest

    b = np.asarray(base, dtype=float)
    c = np.asarray(cand, dtype=float)
    gained = int(np.sum((c == 1) & (b == 0)))
    lost = int(np.sum((c == 0) & (b == 1)))
    if gained + lost == 0:
        return 1.0, 0, 0
    return float(binomtest(gained, gained + lost, 0.5, alternative="two-sided").pvalue), gained, lost


def paired_permutation_p(spec: MetricSpec, base: Mapping[str, np.ndarray], cand: Mapping[str, np.ndarray], *,
                         seed: int = 0, n_perm: int = N_DRAWS) -> float:
    """Two-sided p-value of ``metric(cand) - metric(base)`` by randomly swapping each item's pair (seeded).

    ``p = (1 + #{|permuted delta| >= |observed delta|}) / (n_perm + 1)``. A swap moves an item's values from one
    model's sums to the other's, so each permuted sum is the observed sum plus ``swap @ (other - own)``.
    """
    keys = spec.keys
    n = len(base[keys[0]])
    if n == 0:
        return float("nan")
    observed = aggregate(spec, cand) - aggregate(spec, base)
    b = {k: np.asarray(base[k], dtype=float) for k in keys}
    c = {k: np.asarray(cand[k], dtype=float) for k in keys}
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // max(n, 1))
    hits = 0
    done = 0
    tol = 1e-12 * max(1.0, abs(observed))
    while done < n_perm:
        m = min(rows, n_perm - done)
        swap = rng.integers(0, 2, size=(m, n)).astype(float)
        sums: dict[tuple[str, str], np.ndarray] = {}
        for k in keys:
            moved = swap @ (b[k] - c[k])  # what the swapped items add to the candidate's sum
            sums[("c", k)] = c[k].sum() + moved
            sums[("b", k)] = b[k].sum() - moved
        d = _sums_delta(spec, sums, float(n))
        hits += int(np.sum(np.abs(d) >= abs(observed) - tol))
        done += m
    return float((1 + hits) / (n_perm + 1))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values, in input order (NaN stays NaN and does not count)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = valid.size
    order = valid[np.argsort(p[valid], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return [float(x) for x in out]


def mde_paired(sd_diff: float, n: int, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Minimum detectable effect of a two-sided paired test: ``(z[1-alpha/2] + z[power]) * sd_diff / sqrt(n)``."""
    from scipy.stats import norm

    if n <= 0:
        return float("nan")
    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * sd_diff / math.sqrt(n))
