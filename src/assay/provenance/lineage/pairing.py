"""Which tensors of the two models are compared, and how they are read: one pair in memory at a time.

Tensors are matched by Hugging Face name (GGUF names are mapped by the tensor reader; ``base_model.model.`` and
``_orig_mod.`` prefixes are dropped). A PEFT LoRA adapter folder as candidate is applied to the base on the fly
(``W + scale * B @ A``), one matrix at a time. A candidate stored as the same bytes as the base is settled without
decoding a value (:func:`all_byte_identical`).

    >>> base_idx, cand_idx, adapter = tensor_indexes(candidate, base, allow_pickle=False)
    >>> for name, tb, tc, a, b in iter_loaded(sorted(base_idx), base_idx, cand_idx, adapter): ...
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from assay.errors import FormatError, ModelError, ProvenanceError
from assay.model.ref import ModelRef
from assay.progress import Progress
from assay.provenance.lineage.names import canon, is_float, layer_of
from assay.provenance.lineage.report import TensorEvidence, TensorKind
from assay.provenance.lineage.stats import CHUNK, Acc

if TYPE_CHECKING:
    import numpy as np

    from assay.model.tensors import TensorInfo

#: The weight files of a PEFT adapter folder.
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


@dataclass(frozen=True)
class Adapter:
    """A LoRA adapter to apply to the base: ``W + scale * B @ A`` per target matrix."""

    config: dict[str, Any]
    """``adapter_config.json``."""
    scale: float
    """``lora_alpha / r`` (``/ sqrt(r)`` for rsLoRA)."""
    pairs: dict[str, tuple[TensorInfo, TensorInfo]] = field(default_factory=dict)
    """Base tensor name -> its ``(lora_A, lora_B)`` tensors."""


def adapter_config(ref: ModelRef) -> dict[str, Any] | None:
    """The folder's ``adapter_config.json``, None without one; :class:`ModelError` when it cannot be read."""
    if ref.single_file:
        return None
    cfg = ref.root / "adapter_config.json"
    if not cfg.is_file():
        return None
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"{ref.spec}: adapter_config.json is unreadable ({exc})") from exc
    return data if isinstance(data, dict) else None


def load_adapter(ref: ModelRef, config: dict[str, Any], *, allow_pickle: bool) -> Adapter:
    """The LoRA factors of an adapter folder, paired by target; refuses DoRA and non-LoRA PEFT types."""
    from assay.model.tensors import file_tensors

    weights = next((ref.root / f for f in ADAPTER_FILES if (ref.root / f).is_file()), None)
    if weights is None:
        raise ModelError(f"{ref.spec}: adapter_config.json but no adapter_model.safetensors")
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise ProvenanceError(f"{ref.spec}: PEFT type {peft_type} cannot be applied (only LoRA adapters)")
    if config.get("use_dora"):
        raise ProvenanceError(f"{ref.spec}: DoRA adapters cannot be applied on the fly (only plain LoRA)")
    r = int(config.get("r", 8) or 8)
    alpha = float(config.get("lora_alpha", r) or r)
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    tensors = file_tensors(weights, allow_pickle=allow_pickle)
    a_map: dict[str, TensorInfo] = {}
    b_map: dict[str, TensorInfo] = {}
    for t in tensors:
        m = re.match(r"^(.*)\.lora_([AB])(?:\.default)?\.weight$", t.hf_name)
        if not m:
            continue
        target = canon(m.group(1)) + ".weight"
        (a_map if m.group(2) == "A" else b_map)[target] = t
    pairs = {k: (a_map[k], b_map[k]) for k in a_map if k in b_map}
    if not pairs:
        raise ModelError(f"{ref.spec}: the adapter holds no lora_A/lora_B weight pairs")
    return Adapter(config=config, scale=scale, pairs=pairs)


def tensor_indexes(candidate: ModelRef, base: ModelRef, *, allow_pickle: bool) -> tuple[
        dict[str, TensorInfo], dict[str, TensorInfo], Adapter | None]:
    """The float tensors of base and candidate by canonical name; for an adapter folder, no candidate tensors and
    the adapter instead. :class:`ModelError` when a side has no tensors assay can read."""
    from assay.model.inventory import tensor_index

    def index(ref: ModelRef, what: str) -> dict[str, TensorInfo]:
        try:
            idx = tensor_index(ref, allow_pickle=allow_pickle)
        except (ModelError, FormatError) as exc:
            hint = ("torch archives are read only after they scanned safe: run `assay scan`, then pass "
                    "--allow-pickle (allow_pickle=True)") if "allow_pickle" in exc.message else exc.hint
            raise type(exc)(f"{what} {ref.spec}: {exc.message}", hint=hint) from exc
        return {canon(k): v for k, v in idx.items() if is_float(v.dtype)}

    base_idx = index(base, "base")
    if not base_idx:
        raise ModelError(f"base {base.spec} holds no tensors assay can read")
    adapter_cfg = adapter_config(candidate)
    if adapter_cfg is not None and any((candidate.root / f).is_file() for f in ADAPTER_FILES):
        return base_idx, {}, load_adapter(candidate, adapter_cfg, allow_pickle=allow_pickle)
    cand_idx = index(candidate, "candidate")
    if not cand_idx:
        raise ModelError(f"candidate {candidate.spec} holds no tensors assay can read")
    return base_idx, cand_idx, None


def architecture(ref: ModelRef) -> str | None:
    """``model_type`` from the folder's ``config.json``, None when there is none."""
    if ref.single_file:
        return None
    cfg = ref.root / "config.json"
    try:
        data = json.loads(cfg.read_text(encoding="utf-8")) if cfg.is_file() else None
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    return str(data.get("model_type")) if data.get("model_type") else None


def iter_loaded(names: list[str], base_idx: dict[str, TensorInfo], cand_idx: dict[str, TensorInfo],
                adapter: Adapter | None) -> Iterator[tuple[str, TensorInfo, TensorInfo, np.ndarray, np.ndarray]]:
    """``(name, base info, candidate info, base values, candidate values)`` per name, one pair in memory at a time
    (float32; with an adapter, the candidate is the base plus the adapter's update)."""
    import numpy as np

    for name in names:
        tb = base_idx[name]
        a = np.asarray(tb.load(), dtype=np.float32)
        if adapter is not None:
            tc = tb
            b = a
            if name in adapter.pairs:
                ta, tbb = adapter.pairs[name]
                la = np.asarray(ta.load(), dtype=np.float32)
                lb = np.asarray(tbb.load(), dtype=np.float32)
                delta = (lb @ la) * np.float32(adapter.scale)
                if adapter.config.get("fan_in_fan_out"):
                    delta = delta.T
                if delta.shape != a.shape:
                    raise ModelError(f"adapter matrix for {name} has shape {list(delta.shape)}, the base "
                                     f"{list(a.shape)}: this adapter is not for this base")
                b = a + delta
        else:
            tc = cand_idx[name]
            b = np.asarray(tc.load(), dtype=np.float32)
        yield name, tb, tc, a, b
        del a, b


def byte_identical(tb: TensorInfo, tc: TensorInfo) -> bool:
    """The two tensors are stored as the same bytes (same dtype and shape): compared without decoding."""
    import numpy as np

    if "torch" in (tb.layout, tc.layout) or tb.dtype != tc.dtype or tuple(tb.shape) != tuple(tc.shape) \
            or tb.nbytes != tc.nbytes:
        return False
    try:
        if tb.offset == tc.offset and (tb.location == tc.location or tb.location.samefile(tc.location)):
            return True  # the same bytes of the same file (``lineage X --base X``)
        ra, rb = tb._bytes(), tc._bytes()
        step = CHUNK * 8
        return all(np.array_equal(ra[i:i + step], rb[i:i + step]) for i in range(0, tb.nbytes, step))
    except (OSError, FormatError):
        return False


def all_byte_identical(names: list[str], base_idx: dict[str, TensorInfo], cand_idx: dict[str, TensorInfo],
                       progress: Progress) -> tuple[list[TensorEvidence], dict[tuple[str, str], Acc],
                                                    dict[str, Acc]] | None:
    """Evidence for a candidate whose every tensor is byte-identical to the base's, or None at the first that is
    not. Identical bytes settle the relation without dequantising or comparing values (a file against itself
    costs nothing but the header reads)."""
    progress.start("comparing bytes", total=float(len(names)))
    try:
        for name in names:
            if not byte_identical(base_idx[name], cand_idx[name]):
                return None
            progress.advance("comparing bytes")
    finally:
        progress.finish("comparing bytes")
    evidence = []
    layer_acc: dict[tuple[str, str], Acc] = {}
    total_acc: dict[str, Acc] = {}
    for name in names:
        tb, tc = base_idx[name], cand_idx[name]
        evidence.append(TensorEvidence(name=name, layer=layer_of(name), kind=TensorKind.IDENTICAL,
                                       shape_base=tuple(tb.shape), shape_candidate=tuple(tc.shape),
                                       dtype_base=tb.dtype, dtype_candidate=tc.dtype, rel_change=0.0, cosine=1.0,
                                       max_abs_diff=0.0, note="byte-identical"))
        one = Acc(aa=1.0, bb=1.0, ab=1.0, n=1)  # identical: relative change 0, cosine 1
        kind = "mat" if len(tb.shape) >= 2 else "vec"
        layer_acc.setdefault((layer_of(name), kind), Acc()).merge(one)
        total_acc.setdefault(kind, Acc()).merge(one)
    return evidence, layer_acc, total_acc
