"""Lineage on larger synthetic checkpoints than the tiny Llama: the sketched rank test and quantisation grids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assay.cli.main import main

D, FF = 320, 512  # wide enough that the rank test takes its randomised-sketch path


def _write(folder: Path, tensors: dict, *, card: str | None = None) -> Path:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    if card:
        (folder / "README.md").write_text(f"---\n{card}\n---\n# synthetic\n")
    return folder


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)

    def w(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.02

    base = {"model.embed_tokens.weight": w(96, D), "model.norm.weight": torch.ones(D)}
    for i in range(2):
        p = f"model.layers.{i}."
        base.update({p + "self_attn.q_proj.weight": w(D, D), p + "self_attn.v_proj.weight": w(D, D),
                     p + "mlp.up_proj.weight": w(FF, D), p + "mlp.down_proj.weight": w(D, FF),
                     p + "input_layernorm.weight": torch.ones(D)})
    bf16 = {k: v.to(torch.bfloat16) for k, v in base.items()}
    root = tmp_path_factory.mktemp("synthetic")
    out = {"base": _write(root / "base", bf16)}

    lora = {}
    for k, v in bf16.items():
        if k.endswith(("q_proj.weight", "v_proj.weight")):
            delta = (w(v.shape[0], 8) @ w(8, v.shape[1])) * 2.0
            lora[k] = (v.float() + delta).to(torch.bfloat16)
        else:
            lora[k] = v
    out["lora"] = _write(root / "lora", lora, card="base_model: base\nbase_model_relation: adapter")

    dense = {}
    for k, v in bf16.items():
        dense[k] = (v.float() + w(*v.shape) * 0.05).to(torch.bfloat16) if v.ndim == 2 else v
    # only the attention is trained: same pattern as the LoRA, but every change is full rank
    dense = {k: (v if "mlp" in k or "embed" in k else dense[k]) for k, v in bf16.items()}
    out["dense"] = _write(root / "dense", dense, card="base_model: base\nbase_model_relation: adapter")

    # int8 absmax per row, dequantised back into float32 (what a "dequantised GGUF" upload looks like)
    grid = {}
    for k, v in base.items():
        if v.ndim == 2:
            scale = v.abs().amax(dim=1, keepdim=True) / 127
            grid[k] = torch.round(v / scale) * scale
        else:
            grid[k] = v
    out["fp32"] = _write(root / "fp32", base)
    out["grid"] = _write(root / "grid", grid)
    return out


def _lineage(capsys, cand: Path, base: Path) -> dict:
    capsys.readouterr()
    main(["lineage", str(cand), "--base", str(base), "--json"])
    return json.loads(capsys.readouterr().out)


def test_sketched_rank_finds_a_bf16_lora(synthetic, capsys):
    doc = _lineage(capsys, synthetic["lora"], synthetic["base"])
    assert doc["relation"] == "lora", doc["summary"]
    assert doc["lora_rank"] == 8
    assert doc["claim"]["consistent"] is True


def test_full_rank_change_of_the_same_matrices_is_not_lora(synthetic, capsys):
    doc = _lineage(capsys, synthetic["dense"], synthetic["base"])
    assert doc["relation"] == "finetune", doc["summary"]
    ranks = [t["rank"] for t in doc["tensors"] if t["kind"] == "changed"]
    assert ranks and all(r > 64 for r in ranks)
    # the card says "adapter": a dense change contradicts it
    assert doc["claim"]["consistent"] is False


def test_values_on_an_int8_grid_are_quantized(synthetic, capsys):
    doc = _lineage(capsys, synthetic["grid"], synthetic["fp32"])
    assert doc["relation"] == "quantized", doc["summary"]
    assert all("8-bit grid" in t["note"] for t in doc["tensors"] if t["kind"] == "quantized")
