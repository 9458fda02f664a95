"""Paired BCa interval of a ratio metric (bits per byte): assay's closed-form jackknife against scipy's generic one.

Both compute the same BCa interval from 10,000 paired resamples (tests/evaluate/test_change_rule.py checks that
they agree); scipy's jackknife re-evaluates the statistic on n leave-one-out samples of n-1 items (O(n^2)), assay
subtracts one item from the sums (O(n)). Prints seconds per interval and the ratio scipy / assay.

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/paired_stats_speed.py
"""

from __future__ import annotations

import math
import time

import numpy as np
from scipy.stats import bootstrap

from assay.evaluate.stats import N_DRAWS, metric_spec, paired_bootstrap_ci


def main() -> None:
    spec = metric_spec("bits_per_byte")
    print(f"{'items':>6} {'assay s':>8} {'scipy s':>8} {'ratio':>6}  intervals (assay | scipy)")
    for n in (200, 1000, 4000):
        rng = np.random.default_rng(n)
        b = {"logprob": -rng.lognormal(3, 0.6, n), "bytes": rng.integers(20, 80, n).astype(float)}
        c = {"logprob": b["logprob"] * rng.lognormal(0.01, 0.1, n), "bytes": b["bytes"]}
        t0 = time.perf_counter()
        mine = paired_bootstrap_ci(spec, b, c, seed=0, n_boot=N_DRAWS)
        t1 = time.perf_counter()

        def delta(bn, bd, cn, cd, axis=-1):  # type: ignore[no-untyped-def]
            return (bn.sum(axis) / bd.sum(axis) - cn.sum(axis) / cd.sum(axis)) / math.log(2)

        ref = bootstrap((b["logprob"], b["bytes"], c["logprob"], c["bytes"]), delta, paired=True, vectorized=True,
                        n_resamples=N_DRAWS, method="BCa", rng=np.random.default_rng(0),
                        batch=max(1, 2_000_000 // n)).confidence_interval
        t2 = time.perf_counter()
        print(f"{n:>6} {t1 - t0:>8.2f} {t2 - t1:>8.2f} {(t2 - t1) / (t1 - t0):>5.1f}x  "
              f"[{mine[0]:+.4f}, {mine[1]:+.4f}] | [{ref.low:+.4f}, {ref.high:+.4f}]")


if __name__ == "__main__":
    main()
