"""Load a GGUF checkpoint into a transformers model without transformers' slow GGUF path.

transformers reads a GGUF file with ``gguf.GGUFReader``, which builds numpy views for every vocabulary string
(tens of seconds for a 50k vocabulary, and it does so three times: config, tokenizer, weights). Here:

- the header is read once by :mod:`assay.model.gguf_file` (the reader the scanner uses);
- transformers still decides what the metadata *means* (config keys, tokenizer conversion): its own
  ``load_gguf_checkpoint`` runs on a thin view of our parsed metadata, so every architecture rule it has stays
  authoritative;
- the weights are dequantised by :mod:`assay.model.tensors` (``gguf.quants`` plus the transforms llama.cpp
  applied on conversion, undone) straight into the model's tensors, for the architectures where that mapping is
  checked against transformers (:data:`FAST_ARCHITECTURES`); any other architecture goes through transformers'
  own weight path.

    >>> model, tok = load_gguf_model(Path("SmolLM2-135M-Instruct.Q4_1.gguf"), dtype=torch.float32)

``benchmarks/gguf_load.py`` times this against transformers' path and against the same model as safetensors,
and checks the logits agree.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assay.errors import FormatError
from assay.model.gguf_file import STRING, GGUFArray, GGUFFile, read_gguf_file
from assay.model.problems import problem_message

#: Architectures whose GGUF -> Hugging Face tensor mapping (names, llama's Q/K permutation, Gemma's norm offset)
#: is assay's own and follows transformers' tensor processors: llama (and mistral, which llama.cpp writes as
#: llama) is tested equal to transformers on the real SmolLM2 GGUF and the factory models (F32, F16, Q8_0);
#: qwen2/qwen3 need no transform and gemma2/gemma3 subtract 1 from ``*norm.weight``, as transformers does.
FAST_ARCHITECTURES = frozenset({"llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3"})

_patch_lock = threading.Lock()


class _Field:
    """What transformers reads of a ``gguf.ReaderField``: ``parts`` indexed by ``data``, and ``types``."""

    __slots__ = ("parts", "data", "types")

    def __init__(self, value: Any) -> None:
        if isinstance(value, list):
            item = _type_of(value[0]) if value else 4
            self.parts: list[Any] = [_part(v) for v in value]
            self.data: list[int] = list(range(len(value)))
            self.types: list[int] = [9, item]
        else:
            self.parts, self.data, self.types = [_part(value)], [0], [_type_of(value)]


def _type_of(v: Any) -> int:
    if isinstance(v, bool):
        return 7
    if isinstance(v, int):
        return 11 if v < 0 else 10
    if isinstance(v, float):
        return 12
    return STRING


def _part(v: Any) -> Any:
    return v.encode("utf-8") if isinstance(v, str) else [v]


class _Tensor:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


class _MetadataView:
    """Stands in for ``gguf.GGUFReader`` inside transformers' config parsing (``return_tensors=False``).

    Long arrays (the vocabulary, merges, scores) are left out: the config needs only the vocabulary's length,
    which transformers takes from ``{arch}.vocab_size`` or, failing that, from the number of tokens, given here
    as ``{arch}.vocab_size``. (The tokenizer is built by transformers' own GGUF tokenizer reader.)
    """

    def __init__(self, g: GGUFFile) -> None:
        self.fields = {k: _Field(v) for k, v in g.metadata.items() if isinstance(v, (str, int, float, list))}
        arch = g.architecture
        tokens = g.metadata.get("tokenizer.ggml.tokens")
        if arch and f"{arch}.vocab_size" not in self.fields and tokens is not None:
            self.fields[f"{arch}.vocab_size"] = _Field(tokens.length if isinstance(tokens, GGUFArray)
                                                       else len(tokens))
        self.tensors = [_Tensor(t.name) for t in g.tensors]


@contextlib.contextmanager
def _metadata_reader(path: Path, g: GGUFFile) -> Iterator[None]:
    """While active, ``gguf.GGUFReader(path)`` returns our parsed metadata for this one file."""
    import gguf

    original = gguf.GGUFReader
    target = path.resolve()

    def reader(p: Any, *args: Any, **kwargs: Any) -> Any:
        if Path(p).resolve() == target:
            return _MetadataView(g)
        return original(p, *args, **kwargs)

    with _patch_lock:
        gguf.GGUFReader = reader
        try:
            yield
        finally:
            gguf.GGUFReader = original


def load_gguf_model(path: Path, *, dtype: Any) -> tuple[Any, Any]:
    """(model, tokenizer) from one GGUF file, weights dequantised to ``dtype`` (a ``torch.dtype``).

    Raises :class:`~assay.errors.FormatError` for a damaged file. Nothing in the file is executed: the chat
    template is data, and the model class comes from the architecture name through transformers' tables.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.initialization import no_init_weights

    g = read_gguf_file(path)
    reason = g.fatal()
    if reason is not None:
        raise FormatError(problem_message(path.name, reason))
    root, name = path.parent, path.name
    kw: dict[str, Any] = {"gguf_file": name, "trust_remote_code": False, "local_files_only": True}
    with _metadata_reader(path, g):
        config = AutoConfig.from_pretrained(root, **kw)
        tok = AutoTokenizer.from_pretrained(root, config=config, **kw)
    if g.architecture not in FAST_ARCHITECTURES:
        model = AutoModelForCausalLM.from_pretrained(root, dtype=dtype, **kw)
        return model, tok
    with no_init_weights():
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, trust_remote_code=False)
    _load_weights(model, path, dtype, torch)
    model.eval()
    return model, tok


def _load_weights(model: Any, path: Path, dtype: Any, torch: Any) -> None:
    from assay.model.tensors import file_tensors, gguf_to_hf_name

    params = dict(model.named_parameters())
    known = set(model.state_dict())
    loaded: set[str] = set()
    arch = _gguf_arch(model.config.model_type)
    for t in file_tensors(path):
        hf = t.hf_name if t.hf_name in known else gguf_to_hf_name(t.name, arch, known=known)
        if hf not in params:
            raise FormatError(f"{path.name}: tensor {t.name} has no place in a {arch} model (it maps to {hf})")
        target = params[hf]
        value = _tensor(t, dtype, torch)
        if tuple(value.shape) != tuple(target.shape):
            raise FormatError(f"{path.name}: tensor {t.name} has shape {list(value.shape)}, the model expects "
                              f"{list(target.shape)}")
        target.data = value
        loaded.add(hf)
    missing = set(params) - loaded
    if getattr(model.config, "tie_word_embeddings", False):
        missing = {m for m in missing if not m.endswith("lm_head.weight")}
        model.tie_weights()
    if missing:
        raise FormatError(f"{path.name}: the GGUF file lacks {len(missing)} tensor(s) the model needs, e.g. "
                          f"{sorted(missing)[:3]}")


_FLOAT = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def _tensor(t: Any, dtype: Any, torch: Any) -> Any:
    """One GGUF tensor as a torch tensor of ``dtype`` in Hugging Face layout.

    Plain floats are read as they are; quantised blocks go through transformers' torch dequantisation
    (``transformers.integrations.gguf.dequant``) where it has the type, else through ``gguf.quants``; then the
    conversion llama.cpp applied is undone (:attr:`TensorInfo.transform`).
    """
    import numpy as np

    raw = t._bytes()
    if t.dtype in _FLOAT:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            value = torch.from_numpy(np.asarray(raw)).view(getattr(torch, _FLOAT[t.dtype])).reshape(t.shape)
    else:
        value = None
        try:
            from gguf.constants import GGMLQuantizationType
            from transformers.integrations.gguf.dequant import GGML_BLOCK, dequantize

            code = int(GGMLQuantizationType[t.dtype])
            if code in GGML_BLOCK:
                with warnings.catch_warnings():  # the memory map is read-only, and it is only read
                    warnings.simplefilter("ignore", UserWarning)
                    blocks = torch.from_numpy(np.asarray(raw))
                value = dequantize(blocks, code, torch.float32).reshape(t.shape)
        except ImportError:  # an older transformers without torch dequantisation
            value = None
        if value is None:
            return torch.from_numpy(t.load()).to(dtype)
    if t.transform is not None:
        kind, n_head, n_kv = t.transform
        if kind == "unpermute":
            heads = n_kv if n_kv != n_head else n_head
            if value.ndim and value.shape[0] % (heads * 2) == 0:
                dim = value.shape[0] // heads // 2
                value = value.reshape(heads, dim, 2, *value.shape[1:]).transpose(1, 2).reshape(value.shape)
        elif kind == "minus_one":
            value = value.float() - 1.0
    return value.to(dtype).contiguous()


def _gguf_arch(model_type: str) -> str:
    return {"gemma3_text": "gemma3"}.get(model_type, model_type)

