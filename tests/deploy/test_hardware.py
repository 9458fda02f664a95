"""Memory estimates and device fit, checked by hand."""

from __future__ import annotations

from assay.deploy.hardware import devices, estimate_memory, hardware_fit, shape_from_config

LLAMA_8B = {"num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8, "hidden_size": 4096,
            "max_position_embeddings": 131072}


def test_estimate_by_hand() -> None:
    shape = shape_from_config(LLAMA_8B, parameters=8_000_000_000)
    assert (shape.layers, shape.kv_heads, shape.head_dim) == (32, 8, 128)
    e16 = estimate_memory(shape, bits=16, context=8192, batch=1)
    assert e16.weights_bytes == 16_000_000_000
    # 2 (K and V) * 32 layers * 8 heads * 128 dims * 8192 tokens * 2 bytes = 1 GiB exactly.
    assert e16.kv_cache_bytes == 2 * 32 * 8 * 128 * 8192 * 2 == 2**30
    assert e16.total_bytes == e16.weights_bytes + e16.kv_cache_bytes + e16.overhead_bytes
    e4 = estimate_memory(shape, bits=4, context=8192, batch=4)
    assert e4.weights_bytes == 4_500_000_000  # 4.5 bits per weight with block scales
    assert e4.kv_cache_bytes == 4 * 2**30


def test_fit_table() -> None:
    shape = shape_from_config(LLAMA_8B, parameters=8_000_000_000)
    fit = hardware_fit(shape, context=8192)
    by = {(f.device.name, f.bits): f for f in fit.fits}
    assert not by[("NVIDIA T4 16GB", 16)].fits   # 16 GB of weights alone
    assert by[("NVIDIA L4 24GB", 16)].fits
    assert by[("NVIDIA T4 16GB", 4)].fits
    assert by[("NVIDIA H100 80GB", 16)].fits
    assert len(fit.fits) == 3 * len(devices())
    h100 = "NVIDIA H100 80GB"
    assert by[(h100, 4)].decode_tokens_per_s_bound > by[(h100, 16)].decode_tokens_per_s_bound


def test_gguf_style_keys_and_missing_shape() -> None:
    shape = shape_from_config({"llama.block_count": 30, "llama.attention.head_count": 9,
                               "llama.attention.head_count_kv": 3, "llama.embedding_length": 576,
                               "llama.context_length": 8192}, parameters=134_515_008)
    assert (shape.layers, shape.kv_heads, shape.head_dim, shape.context_length) == (30, 3, 64, 8192)
    bare = hardware_fit(shape_from_config({}, parameters=1000))
    assert bare.estimates[0].kv_cache_bytes == 0 and len(bare.notes) == 2


def test_devices_table() -> None:
    names = [d.name for d in devices()]
    for needle in ("T4", "L4", "A10", "A100 40GB", "A100 80GB", "H100", "RTX 4090", "Apple", "Laptop CPU"):
        assert any(needle in n for n in names), needle
    assert all(0 < d.usable_fraction <= 1 for d in devices())
