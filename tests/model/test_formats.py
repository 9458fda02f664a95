"""Format detection reads content, never names: every factory file, the same files renamed, and every format
of the Format enum that can be built in a test."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import pickle
import shutil
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from assay.errors import FormatError
from assay.model.formats import Format, detect, detect_bytes
from tests.model.conftest import run_unprivileged

# ------------------------------------------------------------------------------------------ factory files


def _zoo_expectations(zoo) -> dict[Path, Format]:  # type: ignore[no-untyped-def]
    exp: dict[Path, Format] = {
        zoo.safetensors_dir / "model.safetensors": Format.SAFETENSORS,
        zoo.safetensors_dir / "config.json": Format.JSON,
        zoo.safetensors_dir / "generation_config.json": Format.JSON,
        zoo.safetensors_dir / "tokenizer.json": Format.JSON,
        zoo.safetensors_dir / "tokenizer_config.json": Format.JSON,
        zoo.safetensors_dir / "README.md": Format.MARKDOWN,
        zoo.sharded_dir / "model.safetensors.index.json": Format.JSON,
        zoo.bin_dir / "pytorch_model.bin": Format.TORCH_ZIP,
        zoo.legacy_pickle: Format.PICKLE,
        zoo.gguf_f32: Format.GGUF,
        zoo.gguf_f16: Format.GGUF,
        zoo.gguf_q8_0: Format.GGUF,
        zoo.lora_dir / "adapter_model.safetensors": Format.SAFETENSORS,
        zoo.lora_dir / "adapter_config.json": Format.JSON,
    }
    for shard in zoo.sharded_dir.glob("model-*-of-*.safetensors"):
        exp[shard] = Format.SAFETENSORS
    return exp


def test_every_factory_file_is_detected(zoo) -> None:  # type: ignore[no-untyped-def]
    exp = _zoo_expectations(zoo)
    assert len([p for p in exp if p.parent == zoo.sharded_dir and p.suffix == ".safetensors"]) >= 2
    for path, fmt in exp.items():
        assert detect(path) is fmt, path
    # Every file the factory wrote has a known format (nothing falls through to unknown).
    for path in zoo.root.rglob("*"):
        if path.is_file():
            assert detect(path) is not Format.UNKNOWN, path


@pytest.mark.parametrize("new_name", ["model.safetensors", "weights.gguf", "pytorch_model.bin", "config.json",
                                      "README.md", "notes.txt", "noext"])
def test_renamed_factory_files_keep_their_format(zoo, tmp_path: Path, new_name: str) -> None:  # type: ignore[no-untyped-def]
    for i, (src, fmt) in enumerate(_zoo_expectations(zoo).items()):
        dst = tmp_path / str(i) / new_name
        dst.parent.mkdir()
        shutil.copyfile(src, dst)
        assert detect(dst) is fmt, (src, new_name)


def test_chat_template_file_is_jinja(tmp_path: Path) -> None:
    from tests.factory.models import CHAT_TEMPLATE

    p = tmp_path / "chat_template.jinja"
    p.write_text(CHAT_TEMPLATE)
    assert detect(p) is Format.JINJA
    renamed = tmp_path / "template.json"
    renamed.write_text(CHAT_TEMPLATE)
    assert detect(renamed) is Format.JINJA


# ------------------------------------------------------------------------------------------ built formats


def _npy() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.arange(12, dtype=np.float32).reshape(3, 4))
    return buf.getvalue()


def _npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros(3), b=np.ones((2, 2)))
    return buf.getvalue()


def _hdf5() -> bytes:
    # HDF5 superblock v0: signature, versions, sizes; the rest of a real file follows.
    return b"\x89HDF\r\n\x1a\n" + bytes([0, 0, 0, 0, 0, 8, 8, 0]) + b"\x04\x00\x10\x00" + bytes(200)


def _hdf5_with_userblock() -> bytes:
    return bytes(512) + _hdf5()


def _tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        data = b"hello"
        info = tarfile.TarInfo("hello.txt")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _elf() -> bytes:
    # 64-bit little-endian ELF header of a shared object (e_type 3 = ET_DYN), x86-64.
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    return ident + struct.pack("<HHIQQQIHHHHHH", 3, 0x3E, 1, 0, 64, 0, 0, 64, 56, 0, 64, 0, 0) + bytes(64)


def _pe() -> bytes:
    dos = bytearray(b"MZ" + bytes(0x3A) + struct.pack("<I", 0x80))
    dos += bytes(0x80 - len(dos))
    return bytes(dos) + b"PE\x00\x00" + struct.pack("<HH", 0x8664, 1) + bytes(200)


def _macho() -> bytes:
    return b"\xcf\xfa\xed\xfe" + struct.pack("<iiIIII", 0x01000007, 3, 6, 0, 0, 0) + bytes(64)


def _onnx() -> bytes:
    # ModelProto: ir_version=8, producer_name="pytorch", producer_version="2.1.0", graph{name, input name}.
    def field(tag: int, payload: bytes) -> bytes:
        return bytes([tag, len(payload)]) + payload

    graph = field(0x0A, field(0x0A, b"onnx::MatMul_0")) + field(0x12, b"main_graph")
    return b"\x08\x08" + field(0x12, b"pytorch") + field(0x1A, b"2.1.0") + field(0x3A, graph) + b"\x42\x02\x10\x11"


def _sentencepiece() -> bytes:
    # ModelProto { pieces { piece: "<unk>" score: 0.0 type: UNKNOWN } pieces { piece: "▁the" score: -1 } }
    def piece(text: str, score: float, typ: int) -> bytes:
        body = b"\x0a" + bytes([len(text.encode())]) + text.encode() + b"\x15" + struct.pack("<f", score)
        body += b"\x18" + bytes([typ])
        return b"\x0a" + bytes([len(body)]) + body

    return piece("<unk>", 0.0, 2) + piece("\u2581the", -1.0, 1) + piece("\u2581a", -2.0, 1)


BUILT: dict[str, tuple[bytes, Format]] = {
    "npy": (_npy(), Format.NUMPY),
    "npz": (_npz(), Format.NPZ),
    "hdf5": (_hdf5(), Format.HDF5),
    "hdf5-userblock": (_hdf5_with_userblock(), Format.HDF5),
    "tar": (_tar(), Format.TAR),
    "gzip": (gzip.compress(b"hello world" * 10), Format.GZIP),
    "bzip2": (bz2.compress(b"hello world" * 10), Format.BZIP2),
    "xz": (lzma.compress(b"hello world" * 10), Format.XZ),
    "7z": (b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24), Format.SEVEN_ZIP),
    "zstd": (b"\x28\xb5\x2f\xfd\x24\x05\x29\x00\x00hello", Format.ZSTD),
    "elf": (_elf(), Format.ELF),
    "pe": (_pe(), Format.PE),
    "mach-o": (_macho(), Format.MACHO),
    "onnx": (_onnx(), Format.ONNX),
    "sentencepiece": (_sentencepiece(), Format.SENTENCEPIECE),
    "zip": (_zip({"a.txt": b"hello", "b/c.txt": b"world"}), Format.ZIP),
    "keras": (_zip({"metadata.json": b"{}", "config.json": b"{}", "model.weights.h5": _hdf5()}), Format.KERAS),
    "torchscript": (_zip({"m/data.pkl": pickle.dumps({}), "m/code/__torch__.py": b"def f(): pass",
                          "m/constants.pkl": pickle.dumps(())}), Format.TORCHSCRIPT),
    "torch-zip": (_zip({"archive/data.pkl": pickle.dumps({}), "archive/data/0": bytes(16),
                        "archive/version": b"3\n"}), Format.TORCH_ZIP),
    "pickle-p0": (pickle.dumps({"a": [1, 2, 3]}, protocol=0), Format.PICKLE),
    "pickle-p1": (pickle.dumps({"a": [1, 2, 3]}, protocol=1), Format.PICKLE),
    "pickle-p2": (pickle.dumps({"a": [1, 2, 3]}, protocol=2), Format.PICKLE),
    "pickle-p4": (pickle.dumps({"a": [1, 2, 3]}, protocol=4), Format.PICKLE),
    "pickle-p5": (pickle.dumps({"a": [1, 2, 3]}, protocol=5), Format.PICKLE),
    "json": (b'{"model_type": "llama", "vocab_size": 32000}', Format.JSON),
    "json-list": (b"[1, 2, 3]\n", Format.JSON),
    "python": (b"import os\n\ndef run():\n    return os.getcwd()\n", Format.PYTHON),
    "python-shebang": (b"#!/usr/bin/env python3\nprint('hi')\n", Format.PYTHON),
    "shell": (b"#!/bin/sh\necho hi\n", Format.SCRIPT),
    "jinja": (b"{% for m in messages %}{{ m['content'] }}{% endfor %}", Format.JINJA),
    "markdown": (b"# Title\n\nSome words.\n\n- a list\n", Format.MARKDOWN),
    "markdown-front-matter": (b"---\nlicense: mit\n---\n\n# Card\n", Format.MARKDOWN),
    "yaml": (b"---\nlicense: mit\ntags: [a, b]\n", Format.YAML),
    "text": (b"just some words on a line\nand another line\n", Format.TEXT),
    "empty": (b"", Format.EMPTY),
    "random": (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), Format.UNKNOWN),
    "zeros": (bytes(1024), Format.UNKNOWN),
    # Binary junk that happens to hold a zip end-of-directory signature is not a zip.
    "random-with-zip-end": (bytes(np.random.default_rng(2).integers(0, 256, 4096, dtype=np.uint8))
                            + b"PK\x05\x06" + bytes(18), Format.UNKNOWN),
}


@pytest.mark.parametrize("kind", sorted(BUILT))
def test_built_formats_are_detected_under_any_name(kind: str, tmp_path: Path) -> None:
    data, fmt = BUILT[kind]
    for name in ("model.safetensors", "pytorch_model.bin", "file"):
        p = tmp_path / name
        p.write_bytes(data)
        assert detect(p) is fmt, (kind, name)
    assert detect_bytes(data) is fmt


def test_safetensors_needs_a_real_header(tmp_path: Path) -> None:
    header = b'{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'
    good = struct.pack("<Q", len(header)) + header + bytes(8)
    assert detect_bytes(good) is Format.SAFETENSORS
    # A length prefix followed by something that is not JSON is not safetensors.
    assert detect_bytes(struct.pack("<Q", 20) + b"not json at all....." + bytes(8)) is not Format.SAFETENSORS


def test_torch_zip_with_prefix_is_still_a_zip(tmp_path: Path) -> None:
    """A zip with junk prepended (its directory at the end) is found by its end record, not its first bytes."""
    data = b"junk" * 10 + BUILT["torch-zip"][0]
    p = tmp_path / "weights.txt"
    p.write_bytes(data)
    assert detect(p) in (Format.TORCH_ZIP, Format.ZIP)
    assert detect(p) is not Format.UNKNOWN


def test_format_enum_is_covered() -> None:
    """Every Format value except the ones only real files produce (GGUF/safetensors come from the factory)."""
    built = {fmt for _data, fmt in BUILT.values()}
    from_factory = {Format.SAFETENSORS, Format.GGUF}
    assert set(Format) - built - from_factory == set()


# ------------------------------------------------------------------------------------------ errors


def test_detect_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no such file"):
        detect(tmp_path / "nope.bin")


def test_detect_folder(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="is a folder"):
        detect(tmp_path)


def test_detect_fifo_does_not_block(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "model.bin")
    with pytest.raises(FormatError, match="not a regular file"):
        detect(tmp_path / "model.bin")


def test_detect_permission_denied(locked_tmp: Path) -> None:
    """As an unprivileged user, a file without read permission is refused with a one-line error."""
    p = locked_tmp / "model.safetensors"
    p.write_bytes(BUILT["npy"][0])
    p.chmod(0o000)
    if os.geteuid() != 0:
        with pytest.raises(FormatError, match="permission denied"):
            detect(p)
    run = run_unprivileged(["inspect", str(p)])
    assert run.rc == 2, run
    assert run.err.strip().startswith("error: permission denied"), run.err
    assert "Traceback" not in run.err
