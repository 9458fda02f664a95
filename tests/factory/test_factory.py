"""The factory's files hold exactly the model it built, in every format, and load with the usual tools."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.factory.models import (
    CHAT_TEMPLATE,
    DEFAULT_CARD,
    build_model,
    save_lora_adapter,
    save_safetensors_folder,
    tiny_tokenizer,
)

if TYPE_CHECKING:
    import torch

    from tests.factory.models import Zoo

PROMPT = "The quick brown fox jumps over the lazy dog. Before you deploy a checkpoint"


@pytest.fixture(scope="module")
def reference(zoo: Zoo) -> dict[str, torch.Tensor]:
    """The state dict the zoo was built from, rebuilt independently from the same seed."""
    return {k: v.clone() for k, v in zoo.model().state_dict().items()}


def assert_same_tensors(loaded: dict[str, Any], reference: dict[str, torch.Tensor]) -> None:
    import torch

    assert sorted(loaded) == sorted(reference)
    for name, tensor in reference.items():
        assert loaded[name].dtype == torch.float32, name
        assert torch.equal(loaded[name], tensor), name


def logits(model: Any, text: str = PROMPT) -> torch.Tensor:
    import torch

    ids = torch.tensor([tiny_tokenizer()(text)["input_ids"]])
    with torch.no_grad():
        return model(ids).logits[0]


# -- tokenizer and model -------------------------------------------------------------------------


def test_tokenizer_is_a_small_real_bpe_with_special_tokens_and_chat_template() -> None:
    tok = tiny_tokenizer()
    assert 300 <= len(tok) <= 500
    assert [tok.unk_token, tok.bos_token, tok.eos_token, tok.pad_token] == ["<unk>", "<s>", "</s>", "<pad>"]
    assert len({tok.unk_token_id, tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}) == 4
    text = "Weights stored as a pickle can run code. Ünïcode too!"
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    # The merges were learned: common words are single tokens, so the text is much shorter than its bytes.
    assert len(tok("the model the model")["input_ids"]) < len("the model the model") // 2
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert tok.convert_tokens_to_ids("<|im_start|>") in tok(chat)["input_ids"]


def test_tokenizer_is_trained_once_but_each_call_returns_an_independent_object() -> None:
    a, b = tiny_tokenizer(), tiny_tokenizer()
    assert a is not b
    assert a.get_vocab() == b.get_vocab()
    a.add_tokens(["<extra>"])
    assert len(b) == len(a) - 1


def test_same_seed_same_weights_other_seed_other_weights() -> None:
    import torch

    first, again, other = build_model(seed=3), build_model(seed=3), build_model(seed=4)
    pairs = zip(first.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(first.state_dict()[q], other.state_dict()[q])


def test_model_shape_and_overrides() -> None:
    import torch

    model = build_model()
    c = model.config
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads) == (64, 2, 4, 2)
    assert (c.intermediate_size, c.max_position_embeddings) == (128, 512)
    assert c.vocab_size == len(tiny_tokenizer()) and c.tie_word_embeddings is False
    assert all(p.dtype == torch.float32 for p in model.parameters())
    deeper = build_model(num_hidden_layers=3, hidden_size=32)
    assert deeper.config.num_hidden_layers == 3 and len(deeper.model.layers) == 3
    assert deeper.model.embed_tokens.weight.shape == (c.vocab_size, 32)


# -- the zoo: every format loads back to the same tensors -----------------------------------------


def test_zoo_counts_match_the_model(zoo: Zoo) -> None:
    model = build_model(seed=zoo.seed)
    assert zoo.n_params == sum(p.numel() for p in model.parameters())
    assert (zoo.vocab_size, zoo.context_length, zoo.num_layers) == (len(tiny_tokenizer()), 512, 2)


def test_zoo_builds_in_a_few_seconds(zoo: Zoo) -> None:
    assert zoo.build_seconds < 10.0


def test_safetensors_folder(zoo: Zoo, reference: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = zoo.safetensors_dir
    assert_same_tensors(load_file(folder / "model.safetensors"), reference)
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
    tok_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tok_config["chat_template"] == CHAT_TEMPLATE
    front = (folder / "README.md").read_text().split("---\n")[1]
    assert yaml.safe_load(front) == dict(DEFAULT_CARD)

    loaded = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=False)
    assert_same_tensors(loaded.state_dict(), reference)
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    assert tok(PROMPT)["input_ids"] == tiny_tokenizer()(PROMPT)["input_ids"]
    assert tok.chat_template == CHAT_TEMPLATE


def test_card_is_optional_and_replaceable(tmp_path: Path) -> None:
    model, tok = build_model(), tiny_tokenizer()
    bare = save_safetensors_folder(model, tok, tmp_path / "bare", card=None)
    assert not (bare / "README.md").exists()
    custom = save_safetensors_folder(model, tok, tmp_path / "custom", card={"license": "other"})
    assert yaml.safe_load((custom / "README.md").read_text().split("---\n")[1]) == {"license": "other"}
    split = save_safetensors_folder(model, tok, tmp_path / "jinja", chat_template_file=True)
    assert (split / "chat_template.jinja").read_text() == CHAT_TEMPLATE


def test_sharded_folder(zoo: Zoo, reference: dict[str, torch.Tensor]) -> None:
    from safetensors.torch import load_file

    index = json.loads((zoo.sharded_dir / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 1
    assert sorted(p.name for p in zoo.sharded_dir.glob("*.safetensors")) == shards
    merged: dict[str, Any] = {}
    for shard in shards:
        tensors = load_file(zoo.sharded_dir / shard)
        assert all(index["weight_map"][name] == shard for name in tensors)
        merged.update(tensors)
    assert_same_tensors(merged, reference)
    assert index["metadata"]["total_size"] == 4 * zoo.n_params


def test_bin_folder_is_a_torch_zip_archive(zoo: Zoo, reference: dict[str, torch.Tensor]) -> None:
    import torch

    weights = zoo.bin_dir / "pytorch_model.bin"
    assert zipfile.is_zipfile(weights)
    assert_same_tensors(torch.load(weights, weights_only=True, map_location="cpu"), reference)
    assert json.loads((zoo.bin_dir / "config.json").read_text())["model_type"] == "llama"
    assert (zoo.bin_dir / "tokenizer.json").is_file()


def test_legacy_pickle_is_not_a_zip(zoo: Zoo, reference: dict[str, torch.Tensor]) -> None:
    import torch

    assert not zipfile.is_zipfile(zoo.legacy_pickle)
    assert zoo.legacy_pickle.read_bytes()[:2] == b"\x80\x02"  # pickle protocol 2 opcode
    assert_same_tensors(torch.load(zoo.legacy_pickle, weights_only=True, map_location="cpu"), reference)


# -- GGUF ------------------------------------------------------------------------------------------


def load_gguf_model(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, trust_remote_code=False).eval()


def test_gguf_metadata_and_tensor_names(zoo: Zoo) -> None:
    import gguf

    expected_type = {
        zoo.gguf_f32: gguf.GGMLQuantizationType.F32,
        zoo.gguf_f16: gguf.GGMLQuantizationType.F16,
        zoo.gguf_q8_0: gguf.GGMLQuantizationType.Q8_0,
    }
    for path, weight_type in expected_type.items():
        reader = gguf.GGUFReader(path)

        def field(key: str, reader: Any = reader) -> Any:
            return reader.fields[key].contents()

        assert field("general.architecture") == "llama"
        assert field("llama.block_count") == 2
        assert field("llama.context_length") == 512
        assert field("llama.embedding_length") == 64
        assert field("llama.attention.head_count_kv") == 2
        assert field("tokenizer.ggml.model") == "gpt2"
        assert field("tokenizer.ggml.tokens")[:2] == ["<unk>", "<s>"]
        assert field("tokenizer.chat_template") == CHAT_TEMPLATE
        types = {t.name: t.tensor_type for t in reader.tensors}
        assert len(types) == 2 + 2 * 9 + 1
        assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
        for name in ("token_embd.weight", "blk.1.attn_q.weight", "blk.1.ffn_down.weight", "output.weight"):
            assert types[name] == weight_type, (path.name, name)
        assert sum(int(t.n_elements) for t in reader.tensors) == zoo.n_params


def test_gguf_f32_loads_back_with_the_same_weights_and_logits(
    zoo: Zoo, reference: dict[str, torch.Tensor]
) -> None:
    import torch

    loaded = load_gguf_model(zoo.gguf_f32)
    # transformers undoes the Q/K permutation on load; equal tensors prove the round trip.
    assert_same_tensors(loaded.state_dict(), reference)
    torch.testing.assert_close(logits(loaded), logits(build_model(seed=zoo.seed)), atol=1e-4, rtol=0)


def test_gguf_q8_0_and_f16_are_close_but_not_identical(zoo: Zoo) -> None:
    expected = logits(build_model(seed=zoo.seed))
    spread = expected.std().item()
    # Errors relative to the spread of the logits: F16 rounding is tiny, Q8_0 a few percent at most.
    for path, tolerance in ((zoo.gguf_f16, 0.01), (zoo.gguf_q8_0, 0.1)):
        got = logits(load_gguf_model(path))
        error = (got - expected).abs().max().item() / spread
        assert 0 < error < tolerance, (path.name, error)
        # A random model's logits are nearly flat, so a rare top-1 flip is expected; most must agree.
        agree = (got.argmax(-1) == expected.argmax(-1)).float().mean().item()
        assert agree >= 0.9, (path.name, agree)


def test_gguf_tokenizer_matches_the_original(zoo: Zoo) -> None:
    from transformers import AutoTokenizer

    tok = tiny_tokenizer()
    from_gguf = AutoTokenizer.from_pretrained(
        zoo.gguf_f32.parent, gguf_file=zoo.gguf_f32.name, trust_remote_code=False
    )
    text = "Hello <|im_start|>user\nthe model, signing!  Ünïcode"
    assert from_gguf(text)["input_ids"] == tok(text)["input_ids"]
    assert from_gguf.decode(from_gguf(text)["input_ids"]) == text
    assert (from_gguf.bos_token, from_gguf.eos_token, from_gguf.pad_token) == ("<s>", "</s>", "<pad>")
    assert from_gguf.chat_template == CHAT_TEMPLATE


# -- LoRA adapter ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")
def test_lora_adapter_is_a_peft_folder_that_changes_outputs(zoo: Zoo) -> None:
    from peft import PeftModel
    from safetensors.torch import load_file

    config = json.loads((zoo.lora_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 4
    assert config["base_model_name_or_path"] == str(zoo.safetensors_dir)
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]
    tensors = load_file(zoo.lora_dir / "adapter_model.safetensors")
    b_matrices = {name: t for name, t in tensors.items() if "lora_B" in name}
    assert len(b_matrices) == 2 * 2  # two layers x (q_proj, v_proj)
    assert all(t.abs().sum() > 0 for t in b_matrices.values())
    # Per layer, rank 4: q_proj A (4x64) + B (64x4); v_proj A (4x64) + B (32x4), as 2 kv heads x 16 = 32.
    assert sum(t.numel() for t in tensors.values()) == 2 * ((4 * 64 + 64 * 4) + (4 * 64 + 32 * 4))

    base = build_model(seed=zoo.seed)
    before = logits(base)
    adapted = PeftModel.from_pretrained(base, zoo.lora_dir).eval()
    assert (logits(adapted) - before).abs().max().item() > 1e-3


def test_lora_adapter_is_seeded(zoo: Zoo, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    again = save_lora_adapter(
        build_model(seed=zoo.seed), tiny_tokenizer(), tmp_path / "lora",
        seed=zoo.seed, base_model_name_or_path=str(zoo.safetensors_dir),
    )
    first = load_file(zoo.lora_dir / "adapter_model.safetensors")
    second = load_file(again / "adapter_model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
