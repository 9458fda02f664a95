"""The inventory: parameter counts from headers equal sum(p.numel()) of the factory model in every format, and
architecture, context, vocabulary, dtypes, card, adapter, roles, memory and tier are what the files say."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from assay.errors import FormatError
from assay.model.formats import Format
from assay.model.inventory import (EDGE_MAX, MID_MAX, Inventory, file_role, inventory_document, open_model,
                                   parse_front_matter, size_tier)


def _weights_of(zoo) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    return {"safetensors": zoo.safetensors_dir, "sharded": zoo.sharded_dir, "bin": zoo.bin_dir,
            "legacy": zoo.legacy_pickle, "gguf-f32": zoo.gguf_f32, "gguf-f16": zoo.gguf_f16,
            "gguf-q8_0": zoo.gguf_q8_0}


@pytest.mark.parametrize("kind", ["safetensors", "sharded", "bin", "legacy", "gguf-f32", "gguf-f16", "gguf-q8_0"])
def test_parameters_equal_numel_of_the_model(zoo, kind: str) -> None:  # type: ignore[no-untyped-def]
    inv = open_model(_weights_of(zoo)[kind])
    assert inv.parameters == zoo.n_params
    assert sum(inv.dtypes.values()) == zoo.n_params
    assert inv.parameters_complete
    assert inv.tier == "edge"
    assert inv.memory["16bit"] == 2 * zoo.n_params and inv.memory["8bit"] == zoo.n_params
    assert inv.memory["4bit"] == (zoo.n_params + 1) // 2


def test_model_numel_from_torch(zoo) -> None:  # type: ignore[no-untyped-def]
    """The factory's n_params is the model's own count, not a copy of ours."""
    model = zoo.model()
    assert zoo.n_params == sum(p.numel() for p in model.parameters())


def test_safetensors_folder(zoo) -> None:  # type: ignore[no-untyped-def]
    inv = open_model(zoo.safetensors_dir)
    assert inv.architecture == "LlamaForCausalLM" and inv.model_type == "llama"
    assert inv.context_length == zoo.context_length and inv.vocab_size == zoo.vocab_size
    assert inv.dtypes == {"F32": zoo.n_params}
    assert inv.weights_format == "safetensors" and inv.weight_files == ("model.safetensors",)
    assert inv.memory["stored"] == 4 * zoo.n_params
    assert inv.chat_template is True
    assert inv.adapter is None and inv.unreadable == ()
    roles = {f.path: f.role for f in inv.files}
    assert roles == {"README.md": "card", "config.json": "config", "generation_config.json": "config",
                     "model.safetensors": "weights", "tokenizer.json": "tokenizer",
                     "tokenizer_config.json": "tokenizer"}
    sizes = {f.path: f.size for f in inv.files}
    assert sizes["model.safetensors"] == (zoo.safetensors_dir / "model.safetensors").stat().st_size


def test_card_fields(zoo) -> None:  # type: ignore[no-untyped-def]
    from tests.factory.models import DEFAULT_CARD

    card = open_model(zoo.safetensors_dir).card
    assert card["present"] is True
    for key in ("base_model", "base_model_relation", "license", "datasets", "language", "pipeline_tag", "tags"):
        assert card[key] == DEFAULT_CARD[key], key
    assert card["metadata"]["license"] == "apache-2.0"


def test_sharded_uses_the_index(zoo) -> None:  # type: ignore[no-untyped-def]
    inv = open_model(zoo.sharded_dir)
    index = json.loads((zoo.sharded_dir / "model.safetensors.index.json").read_text())
    assert list(inv.weight_files) == sorted(set(index["weight_map"].values()))
    assert len(inv.weight_files) > 1
    assert inv.tensor_count == len(index["weight_map"])
    assert {f.path: f.role for f in inv.files}["model.safetensors.index.json"] == "index"


def test_gguf_header_fields(zoo) -> None:  # type: ignore[no-untyped-def]
    inv = open_model(zoo.gguf_q8_0)
    assert inv.architecture == "llama" and inv.model_type == "llama"
    assert inv.context_length == zoo.context_length and inv.vocab_size == zoo.vocab_size
    assert inv.chat_template is True
    assert set(inv.dtypes) == {"Q8_0", "F32"}
    # Q8_0 stores 34 bytes per 32 weights: the stored size is what the header says, not 4 bytes per weight.
    assert inv.memory["stored"] < 2 * zoo.n_params
    assert inv.gguf is not None and inv.gguf["general.architecture"] == "llama"
    assert inv.gguf["llama.block_count"] == zoo.num_layers
    f16 = open_model(zoo.gguf_f16)
    assert set(f16.dtypes) == {"F16", "F32"}


def test_real_gguf_matches_gguf_reader(smollm2_gguf: Path, smollm2_reader) -> None:  # type: ignore[no-untyped-def]
    """SmolLM2-135M-Instruct Q4_1 (the real bundled model): our header reader agrees with gguf.GGUFReader."""
    reader, path = smollm2_reader, smollm2_gguf
    inv = open_model(path)
    assert inv.parameters == sum(int(t.n_elements) for t in reader.tensors)
    assert inv.tensor_count == len(reader.tensors)
    assert inv.architecture == "llama"
    assert inv.context_length == int(reader.fields["llama.context_length"].contents())
    assert inv.vocab_size == len(reader.fields["tokenizer.ggml.tokens"].data)
    assert inv.chat_template is True
    dtypes: dict[str, int] = {}
    for t in reader.tensors:
        dtypes[t.tensor_type.name] = dtypes.get(t.tensor_type.name, 0) + int(t.n_elements)
    assert inv.dtypes == dtypes
    assert inv.memory["stored"] == sum(int(t.n_bytes) for t in reader.tensors)
    assert inv.tier == "edge"


def test_lora_adapter(zoo) -> None:  # type: ignore[no-untyped-def]
    inv = open_model(zoo.lora_dir)
    cfg = json.loads((zoo.lora_dir / "adapter_config.json").read_text())
    a = inv.adapter
    assert a is not None
    assert a["base_model_name_or_path"] == str(zoo.safetensors_dir)
    assert a["r"] == cfg["r"] == 4 and a["peft_type"] == "LORA"
    assert sorted(a["target_modules"]) == ["q_proj", "v_proj"]
    # LoRA on q_proj and v_proj of every layer: A is (r, in), B is (out, r).
    model = zoo.model()
    expect = 0
    for name, mod in model.named_modules():
        if name.endswith(("q_proj", "v_proj")):
            expect += 4 * mod.in_features + mod.out_features * 4
    assert inv.parameters == a["parameters"] == expect
    assert inv.weights_format == "safetensors" and inv.weight_files == ("adapter_model.safetensors",)
    assert a["base"]["architecture"] == "LlamaForCausalLM" and a["base"]["parameters"] == zoo.n_params
    assert {f.path: f.role for f in inv.files}["adapter_model.safetensors"] == "adapter"


def test_adapter_with_unresolvable_base(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dst = tmp_path / "lora"
    shutil.copytree(zoo.lora_dir, dst)
    cfg = json.loads((dst / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "nobody/not-cached-anywhere"
    (dst / "adapter_config.json").write_text(json.dumps(cfg))
    inv = open_model(dst)
    assert inv.adapter is not None and inv.adapter["base"] is None
    assert "not in the local Hugging Face cache" in inv.adapter["base_error"]
    assert inv.parameters == inv.adapter["parameters"]


def test_tied_weights_in_a_torch_archive_count_once(tmp_path: Path) -> None:
    import torch

    from tests.factory.models import build_model

    model = build_model(tie_word_embeddings=True)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    torch.save(model.state_dict(), tmp_path / "tied.pt")
    inv = open_model(tmp_path / "tied.pt")
    assert inv.weights_format == "torch-zip"
    assert inv.parameters == sum(p.numel() for p in model.parameters())


def test_bf16_and_f16_dtypes(tmp_path: Path) -> None:
    import torch

    from tests.factory.models import build_model, save_safetensors_folder, tiny_tokenizer

    model = build_model().to(torch.bfloat16)
    save_safetensors_folder(model, tiny_tokenizer(), tmp_path / "bf16", card=None)
    inv = open_model(tmp_path / "bf16")
    assert inv.dtypes == {"BF16": sum(p.numel() for p in model.parameters())}
    assert inv.memory["stored"] == 2 * inv.parameters
    assert inv.card == {"present": False}


def test_safetensors_preferred_over_duplicate_bin(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A repo with both model.safetensors and pytorch_model.bin is counted once."""
    dst = tmp_path / "both"
    shutil.copytree(zoo.safetensors_dir, dst)
    shutil.copyfile(zoo.bin_dir / "pytorch_model.bin", dst / "pytorch_model.bin")
    inv = open_model(dst)
    assert inv.parameters == zoo.n_params and inv.weights_format == "safetensors"
    assert inv.weight_files == ("model.safetensors",)


def test_several_gguf_files_are_not_summed(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dst = tmp_path / "ggufs"
    dst.mkdir()
    shutil.copyfile(zoo.gguf_f32, dst / "m-F32.gguf")
    shutil.copyfile(zoo.gguf_q8_0, dst / "m-Q8_0.gguf")
    inv = open_model(dst)
    assert inv.parameters == zoo.n_params
    assert inv.weight_files == ("m-F32.gguf",)
    assert any("2 GGUF files" in n for n in inv.notes)


def test_weights_detected_by_content_not_name(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A torch archive renamed model.safetensors is counted as the torch archive it is."""
    dst = tmp_path / "disguised"
    dst.mkdir()
    shutil.copyfile(zoo.bin_dir / "pytorch_model.bin", dst / "model.safetensors")
    shutil.copyfile(zoo.bin_dir / "config.json", dst / "config.json")
    inv = open_model(dst)
    entry = {f.path: f for f in inv.files}["model.safetensors"]
    assert entry.format is Format.TORCH_ZIP and entry.role == "weights"
    assert inv.weights_format == "torch-zip" and inv.parameters == zoo.n_params


def test_unreadable_files_are_listed_and_the_rest_described(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dst = tmp_path / "partly-broken"
    shutil.copytree(zoo.safetensors_dir, dst)
    shutil.copyfile(zoo.bin_dir / "pytorch_model.bin", dst / "extra.bin")
    (dst / "extra.bin").write_bytes((dst / "extra.bin").read_bytes()[:100])  # truncated zip
    (dst / "broken-link.json").symlink_to(dst / "gone.json")
    (dst / "tokenizer_config.json").write_text("{ not json")
    inv = open_model(dst)
    assert inv.parameters == zoo.n_params and inv.architecture == "LlamaForCausalLM"
    bad = {f.path: f.error for f in inv.unreadable}
    assert set(bad) == {"extra.bin", "broken-link.json", "tokenizer_config.json"}
    assert "not a known weight format" in bad["extra.bin"]
    assert bad["broken-link.json"] == "broken symbolic link"
    assert bad["tokenizer_config.json"] == "not valid JSON"
    doc = inventory_document(inv)
    assert {u["path"] for u in doc["unreadable"]} == set(bad)


def test_truncated_shard_makes_the_count_incomplete(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dst = tmp_path / "sharded"
    shutil.copytree(zoo.sharded_dir, dst)
    shard = sorted(dst.glob("model-*.safetensors"))[-1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) - 10])
    inv = open_model(dst)
    assert inv.parameters_complete is False
    assert inv.parameters is not None and 0 < inv.parameters < zoo.n_params
    assert [f.path for f in inv.unreadable] == [shard.name]
    assert "truncated" in inv.unreadable[0].error


def test_only_weight_file_truncated_is_an_error(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dst = tmp_path / "m"
    shutil.copytree(zoo.safetensors_dir, dst)
    p = dst / "model.safetensors"
    p.write_bytes(p.read_bytes()[:-4])
    with pytest.raises(FormatError, match="model.safetensors is truncated"):
        open_model(dst)


def test_roles() -> None:
    assert file_role("training_args.bin", Format.PICKLE) == "training"
    assert file_role("pytorch_model.bin", Format.PICKLE) == "weights"
    assert file_role("modeling_custom.py", Format.PYTHON) == "code"
    assert file_role("config.json", Format.PYTHON) == "code"  # python content, whatever the name
    assert file_role("adapter_model.safetensors", Format.SAFETENSORS) == "adapter"
    assert file_role("model.sig", Format.JSON) == "signature"
    assert file_role("chat_template.jinja", Format.JINJA) == "chat_template"
    assert file_role("generation_config.json", Format.JSON) == "config"
    assert file_role("model.safetensors.index.json", Format.JSON) == "index"
    assert file_role("trainer_state.json", Format.JSON) == "training"
    assert file_role("tokenizer.model", Format.SENTENCEPIECE) == "tokenizer"
    assert file_role("README.md", Format.MARKDOWN) == "card"
    assert file_role("weights.data", Format.GGUF) == "weights"
    assert file_role("notes.txt", Format.TEXT) == "other"


def test_tiers() -> None:
    assert size_tier(None) == "unknown"
    assert size_tier(135_000_000) == "edge"
    assert size_tier(3_210_000_000) == "edge"  # Llama 3.2 3B is an edge model
    assert size_tier(EDGE_MAX + 1) == "mid"
    assert size_tier(72_700_000_000) == "mid"  # Qwen2.5 72B counts as ~70B
    assert size_tier(MID_MAX + 1) == "large"


def test_front_matter() -> None:
    assert parse_front_matter("# no front matter\n") == {}
    assert parse_front_matter("---\nlicense: mit\nbase_model: a/b\n---\n# x") == {"license": "mit",
                                                                                   "base_model": "a/b"}
    assert "not valid YAML" in str(parse_front_matter("---\nlicense: [unclosed\n---\n"))
    assert "not closed" in str(parse_front_matter("---\nlicense: mit\n"))
    # safe_load only: a python tag is refused, not constructed.
    assert "not valid YAML" in str(parse_front_matter("---\nx: !!python/object/apply:os.system ['true']\n---\n"))


def test_card_with_bad_yaml_is_reported_not_fatal(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dst = tmp_path / "m"
    shutil.copytree(zoo.safetensors_dir, dst)
    (dst / "README.md").write_text("---\nlicense: [oops\n---\n# card\n")
    inv = open_model(dst)
    assert inv.card["present"] is True and "not valid YAML" in inv.card["error"]
    assert inv.parameters == zoo.n_params


def test_no_weights_folder(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("---\nlicense: mit\n---\n# only a card\n")
    inv = open_model(tmp_path)
    assert inv.parameters is None and inv.weights_format is None and inv.tier == "unknown"
    assert "no weight files found" in inv.notes
    assert inv.card["license"] == "mit"


def test_document_shape(zoo) -> None:  # type: ignore[no-untyped-def]
    inv: Inventory = open_model(zoo.safetensors_dir)
    doc = inventory_document(inv)
    assert doc["schema"] == "assay.inventory/1"
    assert doc["parameters"] == zoo.n_params and doc["architecture"] == "LlamaForCausalLM"
    assert doc["dtypes"] == {"F32": zoo.n_params}
    for f in doc["files"]:
        assert {"path", "size", "format", "role"} <= set(f)
    assert {f["path"]: f["format"] for f in doc["files"]}["model.safetensors"] == "safetensors"
    json.dumps(doc)  # plain JSON


def test_fifo_and_device_links_are_not_read(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A FIFO would block a reader forever and a link to /dev/zero never ends: both are listed, not read."""
    import os

    dst = tmp_path / "m"
    shutil.copytree(zoo.safetensors_dir, dst)
    os.mkfifo(dst / "pipe.bin")
    (dst / "zero.safetensors").symlink_to("/dev/zero")
    inv = open_model(dst)
    bad = {f.path: f.error for f in inv.unreadable}
    assert bad == {"pipe.bin": "not a regular file (FIFO, socket or device)",
                   "zero.safetensors": "symbolic link to a path outside the model folder (not read)"}
    assert inv.parameters == zoo.n_params
