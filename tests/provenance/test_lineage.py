"""`assay lineage`: every hub-like variant of the tiny model gets its right relation, with evidence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assay.cli.main import main
from assay.model.ref import resolve
from assay.provenance.lineage import Relation, compare_lineage, lineage_document


def lineage(capsys: pytest.CaptureFixture[str], cand: Path, base: Path, *extra: str) -> tuple[int, dict]:
    rc = main(["lineage", str(cand), "--base", str(base), "--json", *extra])
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert doc["schema"] == "assay.lineage/1"
    return rc, doc


def test_resharded_copy_is_identical(variants, capsys):
    rc, doc = lineage(capsys, variants.sharded, variants.base)
    assert doc["relation"] == "identical"
    assert rc == 0
    assert all(t["kind"] == "identical" for t in doc["tensors"])
    assert doc["rel_change"] == 0.0


def test_resaved_torch_archive_is_identical_after_scan(variants, capsys):
    rc, doc = lineage(capsys, variants.bin_dir, variants.base, "--allow-pickle")
    assert (rc, doc["relation"]) == (0, "identical")


def test_torch_archive_needs_explicit_permission(variants, capsys):
    rc = main(["lineage", str(variants.bin_dir), "--base", str(variants.base)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "--allow-pickle" in err and "Traceback" not in err


def test_bf16_copy_is_a_recast(variants, capsys):
    rc, doc = lineage(capsys, variants.bf16, variants.base)
    assert doc["relation"] == "recast"
    kinds = {t["kind"] for t in doc["tensors"]}
    assert kinds == {"recast"}
    assert {t["dtype_candidate"] for t in doc["tensors"]} == {"BF16"}
    # The card says "quantized": a dtype conversion fits that claim.
    assert doc["claim"]["consistent"] is True
    assert rc == 0


def test_gguf_q8_0_is_quantized(variants, capsys):
    rc, doc = lineage(capsys, variants.gguf_q8, variants.base)
    assert doc["relation"] == "quantized"
    q = [t for t in doc["tensors"] if t["kind"] == "quantized"]
    assert q and all(t["dtype_candidate"] == "Q8_0" and t["quant_error"] <= t["quant_tol"] for t in q)
    assert rc == 0


def test_gguf_4bit_is_quantized(variants, capsys):
    rc, doc = lineage(capsys, variants.gguf_q4, variants.base)
    assert doc["relation"] == "quantized"
    assert {t["dtype_candidate"] for t in doc["tensors"] if t["kind"] == "quantized"} == {"Q4_0"}
    # 4-bit error is far larger than 8-bit error, yet still within the Q4_0 bound.
    assert max(t["quant_error"] for t in doc["tensors"] if t["quant_error"] is not None) > 0.01


def test_few_optimizer_steps_are_a_finetune(variants, capsys):
    rc, doc = lineage(capsys, variants.finetune, variants.base)
    assert doc["relation"] == "finetune"
    assert rc == 0 and doc["claim"]["consistent"] is True
    changed = [t for t in doc["tensors"] if t["kind"] == "changed"]
    assert len(changed) >= len(doc["tensors"]) - 2
    assert all(0 < t["rel_change"] < 0.5 and t["cosine"] > 0.9 for t in changed)
    # per-layer evidence is present for every decoder layer and the embeddings
    assert {"embed", "0", "1", "head"} <= {layer["layer"] for layer in doc["layers"]}
    assert all(layer["rel_change"] > 0 for layer in doc["layers"] if layer["layer"] in ("0", "1"))


def test_merged_lora_is_lora_with_its_rank(variants, capsys):
    rc, doc = lineage(capsys, variants.lora_merged, variants.base)
    assert doc["relation"] == "lora"
    assert doc["lora_rank"] == variants.lora_rank
    changed = {t["name"].split(".")[-2] for t in doc["tensors"] if t["kind"] == "changed"}
    assert changed == {"q_proj", "v_proj"}


def test_bf16_rounding_does_not_hide_a_lora(variants, capsys):
    rc, doc = lineage(capsys, variants.bf16_lora, variants.bf16)
    assert doc["relation"] == "lora", doc["summary"]
    assert doc["lora_rank"] <= 2
    # without the noise floor the rounding makes every changed matrix look (nearly) full rank
    import numpy as np

    from assay.model.inventory import tensor_index

    a = tensor_index(resolve(str(variants.bf16)))["model.layers.0.self_attn.q_proj.weight"].load()
    b = tensor_index(resolve(str(variants.bf16_lora)))["model.layers.0.self_attn.q_proj.weight"].load()
    sv = np.linalg.svd((b - a).astype(np.float64), compute_uv=False)
    assert np.count_nonzero(sv > 1e-4 * sv[0]) > 8


def test_peft_adapter_is_applied_on_the_fly(variants, capsys):
    rc, doc = lineage(capsys, variants.adapter, variants.base)
    assert doc["relation"] == "lora"
    cfg = json.loads((variants.adapter / "adapter_config.json").read_text())
    assert doc["adapter"]["applied_on_the_fly"] is True
    assert doc["adapter"]["r"] == cfg["r"]
    assert doc["adapter"]["rank_consistent"] is True
    assert doc["adapter"]["targets_consistent"] is True


def test_swapped_layer_is_partial(variants, capsys):
    rc, doc = lineage(capsys, variants.replaced, variants.base)
    assert doc["relation"] == "partial"
    status = {layer["layer"]: layer["status"] for layer in doc["layers"]}
    assert status["1"] == "replaced"
    assert status["0"] == "identical"
    assert any("layer 1" in n for n in doc["notes"])


def test_extended_vocabulary_is_partial(variants, capsys):
    rc, doc = lineage(capsys, variants.extended, variants.base)
    assert doc["relation"] == "partial"
    assert doc["vocab_added"] == 24
    ext = {t["name"] for t in doc["tensors"] if t["kind"] == "extended"}
    assert ext == {"model.embed_tokens.weight", "lm_head.weight"}


def test_independent_model_is_unrelated_and_contradicts_card(variants, capsys):
    rc, doc = lineage(capsys, variants.independent, variants.base)
    assert doc["relation"] == "unrelated"
    assert doc["claim"]["base_model"] == "base"
    assert doc["claim"]["consistent"] is False
    assert rc == 1
    mats = [t for t in doc["tensors"] if len(t["shape_base"]) == 2]
    assert all(abs(t["cosine"]) < 0.2 for t in mats)


def test_permuted_neurons_are_not_unrelated(variants, capsys):
    rc, doc = lineage(capsys, variants.permuted, variants.base)
    assert doc["relation"] == "finetune", doc["summary"]
    mlp = [t for t in doc["tensors"] if ".mlp." in t["name"]]
    assert all(t["row_match"] is not None and t["row_match"] > 0.8 for t in mlp)
    assert all(abs(t["cosine"]) < 0.5 for t in mlp)  # the flattened cosine alone would say "unrelated"


def test_frozen_layers_are_partial(variants, capsys):
    rc, doc = lineage(capsys, variants.frozen, variants.base)
    assert doc["relation"] == "partial"
    status = {layer["layer"]: layer["status"] for layer in doc["layers"]}
    assert status["0"] == "identical" and status["1"] == "changed"


def test_other_shape_is_incompatible(variants, capsys):
    rc, doc = lineage(capsys, variants.other_shape, variants.base)
    assert doc["relation"] == "incompatible"
    assert rc == 1
    assert any(t["kind"] == "mismatch" for t in doc["tensors"])


def _with_card(src: Path, dst: Path, front_matter: str) -> Path:
    import shutil

    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        dst.mkdir()
        shutil.copy(src, dst / src.name)
    (dst / "README.md").write_text(f"---\n{front_matter}\n---\nA model.\n", encoding="utf-8")
    return dst


def test_identical_reupload_claiming_finetune_has_only_its_relation_claim_false(zoo, variants, tmp_path, capsys):
    # Same weights as the base; the card names the base (true) and calls it a fine-tune (false).
    cand = _with_card(zoo.safetensors_dir, tmp_path / "reupload", "base_model: base\nbase_model_relation: finetune")
    rc, doc = lineage(capsys, cand, variants.base)
    assert doc["relation"] == "identical"
    claim = doc["claim"]
    assert claim["consistent"] is False and claim["base_is_claimed"] is True
    assert [f["claim"] for f in claim["false_claims"]] == ["base_model_relation"]
    assert "finetune" in claim["false_claims"][0]["message"] and "re-upload" in claim["false_claims"][0]["message"]
    assert rc == 1


def test_a_card_naming_another_base_is_not_a_contradiction(zoo, variants, tmp_path, capsys):
    # The factory card names assay-tests/tiny-llama-base, which is not here; compared against ./base instead.
    rc, doc = lineage(capsys, zoo.safetensors_dir, variants.base)
    assert doc["relation"] == "identical"
    claim = doc["claim"]
    assert claim["consistent"] is None and claim["false_claims"] == [] and claim["base_is_claimed"] is False
    assert "you compared against base" in claim["notes"][0] and "not available locally" in claim["notes"][0]
    assert rc == 0


def test_gguf_whose_card_names_another_base_is_not_contradicted(variants, tmp_path, capsys):
    cand = _with_card(variants.gguf_q8, tmp_path / "gguf", "base_model: org/some-other-base\n"
                                                           "base_model_relation: quantized")
    rc, doc = lineage(capsys, cand, variants.base)
    assert doc["relation"] == "quantized"
    assert doc["claim"]["consistent"] is None and doc["claim"]["false_claims"] == []
    assert "org/some-other-base" in doc["claim"]["notes"][0]
    assert "contradict" not in json.dumps(doc["claim"]) and rc == 0
    rc = main(["lineage", str(cand), "--base", str(variants.base)])
    out = capsys.readouterr().out
    assert rc == 0 and "contradicted" not in out and "not checked" in out


def test_a_named_base_available_locally_is_checked(variants, tmp_path, capsys):
    # The card names a model that is here; the weights do not descend from it: that base claim is false.
    cand = _with_card(variants.finetune, tmp_path / "ft", f"base_model: {variants.independent}\n"
                                                            "base_model_relation: finetune")
    rc, doc = lineage(capsys, cand, variants.base)
    assert doc["relation"] == "finetune"
    claim = doc["claim"]
    assert [f["claim"] for f in claim["false_claims"]] == ["base_model"]
    assert "do not descend" in claim["false_claims"][0]["message"] and claim["consistent"] is False
    # ...and when the named model is the real base, the claim holds
    cand = _with_card(variants.finetune, tmp_path / "ft2", f"base_model: {variants.base}\n"
                                                             "base_model_relation: finetune")
    rc, doc = lineage(capsys, cand, variants.sharded)
    assert doc["claim"]["consistent"] is True and doc["claim"]["false_claims"] == []


def test_gguf_base_against_safetensors_candidate(variants, zoo, capsys):
    # names map from GGUF to Hugging Face and the Q/K permutation is undone: works in both directions
    rc, doc = lineage(capsys, variants.finetune, zoo.gguf_f32)
    assert doc["relation"] == "finetune"


def test_human_output_and_api(variants, capsys):
    rc = main(["lineage", str(variants.lora_merged), "--base", str(variants.base), "--tensors"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "LORA" in out and "per layer" in out and "q_proj" in out
    report = compare_lineage(resolve(str(variants.finetune)), resolve(str(variants.base)))
    assert report.relation is Relation.FINETUNE
    assert lineage_document(report)["relation"] == "finetune"


def test_missing_base_is_bad_input(variants, tmp_path, capsys):
    rc = main(["lineage", str(variants.base), "--base", str(tmp_path / "nope")])
    assert rc == 2
    assert "no such model" in capsys.readouterr().err


def test_truncated_candidate_is_bad_input_not_a_traceback(variants, tmp_path, capsys):
    import shutil

    bad = tmp_path / "truncated"
    shutil.copytree(variants.base, bad)
    data = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(data[: len(data) // 2])
    rc = main(["lineage", str(bad), "--base", str(variants.base)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "truncated" in err and "Traceback" not in err


def test_booby_trapped_pickle_is_scanned_and_never_loaded(variants, tmp_path, capsys):
    import shutil

    bad = tmp_path / "trapped"
    shutil.copytree(variants.bin_dir, bad)
    marker = tmp_path / "pwned"
    # A protocol-0 pickle whose loading would call os.system: the scan must refuse it before any load.
    (bad / "pytorch_model.bin").write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    rc = main(["lineage", str(bad), "--base", str(variants.base), "--allow-pickle"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "refusing to load" in err
    assert not marker.exists()


def test_layers_with_only_mismatched_shapes_show_no_change_figure(variants, tmp_path, capsys):
    from tests.factory.models import build_model, save_safetensors_folder, tiny_tokenizer

    wider = save_safetensors_folder(build_model(seed=3, hidden_size=48, intermediate_size=80), tiny_tokenizer(),
                                    tmp_path / "wider")
    rc, doc = lineage(capsys, wider, variants.base)
    assert rc == 1 and doc["relation"] == "incompatible"
    # Nothing was compared in these layers: "0" would read as "unchanged"; there is no figure to give.
    mismatched = [layer for layer in doc["layers"] if layer["status"] == "mismatch"]
    assert mismatched and all(layer["rel_change"] is None and layer["cosine"] is None for layer in mismatched)
    assert doc["rel_change"] is None
