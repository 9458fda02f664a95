"""Memory a model needs at 16, 8 and 4 bits plus its key/value cache, and which common devices it fits.

The device table is data (``assay/deploy/data/gpus.yaml``). The estimate, per weight precision:

- weights: ``parameters * bytes_per_weight`` with 2 bytes at 16 bits, 1.0625 at 8 bits and 0.5625 at 4 bits
  (8- and 4-bit formats store a 16-bit scale per block of 32 weights, as GGUF Q8_0 / Q4_0 do);
- key/value cache: ``2 * layers * kv_heads * head_dim * context * batch * 2 bytes`` (16-bit cache);
- runtime overhead: 5% of the weights plus 256 MiB (activations, allocator, CUDA context). An approximation:
  the bench measures the real figure on this machine.

A device fits when the total is within ``memory * usable_fraction``. The decode bound is the memory-bandwidth
roofline at batch 1 (every weight read once per token): real servers reach perhaps 50-80% of it.

    >>> shape = shape_from_config({"num_hidden_layers": 32, "num_key_value_heads": 8, "num_attention_heads": 32,
    ...                            "hidden_size": 4096}, parameters=8_030_000_000)
    >>> [f.device.name for f in hardware_fit(shape, context=8192).fits if f.bits == 4 and f.fits][:2]
    ['NVIDIA T4 16GB', 'NVIDIA L4 24GB']
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from assay.errors import DeployError

#: Bytes stored per weight at each precision (block scales included for 8 and 4 bits).
BYTES_PER_WEIGHT = {16: 2.0, 8: 34 / 32, 4: 18 / 32}
#: Bytes per key/value cache element.
KV_BYTES = 2
#: Runtime overhead: a share of the weights plus a fixed amount.
OVERHEAD_FRACTION, OVERHEAD_FIXED = 0.05, 256 * 1024 * 1024


@dataclass(frozen=True)
class Device:
    """A device from ``data/gpus.yaml``."""

    name: str
    """Display name."""
    memory_gb: float
    """Memory, GB (10^9 bytes)."""
    usable_fraction: float
    """Share of the memory a model can use."""
    kind: str
    """``gpu``, ``apple`` or ``cpu``."""
    bandwidth_gbs: float
    """Memory bandwidth, GB/s."""
    price_per_hour: float | None
    """Indicative on-demand price, USD per hour (None for devices one buys)."""

    @property
    def usable_bytes(self) -> int:
        """Bytes a model can use."""
        return int(self.memory_gb * 1e9 * self.usable_fraction)


@dataclass(frozen=True)
class ModelShape:
    """What the memory estimate needs from a model's config."""

    parameters: int
    """Number of parameters."""
    layers: int | None
    """Transformer layers."""
    kv_heads: int | None
    """Key/value heads per layer (grouped-query attention uses fewer than query heads)."""
    head_dim: int | None
    """Dimension per head."""
    context_length: int | None
    """The model's maximum context."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Memory needed at one weight precision."""

    bits: int
    """Weight precision."""
    weights_bytes: int
    """Weights."""
    kv_cache_bytes: int
    """Key/value cache for the context and batch (0 when the config lacks the shape)."""
    overhead_bytes: int
    """Runtime overhead."""
    total_bytes: int
    """Sum of the three."""


@dataclass(frozen=True)
class DeviceFit:
    """Whether a model at one precision fits a device."""

    device: Device
    """The device."""
    bits: int
    """Weight precision."""
    fits: bool
    """True when the total is within the device's usable memory."""
    headroom_bytes: int
    """Usable memory left (negative: short by that much)."""
    decode_tokens_per_s_bound: float
    """Bandwidth roofline for decoding at batch 1 (tokens per second)."""


@dataclass(frozen=True)
class FitReport:
    """Memory estimates and the device table."""

    shape: ModelShape
    """The model's shape."""
    context: int
    """Context length the cache is sized for."""
    batch: int
    """Concurrent sequences the cache is sized for."""
    estimates: tuple[MemoryEstimate, ...]
    """One estimate per precision."""
    fits: tuple[DeviceFit, ...]
    """Every device at every precision."""
    notes: tuple[str, ...]
    """Caveats (e.g. the key/value cache could not be sized)."""


@functools.cache
def devices() -> tuple[Device, ...]:
    """The device table."""
    text = resources.files("assay.deploy").joinpath("data", "gpus.yaml").read_text(encoding="utf-8")
    return tuple(Device(name=d["name"], memory_gb=float(d["memory_gb"]), usable_fraction=float(d["usable_fraction"]),
                        kind=d["kind"], bandwidth_gbs=float(d["bandwidth_gbs"]), price_per_hour=d.get("price_per_hour"))
                 for d in yaml.safe_load(text))


def _get(config: Mapping[str, Any], *names: str) -> int | None:
    for name in names:
        value = config.get(name)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)) and value > 0:
            return int(value)
    # GGUF metadata keys carry the architecture as a prefix: llama.block_count, qwen2.attention.head_count_kv ...
    for key, value in config.items():
        if any(str(key).endswith("." + n) for n in names) and isinstance(value, (int, float)) and value > 0:
            return int(value)
    text_cfg = config.get("text_config")
    if isinstance(text_cfg, Mapping):
        return _get(text_cfg, *names)
    return None


def shape_from_config(config: Mapping[str, Any], *, parameters: int) -> ModelShape:
    """The :class:`ModelShape` from a Hugging Face ``config.json`` or GGUF metadata."""
    layers = _get(config, "num_hidden_layers", "n_layer", "num_layers", "block_count")
    heads = _get(config, "num_attention_heads", "n_head", "attention.head_count")
    kv_heads = _get(config, "num_key_value_heads", "attention.head_count_kv", "multi_query_group_num") or heads
    hidden = _get(config, "hidden_size", "n_embd", "d_model", "embedding_length")
    head_dim = _get(config, "head_dim", "attention.key_length")
    if head_dim is None and hidden and heads:
        head_dim = hidden // heads
    context = _get(config, "max_position_embeddings", "n_positions", "context_length", "seq_length")
    return ModelShape(parameters=int(parameters), layers=layers, kv_heads=kv_heads, head_dim=head_dim,
                      context_length=context)


def shape_from_inventory(inv: Any) -> ModelShape:
    """The :class:`ModelShape` of an :class:`assay.model.inventory.Inventory` (parameters and config)."""
    params = getattr(inv, "parameters", None)
    if not params:
        raise DeployError("the model's parameter count is unknown, so its memory cannot be estimated")
    config: dict[str, Any] = {}
    for source in (getattr(inv, "gguf", None), getattr(inv, "config", None)):  # config.json wins over GGUF keys
        if isinstance(source, Mapping):
            config.update(source)
    shape = shape_from_config(config, parameters=int(params))
    ctx = getattr(inv, "context_length", None)
    if shape.context_length is None and isinstance(ctx, int):
        shape = ModelShape(shape.parameters, shape.layers, shape.kv_heads, shape.head_dim, ctx)
    return shape


def estimate_memory(shape: ModelShape, *, bits: int, context: int, batch: int = 1) -> MemoryEstimate:
    """Memory needed at ``bits`` per weight with a cache for ``context`` tokens times ``batch`` sequences."""
    if bits not in BYTES_PER_WEIGHT:
        raise DeployError(f"unsupported precision {bits} bits (choose from {sorted(BYTES_PER_WEIGHT)})")
    if context < 0 or batch < 1:
        raise DeployError("context must be >= 0 and batch >= 1")
    weights = int(shape.parameters * BYTES_PER_WEIGHT[bits])
    kv = 0
    if shape.layers and shape.kv_heads and shape.head_dim:
        kv = 2 * shape.layers * shape.kv_heads * shape.head_dim * context * batch * KV_BYTES
    overhead = int(weights * OVERHEAD_FRACTION + OVERHEAD_FIXED)
    return MemoryEstimate(bits, weights, kv, overhead, weights + kv + overhead)


def hardware_fit(shape: ModelShape, *, context: int | None = None, batch: int = 1,
                 bits: tuple[int, ...] = (16, 8, 4)) -> FitReport:
    """Estimates at each precision and whether each device of the table fits them."""
    notes: list[str] = []
    ctx = context if context is not None else (shape.context_length or 4096)
    if context is None and shape.context_length is None:
        notes.append("the config gives no context length: the cache is sized for 4096 tokens")
    if not (shape.layers and shape.kv_heads and shape.head_dim):
        notes.append("the config lacks layers / key-value heads / head size: the key/value cache is not counted")
    estimates = tuple(estimate_memory(shape, bits=b, context=ctx, batch=batch) for b in bits)
    fits = tuple(DeviceFit(device=d, bits=e.bits, fits=e.total_bytes <= d.usable_bytes,
                           headroom_bytes=d.usable_bytes - e.total_bytes,
                           decode_tokens_per_s_bound=d.bandwidth_gbs * 1e9 / max(e.weights_bytes, 1))
                 for e in estimates for d in devices())
    return FitReport(shape=shape, context=ctx, batch=batch, estimates=estimates, fits=fits, notes=tuple(notes))
