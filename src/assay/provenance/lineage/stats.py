"""The numbers lineage measures on one tensor pair: sums for relative change and cosine, the rounding noise of a
dtype, the rank of a change above that noise, how well rows match after a permutation, and quantisation error.

Each is a pure function of numpy arrays (numpy is imported only when called):

    >>> acc = Acc()
    >>> acc.add(base, cand)  # the largest |cand - base|
    0.0031
    >>> acc.rel, acc.cos
    (0.0123, 0.9999)
    >>> rank_above_noise(cand - base, cand, "BF16")[0]
    8

:mod:`.classify` turns these numbers into a :class:`~.report.TensorKind`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

#: Relative spacing of floating-point values (machine epsilon) per storage dtype.
EPS = {"F32": 2.0 ** -23, "F64": 2.0 ** -52, "BF16": 2.0 ** -7, "F16": 2.0 ** -10}
#: Elements per chunk for float64 sums (bounds the temporaries to 8 MiB).
CHUNK = 1 << 20
#: LoRA ranks above this are not looked for: larger changes count as dense. Bounds the rank sketch's cost.
MAX_LORA_RANK = 64


@dataclass
class Acc:
    """Running sums for relative change and cosine."""

    dd: float = 0.0
    aa: float = 0.0
    bb: float = 0.0
    ab: float = 0.0
    n: int = 0
    """Tensor pairs added: with none (shape mismatches only) there is no relative change to report."""

    def add(self, a: np.ndarray, b: np.ndarray) -> float:
        """Add the sums of one tensor pair (in float64, in chunks); returns the largest |b - a|."""
        import numpy as np

        self.n += 1
        fa, fb = a.reshape(-1), b.reshape(-1)
        top = 0.0
        for i in range(0, fa.size, CHUNK):
            a64 = fa[i:i + CHUNK].astype(np.float64)
            b64 = fb[i:i + CHUNK].astype(np.float64)
            self.aa += float(a64 @ a64)
            self.bb += float(b64 @ b64)
            self.ab += float(a64 @ b64)
            b64 -= a64
            self.dd += float(b64 @ b64)
            if b64.size:
                top = max(top, float(np.max(np.abs(b64))))
        return top

    def merge(self, o: Acc) -> None:
        """Add another accumulator's sums (a tensor's into its layer's and the model's)."""
        self.dd += o.dd
        self.aa += o.aa
        self.bb += o.bb
        self.ab += o.ab
        self.n += o.n

    @property
    def rel(self) -> float | None:
        """``||b - a|| / ||a||``; None with no pairs, or when the base is all zeros and the candidate is not."""
        if self.n == 0:
            return None
        return math.sqrt(self.dd / self.aa) if self.aa > 0 else (0.0 if self.dd == 0 else None)

    @property
    def cos(self) -> float | None:
        """Cosine of the concatenated pairs; None when either side is all zeros."""
        return self.ab / math.sqrt(self.aa * self.bb) if self.aa > 0 and self.bb > 0 else None


def to_bf16(a: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (round to nearest even), returned as float32."""
    import numpy as np

    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    r = ((u >> 16) & 1) + np.uint32(0x7FFF)
    out = ((u + r) & np.uint32(0xFFFF0000)).view(np.float32)
    return np.where(np.isnan(a), a, out)


def cast_like(a: np.ndarray, dtype: str) -> np.ndarray | None:
    """``a`` rounded to ``dtype`` (BF16, F16 or F32) and back to float32; None for other dtypes."""
    import numpy as np

    if dtype == "BF16":
        return to_bf16(a)
    if dtype == "F16":
        return a.astype(np.float16).astype(np.float32)
    if dtype == "F32":
        return a.astype(np.float32)
    return None


def rounding_std(x: np.ndarray, dtype: str, *, sample: int = 1 << 18) -> float:
    """Standard deviation of the rounding error of storing ``x`` in ``dtype`` (half an ulp, uniform).

    The spacing of representable values around ``v`` is ``eps * 2**(exponent(v) - 1)``. An evenly strided sample
    of ``sample`` elements estimates it well enough for a noise floor, at a fixed cost.
    """
    import numpy as np

    eps = EPS.get(dtype, 2.0 ** -23)
    flat = x.reshape(-1)
    if flat.size == 0:
        return 0.0
    picked = flat[:: max(1, flat.size // sample)].astype(np.float64)
    _m, e = np.frexp(picked)
    ulp = np.ldexp(eps, e - 1)
    return math.sqrt(float(ulp @ ulp) / picked.size / 12.0)


def rank_above_noise(d: np.ndarray, cand: np.ndarray, dtype: str) -> tuple[int, float]:
    """Numerical rank of ``d = cand - base``, counting singular values above the rounding noise floor.

    Storing ``base + update`` in ``dtype`` adds an error of up to half a unit in the last place to each
    element (a LoRA merged into bf16 weights changes many elements by exactly that): full-rank noise whose
    largest singular value is about ``s * (sqrt(m) + sqrt(n))`` for an element standard deviation ``s``.
    Singular values below three times that cannot be told from rounding. Small matrices get an exact SVD;
    larger ones a randomised sketch of ``MAX_LORA_RANK + 8`` directions, and a residual above the noise means
    "rank above the sketch" (reported as ``MAX_LORA_RANK + 1`` or more).
    """
    import numpy as np

    m, n = d.shape
    s = rounding_std(cand, dtype)
    noise_sv = 3.0 * s * (math.sqrt(m) + math.sqrt(n))
    k = MAX_LORA_RANK + 8
    if min(m, n) <= 2 * k:
        sv = np.linalg.svd(d.astype(np.float64), compute_uv=False)
        if sv.size == 0 or sv[0] == 0:
            return 0, noise_sv
        floor = max(noise_sv, 1e-4 * float(sv[0]))
        return int(np.count_nonzero(sv > floor)), floor
    x = d if d.shape[0] >= d.shape[1] else d.T  # tall: the sketch lives in the short dimension
    rng = np.random.default_rng(0)
    y = x @ rng.standard_normal((x.shape[1], k)).astype(np.float32)
    # A rank-r update (r < k) lies entirely in the range of x @ omega: no power iteration is needed to find
    # it, and the residual test below catches anything of higher rank.
    q, _r = np.linalg.qr(y)
    proj = q.T @ x
    sv = np.linalg.svd(proj.astype(np.float64), compute_uv=False)
    if sv.size == 0 or sv[0] == 0:
        return 0, noise_sv
    floor = max(noise_sv, 1e-4 * float(sv[0]))
    rank = int(np.count_nonzero(sv > floor))
    # Energy the sketch missed, against what the rounding noise alone would leave (Frobenius norms).
    flat = d.reshape(-1)
    total2 = 0.0
    for i in range(0, flat.size, CHUNK):
        c = flat[i:i + CHUNK].astype(np.float64)
        total2 += float(c @ c)
    resid2 = max(0.0, total2 - float(np.sum(sv ** 2)))
    noise_fro2 = (3.0 * s) ** 2 * m * n + (1e-4 * float(sv[0])) ** 2 * min(m, n)
    if resid2 > noise_fro2 or rank > MAX_LORA_RANK:
        rank = max(rank, MAX_LORA_RANK + 1)
    return rank, floor


def best_row_match(base: np.ndarray, cand: np.ndarray, *, samples: int = 64) -> float | None:
    """Median over sampled candidate rows of the best |cosine| with any base row (and the same for columns).

    Catches permuted neurons: a permuted fine-tune has low flattened cosine but every row has a twin.
    """
    import numpy as np

    if base.ndim != 2 or base.shape != cand.shape:
        return None
    best = 0.0
    rng = np.random.default_rng(0)
    for a, b in ((base, cand), (base.T, cand.T)):
        rows, cols = a.shape
        if rows < 2 or cols < 4 or rows > 200_000:
            continue
        an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
        idx = rng.choice(rows, size=min(samples, rows), replace=False)
        bs = b[idx]
        bn = bs / np.maximum(np.linalg.norm(bs, axis=1, keepdims=True), 1e-30)
        sims = np.abs(bn.astype(np.float32) @ an.T.astype(np.float32))
        best = max(best, float(np.median(sims.max(axis=1))))
    return best


def integer_grid(b: np.ndarray, *, sample_rows: int | None = 16) -> tuple[int, int] | None:
    """(levels, block) if the values sit on a symmetric integer grid per block (an int8/int4 round trip).

    A few rows are tried first; only a grid found there is confirmed on the whole tensor.
    """
    import numpy as np

    flat = b.reshape(-1, b.shape[-1]) if b.ndim >= 2 else b.reshape(1, -1)
    if sample_rows is not None and flat.shape[0] > sample_rows:
        found = integer_grid(flat[:sample_rows], sample_rows=None)
        if found is None:
            return None
    cols = flat.shape[1]
    for block in (32, 64, 128, cols):
        if cols % block or block < 16:
            continue
        blocks = flat.reshape(-1, block).astype(np.float64)
        amax = np.abs(blocks).max(axis=1, keepdims=True)
        nz = amax[:, 0] > 0
        if not nz.any():
            continue
        for levels in (127, 8, 7):
            q = blocks[nz] / (amax[nz] / levels)
            if np.all(np.abs(q - np.rint(q)) < 1e-3):
                return levels, block
    return None


def block_quant_error(a: np.ndarray, b: np.ndarray, block: int = 32) -> float:
    """Largest ``|b - a|`` per block divided by the block's largest magnitude (blocks along the last axis)."""
    import numpy as np

    cols = a.shape[-1] if a.ndim else 1
    if cols % block:
        block = cols
    a2 = a.reshape(-1, block).astype(np.float32)
    b2 = b.reshape(-1, block).astype(np.float32)
    amax = np.maximum(np.abs(a2).max(axis=1), np.abs(b2).max(axis=1))
    err = np.abs(b2 - a2).max(axis=1)
    ratio = np.where(amax > 0, err / np.where(amax > 0, amax, 1), np.where(err > 0, np.inf, 0))
    return float(ratio.max()) if ratio.size else 0.0
