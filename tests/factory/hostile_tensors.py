"""Hostile tensor files: payloads hidden in tensor data, and denial-of-service files, built in code.

Each payload sample is written by the format's own writer (``safetensors``, ``gguf.GGUFWriter``,
``torch.save``), so the real loader accepts it; the payload is harmless (it creates a marker file). The tests in
``tests/scan/test_hostile_tensors.py`` prove each sample in a throwaway subprocess (the loader accepts the
file, and the tensor's bytes, used as what they are, create the marker), then show ``assay scan`` is not ``safe``.

    >>> samples = build_payload_samples(tmp_path, marker=tmp_path / "MARKER")
    >>> samples[0].name, samples[0].kind
    ('safetensors-pickle', 'pickle')
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PayloadSample:
    """A tensor file whose tensor ``tensor`` holds a payload of ``kind``."""

    name: str
    path: Path
    format: str
    """``safetensors``, ``gguf``, ``torch-zip`` or ``torch-legacy``."""
    tensor: str
    kind: str
    """``pickle``, ``elf``, ``script``, ``pe`` or ``macho``."""


@dataclass(frozen=True)
class DosSample:
    """A small or cheap-to-load file that once made assay hang or blow up its memory."""

    name: str
    path: Path
    command: str
    """The assay command it targets (``scan`` or ``inspect``)."""
    exit_codes: tuple[int, ...]
    """What assay must answer (never 0 for a scan of a hostile file)."""


# Payloads ---------------------------------------------------------------------------------------------------------

def pickle_payload(marker: Path) -> bytes:
    """A protocol-0 pickle that runs ``touch MARKER`` when unpickled."""
    return f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()


def pickle4_payload(marker: Path) -> bytes:
    """The same call written by the standard pickler at protocol 4 (STACK_GLOBAL, framing)."""
    import pickle

    class _Run:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (os.system, (f"touch {marker}",))

    return pickle.dumps(_Run(), protocol=4)


def script_payload(marker: Path) -> bytes:
    """A shell script that creates the marker."""
    return f"#!/bin/sh\ntouch '{marker}'\n".encode()


def elf_payload() -> bytes:
    """A real ELF executable: this machine's ``touch`` (run with the marker as its argument)."""
    exe = shutil.which("touch")
    assert exe is not None, "touch(1) is needed to build the ELF sample"
    return Path(exe).read_bytes()


def pe_payload() -> bytes:
    """A minimal PE header: ``MZ``, ``e_lfanew`` at 0x3c, ``PE\\0\\0`` (not runnable here; the structure is real)."""
    head = bytearray(b"MZ" + b"\x00" * 0x7E)
    struct.pack_into("<I", head, 0x3C, 0x40)
    head[0x40:0x44] = b"PE\x00\x00"
    struct.pack_into("<H", head, 0x44, 0x8664)  # machine: x86-64
    return bytes(head)


def macho_payload() -> bytes:
    """A 64-bit little-endian Mach-O header (magic 0xfeedfacf, x86-64, executable)."""
    return struct.pack("<IiiIIII", 0xFEEDFACF, 0x01000007, 3, 2, 0, 0, 0) + b"\x00" * 96


def _padded(b: bytes, unit: int = 4) -> bytes:
    return b + b"\x00" * (-len(b) % unit)


def _honest_weights() -> dict[str, object]:
    import numpy as np

    rng = np.random.default_rng(0)
    return {"model.embed_tokens.weight": rng.standard_normal((16, 8)).astype(np.float32),
            "model.norm.weight": np.ones(8, dtype=np.float32)}


def save_safetensors_with(path: Path, tensor: str, payload: bytes) -> Path:
    """A safetensors file written by the safetensors library, one U8 tensor holding ``payload``."""
    import numpy as np
    from safetensors.numpy import save_file

    tensors = dict(_honest_weights())
    tensors[tensor] = np.frombuffer(payload, dtype=np.uint8).copy()
    save_file(tensors, str(path))  # type: ignore[arg-type]
    return path


def save_gguf_with(path: Path, tensor: str, payload: bytes) -> Path:
    """A GGUF file written by gguf.GGUFWriter, one I8 tensor holding ``payload``."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("hostile-tensor")
    for name, arr in _honest_weights().items():
        w.add_tensor(name.replace("model.embed_tokens", "token_embd").replace("model.norm", "output_norm"),
                     arr)  # type: ignore[arg-type]
    w.add_tensor(tensor, np.frombuffer(_padded(payload, 32), dtype=np.int8).copy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def save_torch_with(path: Path, tensor: str, payload: bytes, *, legacy: bool = False) -> Path:
    """A torch state dict written by torch.save, one uint8 tensor holding ``payload``."""
    import torch

    sd = {k: torch.from_numpy(v) for k, v in _honest_weights().items()}  # type: ignore[call-overload]
    sd[tensor] = torch.frombuffer(bytearray(payload), dtype=torch.uint8).clone()
    torch.save(sd, path, _use_new_zipfile_serialization=not legacy)
    return path


def build_payload_samples(root: Path, *, marker: Path) -> list[PayloadSample]:
    """One sample per (format, payload kind) the scanner must catch."""
    root.mkdir(parents=True, exist_ok=True)
    kinds = {"pickle": pickle_payload(marker), "pickle4": pickle4_payload(marker), "elf": elf_payload(),
             "script": script_payload(marker), "pe": pe_payload(), "macho": macho_payload()}
    out: list[PayloadSample] = []
    for kind, payload in kinds.items():
        tname = "extra.payload"
        out.append(PayloadSample(f"safetensors-{kind}", save_safetensors_with(root / f"{kind}.safetensors", tname,
                                                                              payload), "safetensors", tname, kind))
        out.append(PayloadSample(f"gguf-{kind}", save_gguf_with(root / f"{kind}.gguf", tname, payload), "gguf",
                                 tname, kind))
        out.append(PayloadSample(f"torch-zip-{kind}", save_torch_with(root / f"{kind}.bin", tname, payload),
                                 "torch-zip", tname, kind))
        out.append(PayloadSample(f"torch-legacy-{kind}", save_torch_with(root / f"{kind}.legacy.bin", tname, payload,
                                                                         legacy=True), "torch-legacy", tname, kind))
    return out


# Denial of service ------------------------------------------------------------------------------------------------

def memo_fanout_pickle(depth: int = 20, width: int = 3) -> bytes:
    """``pickle.loads`` called on a tuple tree that shares every level through the memo: ``width ** depth``
    paths in ~7 bytes per level (a scanner that walks paths instead of nodes never finishes)."""
    out = bytearray(b"\x80\x04cpickle\nloads\n")
    out += b"C\x02N." + b"\x940"  # SHORT_BINBYTES 'N.', MEMOIZE -> memo 0, POP
    for i in range(depth):  # memo i+1 = (memo i,) * width
        out += (b"h" + bytes([i])) * width + {1: b"\x85", 2: b"\x86", 3: b"\x87"}[width] + b"\x940"
    out += b"h" + bytes([depth]) + b"\x85R."  # BINGET top, TUPLE1, REDUCE, STOP
    return bytes(out)


def memo_fanout_state_dict(depth: int = 40) -> bytes:
    """A dict tree of ``depth`` levels, each level two keys onto the same child: 2**depth key paths in ~500 bytes.
    Plain data (no global), so it scans safe; the tensor reader must list it without walking every path."""
    out = bytearray(b"\x80\x02}q\x00")  # EMPTY_DICT, BINPUT 0
    for i in range(depth):
        out += b"}q" + bytes([i + 1]) + b"(X\x01\x00\x00\x00ah" + bytes([i]) + b"X\x01\x00\x00\x00bh" + bytes([i])
        out += b"u"  # SETITEMS
    out += b"."
    return bytes(out)


def long_pickle(ops: int = 16_000_000) -> bytes:
    """A 32 MB pickle of NONE, POP pairs: harmless, and a long walk for any machine that runs every opcode."""
    return b"\x80\x04" + b"N0" * (ops // 2) + b"N."


def huge_json_safetensors(size: int = 99_000_000) -> bytes:
    """A safetensors file whose 99 MB header is one honest tensor plus an ignored field of ~33M empty objects.

    The safetensors library ignores unknown fields and loads it; ``json.loads`` of the header costs gigabytes."""
    head = '{"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"pad":['
    tail = "{}]}}"
    n = (size - len(head) - len(tail)) // 3
    text = head + "{}," * n + tail
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw + b"\x00\x00\x80\x3f"


def gguf_many_strings(count: int = 17_000_000) -> bytes:
    """A GGUF whose one metadata array declares ``count`` empty strings (all present): a long walk in Python."""
    key = b"tokenizer.ggml.tokens"
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, 0, 1))
    out += struct.pack("<Q", len(key)) + key + struct.pack("<IIQ", 9, 8, count)
    out += b"\x00" * (8 * count)
    return bytes(out)


def gguf_huge_lengths() -> bytes:
    """A small GGUF whose counts and string lengths claim exabytes."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, 1, 2))
    out += struct.pack("<Q", 1 << 62) + b"general.name"
    return bytes(out) + b"\x00" * 64


def build_dos_samples(root: Path) -> list[DosSample]:
    """Every denial-of-service sample."""
    root.mkdir(parents=True, exist_ok=True)

    def write(name: str, data: bytes) -> Path:
        p = root / name
        p.write_bytes(data)
        return p

    return [
        DosSample("pickle-memo-fanout", write("fanout.pkl", memo_fanout_pickle()), "scan", (1,)),
        DosSample("pickle-16m-opcodes", write("long.pkl", long_pickle()), "scan", (2,)),
        DosSample("state-dict-memo-fanout", write("pytorch_model.bin", memo_fanout_state_dict()), "inspect", (0, 2)),
        DosSample("safetensors-99mb-json", write("huge.safetensors", huge_json_safetensors()), "scan", (2,)),
        DosSample("gguf-17m-strings", write("strings.gguf", gguf_many_strings()), "scan", (2,)),
        DosSample("gguf-huge-lengths", write("lengths.gguf", gguf_huge_lengths()), "scan", (1,)),
    ]


def describe(samples: list[PayloadSample]) -> str:
    """A JSON list of the samples (for a subprocess)."""
    return json.dumps([{"name": s.name, "path": str(s.path), "format": s.format, "tensor": s.tensor,
                        "kind": s.kind} for s in samples])
