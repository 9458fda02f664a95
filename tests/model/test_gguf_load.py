"""assay's GGUF loader gives the model transformers' GGUF path gives: same config, tokenizer and logits."""

from __future__ import annotations

from pathlib import Path

import pytest

from assay.errors import FormatError


@pytest.mark.parametrize("variant", ["gguf_f32", "gguf_f16", "gguf_q8_0"])
def test_logits_equal_transformers_gguf_path(zoo, variant: str) -> None:  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assay.model.gguf_load import load_gguf_model

    path = Path(getattr(zoo, variant))
    model, tok = load_gguf_model(path, dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
    ref_tok = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    text = "hello world, the model says"
    ids = tok(text, return_tensors="pt").input_ids
    assert torch.equal(ids, ref_tok(text, return_tensors="pt").input_ids)
    assert tok.chat_template == ref_tok.chat_template
    with torch.no_grad():
        ours, theirs = model(ids).logits, ref(ids).logits
    # the same dequantisation and the same float32 forward: equal up to float rounding
    assert float((ours - theirs).abs().max()) <= 1e-5


def test_truncated_gguf_is_refused_before_anything_is_built(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import torch

    from assay.model.gguf_load import load_gguf_model

    path = Path(zoo.gguf_f32)
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size - 100])
    with pytest.raises(FormatError, match="cut.gguf is truncated"):
        load_gguf_model(cut, dtype=torch.float32)
