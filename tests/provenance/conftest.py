"""Fixtures for provenance tests: the hub-like variants of the factory's tiny model, built once per session.

Each variant is what a model hub is full of: a re-save, a dtype recast, quantised GGUF copies, a real (if short)
fine-tune, a merged LoRA, a model with a layer swapped in, an extended vocabulary, an independent model, a
fine-tune with permuted MLP neurons, and a model of another shape.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.factory.models import DEFAULT_CARD, Zoo

BASE_CARD = {"license": "apache-2.0", "model_name": "tiny-base"}


@dataclass(frozen=True)
class Variants:
    """Paths of every lineage variant (folders unless noted)."""

    base: Path
    sharded: Path
    bf16: Path
    gguf_q8: Path
    gguf_q4: Path
    finetune: Path
    lora_merged: Path
    lora_rank: int
    bf16_lora: Path
    replaced: Path
    extended: Path
    independent: Path
    permuted: Path
    frozen: Path
    other_shape: Path
    adapter: Path
    bin_dir: Path


def _card(relation: str | None, base_model: str | None = "base") -> dict[str, Any]:
    card: dict[str, Any] = {"license": "apache-2.0"}
    if base_model:
        card["base_model"] = base_model
    if relation:
        card["base_model_relation"] = relation
    return card


def _train(model: Any, *, steps: int = 3, seed: int = 0, only: str | None = None) -> Any:
    """A few real AdamW steps of next-token training on random tokens (``only``: train just these params)."""
    import torch

    model.train()
    params = [p for n, p in model.named_parameters() if only is None or only in n]
    if only is not None:
        for n, p in model.named_parameters():
            p.requires_grad_(only in n)
    opt = torch.optim.AdamW(params, lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=gen)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _merge_lora(model: Any, *, rank: int, scale: float, seed: int, modules: tuple[str, ...]) -> Any:
    """W += B @ A for the named projections, with random rank-``rank`` factors."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, mod in model.named_modules():
            if name.rsplit(".", 1)[-1] in modules:
                w = mod.weight
                a = torch.randn(rank, w.shape[1], generator=gen)
                b = torch.randn(w.shape[0], rank, generator=gen)
                delta = (b @ a) * scale
                w.copy_((w.float() + delta).to(w.dtype))
    return model


def write_gguf_requantized(src: Path, out: Path, qtype: str) -> Path:
    """Copy a F32 GGUF (metadata and tensors) re-quantising its 2-D weights to ``qtype`` with gguf.quants."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(out, arch)
    for key, fld in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        vtype = fld.types[0]
        sub = fld.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, fld.contents(), vtype, sub_type=sub)
    qt = gguf.GGMLQuantizationType[qtype]
    for t in reader.tensors:
        data = np.asarray(t.data, dtype=np.float32)
        if data.ndim >= 2:
            writer.add_tensor(t.name, gguf.quants.quantize(data, qt), raw_dtype=qt)
        else:
            writer.add_tensor(t.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


@pytest.fixture(scope="session")
def variants(zoo: Zoo, tmp_path_factory: pytest.TempPathFactory) -> Variants:
    import torch

    from tests.conftest import single_thread_torch
    from tests.factory.models import build_model, save_safetensors_folder, tiny_tokenizer

    single_thread_torch()
    root = tmp_path_factory.mktemp("lineage")
    tok = tiny_tokenizer()

    def fresh(seed: int = 0, **kw: Any) -> Any:
        return copy.deepcopy(build_model(seed=seed, **kw))  # build_model is cached: never train its object

    def save(model: Any, name: str, card: dict[str, Any] | None, **kw: Any) -> Path:
        return save_safetensors_folder(model, tok, root / name, card=card, **kw)

    base = save(fresh(), "base", BASE_CARD)
    sharded = save(fresh(), "sharded", _card(None), max_shard_size="100KB")
    bf16 = save(fresh().to(torch.bfloat16), "bf16", _card("quantized"))
    finetune = save(_train(fresh()), "finetune", _card("finetune"))
    rank = 3
    lora = save(_merge_lora(fresh(), rank=rank, scale=0.01, seed=1, modules=("q_proj", "v_proj")), "lora-merged",
                _card("finetune"))
    # A LoRA merged into bf16 weights whose update is so small that bf16 rounding swallows much of it.
    bf16_lora = save(_merge_lora(fresh().to(torch.bfloat16), rank=2, scale=0.004, seed=2,
                                 modules=("q_proj", "v_proj")), "bf16-lora", _card("adapter"))
    other = build_model(seed=1)
    swapped = fresh()
    with torch.no_grad():
        swapped.model.layers[1].load_state_dict(other.model.layers[1].state_dict())
    replaced = save(swapped, "replaced", _card("finetune"))
    ext = fresh()
    ext.resize_token_embeddings(ext.config.vocab_size + 24, mean_resizing=False)
    extended = save(ext, "extended", _card("finetune"))
    independent = save(fresh(seed=7), "independent", dict(DEFAULT_CARD, base_model="base"))
    perm = fresh()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for layer in perm.model.layers:
            idx = torch.randperm(layer.mlp.gate_proj.weight.shape[0], generator=gen)
            layer.mlp.gate_proj.weight.copy_(layer.mlp.gate_proj.weight[idx])
            layer.mlp.up_proj.weight.copy_(layer.mlp.up_proj.weight[idx])
            layer.mlp.down_proj.weight.copy_(layer.mlp.down_proj.weight[:, idx])
    permuted = save(_train(perm, steps=2, seed=5), "permuted", _card("finetune"))
    frozen = save(_train(fresh(), steps=3, seed=6, only="layers.1."), "frozen", _card("finetune"))
    other_shape = save(fresh(intermediate_size=96), "other-shape", _card("finetune"))
    q4 = write_gguf_requantized(zoo.gguf_f32, root / "tiny-Q4_0.gguf", "Q4_0")
    return Variants(base=base, sharded=sharded, bf16=bf16, gguf_q8=zoo.gguf_q8_0, gguf_q4=q4, finetune=finetune,
                    lora_merged=lora, lora_rank=rank, bf16_lora=bf16_lora, replaced=replaced, extended=extended,
                    independent=independent, permuted=permuted, frozen=frozen, other_shape=other_shape,
                    adapter=zoo.lora_dir, bin_dir=zoo.bin_dir)
