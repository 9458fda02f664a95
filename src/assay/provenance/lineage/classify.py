"""What happened to one tensor: the base and candidate values of one tensor pair become a :class:`TensorEvidence`.

The tests run in order, cheapest and most certain first: equal values (identical, or a dtype change), equal to the
base cast to the candidate's dtype (recast), within the quantisation error bound (GGUF block types, or values on an
integer grid), and otherwise changed: related when the cosine or the rows say so, unrelated when neither does.

    >>> classify_pair(name, base_info, cand_info, a, b, acc).kind
    <TensorKind.CHANGED: 'changed'>
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from assay.provenance.lineage.names import is_quantized, layer_of
from assay.provenance.lineage.report import TensorEvidence, TensorKind
from assay.provenance.lineage.stats import (EPS, Acc, best_row_match, block_quant_error, cast_like, integer_grid,
                                            rank_above_noise)

if TYPE_CHECKING:
    import numpy as np

    from assay.model.tensors import TensorInfo

#: Largest quantisation error allowed, as a fraction of the block's largest magnitude, per GGML type
#: (rounding to the grid plus fp16 storage of the block scale, with a margin).
QUANT_TOL = {"Q8_0": 0.0065, "Q8_1": 0.0065, "Q8_K": 0.0065, "Q6_K": 0.04, "Q5_1": 0.045, "Q5_0": 0.075,
             "Q5_K": 0.07, "Q4_1": 0.08, "Q4_0": 0.15, "Q4_K": 0.14, "IQ4_NL": 0.14, "IQ4_XS": 0.16,
             "Q3_K": 0.3, "IQ3_S": 0.35, "IQ3_XXS": 0.4, "Q2_K": 0.6}
QUANT_TOL_DEFAULT = 0.75
#: Below this |cosine| a matrix is unrelated to the base's, unless its rows match after reordering.
COS_UNRELATED = 0.2
#: The median best row |cosine| from which rows count as the base's rows reordered.
ROW_MATCH = 0.8


def classify_pair(name: str, tb: TensorInfo, tc: TensorInfo, a: np.ndarray, b: np.ndarray,
                  acc: Acc) -> TensorEvidence:
    """Classify one tensor pair; adds its sums to ``acc``."""
    import numpy as np

    layer = layer_of(name)
    base_kw: dict[str, Any] = dict(name=name, layer=layer, shape_base=tuple(tb.shape),
                                   shape_candidate=tuple(tc.shape), dtype_base=tb.dtype, dtype_candidate=tc.dtype)
    note = ""
    kind: TensorKind | None = None
    if a.shape != b.shape:
        # Vocabulary extension: more rows, same columns, and the base rows kept (possibly fine-tuned).
        if a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[1] and b.shape[0] > a.shape[0]:
            added = b.shape[0] - a.shape[0]
            b = b[: a.shape[0]]
            note = f"{added} rows added"
            kind = TensorKind.EXTENDED
        else:
            return TensorEvidence(**base_kw, kind=TensorKind.MISMATCH, rel_change=None, cosine=None,
                                  max_abs_diff=None, note=f"shape {list(a.shape)} vs {list(b.shape)}")
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    one = Acc()
    diff = one.add(a, b)
    acc.merge(one)
    rel, cos = one.rel, one.cos
    trivial = bool(a.size and np.all(a == a.flat[0]) and np.all(b == b.flat[0]))
    ev: dict[str, Any] = dict(rel_change=rel, cosine=cos, max_abs_diff=diff, trivial=trivial)
    if kind is TensorKind.EXTENDED:
        if cos is not None and abs(cos) < COS_UNRELATED:
            return TensorEvidence(**base_kw, kind=TensorKind.UNRELATED, note=note + "; the shared rows differ", **ev)
        if diff != 0:
            note += f"; base rows changed (relative change {rel:.3g})"
        return TensorEvidence(**base_kw, kind=kind, note=note, **ev)
    if diff == 0 and np.array_equal(a, b):
        same_dtype = tb.dtype == tc.dtype
        kind = TensorKind.IDENTICAL if same_dtype else TensorKind.RECAST
        if not same_dtype and is_quantized(tc.dtype):
            kind = TensorKind.QUANTIZED
        return TensorEvidence(**base_kw, kind=kind, **ev)
    if tb.dtype != tc.dtype and not is_quantized(tc.dtype):
        cast = cast_like(a, tc.dtype)
        if cast is not None and np.array_equal(cast, b):
            return TensorEvidence(**base_kw, kind=TensorKind.RECAST, **ev)
    if is_quantized(tc.dtype) or is_quantized(tb.dtype):
        qtype = tc.dtype if is_quantized(tc.dtype) else tb.dtype
        tol = QUANT_TOL.get(qtype.upper(), QUANT_TOL_DEFAULT)
        qerr = block_quant_error(a, b)
        if qerr <= tol and (cos is None or cos > 0.9):
            return TensorEvidence(**base_kw, kind=TensorKind.QUANTIZED, quant_error=qerr, quant_tol=tol, **ev)
        ev.update(quant_error=qerr, quant_tol=tol)
    elif b.ndim >= 1 and b.size >= 64:
        grid = integer_grid(b)
        if grid is not None:
            levels, block = grid
            tol = 0.6 / levels + 0.001
            qerr = block_quant_error(a, b, block)
            if qerr <= tol:
                bits = 8 if levels == 127 else 4
                return TensorEvidence(**base_kw, kind=TensorKind.QUANTIZED, quant_error=qerr, quant_tol=tol,
                                      note=f"values on a {bits}-bit grid (block {block})", **ev)
    # Changed: related or not?
    if a.ndim == 2 and min(a.shape) >= 2:
        if cos is not None and abs(cos) >= COS_UNRELATED:
            rank, _floor = rank_above_noise(b - a, b, tc.dtype if tc.dtype in EPS else "F32")
            return TensorEvidence(**base_kw, kind=TensorKind.CHANGED, rank=rank, rank_of=min(a.shape), **ev)
        match = best_row_match(a, b)
        if match is not None and match >= ROW_MATCH:
            return TensorEvidence(**base_kw, kind=TensorKind.CHANGED, row_match=match,
                                  note="rows or columns permuted: every sampled row has a near-twin in the base",
                                  **ev)
        return TensorEvidence(**base_kw, kind=TensorKind.UNRELATED, row_match=match, **ev)
    if trivial or (cos is not None and abs(cos) >= COS_UNRELATED) or a.ndim < 2:
        # 1-D tensors (norms, biases) carry little evidence of origin: a change is just a change.
        return TensorEvidence(**base_kw, kind=TensorKind.CHANGED, **ev)
    return TensorEvidence(**base_kw, kind=TensorKind.UNRELATED, **ev)
