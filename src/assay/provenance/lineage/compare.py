"""Weight lineage, end to end: read both models, compare every tensor pair, decide the relation, check the card.

This is the orchestration; each step lives in its own module (:mod:`.pairing` reads, :mod:`.classify` and
:mod:`.stats` compare, :mod:`.decide` names the relation, :mod:`.claims` checks the card).

    >>> r = compare_lineage(resolve("./my-finetune"), resolve("./base"))
    >>> r.relation, r.claim["consistent"]
    (<Relation.FINETUNE: 'finetune'>, True)
"""

from __future__ import annotations

from assay.errors import ModelError
from assay.model.ref import ModelRef
from assay.progress import NULL_PROGRESS, Progress
from assay.provenance.lineage.claims import adapter_check, card_claim
from assay.provenance.lineage.classify import classify_pair
from assay.provenance.lineage.decide import decide, layer_evidence
from assay.provenance.lineage.names import layer_of, layer_order
from assay.provenance.lineage.pairing import all_byte_identical, architecture, iter_loaded, tensor_indexes
from assay.provenance.lineage.report import LineageReport, Relation, TensorEvidence, TensorKind
from assay.provenance.lineage.stats import Acc


def compare_lineage(candidate: ModelRef, base: ModelRef, *, allow_pickle: bool = False,
                    progress: Progress = NULL_PROGRESS, check_card: bool = True) -> LineageReport:
    """Compare the candidate's weights with the base's, tensor by tensor, and name the relation.

    The card's base claims are checked too (:func:`.claims.card_claim`); ``check_card=False`` skips checking a
    base the card names that is not ``base`` (used for that check itself).

    Raises :class:`ModelError` when either side has no readable tensors (exit 2).
    """
    base_idx, cand_idx, adapter = tensor_indexes(candidate, base, allow_pickle=allow_pickle)
    cand_names = set(base_idx) if adapter is not None else set(cand_idx)
    common = [n for n in base_idx if n in cand_names]
    common.sort(key=lambda n: (layer_order(layer_of(n)), n))
    only_base = tuple(sorted(set(base_idx) - cand_names))
    only_cand = tuple(sorted(cand_names - set(base_idx)))
    arch_b, arch_c = architecture(base), architecture(candidate)

    evidence: list[TensorEvidence] = []
    layer_acc: dict[tuple[str, str], Acc] = {}
    total_acc: dict[str, Acc] = {}
    if adapter is None and not only_base and not only_cand and common:
        same = all_byte_identical(common, base_idx, cand_idx, progress)
        if same is not None:
            evidence, layer_acc, total_acc = same
            common = []  # settled by bytes: nothing to load
    progress.start("comparing tensors", total=float(len(common)))
    try:
        for name, tb, tc, a, b in iter_loaded(common, base_idx, cand_idx, adapter):
            one = Acc()
            evidence.append(classify_pair(name, tb, tc, a, b, one))
            # Aggregates are over weight matrices: a norm vector of ones would otherwise outweigh them.
            kind = "mat" if len(tb.shape) >= 2 else "vec"
            layer_acc.setdefault((layer_of(name), kind), Acc()).merge(one)
            total_acc.setdefault(kind, Acc()).merge(one)
            progress.advance("comparing tensors")
    except (OSError, ValueError, MemoryError) as exc:
        raise ModelError(f"cannot read tensors for lineage: {exc}") from exc
    finally:
        progress.finish("comparing tensors")

    decision = decide(evidence, only_in_base=only_base, only_in_candidate=only_cand, n_base=len(base_idx),
                      n_candidate=len(cand_names), adapter_applied=adapter is not None, arch_base=arch_b,
                      arch_candidate=arch_c)
    relation, summary, lora_rank = decision.relation, decision.summary, decision.lora_rank
    adapter_doc = adapter_check(candidate, adapter, evidence, lora_rank)
    layers = layer_evidence(evidence, layer_acc)

    def against(named: ModelRef) -> Relation:
        return compare_lineage(candidate, named, allow_pickle=allow_pickle, check_card=False).relation

    claim = card_claim(candidate, base, relation, compare_named=against if check_card else None)
    if claim["consistent"] is False and claim.get("reason"):
        summary += f" The card's claim does not hold: {claim['reason']}."
    elif claim.get("notes"):
        summary += f" {claim['notes'][0][0].upper()}{claim['notes'][0][1:]}."
    kinds = [e.kind for e in evidence]
    total = total_acc.get("mat") or total_acc.get("vec") or Acc()
    return LineageReport(
        relation=relation, claim=claim, layers=layers, tensors=tuple(evidence), candidate=candidate.spec,
        base=base.spec, summary=summary, compared=len(evidence),
        identical=sum(k is TensorKind.IDENTICAL for k in kinds),
        changed=sum(k in (TensorKind.CHANGED, TensorKind.EXTENDED) for k in kinds),
        unrelated=sum(k is TensorKind.UNRELATED for k in kinds), rel_change=total.rel, cosine=total.cos,
        only_in_base=only_base, only_in_candidate=only_cand, lora_rank=lora_rank, adapter=adapter_doc,
        vocab_added=decision.vocab_added, notes=decision.notes)
