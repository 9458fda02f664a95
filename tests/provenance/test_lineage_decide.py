"""The lineage decision table on hand-built evidence: each relation is reached by the evidence that should reach it.

No model is built: every case is a list of :class:`TensorEvidence` for a two-layer model (embedding, q/v/up
projections per layer, norms, output head), as :mod:`assay.provenance.lineage.classify` would report it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from assay.provenance.lineage import Relation, TensorEvidence, TensorKind
from assay.provenance.lineage.decide import RULES, Decision, decide

MATRICES = ["model.embed_tokens.weight",
            *(f"model.layers.{i}.{m}.weight" for i in (0, 1) for m in ("self_attn.q_proj", "self_attn.v_proj",
                                                                       "mlp.up_proj")),
            "lm_head.weight"]
VECTORS = ["model.layers.0.input_layernorm.weight", "model.layers.1.input_layernorm.weight", "model.norm.weight"]


def tensor(name: str, kind: TensorKind = TensorKind.IDENTICAL, **kw: Any) -> TensorEvidence:
    """One tensor's evidence: a 16x16 matrix or a 16-vector, F32 on both sides, unchanged unless ``kw`` says."""
    from assay.provenance.lineage.names import layer_of

    shape = (16,) if name in VECTORS else (16, 16)
    changed = kind in (TensorKind.CHANGED, TensorKind.UNRELATED, TensorKind.EXTENDED)
    fields: dict[str, Any] = dict(
        name=name, layer=layer_of(name), kind=kind, shape_base=shape, shape_candidate=shape, dtype_base="F32",
        dtype_candidate="F32", rel_change=0.05 if changed else 0.0, cosine=0.99 if changed else 1.0,
        max_abs_diff=0.01 if changed else 0.0)
    if kind is TensorKind.UNRELATED:
        fields.update(rel_change=1.4, cosine=0.01, row_match=0.2)
    fields.update(kw)
    return TensorEvidence(**fields)


Change = Callable[[TensorEvidence], TensorEvidence]


def model(changes: dict[str, Change] | None = None, *, matrices: Change | None = None,
          vectors: Change | None = None) -> list[TensorEvidence]:
    """Every tensor identical, except those whose name contains a key of ``changes`` (changed by its value), and
    every matrix or every vector when ``matrices``/``vectors`` is given."""
    out = []
    for name in MATRICES + VECTORS:
        e = tensor(name)
        every = matrices if name in MATRICES else vectors
        if every is not None:
            e = every(e)
        for part, change in (changes or {}).items():
            if part in name:
                e = change(e)
        out.append(e)
    return out


def changed(e: TensorEvidence) -> TensorEvidence:
    return replace(e, kind=TensorKind.CHANGED, rel_change=0.05, cosine=0.99)


def full_rank(e: TensorEvidence) -> TensorEvidence:
    return replace(e, kind=TensorKind.CHANGED, rel_change=0.05, cosine=0.99, rank=16, rank_of=16)


def rank2(e: TensorEvidence) -> TensorEvidence:
    return replace(e, kind=TensorKind.CHANGED, rel_change=0.01, cosine=0.999, rank=2, rank_of=16)


def unrelated(e: TensorEvidence) -> TensorEvidence:
    return replace(e, kind=TensorKind.UNRELATED, rel_change=1.4, cosine=0.01, row_match=0.2)


def run(ev: list[TensorEvidence], **kw: Any) -> Decision:
    n = len(ev)
    args: dict[str, Any] = dict(only_in_base=(), only_in_candidate=(), n_base=n, n_candidate=n)
    args.update(kw)
    return decide(ev, **args)


# One case per row of the table: (evidence, decide() keywords, relation, rule).
CASES: dict[str, tuple[list[TensorEvidence], dict[str, Any], Relation, str]] = {
    "another architecture's names": (model()[:4], {"n_base": 11, "n_candidate": 20}, Relation.INCOMPATIBLE,
                                     "few shared names"),
    "nothing shared": ([], {"n_base": 11, "n_candidate": 9}, Relation.INCOMPATIBLE, "few shared names"),
    "wider MLP": (model({"up_proj": lambda e: replace(e, kind=TensorKind.MISMATCH, shape_candidate=(24, 16),
                                                      note="shape [16, 16] vs [24, 16]")}),
                  {}, Relation.INCOMPATIBLE, "incompatible shapes"),
    "independent model": (model(matrices=unrelated, vectors=changed), {}, Relation.UNRELATED, "no shared origin"),
    "layer 1 swapped in": (model({"layers.1.self_attn": unrelated, "layers.1.mlp": unrelated}), {},
                           Relation.PARTIAL, "replaced"),
    "vocabulary extension": (model({"embed": lambda e: replace(e, kind=TensorKind.EXTENDED,
                                                               shape_candidate=(40, 16), note="24 rows added")}),
                             {}, Relation.PARTIAL, "vocabulary extended"),
    "a layer removed": (model(), {"only_in_base": ("model.layers.2.mlp.up_proj.weight",)}, Relation.PARTIAL,
                        "tensors added or removed"),
    "re-upload": (model(), {}, Relation.IDENTICAL, "identical"),
    "bf16 copy": (model({"weight": lambda e: replace(e, kind=TensorKind.RECAST, dtype_candidate="BF16")}),
                  {}, Relation.RECAST, "recast"),
    "Q8_0 GGUF": (model({"proj": lambda e: replace(e, kind=TensorKind.QUANTIZED, dtype_candidate="Q8_0",
                                                   quant_error=0.003, quant_tol=0.0065)}),
                  {}, Relation.QUANTIZED, "quantized"),
    "merged LoRA on q and v": (model({"q_proj": rank2, "v_proj": rank2}), {}, Relation.LORA, "low-rank change"),
    "only layer 1 trained": (model({"layers.1.self_attn": full_rank, "layers.1.mlp": full_rank,
                                    "layers.1.input": changed}),
                             {}, Relation.PARTIAL, "frozen layers"),
    "full fine-tune": (model(matrices=full_rank, vectors=changed), {}, Relation.FINETUNE, "dense change"),
}


@pytest.mark.parametrize("case", CASES)
def test_each_case_reaches_its_rule(case: str) -> None:
    ev, kw, relation, rule = CASES[case]
    d = run(ev, **kw)
    assert (d.relation, d.rule) == (relation, rule), d.summary
    assert d.summary.endswith(".")


def test_every_rule_and_every_relation_is_reached() -> None:
    assert {c[3] for c in CASES.values()} == {r.name for r in RULES}
    assert {c[2] for c in CASES.values()} == set(Relation)
    assert RULES[-1].holds is not None and RULES[-1].relation is Relation.FINETUNE


def test_summaries_carry_the_evidence() -> None:
    d = run(CASES["another architecture's names"][0], n_base=11, n_candidate=20)
    assert d.summary.startswith("only 4 of 20 tensor names are shared")
    d = run(*CASES["wider MLP"][:1])
    assert "2 tensors have incompatible shapes" in d.summary and "shape [16, 16] vs [24, 16]" in d.summary
    d = run(CASES["layer 1 swapped in"][0])
    assert d.summary.startswith("3 of 8 weight matrices have no shared origin (replaced: layer 1) while 5 descend")
    assert d.notes == ("replaced: layer 1",)
    d = run(CASES["vocabulary extension"][0])
    assert (d.vocab_added, d.notes) == (24, ("vocabulary extended by 24 rows",))
    assert "every other tensor is unchanged" in d.summary
    d = run(CASES["merged LoRA on q and v"][0])
    assert d.lora_rank == 2
    assert d.summary.startswith("only 4 of 8 matrices changed (q_proj, v_proj) and each change is low rank")
    d = run(CASES["only layer 1 trained"][0])
    assert "decoder layer(s) 0 are identical to the base while layer(s) 1 changed" in d.summary
    assert d.notes == ("frozen: layer 0",)
    d = run(CASES["Q8_0 GGUF"][0])
    assert "(Q8_0; the largest error is 46% of the bound" in d.summary
    d = run(CASES["bf16 copy"][0])
    assert "(F32->BF16)" in d.summary
    # Only the LoRA rule reports a rank, only the vocabulary rules the added rows.
    assert run(CASES["full fine-tune"][0]).lora_rank is None


def test_order_of_the_rules_decides() -> None:
    # An unrelated layer outranks an extended vocabulary: still partial, but for the replaced layer,
    # and the added rows are reported too.
    ev = model({"layers.1.mlp": unrelated,
                "embed": lambda e: replace(e, kind=TensorKind.EXTENDED, shape_candidate=(20, 16))})
    d = run(ev)
    assert (d.relation, d.rule, d.vocab_added) == (Relation.PARTIAL, "replaced", 4)
    # Missing names make a model incompatible before a mismatched shape is looked at.
    d = run(CASES["wider MLP"][0][:4], n_base=11, n_candidate=11)
    assert any(e.kind is TensorKind.MISMATCH for e in CASES["wider MLP"][0][:4])
    assert d.rule == "few shared names"
    # A tied output head the candidate lacks is not a removed layer.
    d = run([e for e in model() if e.name != "lm_head.weight"], only_in_base=("lm_head.weight",))
    assert d.relation is Relation.IDENTICAL


def test_low_rank_needs_every_change_to_be_a_low_rank_matrix() -> None:
    assert run(model({"q_proj": rank2, "v_proj": full_rank})).relation is Relation.FINETUNE
    # a changed norm vector besides the low-rank matrices: not what an adapter does
    assert run(model({"q_proj": rank2, "v_proj": rank2}, vectors=changed)).relation is Relation.FINETUNE
    # every matrix changed, each low rank: an adapter leaves some matrices untouched, so not lora
    assert run(model(matrices=rank2)).relation is Relation.FINETUNE
    # no rank estimated (row-matched permutation): not low rank
    assert run(model({"q_proj": lambda e: replace(rank2(e), rank=None)})).relation is Relation.FINETUNE
    # a rank above a quarter of the full rank is not low
    assert run(model({"q_proj": lambda e: replace(rank2(e), rank=5)})).relation is Relation.FINETUNE
    assert run(model({"q_proj": lambda e: replace(rank2(e), rank=4)})).relation is Relation.LORA


def test_notes_on_architecture_permutation_and_adapter() -> None:
    permuted = model({"up_proj": lambda e: replace(full_rank(e), rank=None, rank_of=None, row_match=0.95,
                                                   cosine=0.1)})
    d = run(permuted, arch_base="llama", arch_candidate="mistral")
    assert d.relation is Relation.FINETUNE
    assert d.notes == ("the configs name different architectures (config.json: candidate mistral, base llama)",
                       "2 tensors match the base only after reordering rows/columns (permuted neurons or heads): "
                       "related, not unrelated")
    # the permuted rows are left out of the median change and lowest cosine
    assert "lowest cosine 1.0000" in d.summary
    # when the models cannot be paired, only the architecture is noted
    assert permuted[3].row_match is not None  # a permuted tensor among those paired
    d = run(permuted[:5], n_base=11, n_candidate=11, arch_base="llama", arch_candidate="mistral")
    assert d.relation is Relation.INCOMPATIBLE
    assert d.notes == ("the configs name different architectures (config.json: candidate mistral, base llama)",)
    assert d.summary.endswith("a different architecture or layout (config.json: candidate mistral, base llama).")
    d = run(CASES["merged LoRA on q and v"][0], adapter_applied=True)
    assert d.notes == ("PEFT adapter applied to the base on the fly (W + scale * B @ A)",)


def test_constant_tensors_are_no_evidence_of_origin() -> None:
    # Constant (freshly initialised) matrices say nothing about origin: they are left out of the count.
    ev = model(matrices=unrelated)
    ev = [replace(e, trivial=True) if "layers.1" in e.name else e for e in ev]
    d = run(ev)
    assert d.relation is Relation.UNRELATED and "all 5 weight matrices differ" in d.summary
