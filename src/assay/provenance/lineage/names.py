"""Tensor names and dtypes as lineage sees them: which layer a tensor belongs to, and which dtypes are floats.

    >>> layer_of("model.layers.3.mlp.up_proj.weight"), layer_of("model.embed_tokens.weight")
    ('3', 'embed')
    >>> sorted(["head", "2", "embed", "10"], key=layer_order)
    ['embed', '2', '10', 'head']
"""

from __future__ import annotations

import re

_LAYER = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\.")


def layer_of(name: str) -> str:
    """``embed``, the decoder layer number, ``head`` or ``other``."""
    m = _LAYER.search(name)
    if m:
        return m.group(1)
    low = name.lower()
    if "embed" in low or "wte" in low or "token_embd" in low:
        return "embed"
    if "lm_head" in low or low.startswith("output") or ".output." in low:
        return "head"
    return "other"


def layer_order(layer: str) -> tuple[int, int]:
    """Sort key putting layers in model order: embedding, decoder layers by number, others, head."""
    if layer == "embed":
        return (0, 0)
    if layer.isdigit():
        return (1, int(layer))
    return (2 if layer == "other" else 3, 0)


def layer_label(layer: str) -> str:
    """``layer 3`` for a decoder layer, else the name (``embed``...)."""
    return f"layer {layer}" if layer.isdigit() else layer


def is_float(dtype: str) -> bool:
    """A floating-point or quantised dtype (lineage compares only these: not integer buffers or masks)."""
    return not dtype.upper().startswith(("I", "U", "BOOL")) or dtype.upper().startswith("IQ")


def is_quantized(dtype: str) -> bool:
    """A GGML block type (``Q8_0``, ``IQ4_XS``...) or an 8-bit float."""
    d = dtype.upper()
    return d.startswith(("Q", "IQ", "TQ")) or d in ("F8_E4M3", "F8_E5M2")


def canon(name: str) -> str:
    """The name without a PEFT (``base_model.model.``) or ``torch.compile`` (``_orig_mod.``) prefix."""
    for prefix in ("base_model.model.", "_orig_mod."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name
