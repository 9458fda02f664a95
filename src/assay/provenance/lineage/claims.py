"""Does the candidate's model card tell the truth about its origin? Checked against the relation the weights show.

A card makes up to two claims, the base (``base_model``) and the relation (``base_model_relation``), which
:func:`card_claim` checks, listing each false one once; an adapter's ``adapter_config.json`` states its rank and
target modules, which :func:`adapter_check` compares with the matrices that changed.

    >>> card_claim(candidate, base, Relation.IDENTICAL)["false_claims"]  # the card says "finetune"
    [{'claim': 'base_model_relation', 'message': 'the card calls it a finetune of base, but the weights are identical
    to base (a re-upload)'}]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from assay.errors import ModelError
from assay.model.ref import ModelRef, resolve
from assay.provenance.lineage.pairing import Adapter, adapter_config
from assay.provenance.lineage.report import Relation, TensorEvidence, TensorKind
from assay.provenance.manifest import card_metadata

#: The relations the weights may show for each ``base_model_relation`` a card can claim.
CLAIM_FITS = {
    "finetune": {Relation.FINETUNE, Relation.LORA, Relation.PARTIAL},
    "adapter": {Relation.LORA},
    "quantized": {Relation.QUANTIZED, Relation.RECAST},
    "merge": {Relation.FINETUNE, Relation.PARTIAL, Relation.LORA},
}


def card_claim(candidate: ModelRef, base: ModelRef, relation: Relation, *,
               compare_named: Callable[[ModelRef], Relation] | None = None) -> dict[str, Any]:
    """What the card claims about the candidate's origin, and which claims the weights show to be false.

    A card makes up to two claims: the base (``base_model``) and the relation (``base_model_relation``). Each
    false one is listed once in ``false_claims`` (``{"claim": "base_model" | "base_model_relation", "message"}``):

    - the base claim is false when the weights do not descend from the model it names;
    - the relation claim is false when the weights are related to that base in another way (identical but
      labelled a fine-tune, a quantized copy labelled a fine-tune, ...).

    When the card names another model than the base compared against, nothing was claimed about that base: the
    ``notes`` say "the card names X, you compared against Y". The claim is then checked against X itself when X
    is available locally and ``compare_named`` is given (it returns the relation of the candidate to X), and is
    false only if the weights rule X out too.
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
        other = _local_model(named) if compare_named is not None else None
        if compare_named is None or other is None or other.root.resolve() == base.root.resolve():
            out["notes"].append(note + f"; the card's claim was not checked ({named} is not available locally)")
            out["reason"] = out["notes"][-1]
            return out
        try:
            rel_named = compare_named(other)
        except ModelError as exc:
            out["notes"].append(note + f"; the card's claim was not checked ({named}: {exc.message})")
            out["reason"] = out["notes"][-1]
            return out
        out["notes"].append(note + f"; against its local copy the weights are {rel_named.value}")
        out["false_claims"] = false_claims(named, claimed_rel, rel_named)
    else:
        out["base_is_claimed"] = True if claimed_list else None
        out["false_claims"] = false_claims(claimed_list[0] if claimed_list else base.name, claimed_rel, relation,
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
    try:
        return resolve(name)
    except ModelError:
        return None


def false_claims(named: str, claimed_rel: Any, relation: Relation, *, base_named: bool = True
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
    fits = CLAIM_FITS.get(str(claimed_rel)) if claimed_rel else None
    if fits is not None and relation not in fits and relation is not Relation.IDENTICAL:
        return [{"claim": "base_model_relation",
                 "message": f"the card calls it a {claimed_rel} of {named}, but the weights show {relation.value}"}]
    return []


def adapter_check(candidate: ModelRef, adapter: Adapter | None, ev: Sequence[TensorEvidence],
                  lora_rank: int | None) -> dict[str, Any] | None:
    """The ``adapter_config.json`` facts (rank, target modules) and whether the changed weights agree with them.

    None when the candidate has no adapter config. ``rank_consistent``/``targets_consistent`` are None when there is
    nothing to compare (no rank estimated, no target modules or no changed matrix).
    """
    cfg = adapter.config if adapter is not None else None
    if cfg is None:
        try:
            cfg = adapter_config(candidate)
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
