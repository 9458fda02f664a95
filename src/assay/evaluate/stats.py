"""Paired statistics for comparing a candidate with its base on the same items.

- :func:`paired_bootstrap_ci`: seeded percentile interval of ``metric(candidate) - metric(base)``, resampling
  items (both models together, so the pairing is kept); vectorised with numpy.
- :func:`mcnemar_exact`: exact McNemar test on the discordant items of a 0/1 metric (binomial test, p = 1/2).
- :func:`paired_permutation_p`: for other metrics, swap each item's two values at random (seeded).
- :func:`holm`: Holm's step-down adjustment of a family of p-values.
- :func:`mde_paired`: the smallest true difference a two-sided paired test at level alpha detects with the given
  power, for n items.

Metrics are either per-item means (accuracy, exact match) or ratios of per-item sums (perplexity, bits per byte);
:class:`MetricSpec` says which, so every function works on both. A module that defines its own metrics (the
behaviour probes) declares their direction with :func:`register_metric`.

    >>> spec = metric_spec("acc")
    >>> paired_bootstrap_ci(spec, {"acc": base}, {"acc": cand}, seed=0)
    (-0.02, 0.08)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

_CHUNK = 2_000_000  # resampled values held in memory at once


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


def metric_spec(name: str) -> MetricSpec:
    """The :class:`MetricSpec` of a metric name (a higher-is-better per-item mean unless listed in METRICS)."""
    return METRICS.get(name) or MetricSpec(name)


def _transform(spec: MetricSpec, ratio: np.ndarray) -> np.ndarray:
    if spec.transform == "exp_neg":
        return np.exp(-ratio)
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
        return counts @ x / x.size
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
                        seed: int = 0, n_boot: int = 2000, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile interval of ``metric(cand) - metric(base)`` over paired item resamples (seeded)."""
    n = len(base[spec.keys[0]])
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    deltas = np.concatenate([_resampled(spec, cand, c) - _resampled(spec, base, c)
                             for c in _boot_counts(rng, n, n_boot)])
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.nanquantile(deltas, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


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
                         seed: int = 0, n_perm: int = 2000) -> float:
    """Two-sided p-value of ``metric(cand) - metric(base)`` by randomly swapping each item's pair (seeded).

    ``p = (1 + #{|permuted delta| >= |observed delta|}) / (n_perm + 1)``.
    """
    keys = spec.keys
    n = len(base[keys[0]])
    if n == 0:
        return float("nan")
    observed = aggregate(spec, cand) - aggregate(spec, base)
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK // max(n, 1))
    hits = 0
    done = 0
    tol = 1e-12 * max(1.0, abs(observed))
    while done < n_perm:
        b = min(rows, n_perm - done)
        swap = rng.integers(0, 2, size=(b, n)).astype(bool)
        pb: dict[str, np.ndarray] = {}
        pc: dict[str, np.ndarray] = {}
        for k in keys:
            xb = np.asarray(base[k], dtype=float)
            xc = np.asarray(cand[k], dtype=float)
            pb[k] = np.where(swap, xc, xb)
            pc[k] = np.where(swap, xb, xc)
        if spec.kind == "mean":
            d = pc[spec.name].mean(1) - pb[spec.name].mean(1)
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                d = (_transform(spec, pc[spec.num].sum(1) / pc[spec.den].sum(1))
                     - _transform(spec, pb[spec.num].sum(1) / pb[spec.den].sum(1)))
        hits += int(np.sum(np.abs(d) >= abs(observed) - tol))
        done += b
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
