"""Tiny test models in every checkpoint format assay reads.

Everything here is built in code, in a second or two, from a fixed seed: no model file is committed and
nothing is downloaded. The model is a random Llama (64 wide, 2 layers) with a small byte-level BPE
tokenizer trained on a few built-in English paragraphs.

    tok = tiny_tokenizer()
    model = build_model(seed=0)
    folder = save_safetensors_folder(model, tok, tmp_path / "tiny")
    zoo = build_zoo(tmp_path / "zoo")      # every format at once; see `Zoo`

torch and transformers are imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

# Tokens the tokenizer reserves, in id order (ids 0..5).
UNK_TOKEN = "<unk>"
BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS: tuple[str, ...] = (UNK_TOKEN, BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, IM_START, IM_END)

TOKENIZER_VOCAB_SIZE = 400
"""Target vocabulary size: the 256 byte symbols, the special tokens and ~140 learned merges."""

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
"""A ChatML-style template, as most small instruction-tuned models ship."""

# Default shape of the tiny Llama; `build_model(**overrides)` changes any of these.
TINY_LLAMA_CONFIG: Mapping[str, Any] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}

DEFAULT_BASE_MODEL = "assay-tests/tiny-llama-base"
"""The base model the default card and LoRA adapter name (an `org/name` that exists nowhere)."""

DEFAULT_CARD: Mapping[str, Any] = {
    "license": "apache-2.0",
    "base_model": DEFAULT_BASE_MODEL,
    "base_model_relation": "finetune",
    "datasets": ["assay-tests/tiny-corpus"],
    "language": ["en"],
    "pipeline_tag": "text-generation",
    "tags": ["tiny", "test"],
}
"""Model-card front matter written by `save_safetensors_folder` unless a `card` is given."""

_CORPUS = """\
The quick brown fox jumps over the lazy dog. A small model is still a model: it has weights, a
tokenizer, a configuration and a card that says where it came from and what it may be used for.

Before you deploy a checkpoint that someone else trained, you should know what is inside the files.
Weights stored as a pickle can run code when they are loaded, so a careful team scans them first and
prefers formats such as safetensors and GGUF, which hold only tensors and plain metadata.

A fine-tuned model should be compared with the base it came from. Ask the same questions of both, in
the same order, and count how often the new model is right where the old one was wrong, and how often
the reverse happens. One number without its uncertainty tells you very little.

The cost of serving a model depends on its size, on the precision of its weights, on the length of the
context and on the hardware that runs it. A model that fits on one small card is cheaper than one that
needs eight large ones, even when both answer the question equally well.

Every answer in this report was computed on this machine, from these files, on this day. If the files
change, the hashes change, and the signature no longer matches. That is the point of signing them.
"""


@functools.cache
def _tokenizer_json() -> str:
    """Train the byte-level BPE once per process and return it serialised (so callers get fresh copies)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    # The same pre-tokenizer and decoder as GPT-2, so a GGUF "gpt2" tokenizer rebuilds it exactly.
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS.splitlines(keepends=True), trainer=trainer)
    return tokenizer.to_str()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A small real byte-level BPE tokenizer with bos/eos/pad/unk tokens and a ChatML chat template.

    Trained once per process; every call returns a new, independent tokenizer object.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=UNK_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[IM_START, IM_END],
        model_max_length=TINY_LLAMA_CONFIG["max_position_embeddings"],
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def build_model(*, seed: int = 0, **config_overrides: Any) -> LlamaForCausalLM:
    """A randomly initialised tiny Llama in fp32; the same seed always gives identical weights.

    `config_overrides` go straight into `LlamaConfig` (e.g. `num_hidden_layers=3`). The vocabulary
    size and special token ids come from `tiny_tokenizer()` unless overridden.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    settings: dict[str, Any] = {
        **TINY_LLAMA_CONFIG,
        "vocab_size": len(tok),
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        "dtype": "float32",
    }
    settings.update(config_overrides)
    config = LlamaConfig(**settings)
    # Seed a private copy of the RNG state so building a model does not disturb the caller's RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model = model.to(torch.float32)
    model.eval()
    return model


def save_tokenizer(tok: PreTrainedTokenizerFast, out: Path, *, chat_template_file: bool = False) -> Path:
    """Save tokenizer.json and tokenizer_config.json into `out`, the way most published models have them.

    transformers 5 writes the chat template to chat_template.jinja and names its own backend class;
    by default this moves the template into tokenizer_config.json (`"chat_template"`) and names the
    class `PreTrainedTokenizerFast`, which every transformers version reads. Returns `out`.
    """
    out = Path(out)
    tok.save_pretrained(out)
    config_path = out / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    jinja = out / "chat_template.jinja"
    if not chat_template_file and tok.chat_template is not None:
        config["chat_template"] = tok.chat_template
        jinja.unlink(missing_ok=True)
    config_path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def _card_text(card: Mapping[str, Any], *, title: str) -> str:
    import yaml

    front = yaml.safe_dump(dict(card), sort_keys=False).strip()
    return (
        f"---\n{front}\n---\n\n# {title}\n\n"
        "A tiny random Llama built by assay's test factory. It knows nothing; it exists to be inspected.\n"
    )


def save_safetensors_folder(
    model: LlamaForCausalLM,
    tok: PreTrainedTokenizerFast,
    out: Path,
    *,
    max_shard_size: int | str | None = None,
    card: Mapping[str, Any] | None = DEFAULT_CARD,
    chat_template_file: bool = False,
) -> Path:
    """Save a Hugging Face model folder: config, safetensors weights, tokenizer and a model card.

    With `max_shard_size` (e.g. `"100KB"` or a byte count) the weights are split into shards plus
    `model.safetensors.index.json`. `card=None` writes no README.md. The chat template goes into
    tokenizer_config.json, or into chat_template.jinja with `chat_template_file=True`. Returns `out`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # Far above the tiny model's size unless the caller asks for shards.
    model.save_pretrained(out, safe_serialization=True, max_shard_size=max_shard_size or "10GB")
    save_tokenizer(tok, out, chat_template_file=chat_template_file)
    if card is not None:
        (out / "README.md").write_text(_card_text(card, title=out.name), encoding="utf-8")
    return out


def save_bin_folder(model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, out: Path) -> Path:
    """Save an older-style Hugging Face folder: pytorch_model.bin (a torch zip archive) + config + tokenizer.

    The archive holds the plain state dict, so `torch.load(weights_only=True)` reads it. Returns `out`.
    """
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(out)
    torch.save(_state_dict(model), out / "pytorch_model.bin")
    save_tokenizer(tok, out)
    return out


def save_legacy_pickle(model: LlamaForCausalLM, out_file: Path) -> Path:
    """Write the state dict with torch's legacy (pre-1.6, non-zip) pickle serialisation. Returns `out_file`."""
    import torch

    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(_state_dict(model), out_file, _use_new_zipfile_serialization=False)
    return out_file


def _state_dict(model: LlamaForCausalLM) -> dict[str, torch.Tensor]:
    # Own, contiguous storage per tensor, so a file holds exactly the parameters and nothing they view into.
    return {name: tensor.detach().clone().contiguous() for name, tensor in model.state_dict().items()}


GGUFType = Literal["F32", "F16", "Q8_0"]


def _llama_permute(weights: Any, n_head: int) -> Any:
    """Reorder Q/K rows from Hugging Face's rotary layout (two halves) to llama.cpp's (interleaved pairs).

    transformers undoes exactly this when it loads a GGUF.
    """
    rows = weights.shape[0]
    return (
        weights.reshape(n_head, 2, rows // n_head // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def _tokenizer_merges(tok: PreTrainedTokenizerFast) -> list[str]:
    model = json.loads(tok.backend_tokenizer.to_str())["model"]
    return [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]


def save_gguf(
    model: LlamaForCausalLM,
    tok: PreTrainedTokenizerFast,
    out_file: Path,
    *,
    qtype: GGUFType = "F32",
    name: str = "tiny-llama",
) -> Path:
    """Write the model and its tokenizer as a llama.cpp GGUF file with `gguf.GGUFWriter`.

    Tensors get llama.cpp names (token_embd, blk.N.attn_q, ..., output_norm, output) and Q/K rows
    llama.cpp's rotary order. `qtype` sets the type of the 2-D weights (F32, F16 or Q8_0, quantised with
    `gguf.quants`); norm vectors stay F32, as llama.cpp keeps them. The tokenizer is stored as a
    "gpt2" byte-level BPE with its merges, special ids and chat template. Readable back with
    `AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)`. Returns `out_file`.
    """
    import gguf
    import numpy as np

    types = {
        "F32": (gguf.GGMLQuantizationType.F32, gguf.LlamaFileType.ALL_F32),
        "F16": (gguf.GGMLQuantizationType.F16, gguf.LlamaFileType.MOSTLY_F16),
        "Q8_0": (gguf.GGMLQuantizationType.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
    }
    if qtype not in types:
        raise ValueError(f"qtype must be one of {sorted(types)}, not {qtype!r}")
    tensor_type, file_type = types[qtype]

    config = model.config
    n_layers = config.num_hidden_layers
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope_theta = (getattr(config, "rope_parameters", None) or {}).get("rope_theta", 10000.0)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)

    arch = gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA]
    writer = gguf.GGUFWriter(out_file, arch)
    writer.add_name(name)
    writer.add_file_type(file_type)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(n_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(float(rope_theta))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)

    tokens = tok.convert_ids_to_tokens(list(range(len(tok))))
    special_ids = set(tok.all_special_ids)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if i in special_ids else gguf.TokenType.NORMAL for i in range(len(tokens))]
    )
    writer.add_token_merges(_tokenizer_merges(tok))
    writer.add_bos_token_id(tok.bos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_unk_token_id(tok.unk_token_id)
    writer.add_pad_token_id(tok.pad_token_id)
    writer.add_add_bos_token(False)
    if tok.chat_template:
        writer.add_chat_template(tok.chat_template)

    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    for hf_name, tensor in model.state_dict().items():
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise ValueError(f"no GGUF name for tensor {hf_name}")
        data = tensor.detach().to("cpu").float().numpy()
        if hf_name.endswith("self_attn.q_proj.weight"):
            data = _llama_permute(data, config.num_attention_heads)
        elif hf_name.endswith("self_attn.k_proj.weight"):
            data = _llama_permute(data, config.num_key_value_heads)
        data = np.ascontiguousarray(data, dtype=np.float32)
        if data.ndim < 2 or tensor_type == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(gguf_name, data)
        elif tensor_type == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(gguf_name, data.astype(np.float16))
        else:
            writer.add_tensor(gguf_name, gguf.quants.quantize(data, tensor_type), raw_dtype=tensor_type)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out_file


def save_lora_adapter(
    model: LlamaForCausalLM,
    tok: PreTrainedTokenizerFast,
    out: Path,
    *,
    r: int = 4,
    target_modules: Sequence[str] = ("q_proj", "v_proj"),
    seed: int = 0,
    base_model_name_or_path: str = DEFAULT_BASE_MODEL,
    lora_alpha: int | None = None,
) -> Path:
    """Save a real PEFT LoRA adapter for `model`: adapter_config.json + adapter_model.safetensors + tokenizer.

    PEFT starts LoRA B matrices at zero (a no-op adapter); here they are drawn from a seeded normal
    distribution so the adapter visibly changes the model's outputs. `model` itself is not modified.
    `base_model_name_or_path` is written into adapter_config.json as given (a path or `org/name`).
    Returns `out`.
    """
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lora_config = LoraConfig(
        r=r,
        lora_alpha=lora_alpha if lora_alpha is not None else 2 * r,
        target_modules=list(target_modules),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    base = copy.deepcopy(model)
    # PEFT's generated model card names the base from the model's config.
    base.config._name_or_path = base_model_name_or_path
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # PEFT calls a transformers method that transformers 5 deprecates; not ours to fix.
        warnings.simplefilter("ignore", FutureWarning)
        torch.manual_seed(seed)
        peft_model = get_peft_model(base, lora_config)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    peft_model.peft_config["default"].base_model_name_or_path = base_model_name_or_path
    peft_model.save_pretrained(out, safe_serialization=True)
    save_tokenizer(tok, out)
    return out


@dataclass(frozen=True)
class Zoo:
    """The tiny model saved once in every format assay reads (see `build_zoo`)."""

    root: Path
    """Folder holding everything below."""
    seed: int
    """Seed the model was built with: `build_model(seed=zoo.seed)` rebuilds identical weights."""
    n_params: int
    """Exact parameter count, `sum(p.numel() for p in model.parameters())`."""
    vocab_size: int
    """Tokenizer and embedding vocabulary size."""
    context_length: int
    """`max_position_embeddings` of the model."""
    num_layers: int
    """Number of transformer blocks."""
    safetensors_dir: Path
    """HF folder with a single model.safetensors, tokenizer, chat template and a model card."""
    sharded_dir: Path
    """HF folder with the weights split into several shards plus model.safetensors.index.json."""
    bin_dir: Path
    """HF folder with pytorch_model.bin (torch zip archive), config and tokenizer; no card."""
    legacy_pickle: Path
    """A single file: the state dict written with torch's legacy (non-zip) pickle format."""
    gguf_f32: Path
    """A single GGUF file, every weight in F32 (loads back with identical logits)."""
    gguf_f16: Path
    """A single GGUF file, 2-D weights in F16."""
    gguf_q8_0: Path
    """A single GGUF file, 2-D weights quantised to Q8_0."""
    lora_dir: Path
    """PEFT LoRA adapter folder whose `base_model_name_or_path` is `safetensors_dir`."""
    build_seconds: float
    """Wall time `build_zoo` took (imports excluded)."""

    def model(self) -> LlamaForCausalLM:
        """Rebuild the model every file here holds (same seed, identical weights)."""
        return build_model(seed=self.seed)

    def tokenizer(self) -> PreTrainedTokenizerFast:
        """The tokenizer saved with every variant."""
        return tiny_tokenizer()


def build_zoo(root: Path, *, seed: int = 0) -> Zoo:
    """Build the tiny model once and save it in every format under `root`; returns the paths.

    Layout: safetensors/, sharded/, bin/, legacy/pytorch_model.bin, gguf-f32/, gguf-f16/,
    gguf-q8_0/ (one .gguf file each) and lora/.
    """
    import time

    # Import what the savers need before timing, so build_seconds measures the work only.
    import gguf  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401

    started = time.perf_counter()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer()
    model = build_model(seed=seed)
    n_params = sum(p.numel() for p in model.parameters())
    safetensors_dir = save_safetensors_folder(model, tok, root / "safetensors")
    # ~125k fp32 parameters are ~0.5 MB; 100 kB shards give several files.
    sharded_dir = save_safetensors_folder(model, tok, root / "sharded", max_shard_size="100KB")
    bin_dir = save_bin_folder(model, tok, root / "bin")
    legacy_pickle = save_legacy_pickle(model, root / "legacy" / "pytorch_model.bin")
    gguf_f32 = save_gguf(model, tok, root / "gguf-f32" / "tiny-llama-F32.gguf", qtype="F32")
    gguf_f16 = save_gguf(model, tok, root / "gguf-f16" / "tiny-llama-F16.gguf", qtype="F16")
    gguf_q8_0 = save_gguf(model, tok, root / "gguf-q8_0" / "tiny-llama-Q8_0.gguf", qtype="Q8_0")
    lora_dir = save_lora_adapter(
        model, tok, root / "lora", seed=seed, base_model_name_or_path=str(safetensors_dir)
    )
    return Zoo(
        root=root,
        seed=seed,
        n_params=n_params,
        vocab_size=model.config.vocab_size,
        context_length=model.config.max_position_embeddings,
        num_layers=model.config.num_hidden_layers,
        safetensors_dir=safetensors_dir,
        sharded_dir=sharded_dir,
        bin_dir=bin_dir,
        legacy_pickle=legacy_pickle,
        gguf_f32=gguf_f32,
        gguf_f16=gguf_f16,
        gguf_q8_0=gguf_q8_0,
        lora_dir=lora_dir,
        build_seconds=time.perf_counter() - started,
    )
