"""What lineage reports: the relation, the evidence per tensor and per layer, and the ``assay.lineage/1`` JSON.

These are the plain results the other modules of :mod:`assay.provenance.lineage` produce and read; nothing here
computes anything. :class:`TensorEvidence` is what :mod:`.classify` says about one tensor pair, :class:`LayerEvidence`
its per-layer sum, and :class:`LineageReport` what :func:`~assay.provenance.lineage.compare_lineage` returns:

    >>> lineage_document(report)["relation"]
    'finetune'
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

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

