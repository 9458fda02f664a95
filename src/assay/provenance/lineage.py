"""Weight lineage: does a candidate really descend from the base it claims, and how?

Tensors are streamed in pairs (one base tensor and its candidate counterpart in memory at a time), matched by
Hugging Face name (GGUF names are mapped by the tensor reader), and compared: exact equality, relative change
``||dW|| / ||W||``, cosine, a dtype-recast test, a quantisation-error test (GGUF block types, or values on an
integer grid), a rounding-aware rank estimate of ``dW`` (LoRA), and a row-matching probe that recognises
permuted neurons. The per-tensor findings add up per layer and to one :class:`Relation`.

    >>> r = compare_lineage(resolve("./my-finetune"), resolve("./base"))
    >>> r.relation, r.claim["consistent"], r.layers[0].rel_change
    (<Relation.FINETUNE: 'finetune'>, True, 0.0123)
    >>> lineage_document(r)["schema"]
    'assay.lineage/1'

A PEFT adapter folder as candidate is applied to the base on the fly (``W + scale * B @ A``), one matrix at a
time. Torch archives are read only with ``allow_pickle=True`` (after the files scanned safe).
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assay.errors import FormatError, ModelError, ProvenanceError
from assay.model.ref import ModelRef
from assay.progress import NULL_PROGRESS, Progress
from assay.provenance.manifest import card_metadata

if TYPE_CHECKING:
    import numpy as np

    from assay.model.tensors import TensorInfo

SCHEMA = "assay.lineage/1"


class Relation(enum.StrEnum):
    """How the candidate's weights relate to the base's. Values are stable (they appear in JSON)."""

    IDENTICAL = "identical"
    RECAST = "recast"
    QUANTIZED = "quantized"
    FINETUNE = "finetune"
    LORA = "lora"
    PARTIAL = "partial"
    UNRELATED = "unrelated"
    INCOMPATIBLE = "incompatible"


class TensorKind(enum.StrEnum):
    """What happened to one tensor."""

    IDENTICAL = "identical"      # same values (and dtype)
    RECAST = "recast"            # candidate == base cast to the candidate's dtype
    QUANTIZED = "quantized"      # within the quantisation error bound of its block scale
    CHANGED = "changed"          # related, changed (fine-tune, LoRA, permuted rows)
    EXTENDED = "extended"        # more rows (vocabulary); the base rows are kept
    UNRELATED = "unrelated"      # no shared origin (cosine ~0, rows do not match)
    MISMATCH = "mismatch"        # shapes cannot be compared


#: Relative spacing of floating-point values (machine epsilon) per storage dtype.
_EPS = {"F32": 2.0 ** -23, "F64": 2.0 ** -52, "BF16": 2.0 ** -7, "F16": 2.0 ** -10}
#: Largest quantisation error allowed, as a fraction of the block's largest magnitude, per GGML type
#: (rounding to the grid plus fp16 storage of the block scale, with a margin).
_QUANT_TOL = {"Q8_0": 0.0065, "Q8_1": 0.0065, "Q8_K": 0.0065, "Q6_K": 0.04, "Q5_1": 0.045, "Q5_0": 0.075,
              "Q5_K": 0.07, "Q4_1": 0.08, "Q4_0": 0.15, "Q4_K": 0.14, "IQ4_NL": 0.14, "IQ4_XS": 0.16,
              "Q3_K": 0.3, "IQ3_S": 0.35, "IQ3_XXS": 0.4, "Q2_K": 0.6}
_QUANT_TOL_DEFAULT = 0.75
_COS_UNRELATED = 0.2
_ROW_MATCH = 0.8
#: Elements per chunk for float64 sums (bounds the temporaries to 8 MiB).
_CHUNK = 1 << 20
#: LoRA ranks above this are not looked for: larger changes count as dense. Bounds the rank sketch's cost.
_MAX_LORA_RANK = 64
_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\.")
_ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class TensorEvidence:
    """The comparison of one tensor pair."""

    name: str
    """Hugging Face name."""
    layer: str
    """``embed``, a decoder layer number, ``head`` or ``other``."""
    kind: TensorKind
    """What happened to it."""
    shape_base: tuple[int, ...]
    """Shape in the base."""
    shape_candidate: tuple[int, ...]
    """Shape in the candidate."""
    dtype_base: str
    """Storage dtype in the base."""
    dtype_candidate: str
    """Storage dtype in the candidate (GGML names for GGUF: ``Q8_0``...)."""
    rel_change: float | None
    """``||cand - base|| / ||base||`` over the common part."""
    cosine: float | None
    """Cosine similarity of the flattened tensors."""
    max_abs_diff: float | None
    """Largest absolute element difference."""
    rank: int | None = None
    """Numerical rank of ``cand - base`` above the rounding noise floor (2-D changed tensors)."""
    rank_of: int | None = None
    """``min(rows, cols)``: the full rank for comparison."""
    row_match: float | None = None
    """For tensors with low cosine: median best |cosine| of candidate rows (or columns) against base rows."""
    quant_error: float | None = None
    """Largest error / block magnitude for a quantised candidate (bound: ``quant_tol``)."""
    quant_tol: float | None = None
    """The bound used for ``quant_error``."""
    trivial: bool = False
    """Base and candidate are constant tensors (e.g. freshly initialised norms): no evidence of origin."""
    note: str = ""
    """Anything else worth knowing (vocabulary rows added, permuted rows, quantisation grid)."""


@dataclass(frozen=True)
class LayerEvidence:
    """Per-layer aggregate over its tensors."""

    layer: str
    """``embed``, decoder layer number, ``head`` or ``other``."""
    tensors: int
    """Number of compared tensors."""
    status: str
    """``identical``, ``recast``, ``quantized``, ``changed``, ``lowrank``, ``replaced``, ``extended`` or ``mixed``."""
    rel_change: float | None
    """``sqrt(sum ||dW||^2) / sqrt(sum ||W||^2)`` over the layer's matrices (its vectors if it has none)."""
    cosine: float | None
    """Cosine of the layer's concatenated matrices (vectors if it has none)."""
    changed: int
    """Tensors that are not identical/recast/quantised."""


@dataclass(frozen=True)
class LineageReport:
    """What the weights say about the candidate's origin, with the evidence."""

    relation: Relation
    """The verdict."""
    claim: dict[str, Any]
    """The card's ``base_model``/``base_model_relation`` and whether the weights agree (``consistent``)."""
    layers: tuple[LayerEvidence, ...]
    """Per-layer aggregates, in model order."""
    tensors: tuple[TensorEvidence, ...]
    """Per-tensor evidence, in model order."""
    candidate: str
    """The candidate reference."""
    base: str
    """The base reference."""
    summary: str
    """One or two sentences explaining the relation."""
    compared: int
    """Tensor pairs compared."""
    identical: int
    """Pairs with equal values."""
    changed: int
    """Pairs that changed (not identical, recast or quantised)."""
    unrelated: int
    """Pairs with no shared origin."""
    rel_change: float | None
    """Whole-model relative change ``||dW|| / ||W||`` over the weight matrices."""
    cosine: float | None
    """Whole-model cosine over the weight matrices."""
    only_in_base: tuple[str, ...] = ()
    """Tensors the candidate lacks."""
    only_in_candidate: tuple[str, ...] = ()
    """Tensors the base lacks."""
    lora_rank: int | None = None
    """Largest estimated rank of the changed matrices (for ``lora``)."""
    adapter: dict[str, Any] | None = None
    """``adapter_config.json`` facts (r, target modules) and whether the weights agree with them."""
    vocab_added: int = 0
    """Rows added to the embedding/output matrices."""
    notes: tuple[str, ...] = ()
    """Other observations (permuted rows, frozen layers, replaced layers)."""


# --------------------------------------------------------------------------------------------------- helpers


def _layer_of(name: str) -> str:
    m = _LAYER.search(name)
    if m:
        return m.group(1)
    low = name.lower()
    if "embed" in low or "wte" in low or "token_embd" in low:
        return "embed"
    if "lm_head" in low or low.startswith("output") or ".output." in low:
        return "head"
    return "other"


def _layer_order(layer: str) -> tuple[int, int]:
    if layer == "embed":
        return (0, 0)
    if layer.isdigit():
        return (1, int(layer))
    return (2 if layer == "other" else 3, 0)


def _is_float(dtype: str) -> bool:
    return not dtype.upper().startswith(("I", "U", "BOOL")) or dtype.upper().startswith("IQ")


def _is_quantized(dtype: str) -> bool:
    d = dtype.upper()
    return d.startswith(("Q", "IQ", "TQ")) or d in ("F8_E4M3", "F8_E5M2")


def _canon(name: str) -> str:
    for prefix in ("base_model.model.", "_orig_mod."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name


def _to_bf16(a: np.ndarray) -> np.ndarray:
    """Round float32 to bfloat16 (round to nearest even), returned as float32."""
    import numpy as np

    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    r = ((u >> 16) & 1) + np.uint32(0x7FFF)
    out = ((u + r) & np.uint32(0xFFFF0000)).view(np.float32)
    return np.where(np.isnan(a), a, out)


def _cast_like(a: np.ndarray, dtype: str) -> np.ndarray | None:
    import numpy as np

    if dtype == "BF16":
        return _to_bf16(a)
    if dtype == "F16":
        return a.astype(np.float16).astype(np.float32)
    if dtype == "F32":
        return a.astype(np.float32)
    return None


def _rounding_std(x: np.ndarray, dtype: str, *, sample: int = 1 << 18) -> float:
    """Standard deviation of the rounding error of storing ``x`` in ``dtype`` (half an ulp, uniform).

    The spacing of representable values around ``v`` is ``eps * 2**(exponent(v) - 1)``. An evenly strided sample
    of ``sample`` elements estimates it well enough for a noise floor, at a fixed cost.
    """
    import numpy as np

    eps = _EPS.get(dtype, 2.0 ** -23)
    flat = x.reshape(-1)
    if flat.size == 0:
        return 0.0
    picked = flat[:: max(1, flat.size // sample)].astype(np.float64)
    _m, e = np.frexp(picked)
    ulp = np.ldexp(eps, e - 1)
    return math.sqrt(float(ulp @ ulp) / picked.size / 12.0)


def _rank_above_noise(d: np.ndarray, cand: np.ndarray, dtype: str) -> tuple[int, float]:
    """Numerical rank of ``d = cand - base``, counting singular values above the rounding noise floor.

    Storing ``base + update`` in ``dtype`` adds an error of up to half a unit in the last place to each
    element (a LoRA merged into bf16 weights changes many elements by exactly that): full-rank noise whose
    largest singular value is about ``s * (sqrt(m) + sqrt(n))`` for an element standard deviation ``s``.
    Singular values below three times that cannot be told from rounding. Small matrices get an exact SVD;
    larger ones a randomised sketch of ``_MAX_LORA_RANK + 8`` directions, and a residual above the noise means
    "rank above the sketch" (reported as ``_MAX_LORA_RANK + 1`` or more).
    """
    import numpy as np

    m, n = d.shape
    s = _rounding_std(cand, dtype)
    noise_sv = 3.0 * s * (math.sqrt(m) + math.sqrt(n))
    k = _MAX_LORA_RANK + 8
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
    for i in range(0, flat.size, _CHUNK):
        c = flat[i:i + _CHUNK].astype(np.float64)
        total2 += float(c @ c)
    resid2 = max(0.0, total2 - float(np.sum(sv ** 2)))
    noise_fro2 = (3.0 * s) ** 2 * m * n + (1e-4 * float(sv[0])) ** 2 * min(m, n)
    if resid2 > noise_fro2 or rank > _MAX_LORA_RANK:
        rank = max(rank, _MAX_LORA_RANK + 1)
    return rank, floor


def _row_match(base: np.ndarray, cand: np.ndarray, *, samples: int = 64) -> float | None:
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


def _grid(b: np.ndarray, *, sample_rows: int | None = 16) -> tuple[int, int] | None:
    """(levels, block) if the values sit on a symmetric integer grid per block (an int8/int4 round trip).

    A few rows are tried first; only a grid found there is confirmed on the whole tensor.
    """
    import numpy as np

    flat = b.reshape(-1, b.shape[-1]) if b.ndim >= 2 else b.reshape(1, -1)
    if sample_rows is not None and flat.shape[0] > sample_rows:
        found = _grid(flat[:sample_rows], sample_rows=None)
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


def _quant_error(a: np.ndarray, b: np.ndarray, block: int = 32) -> float:
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


# --------------------------------------------------------------------------------------------------- adapters


@dataclass(frozen=True)
class _Adapter:
    config: dict[str, Any]
    scale: float
    pairs: dict[str, tuple[TensorInfo, TensorInfo]] = field(default_factory=dict)


def _adapter_config(ref: ModelRef) -> dict[str, Any] | None:
    if ref.single_file:
        return None
    cfg = ref.root / "adapter_config.json"
    if not cfg.is_file():
        return None
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{ref.spec}: adapter_config.json is unreadable ({exc})") from exc
    return data if isinstance(data, dict) else None


def _load_adapter(ref: ModelRef, config: dict[str, Any], *, allow_pickle: bool) -> _Adapter:
    from assay.model.tensors import file_tensors

    weights = next((ref.root / f for f in _ADAPTER_FILES if (ref.root / f).is_file()), None)
    if weights is None:
        raise ModelError(f"{ref.spec}: adapter_config.json but no adapter_model.safetensors")
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise ProvenanceError(f"{ref.spec}: PEFT type {peft_type} cannot be applied (only LoRA adapters)")
    if config.get("use_dora"):
        raise ProvenanceError(f"{ref.spec}: DoRA adapters cannot be applied on the fly (only plain LoRA)")
    r = int(config.get("r", 8) or 8)
    alpha = float(config.get("lora_alpha", r) or r)
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    tensors = file_tensors(weights, allow_pickle=allow_pickle)
    a_map: dict[str, TensorInfo] = {}
    b_map: dict[str, TensorInfo] = {}
    for t in tensors:
        m = re.match(r"^(.*)\.lora_([AB])(?:\.default)?\.weight$", t.hf_name)
        if not m:
            continue
        target = _canon(m.group(1)) + ".weight"
        (a_map if m.group(2) == "A" else b_map)[target] = t
    pairs = {k: (a_map[k], b_map[k]) for k in a_map if k in b_map}
    if not pairs:
        raise ModelError(f"{ref.spec}: the adapter holds no lora_A/lora_B weight pairs")
    return _Adapter(config=config, scale=scale, pairs=pairs)


# --------------------------------------------------------------------------------------------------- compare


@dataclass
class _Acc:
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
        for i in range(0, fa.size, _CHUNK):
            a64 = fa[i:i + _CHUNK].astype(np.float64)
            b64 = fb[i:i + _CHUNK].astype(np.float64)
            self.aa += float(a64 @ a64)
            self.bb += float(b64 @ b64)
            self.ab += float(a64 @ b64)
            b64 -= a64
            self.dd += float(b64 @ b64)
            if b64.size:
                top = max(top, float(np.max(np.abs(b64))))
        return top

    def merge(self, o: _Acc) -> None:
        self.dd += o.dd
        self.aa += o.aa
        self.bb += o.bb
        self.ab += o.ab
        self.n += o.n

    @property
    def rel(self) -> float | None:
        if self.n == 0:
            return None
        return math.sqrt(self.dd / self.aa) if self.aa > 0 else (0.0 if self.dd == 0 else None)

    @property
    def cos(self) -> float | None:
        return self.ab / math.sqrt(self.aa * self.bb) if self.aa > 0 and self.bb > 0 else None


def _compare(name: str, tb: TensorInfo, tc: TensorInfo, a: np.ndarray, b: np.ndarray,
             acc: _Acc) -> TensorEvidence:
    """Classify one tensor pair; adds its sums to ``acc``."""
    import numpy as np

    layer = _layer_of(name)
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
    one = _Acc()
    diff = one.add(a, b)
    acc.merge(one)
    rel, cos = one.rel, one.cos
    trivial = bool(a.size and np.all(a == a.flat[0]) and np.all(b == b.flat[0]))
    ev: dict[str, Any] = dict(rel_change=rel, cosine=cos, max_abs_diff=diff, trivial=trivial)
    if kind is TensorKind.EXTENDED:
        if cos is not None and abs(cos) < _COS_UNRELATED:
            return TensorEvidence(**base_kw, kind=TensorKind.UNRELATED, note=note + "; the shared rows differ", **ev)
        if diff != 0:
            note += f"; base rows changed (relative change {rel:.3g})"
        return TensorEvidence(**base_kw, kind=kind, note=note, **ev)
    if diff == 0 and np.array_equal(a, b):
        same_dtype = tb.dtype == tc.dtype
        kind = TensorKind.IDENTICAL if same_dtype else TensorKind.RECAST
        if not same_dtype and _is_quantized(tc.dtype):
            kind = TensorKind.QUANTIZED
        return TensorEvidence(**base_kw, kind=kind, **ev)
    if tb.dtype != tc.dtype and not _is_quantized(tc.dtype):
        cast = _cast_like(a, tc.dtype)
        if cast is not None and np.array_equal(cast, b):
            return TensorEvidence(**base_kw, kind=TensorKind.RECAST, **ev)
    if _is_quantized(tc.dtype) or _is_quantized(tb.dtype):
        qtype = tc.dtype if _is_quantized(tc.dtype) else tb.dtype
        tol = _QUANT_TOL.get(qtype.upper(), _QUANT_TOL_DEFAULT)
        qerr = _quant_error(a, b)
        if qerr <= tol and (cos is None or cos > 0.9):
            return TensorEvidence(**base_kw, kind=TensorKind.QUANTIZED, quant_error=qerr, quant_tol=tol, **ev)
        ev.update(quant_error=qerr, quant_tol=tol)
    elif b.ndim >= 1 and b.size >= 64:
        grid = _grid(b)
        if grid is not None:
            levels, block = grid
            tol = 0.6 / levels + 0.001
            qerr = _quant_error(a, b, block)
            if qerr <= tol:
                bits = 8 if levels == 127 else 4
                return TensorEvidence(**base_kw, kind=TensorKind.QUANTIZED, quant_error=qerr, quant_tol=tol,
                                      note=f"values on a {bits}-bit grid (block {block})", **ev)
    # Changed: related or not?
    if a.ndim == 2 and min(a.shape) >= 2:
        if cos is not None and abs(cos) >= _COS_UNRELATED:
            rank, _floor = _rank_above_noise(b - a, b, tc.dtype if tc.dtype in _EPS else "F32")
            return TensorEvidence(**base_kw, kind=TensorKind.CHANGED, rank=rank, rank_of=min(a.shape), **ev)
        match = _row_match(a, b)
        if match is not None and match >= _ROW_MATCH:
            return TensorEvidence(**base_kw, kind=TensorKind.CHANGED, row_match=match,
                                  note="rows or columns permuted: every sampled row has a near-twin in the base",
                                  **ev)
        return TensorEvidence(**base_kw, kind=TensorKind.UNRELATED, row_match=match, **ev)
    if trivial or (cos is not None and abs(cos) >= _COS_UNRELATED) or a.ndim < 2:
        # 1-D tensors (norms, biases) carry little evidence of origin: a change is just a change.
        return TensorEvidence(**base_kw, kind=TensorKind.CHANGED, **ev)
    return TensorEvidence(**base_kw, kind=TensorKind.UNRELATED, **ev)


def _pairs(candidate: ModelRef, base: ModelRef, *, allow_pickle: bool) -> tuple[
        dict[str, TensorInfo], dict[str, TensorInfo], _Adapter | None]:
    from assay.model.inventory import tensor_index

    def index(ref: ModelRef, what: str) -> dict[str, TensorInfo]:
        try:
            idx = tensor_index(ref, allow_pickle=allow_pickle)
        except (ModelError, FormatError) as exc:
            hint = ("torch archives are read only after they scanned safe: run `assay scan`, then pass "
                    "--allow-pickle (allow_pickle=True)") if "allow_pickle" in exc.message else exc.hint
            raise type(exc)(f"{what} {ref.spec}: {exc.message}", hint=hint) from exc
        return {_canon(k): v for k, v in idx.items() if _is_float(v.dtype)}

    base_idx = index(base, "base")
    if not base_idx:
        raise ModelError(f"base {base.spec} holds no tensors assay can read")
    adapter_cfg = _adapter_config(candidate)
    if adapter_cfg is not None and any((candidate.root / f).is_file() for f in _ADAPTER_FILES):
        return base_idx, {}, _load_adapter(candidate, adapter_cfg, allow_pickle=allow_pickle)
    cand_idx = index(candidate, "candidate")
    if not cand_idx:
        raise ModelError(f"candidate {candidate.spec} holds no tensors assay can read")
    return base_idx, cand_idx, None


def _architecture(ref: ModelRef) -> str | None:
    if ref.single_file:
        return None
    cfg = ref.root / "config.json"
    try:
        data = json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    return str(data.get("model_type")) if data.get("model_type") else None


def _iter_loaded(names: list[str], base_idx: dict[str, TensorInfo], cand_idx: dict[str, TensorInfo],
                 adapter: _Adapter | None) -> Iterator[tuple[str, TensorInfo, TensorInfo, np.ndarray, np.ndarray]]:
    import numpy as np

    for name in names:
        tb = base_idx[name]
        a = np.asarray(tb.load(), dtype=np.float32)
        if adapter is not None:
            tc = tb
            b = a
            if name in adapter.pairs:
                ta, tbb = adapter.pairs[name]
                la = np.asarray(ta.load(), dtype=np.float32)
                lb = np.asarray(tbb.load(), dtype=np.float32)
                delta = (lb @ la) * np.float32(adapter.scale)
                if adapter.config.get("fan_in_fan_out"):
                    delta = delta.T
                if delta.shape != a.shape:
                    raise ModelError(f"adapter matrix for {name} has shape {list(delta.shape)}, the base "
                                     f"{list(a.shape)}: this adapter is not for this base")
                b = a + delta
        else:
            tc = cand_idx[name]
            b = np.asarray(tc.load(), dtype=np.float32)
        yield name, tb, tc, a, b
        del a, b


def _byte_identical(tb: TensorInfo, tc: TensorInfo) -> bool:
    """The two tensors are stored as the same bytes (same dtype and shape): compared without decoding."""
    import numpy as np

    if "torch" in (tb.layout, tc.layout) or tb.dtype != tc.dtype or tuple(tb.shape) != tuple(tc.shape) \
            or tb.nbytes != tc.nbytes:
        return False
    try:
        if tb.offset == tc.offset and (tb.location == tc.location or tb.location.samefile(tc.location)):
            return True  # the same bytes of the same file (``lineage X --base X``)
        ra, rb = tb._bytes(), tc._bytes()
        step = _CHUNK * 8
        return all(np.array_equal(ra[i:i + step], rb[i:i + step]) for i in range(0, tb.nbytes, step))
    except (OSError, FormatError):
        return False


def _all_byte_identical(names: list[str], base_idx: dict[str, TensorInfo], cand_idx: dict[str, TensorInfo],
                        progress: Progress) -> tuple[list[TensorEvidence], dict[tuple[str, str], _Acc],
                                                     dict[str, _Acc]] | None:
    """Evidence for a candidate whose every tensor is byte-identical to the base's, or None at the first that is
    not. Identical bytes settle the relation without dequantising or comparing values (a file against itself
    costs nothing but the header reads)."""
    progress.start("comparing bytes", total=float(len(names)))
    try:
        for name in names:
            if not _byte_identical(base_idx[name], cand_idx[name]):
                return None
            progress.advance("comparing bytes")
    finally:
        progress.finish("comparing bytes")
    evidence = []
    layer_acc: dict[tuple[str, str], _Acc] = {}
    total_acc: dict[str, _Acc] = {}
    for name in names:
        tb, tc = base_idx[name], cand_idx[name]
        evidence.append(TensorEvidence(name=name, layer=_layer_of(name), kind=TensorKind.IDENTICAL,
                                       shape_base=tuple(tb.shape), shape_candidate=tuple(tc.shape),
                                       dtype_base=tb.dtype, dtype_candidate=tc.dtype, rel_change=0.0, cosine=1.0,
                                       max_abs_diff=0.0, note="byte-identical"))
        one = _Acc(aa=1.0, bb=1.0, ab=1.0, n=1)  # identical: relative change 0, cosine 1
        kind = "mat" if len(tb.shape) >= 2 else "vec"
        layer_acc.setdefault((_layer_of(name), kind), _Acc()).merge(one)
        total_acc.setdefault(kind, _Acc()).merge(one)
    return evidence, layer_acc, total_acc


def compare_lineage(candidate: ModelRef, base: ModelRef, *, allow_pickle: bool = False,
                    progress: Progress = NULL_PROGRESS, check_card: bool = True) -> LineageReport:
    """Compare the candidate's weights with the base's, tensor by tensor, and name the relation.

    The card's base claims are checked too (:func:`_claim`); ``check_card=False`` skips checking a base the card
    names that is not ``base`` (used for that check itself).

    Raises :class:`ModelError` when either side has no readable tensors (exit 2).
    """
    base_idx, cand_idx, adapter = _pairs(candidate, base, allow_pickle=allow_pickle)
    cand_names = set(base_idx) if adapter is not None else set(cand_idx)
    common = [n for n in base_idx if n in cand_names]
    common.sort(key=lambda n: (_layer_order(_layer_of(n)), n))
    only_base = tuple(sorted(set(base_idx) - cand_names))
    only_cand = tuple(sorted(cand_names - set(base_idx)))
    arch_b, arch_c = _architecture(base), _architecture(candidate)

    evidence: list[TensorEvidence] = []
    layer_acc: dict[tuple[str, str], _Acc] = {}
    total_acc: dict[str, _Acc] = {}
    if adapter is None and not only_base and not only_cand and common:
        same = _all_byte_identical(common, base_idx, cand_idx, progress)
        if same is not None:
            evidence, layer_acc, total_acc = same
            common = []  # settled by bytes: nothing to load
    progress.start("comparing tensors", total=float(len(common)))
    try:
        for name, tb, tc, a, b in _iter_loaded(common, base_idx, cand_idx, adapter):
            one = _Acc()
            evidence.append(_compare(name, tb, tc, a, b, one))
            # Aggregates are over weight matrices: a norm vector of ones would otherwise outweigh them.
            kind = "mat" if len(tb.shape) >= 2 else "vec"
            layer_acc.setdefault((_layer_of(name), kind), _Acc()).merge(one)
            total_acc.setdefault(kind, _Acc()).merge(one)
            progress.advance("comparing tensors")
    except (OSError, ValueError, MemoryError) as exc:
        raise ModelError(f"cannot read tensors for lineage: {exc}") from exc
    finally:
        progress.finish("comparing tensors")

    relation, summary, notes, lora_rank, vocab_added = _decide(evidence, only_base, only_cand, adapter,
                                                               arch_b, arch_c, len(base_idx), len(cand_names))
    adapter_doc = _adapter_check(candidate, adapter, evidence, lora_rank)
    layers = _layers(evidence, layer_acc)
    claim = _claim(candidate, base, relation, allow_pickle=allow_pickle, check_named=check_card)
    if claim["consistent"] is False and claim.get("reason"):
        summary += f" The card's claim does not hold: {claim['reason']}."
    elif claim.get("notes"):
        summary += f" {claim['notes'][0][0].upper()}{claim['notes'][0][1:]}."
    kinds = [e.kind for e in evidence]
    total = total_acc.get("mat") or total_acc.get("vec") or _Acc()
    return LineageReport(
        relation=relation, claim=claim, layers=layers, tensors=tuple(evidence), candidate=candidate.spec,
        base=base.spec, summary=summary, compared=len(evidence),
        identical=sum(k is TensorKind.IDENTICAL for k in kinds),
        changed=sum(k in (TensorKind.CHANGED, TensorKind.EXTENDED) for k in kinds),
        unrelated=sum(k is TensorKind.UNRELATED for k in kinds), rel_change=total.rel, cosine=total.cos,
        only_in_base=only_base, only_in_candidate=only_cand, lora_rank=lora_rank, adapter=adapter_doc,
        vocab_added=vocab_added, notes=tuple(notes))


def _lowrank(e: TensorEvidence) -> bool:
    if e.rank is None or e.rank_of is None:
        return False
    return e.rank <= max(1, min(e.rank_of // 4, _MAX_LORA_RANK))


def _decide(ev: list[TensorEvidence], only_base: tuple[str, ...], only_cand: tuple[str, ...],
            adapter: _Adapter | None, arch_b: str | None, arch_c: str | None, n_base: int,
            n_cand: int) -> tuple[Relation, str, list[str], int | None, int]:
    notes: list[str] = []
    mismatch = [e for e in ev if e.kind is TensorKind.MISMATCH]
    arch = ""
    if arch_b and arch_c and arch_b != arch_c:
        arch = f" (config.json: candidate {arch_c}, base {arch_b})"
        notes.append(f"the configs name different architectures{arch}")
    if not ev or len(ev) < 0.5 * max(n_base, n_cand):
        return (Relation.INCOMPATIBLE, f"only {len(ev)} of {max(n_base, n_cand)} tensor names are shared: "
                f"a different architecture or layout{arch}.", notes, None, 0)
    if mismatch:
        shown = ", ".join(f"{e.name} ({e.note})" for e in mismatch[:3])
        return (Relation.INCOMPATIBLE, f"{len(mismatch)} tensors have incompatible shapes{arch}: {shown}.", notes,
                None, 0)
    mats = [e for e in ev if len(e.shape_base) >= 2 and not e.trivial]
    unrelated = [e for e in mats if e.kind is TensorKind.UNRELATED]
    related = [e for e in mats if e.kind is not TensorKind.UNRELATED]
    extended = [e for e in ev if e.kind is TensorKind.EXTENDED]
    changed = [e for e in ev if e.kind in (TensorKind.CHANGED, TensorKind.EXTENDED)]
    vocab_added = max((e.shape_candidate[0] - e.shape_base[0] for e in extended), default=0)
    permuted = [e for e in ev if e.row_match is not None and e.kind is TensorKind.CHANGED]
    if permuted:
        notes.append(f"{len(permuted)} tensors match the base only after reordering rows/columns (permuted "
                     "neurons or heads): related, not unrelated")
    tied = {"lm_head.weight"}
    lost = [n for n in only_base if n not in tied]
    added = [n for n in only_cand if n not in tied]

    if mats and len(unrelated) == len(mats):
        cos = [abs(e.cosine) for e in mats if e.cosine is not None]
        return (Relation.UNRELATED, f"no shared origin: all {len(mats)} weight matrices differ (median |cosine| "
                f"{_median(cos):.3f}) and their rows do not match the base's rows.", notes, None, 0)
    if unrelated:
        layers = sorted({e.layer for e in unrelated}, key=_layer_order)
        notes.append("replaced: " + ", ".join(_layer_label(x) for x in layers))
        return (Relation.PARTIAL, f"{len(unrelated)} of {len(mats)} weight matrices have no shared origin "
                f"(replaced: {', '.join(_layer_label(x) for x in layers)}) while {len(related)} descend from "
                "the base.", notes, None, vocab_added)
    if extended:
        rest = [e for e in changed if e.kind is TensorKind.CHANGED]
        extra = f"; {len(rest)} other tensors changed" if rest else "; every other tensor is unchanged"
        notes.append(f"vocabulary extended by {vocab_added} rows")
        return (Relation.PARTIAL, f"vocabulary extended: {vocab_added} new embedding rows, the base rows are "
                f"kept{extra}.", notes, None, vocab_added)
    if lost or added:
        notes.append(f"{len(lost)} base tensors missing, {len(added)} new tensors")
        return (Relation.PARTIAL, f"the candidate lacks {len(lost)} of the base's tensors and adds {len(added)} "
                "of its own (layers removed or added); the shared tensors descend from the base.", notes, None, 0)
    kinds = {e.kind for e in ev}
    if kinds == {TensorKind.IDENTICAL}:
        return (Relation.IDENTICAL, f"every one of the {len(ev)} tensors is equal to the base (same values, "
                "same dtype), whatever the files look like.", notes, None, 0)
    if kinds <= {TensorKind.IDENTICAL, TensorKind.RECAST}:
        dts = sorted({f"{e.dtype_base}->{e.dtype_candidate}" for e in ev if e.kind is TensorKind.RECAST})
        return (Relation.RECAST, f"equal to the base up to a dtype conversion ({', '.join(dts)}).", notes, None, 0)
    if kinds <= {TensorKind.IDENTICAL, TensorKind.RECAST, TensorKind.QUANTIZED}:
        q = [e for e in ev if e.kind is TensorKind.QUANTIZED]
        types = sorted({e.dtype_candidate if _is_quantized(e.dtype_candidate) else (e.note or e.dtype_candidate)
                        for e in q})
        worst = max((e.quant_error or 0) / (e.quant_tol or 1) for e in q)
        return (Relation.QUANTIZED, f"equal to the base up to quantisation error ({', '.join(types)}; the "
                f"largest error is {worst:.0%} of the bound for its block scale).", notes, None, 0)
    changed_mats = [e for e in changed if len(e.shape_base) == 2]
    unchanged_mats = [e for e in mats if e.kind in (TensorKind.IDENTICAL, TensorKind.RECAST)]
    lora_rank = max((e.rank or 0 for e in changed_mats), default=None)
    if (changed and len(changed_mats) == len(changed) and unchanged_mats
            and all(_lowrank(e) for e in changed_mats)):
        mods = sorted({e.name.rsplit(".", 2)[-2] for e in changed_mats})
        if adapter is not None:
            notes.append("PEFT adapter applied to the base on the fly (W + scale * B @ A)")
        return (Relation.LORA, f"only {len(changed_mats)} of {len(mats)} matrices changed ({', '.join(mods)}) and "
                f"each change is low rank (estimated rank <= {lora_rank}, above the rounding noise floor).", notes,
                lora_rank, 0)
    by_layer: dict[str, set[TensorKind]] = {}
    for e in ev:
        by_layer.setdefault(e.layer, set()).add(e.kind)
    frozen = [x for x, k in by_layer.items() if x.isdigit() and k <= {TensorKind.IDENTICAL, TensorKind.RECAST}]
    moved = [x for x, k in by_layer.items() if x.isdigit() and TensorKind.CHANGED in k]
    if frozen and moved:
        notes.append("frozen: " + ", ".join(_layer_label(x) for x in sorted(frozen, key=_layer_order)))
        same = ", ".join(sorted(frozen, key=_layer_order))
        diff = ", ".join(sorted(moved, key=_layer_order))
        return (Relation.PARTIAL, f"decoder layer(s) {same} are identical to the base while layer(s) {diff} "
                "changed (frozen layers).", notes, None, 0)
    rels = [e.rel_change for e in changed if e.rel_change is not None and e.row_match is None]
    cos = [e.cosine for e in changed if e.cosine is not None and e.row_match is None]
    return (Relation.FINETUNE, f"{len(changed)} of {len(ev)} tensors changed densely and stay close to the base "
            f"(median relative change {_median(rels):.3g}, lowest cosine {min(cos, default=1.0):.4f}).", notes,
            None, 0)


def _median(xs: list[float]) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _layer_label(layer: str) -> str:
    return f"layer {layer}" if layer.isdigit() else layer


def _layers(ev: list[TensorEvidence], acc: dict[tuple[str, str], _Acc]) -> tuple[LayerEvidence, ...]:
    groups: dict[str, list[TensorEvidence]] = {}
    for e in ev:
        groups.setdefault(e.layer, []).append(e)
    out = []
    for layer in sorted(groups, key=_layer_order):
        es = groups[layer]
        kinds = {e.kind for e in es}
        nontrivial = {e.kind for e in es if not e.trivial}
        if kinds == {TensorKind.IDENTICAL}:
            status = "identical"
        elif kinds <= {TensorKind.IDENTICAL, TensorKind.RECAST}:
            status = "recast"
        elif kinds <= {TensorKind.IDENTICAL, TensorKind.RECAST, TensorKind.QUANTIZED}:
            status = "quantized"
        elif nontrivial and nontrivial <= {TensorKind.UNRELATED}:
            status = "replaced"
        elif TensorKind.MISMATCH in kinds:
            status = "mismatch"
        elif TensorKind.EXTENDED in kinds:
            status = "extended"
        elif TensorKind.UNRELATED in kinds:
            status = "mixed"
        else:
            mats = [e for e in es if e.kind is TensorKind.CHANGED and len(e.shape_base) == 2]
            only_mats = all(len(e.shape_base) == 2 for e in es if e.kind is TensorKind.CHANGED)
            status = "lowrank" if mats and only_mats and all(_lowrank(e) for e in mats) else "changed"
        a = acc.get((layer, "mat")) or acc.get((layer, "vec")) or _Acc()
        changed = sum(e.kind not in (TensorKind.IDENTICAL, TensorKind.RECAST, TensorKind.QUANTIZED) for e in es)
        out.append(LayerEvidence(layer=layer, tensors=len(es), status=status, rel_change=a.rel, cosine=a.cos,
                                 changed=changed))
    return tuple(out)


def _adapter_check(candidate: ModelRef, adapter: _Adapter | None, ev: list[TensorEvidence],
                   lora_rank: int | None) -> dict[str, Any] | None:
    cfg = adapter.config if adapter is not None else None
    if cfg is None:
        try:
            cfg = _adapter_config(candidate)
        except ModelError:
            cfg = None
    if cfg is None:
        return None
    r = cfg.get("r")
    targets = cfg.get("target_modules")
    targets = [targets] if isinstance(targets, str) else list(targets or [])
    changed = sorted({e.name.rsplit(".", 2)[-2] for e in ev if e.kind is TensorKind.CHANGED
                      and len(e.shape_base) == 2})
    rank_ok = None if lora_rank is None or not isinstance(r, int) else lora_rank <= r
    targets_ok = None if not targets or not changed else set(changed) <= set(targets)
    return {"applied_on_the_fly": adapter is not None, "r": r, "lora_alpha": cfg.get("lora_alpha"),
            "target_modules": targets, "changed_modules": changed, "estimated_rank": lora_rank,
            "rank_consistent": rank_ok, "targets_consistent": targets_ok}


_CLAIM_FITS = {
    "finetune": {Relation.FINETUNE, Relation.LORA, Relation.PARTIAL},
    "adapter": {Relation.LORA},
    "quantized": {Relation.QUANTIZED, Relation.RECAST},
    "merge": {Relation.FINETUNE, Relation.PARTIAL, Relation.LORA},
}


def _claim(candidate: ModelRef, base: ModelRef, relation: Relation, *, allow_pickle: bool = False,
           check_named: bool = True) -> dict[str, Any]:
    """What the card claims about the candidate's origin, and which claims the weights show to be false.

    A card makes up to two claims: the base (``base_model``) and the relation (``base_model_relation``). Each
    false one is listed once in ``false_claims`` (``{"claim": "base_model" | "base_model_relation", "message"}``):

    - the base claim is false when the weights do not descend from the model it names;
    - the relation claim is false when the weights are related to that base in another way (identical but
      labelled a fine-tune, a quantized copy labelled a fine-tune, ...).

    When the card names another model than the base compared against, nothing was claimed about that base: the
    ``notes`` say "the card names X, you compared against Y". The claim is then checked against X itself when X
    is available locally (``check_named``), and is false only if the weights rule X out too.
    ``consistent`` is False when any claim is false, True when every claim holds, None when nothing was checked.
    """
    card = card_metadata(candidate) or {}
    claimed = card.get("base_model")
    claimed_list = [claimed] if isinstance(claimed, str) else [str(c) for c in claimed] if isinstance(
        claimed, list) else []
    claimed_rel = card.get("base_model_relation")
    if isinstance(claimed_rel, list):
        claimed_rel = claimed_rel[0] if claimed_rel else None
    out: dict[str, Any] = {"base_model": claimed_list[0] if len(claimed_list) == 1 else (claimed_list or None),
                           "base_model_relation": claimed_rel, "consistent": None, "reason": None,
                           "base_is_claimed": None, "false_claims": [], "notes": []}
    if not claimed_list and not claimed_rel:
        out["reason"] = "the card makes no base_model claim"
        return out
    if claimed_list and not _names_base(claimed_list, base):
        out["base_is_claimed"] = False
        named = claimed_list[0]
        note = f"the card names {named} as its base, you compared against {base.name}"
        other = _local_model(named) if check_named else None
        if other is None or other.root.resolve() == base.root.resolve():
            out["notes"].append(note + f"; the card's claim was not checked ({named} is not available locally)")
            out["reason"] = out["notes"][-1]
            return out
        try:
            rel_named = compare_lineage(candidate, other, allow_pickle=allow_pickle, check_card=False).relation
        except ModelError as exc:
            out["notes"].append(note + f"; the card's claim was not checked ({named}: {exc.message})")
            out["reason"] = out["notes"][-1]
            return out
        out["notes"].append(note + f"; against its local copy the weights are {rel_named.value}")
        out["false_claims"] = _false_claims(named, claimed_rel, rel_named)
    else:
        out["base_is_claimed"] = True if claimed_list else None
        out["false_claims"] = _false_claims(claimed_list[0] if claimed_list else base.name, claimed_rel, relation,
                                            base_named=bool(claimed_list))
    out["consistent"] = not out["false_claims"]
    if out["false_claims"]:
        out["reason"] = "; ".join(f["message"] for f in out["false_claims"])
    return out


def _names_base(claimed: list[str], base: ModelRef) -> bool:
    names = {base.hf_id, base.root.name if not base.single_file else None, base.name}
    names.discard(None)
    return any(c in names or any(c.endswith("/" + str(n)) for n in names) for c in claimed)


def _local_model(name: str) -> ModelRef | None:
    """The model a card names, if it is here (a folder or the local Hugging Face cache); never downloads."""
    from assay.model.ref import resolve

    try:
        return resolve(name)
    except ModelError:
        return None


def _false_claims(named: str, claimed_rel: Any, relation: Relation, *, base_named: bool = True
                  ) -> list[dict[str, str]]:
    """One entry per false claim of a card naming ``named`` with ``claimed_rel``, given the measured relation."""
    if relation in (Relation.UNRELATED, Relation.INCOMPATIBLE):
        if base_named:
            return [{"claim": "base_model", "message": f"the card names {named} as its base, but the weights do "
                                                       f"not descend from it (relation: {relation.value})"}]
        return [{"claim": "base_model_relation",
                 "message": f"the card calls it a {claimed_rel} of its base, but the weights are {relation.value} "
                            f"to {named}"}]
    if relation is Relation.IDENTICAL and claimed_rel in ("finetune", "adapter", "merge", "quantized"):
        return [{"claim": "base_model_relation",
                 "message": f"the card calls it a {claimed_rel} of {named}, but the weights are identical to "
                            f"{named} (a re-upload)"}]
    fits = _CLAIM_FITS.get(str(claimed_rel)) if claimed_rel else None
    if fits is not None and relation not in fits and relation is not Relation.IDENTICAL:
        return [{"claim": "base_model_relation",
                 "message": f"the card calls it a {claimed_rel} of {named}, but the weights show {relation.value}"}]
    return []


def lineage_document(r: LineageReport) -> dict[str, Any]:
    """The ``assay.lineage/1`` JSON document."""
    from dataclasses import asdict

    def clean(d: dict[str, Any]) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, enum.Enum) else list(v) if isinstance(v, tuple) else v)
                for k, v in d.items()}

    return {
        "schema": SCHEMA,
        "candidate": r.candidate,
        "base": r.base,
        "relation": r.relation.value,
        "summary": r.summary,
        "claim": r.claim,
        "compared": r.compared,
        "identical": r.identical,
        "changed": r.changed,
        "unrelated": r.unrelated,
        "rel_change": r.rel_change,
        "cosine": r.cosine,
        "lora_rank": r.lora_rank,
        "adapter": r.adapter,
        "vocab_added": r.vocab_added,
        "only_in_base": list(r.only_in_base),
        "only_in_candidate": list(r.only_in_candidate),
        "notes": list(r.notes),
        "layers": [clean(asdict(x)) for x in r.layers],
        "tensors": [clean(asdict(x)) for x in r.tensors],
    }

