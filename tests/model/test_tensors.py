"""The streaming tensor reader: names, shapes and values equal the factory model's state dict in every format."""

from __future__ import annotations

import io
import os
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from assay.errors import FormatError, ModelError
from assay.model.ref import resolve
from assay.model.inventory import iter_tensors, tensor_index
from assay.model.tensors import TensorInfo, file_tensors, gguf_to_hf_name, read_safetensors_header
from assay.model.pickle_vm import evaluate_pickle


@pytest.fixture(scope="module")
def state_dict(zoo) -> dict[str, np.ndarray]:  # type: ignore[no-untyped-def]
    return {k: v.detach().numpy() for k, v in zoo.model().state_dict().items()}


EXACT = {"safetensors": ("safetensors_dir", False), "sharded": ("sharded_dir", False), "bin": ("bin_dir", True),
         "legacy": ("legacy_pickle", True), "gguf-f32": ("gguf_f32", False)}


@pytest.mark.parametrize("kind", sorted(EXACT))
def test_values_equal_the_model(zoo, state_dict, kind: str) -> None:  # type: ignore[no-untyped-def]
    attr, allow = EXACT[kind]
    index = tensor_index(resolve(getattr(zoo, attr)), allow_pickle=allow)
    assert set(index) == set(state_dict)
    for name, expected in state_dict.items():
        t = index[name]
        assert t.shape == expected.shape and t.dtype == "F32"
        got = t.load()
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, expected, err_msg=name)
        assert len(t.raw()) == t.nbytes
        if t.transform is None:  # stored as in the model (GGUF Q/K rows are stored permuted; see below)
            assert t.raw() == expected.tobytes(), name


def test_gguf_names_shapes_and_unpermuted_q_k(zoo, state_dict) -> None:  # type: ignore[no-untyped-def]
    tensors = list(iter_tensors(zoo.gguf_f32))
    assert {t.hf_name for t in tensors} == set(state_dict)
    q = next(t for t in tensors if t.hf_name == "model.layers.0.self_attn.q_proj.weight")
    assert q.name == "blk.0.attn_q.weight"
    # llama.cpp permuted the rows on conversion; load() gives back the Hugging Face layout exactly.
    np.testing.assert_array_equal(q.load(), state_dict[q.hf_name])
    assert not np.array_equal(np.frombuffer(q.raw(), dtype=np.float32).reshape(q.shape), state_dict[q.hf_name])


def test_gguf_f16_stays_float16(zoo, state_dict) -> None:  # type: ignore[no-untyped-def]
    index = tensor_index(zoo.gguf_f16)
    t = index["model.layers.1.mlp.down_proj.weight"]
    assert t.dtype == "F16"
    got = t.load()
    assert got.dtype == np.float16
    np.testing.assert_array_equal(got, state_dict[t.hf_name].astype(np.float16))


def test_gguf_q8_0_is_dequantised(zoo, state_dict) -> None:  # type: ignore[no-untyped-def]
    index = tensor_index(zoo.gguf_q8_0)
    for name, expected in state_dict.items():
        t = index[name]
        got = t.load()
        assert got.dtype == np.float32 and got.shape == expected.shape
        if t.dtype == "Q8_0":
            # Q8_0: 8-bit codes, one float16 scale per block of 32: error about half a step (plus scale rounding).
            step = np.abs(expected).max() / 127
            assert np.abs(got - expected).max() <= step * 0.6, name
            assert t.nbytes == expected.size // 32 * 34
        else:
            np.testing.assert_array_equal(got, expected)


def test_real_gguf_tensor_matches_gguf_reader(smollm2_gguf: Path, smollm2_reader) -> None:  # type: ignore[no-untyped-def]
    """One tensor of the bundled SmolLM2 Q4_1 GGUF, dequantised, equals gguf's own reader + dequantize."""
    import gguf

    ours = tensor_index(smollm2_gguf)
    assert "model.embed_tokens.weight" in ours and "model.layers.29.mlp.down_proj.weight" in ours
    reader = smollm2_reader
    ref = next(t for t in reader.tensors if t.name == "blk.3.ffn_down.weight")
    t = ours["model.layers.3.mlp.down_proj.weight"]
    assert t.dtype == "Q4_1" and t.shape == tuple(int(d) for d in reversed(ref.shape))
    assert t.raw() == bytes(ref.data)
    np.testing.assert_array_equal(t.load(), gguf.quants.dequantize(ref.data, ref.tensor_type))


def test_bf16_and_f16_safetensors(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 16, generator=g)
    save_file({"b": a.to(torch.bfloat16), "h": a.to(torch.float16), "i": torch.arange(10, dtype=torch.int64)},
              tmp_path / "m.safetensors")
    index = tensor_index(tmp_path / "m.safetensors")
    assert index["b"].dtype == "BF16" and index["b"].load().dtype == np.float32
    np.testing.assert_array_equal(index["b"].load(), a.to(torch.bfloat16).float().numpy())
    assert index["h"].load().dtype == np.float16
    np.testing.assert_array_equal(index["h"].load(), a.to(torch.float16).numpy())
    np.testing.assert_array_equal(index["i"].load(), np.arange(10))
    assert index["b"].raw() == a.to(torch.bfloat16).view(torch.uint8).numpy().tobytes()


def test_float8_safetensors(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    values = torch.tensor([0.0, 1.0, -2.5, 0.125, 448.0, -0.001953125])
    save_file({"e4": values.to(torch.float8_e4m3fn), "e5": values.to(torch.float8_e5m2)}, tmp_path / "f8.safetensors")
    index = tensor_index(tmp_path / "f8.safetensors")
    np.testing.assert_array_equal(index["e4"].load(), values.to(torch.float8_e4m3fn).float().numpy())
    np.testing.assert_array_equal(index["e5"].load(), values.to(torch.float8_e5m2).float().numpy())


def test_torch_archives_need_allow_pickle(zoo) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelError, match="allow_pickle"):
        list(iter_tensors(resolve(zoo.bin_dir)))
    with pytest.raises(ModelError, match="allow_pickle"):
        list(iter_tensors(zoo.legacy_pickle))


def test_name_order_within_a_file(zoo) -> None:  # type: ignore[no-untyped-def]
    tensors = list(iter_tensors(resolve(zoo.sharded_dir)))
    by_file: dict[str, list[str]] = {}
    for t in tensors:
        by_file.setdefault(t.file, []).append(t.name)
    assert len(by_file) > 1
    for names in by_file.values():
        assert names == sorted(names)
    assert [t.file for t in tensors] == sorted(t.file for t in tensors)


def test_one_tensor_of_a_huge_sparse_file_reads_only_that_tensor(tmp_path: Path) -> None:
    """A 16 GB (sparse) safetensors file: listing and reading one tensor take a moment and no RAM."""
    import json

    big = 4 * 1024**3  # 4 Gi float32 elements = 16 GiB
    header = {"big": {"dtype": "F32", "shape": [big], "data_offsets": [0, 4 * big]},
              "small": {"dtype": "F32", "shape": [4], "data_offsets": [4 * big, 4 * big + 16]}}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    p = tmp_path / "huge.safetensors"
    with p.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.seek(8 + len(raw) + 4 * big)
        fh.write(np.arange(4, dtype=np.float32).tobytes())
    assert os.stat(p).st_blocks * 512 < 1024**2  # sparse: nothing but the header is on disk
    started = time.perf_counter()
    index = tensor_index(p)
    np.testing.assert_array_equal(index["small"].load(), np.arange(4, dtype=np.float32))
    assert time.perf_counter() - started < 5
    assert index["big"].numel == big


def test_truncated_safetensors_header(tmp_path: Path) -> None:
    raw = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    p = tmp_path / "t.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw[:20])
    with pytest.raises(FormatError, match="truncated"):
        read_safetensors_header(p)
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(4))
    with pytest.raises(FormatError, match="truncated"):
        read_safetensors_header(p)
    p.write_bytes(struct.pack("<Q", len(raw)) + raw.replace(b"[0,8]", b"[0,6]") + bytes(8))
    with pytest.raises(FormatError, match="needs 8"):
        read_safetensors_header(p)


def test_truncated_gguf(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    data = zoo.gguf_q8_0.read_bytes()
    for cut in (30, 2000, len(data) - 100):
        p = tmp_path / f"cut{cut}.gguf"
        p.write_bytes(data[:cut])
        with pytest.raises(FormatError, match="truncated"):
            file_tensors(p)


def test_gguf_to_hf_name() -> None:
    assert gguf_to_hf_name("token_embd.weight", "llama") == "model.embed_tokens.weight"
    assert gguf_to_hf_name("blk.11.attn_k.weight", "llama") == "model.layers.11.self_attn.k_proj.weight"
    assert gguf_to_hf_name("blk.0.ffn_down.weight", "qwen2") == "model.layers.0.mlp.down_proj.weight"
    assert gguf_to_hf_name("blk.2.attn_q.bias", "qwen2") == "model.layers.2.self_attn.q_proj.bias"
    assert gguf_to_hf_name("output.weight", "llama") == "lm_head.weight"
    assert gguf_to_hf_name("output_norm.weight", "gemma2") == "model.norm.weight"
    assert gguf_to_hf_name("blk.1.post_ffw_norm.weight", "gemma2") == \
        "model.layers.1.post_feedforward_layernorm.weight"
    # With the names a checkpoint really uses, the matching spelling is chosen.
    known = {"model.layers.0.self_attn.qkv_proj.weight"}
    assert gguf_to_hf_name("blk.0.attn_qkv.weight", "phi3", known=known) == "model.layers.0.self_attn.qkv_proj.weight"
    assert gguf_to_hf_name("not_a_tensor.weight", "llama") == "not_a_tensor.weight"
    assert gguf_to_hf_name("token_embd.weight", "no-such-arch") == "token_embd.weight"


class _Boom:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("touch /tmp/assay-walk-pickle-executed",))


def test_symbolic_pickle_executes_nothing() -> None:
    marker = Path("/tmp/assay-walk-pickle-executed")
    marker.unlink(missing_ok=True)
    for proto in (0, 2, 4, 5):
        root = evaluate_pickle(io.BytesIO(pickle.dumps({"x": _Boom(), "n": [1, 2]}, protocol=proto)))
        assert root is not None
    assert not marker.exists()


def test_tensor_info_is_frozen(zoo) -> None:  # type: ignore[no-untyped-def]
    t = next(iter(iter_tensors(zoo.safetensors_dir)))
    assert isinstance(t, TensorInfo)
    with pytest.raises(AttributeError):
        t.name = "x"  # type: ignore[misc]
