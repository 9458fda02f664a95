"""From per-tensor evidence to one relation: an ordered table of rules, the first that holds decides.

The evidence of every tensor pair is first summed up into :class:`Facts` (which matrices changed, which have no
shared origin, which layers are untouched...). :data:`RULES` is then read from the top: each rule names the
relation it gives, the condition in words, the test on the facts, and how it explains itself. The order carries the
meaning: a model whose tensors cannot be paired is ``incompatible`` before anything else is asked of it, a replaced
layer makes a model ``partial`` even if every other tensor is identical, and ``finetune`` is what remains.

    >>> d = decide(evidence, only_in_base=(), only_in_candidate=(), n_base=12, n_candidate=12)
    >>> d.relation, d.rule
    (<Relation.LORA: 'lora'>, 'low-rank change')

:func:`layer_evidence` gives each layer a status from its own tensors' kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from assay.provenance.lineage.names import is_quantized, layer_label, layer_order
from assay.provenance.lineage.report import LayerEvidence, Relation, TensorEvidence, TensorKind
from assay.provenance.lineage.stats import MAX_LORA_RANK, Acc

#: Kinds that leave a tensor's values as the base's (up to storage).
_UNCHANGED = frozenset({TensorKind.IDENTICAL, TensorKind.RECAST})
_UNCHANGED_OR_QUANTIZED = _UNCHANGED | {TensorKind.QUANTIZED}
#: A tensor one side lacks that is no evidence of added or removed layers (tied to the embedding).
_TIED = frozenset({"lm_head.weight"})


def lowrank(e: TensorEvidence) -> bool:
    """The change of this matrix has a rank small enough for a LoRA (at most a quarter of the full rank)."""
    if e.rank is None or e.rank_of is None:
        return False
    return e.rank <= max(1, min(e.rank_of // 4, MAX_LORA_RANK))


def median(xs: list[float]) -> float:
    """The median, NaN for no values."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


@dataclass(frozen=True)
class Facts:
    """What the per-tensor evidence adds up to. Rules read only these."""

    evidence: tuple[TensorEvidence, ...]
    """Every compared pair, in model order."""
    names: int
    """Tensor names in the larger of the two models."""
    arch: str
    """`` (config.json: candidate X, base Y)`` when the configs name different architectures, else empty."""
    adapter_applied: bool
    """The candidate is a PEFT adapter applied to the base on the fly."""
    kinds: frozenset[TensorKind]
    """The kinds that occur."""
    mismatch: tuple[TensorEvidence, ...]
    """Pairs whose shapes cannot be compared."""
    mats: tuple[TensorEvidence, ...]
    """Weight matrices (2-D or more) that are not constant."""
    unrelated: tuple[TensorEvidence, ...]
    """Of ``mats``: no shared origin."""
    extended: tuple[TensorEvidence, ...]
    """Pairs with rows added (vocabulary)."""
    changed: tuple[TensorEvidence, ...]
    """Pairs changed or extended."""
    changed_mats: tuple[TensorEvidence, ...]
    """Of ``changed``: the 2-D ones."""
    unchanged_mats: tuple[TensorEvidence, ...]
    """Of ``mats``: identical or recast."""
    lost: tuple[str, ...]
    """Base tensors the candidate lacks (tied ones aside)."""
    added: tuple[str, ...]
    """Candidate tensors the base lacks (tied ones aside)."""
    frozen: tuple[str, ...]
    """Decoder layers whose every tensor is identical or recast, in model order."""
    moved: tuple[str, ...]
    """Decoder layers with a changed tensor, in model order."""
    vocab_added: int
    """Most rows added to one tensor."""
    lora_rank: int | None
    """Largest estimated rank of the changed matrices."""


def facts(ev: Sequence[TensorEvidence], *, only_in_base: Sequence[str], only_in_candidate: Sequence[str],
          n_base: int, n_candidate: int, adapter_applied: bool = False, arch_base: str | None = None,
          arch_candidate: str | None = None) -> Facts:
    """Sum up the evidence for the rules."""
    mats = tuple(e for e in ev if len(e.shape_base) >= 2 and not e.trivial)
    extended = tuple(e for e in ev if e.kind is TensorKind.EXTENDED)
    changed = tuple(e for e in ev if e.kind in (TensorKind.CHANGED, TensorKind.EXTENDED))
    changed_mats = tuple(e for e in changed if len(e.shape_base) == 2)
    by_layer: dict[str, set[TensorKind]] = {}
    for e in ev:
        by_layer.setdefault(e.layer, set()).add(e.kind)
    in_order = sorted(by_layer, key=layer_order)
    return Facts(
        evidence=tuple(ev), names=max(n_base, n_candidate),
        arch=(f" (config.json: candidate {arch_candidate}, base {arch_base})"
              if arch_base and arch_candidate and arch_base != arch_candidate else ""),
        adapter_applied=adapter_applied, kinds=frozenset(e.kind for e in ev),
        mismatch=tuple(e for e in ev if e.kind is TensorKind.MISMATCH), mats=mats,
        unrelated=tuple(e for e in mats if e.kind is TensorKind.UNRELATED), extended=extended, changed=changed,
        changed_mats=changed_mats, unchanged_mats=tuple(e for e in mats if e.kind in _UNCHANGED),
        lost=tuple(n for n in only_in_base if n not in _TIED),
        added=tuple(n for n in only_in_candidate if n not in _TIED),
        frozen=tuple(x for x in in_order if x.isdigit() and by_layer[x] <= _UNCHANGED),
        moved=tuple(x for x in in_order if x.isdigit() and TensorKind.CHANGED in by_layer[x]),
        vocab_added=max((e.shape_candidate[0] - e.shape_base[0] for e in extended), default=0),
        lora_rank=max((e.rank or 0 for e in changed_mats), default=None))


# ------------------------------------------------------------------------ what each rule says when it decides
# Each returns the summary and the rule's own notes.

def _few_shared(f: Facts) -> tuple[str, list[str]]:
    return (f"only {len(f.evidence)} of {f.names} tensor names are shared: a different architecture or "
            f"layout{f.arch}."), []


def _shapes(f: Facts) -> tuple[str, list[str]]:
    shown = ", ".join(f"{e.name} ({e.note})" for e in f.mismatch[:3])
    return f"{len(f.mismatch)} tensors have incompatible shapes{f.arch}: {shown}.", []


def _no_shared_origin(f: Facts) -> tuple[str, list[str]]:
    cos = [abs(e.cosine) for e in f.mats if e.cosine is not None]
    return (f"no shared origin: all {len(f.mats)} weight matrices differ (median |cosine| {median(cos):.3f}) and "
            "their rows do not match the base's rows."), []


def _replaced(f: Facts) -> tuple[str, list[str]]:
    layers = ", ".join(layer_label(x) for x in sorted({e.layer for e in f.unrelated}, key=layer_order))
    return (f"{len(f.unrelated)} of {len(f.mats)} weight matrices have no shared origin (replaced: {layers}) while "
            f"{len(f.mats) - len(f.unrelated)} descend from the base."), [f"replaced: {layers}"]


def _vocabulary(f: Facts) -> tuple[str, list[str]]:
    rest = [e for e in f.changed if e.kind is TensorKind.CHANGED]
    extra = f"; {len(rest)} other tensors changed" if rest else "; every other tensor is unchanged"
    return (f"vocabulary extended: {f.vocab_added} new embedding rows, the base rows are kept{extra}.",
            [f"vocabulary extended by {f.vocab_added} rows"])


def _layout(f: Facts) -> tuple[str, list[str]]:
    return (f"the candidate lacks {len(f.lost)} of the base's tensors and adds {len(f.added)} of its own (layers "
            "removed or added); the shared tensors descend from the base.",
            [f"{len(f.lost)} base tensors missing, {len(f.added)} new tensors"])


def _identical(f: Facts) -> tuple[str, list[str]]:
    return (f"every one of the {len(f.evidence)} tensors is equal to the base (same values, same dtype), whatever "
            "the files look like."), []


def _recast(f: Facts) -> tuple[str, list[str]]:
    dts = sorted({f"{e.dtype_base}->{e.dtype_candidate}" for e in f.evidence if e.kind is TensorKind.RECAST})
    return f"equal to the base up to a dtype conversion ({', '.join(dts)}).", []


def _quantized(f: Facts) -> tuple[str, list[str]]:
    q = [e for e in f.evidence if e.kind is TensorKind.QUANTIZED]
    types = sorted({e.dtype_candidate if is_quantized(e.dtype_candidate) else (e.note or e.dtype_candidate)
                    for e in q})
    worst = max((e.quant_error or 0) / (e.quant_tol or 1) for e in q)
    return (f"equal to the base up to quantisation error ({', '.join(types)}; the largest error is {worst:.0%} of "
            "the bound for its block scale)."), []


def _low_rank(f: Facts) -> tuple[str, list[str]]:
    mods = sorted({e.name.rsplit(".", 2)[-2] for e in f.changed_mats})
    notes = ["PEFT adapter applied to the base on the fly (W + scale * B @ A)"] if f.adapter_applied else []
    return (f"only {len(f.changed_mats)} of {len(f.mats)} matrices changed ({', '.join(mods)}) and each change is "
            f"low rank (estimated rank <= {f.lora_rank}, above the rounding noise floor)."), notes


def _frozen(f: Facts) -> tuple[str, list[str]]:
    return (f"decoder layer(s) {', '.join(f.frozen)} are identical to the base while layer(s) {', '.join(f.moved)} "
            "changed (frozen layers)."), ["frozen: " + ", ".join(layer_label(x) for x in f.frozen)]


def _dense(f: Facts) -> tuple[str, list[str]]:
    rels = [e.rel_change for e in f.changed if e.rel_change is not None and e.row_match is None]
    cos = [e.cosine for e in f.changed if e.cosine is not None and e.row_match is None]
    return (f"{len(f.changed)} of {len(f.evidence)} tensors changed densely and stay close to the base (median "
            f"relative change {median(rels):.3g}, lowest cosine {min(cos, default=1.0):.4f})."), []


# --------------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Rule:
    """One row of the decision table."""

    name: str
    """Short name (reported as :attr:`Decision.rule`)."""
    relation: Relation
    """The relation it gives."""
    when: str
    """The condition, in words."""
    holds: Callable[[Facts], bool]
    """The condition, on the facts."""
    explain: Callable[[Facts], tuple[str, list[str]]]
    """The summary and the rule's own notes."""
    tensor_notes: bool = True
    """Notes about the compared tensors (permuted rows) apply: not when the models cannot be paired at all."""
    reports_vocab: bool = False
    """The decision reports the rows added to the vocabulary (otherwise 0)."""


RULES: tuple[Rule, ...] = (
    Rule("few shared names", Relation.INCOMPATIBLE, "fewer than half of the tensor names are shared (or none)",
         lambda f: not f.evidence or len(f.evidence) < 0.5 * f.names, _few_shared, tensor_notes=False),
    Rule("incompatible shapes", Relation.INCOMPATIBLE, "a shared tensor's shape differs (other than added rows)",
         lambda f: bool(f.mismatch), _shapes, tensor_notes=False),
    Rule("no shared origin", Relation.UNRELATED, "every weight matrix is unrelated (low cosine, rows do not match)",
         lambda f: bool(f.mats) and len(f.unrelated) == len(f.mats), _no_shared_origin),
    Rule("replaced", Relation.PARTIAL, "some weight matrices are unrelated, the others descend from the base",
         lambda f: bool(f.unrelated), _replaced, reports_vocab=True),
    Rule("vocabulary extended", Relation.PARTIAL, "a matrix gained rows and kept the base's rows",
         lambda f: bool(f.extended), _vocabulary, reports_vocab=True),
    Rule("tensors added or removed", Relation.PARTIAL, "one side has tensors the other lacks (tied lm_head aside)",
         lambda f: bool(f.lost or f.added), _layout),
    Rule("identical", Relation.IDENTICAL, "every tensor has the base's values and dtype",
         lambda f: f.kinds == {TensorKind.IDENTICAL}, _identical),
    Rule("recast", Relation.RECAST, "every tensor is identical or the base's values cast to another dtype",
         lambda f: f.kinds <= _UNCHANGED, _recast),
    Rule("quantized", Relation.QUANTIZED, "every tensor is identical, recast or within its quantisation error bound",
         lambda f: f.kinds <= _UNCHANGED_OR_QUANTIZED, _quantized),
    Rule("low-rank change", Relation.LORA, "only matrices changed, some matrices did not, and every change is low "
         "rank above the rounding noise",
         lambda f: (bool(f.changed) and len(f.changed_mats) == len(f.changed) and bool(f.unchanged_mats)
                    and all(lowrank(e) for e in f.changed_mats)), _low_rank),
    Rule("frozen layers", Relation.PARTIAL, "some decoder layers are unchanged while others changed",
         lambda f: bool(f.frozen) and bool(f.moved), _frozen),
    Rule("dense change", Relation.FINETUNE, "otherwise: tensors changed and stay related to the base",
         lambda f: True, _dense),
)
"""The decision table, read from the top; the last rule always holds."""


@dataclass(frozen=True)
class Decision:
    """The relation and what explains it."""

    relation: Relation
    """The verdict."""
    rule: str
    """The name of the rule that decided."""
    summary: str
    """One or two sentences explaining the relation."""
    notes: tuple[str, ...]
    """Other observations (different architectures, permuted rows, replaced or frozen layers)."""
    lora_rank: int | None
    """Largest estimated rank of the changed matrices, for ``lora``."""
    vocab_added: int
    """Rows added to the embedding/output matrices, when that is part of the relation."""


def decide(ev: Sequence[TensorEvidence], *, only_in_base: Sequence[str], only_in_candidate: Sequence[str],
           n_base: int, n_candidate: int, adapter_applied: bool = False, arch_base: str | None = None,
           arch_candidate: str | None = None) -> Decision:
    """Name the relation of the candidate to the base from the evidence of its tensor pairs (first rule that holds).

    ``n_base``/``n_candidate`` count the tensor names of each model; ``arch_*`` are the configs' ``model_type``.
    """
    f = facts(ev, only_in_base=only_in_base, only_in_candidate=only_in_candidate, n_base=n_base,
              n_candidate=n_candidate, adapter_applied=adapter_applied, arch_base=arch_base,
              arch_candidate=arch_candidate)
    rule = next(r for r in RULES if r.holds(f))
    summary, own = rule.explain(f)
    notes = [f"the configs name different architectures{f.arch}"] if f.arch else []
    permuted = [e for e in f.evidence if e.row_match is not None and e.kind is TensorKind.CHANGED]
    if permuted and rule.tensor_notes:
        notes.append(f"{len(permuted)} tensors match the base only after reordering rows/columns (permuted "
                     "neurons or heads): related, not unrelated")
    return Decision(relation=rule.relation, rule=rule.name, summary=summary, notes=tuple(notes + own),
                    lora_rank=f.lora_rank if rule.relation is Relation.LORA else None,
                    vocab_added=f.vocab_added if rule.reports_vocab else 0)


def layer_evidence(ev: Sequence[TensorEvidence], acc: dict[tuple[str, str], Acc]) -> tuple[LayerEvidence, ...]:
    """Per-layer aggregates: each layer's status from its tensors' kinds, its sums from ``acc``."""
    groups: dict[str, list[TensorEvidence]] = {}
    for e in ev:
        groups.setdefault(e.layer, []).append(e)
    out = []
    for layer in sorted(groups, key=layer_order):
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
            status = "lowrank" if mats and only_mats and all(lowrank(e) for e in mats) else "changed"
        a = acc.get((layer, "mat")) or acc.get((layer, "vec")) or Acc()
        changed = sum(e.kind not in (TensorKind.IDENTICAL, TensorKind.RECAST, TensorKind.QUANTIZED) for e in es)
        out.append(LayerEvidence(layer=layer, tensors=len(es), status=status, rel_change=a.rel, cosine=a.cos,
                                 changed=changed))
    return tuple(out)
