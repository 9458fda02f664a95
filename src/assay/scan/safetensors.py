"""safetensors structure: a header that lies about the data is how a loader gets memory-corrupted.

Checks the header length against the file size, JSON validity, duplicate keys, known dtypes,
``dtype x shape == byte span``, offsets in bounds, no overlaps, no hidden bytes, and that ``__metadata__`` maps
strings to strings. With ``--deep`` it also reads the data: NaN/Inf values and all-zero tensors.

    >>> fs = FileScan("model.safetensors", ScanOptions())
    >>> scan_safetensors(open("model.safetensors", "rb").read(), fs, where=None)
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from assay.scan.context import FileScan, at
from assay.scan.files import Buffer

#: Bits per element of every dtype the safetensors format defines.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16,
    "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64, "C64": 64, "F4": 4,
    "F6_E2M3": 6, "F6_E3M2": 6,
}
#: The safetensors library refuses headers above this size.
MAX_HEADER = 100_000_000
_DEEP_CHUNK = 16 << 20


class _Dup(dict[str, Any]):
    """A JSON object that remembers keys it saw twice."""

    dups: list[str]


def _pairs(pairs: list[tuple[str, Any]]) -> _Dup:
    d = _Dup()
    d.dups = []
    for k, v in pairs:
        if k in d:
            d.dups.append(k)
        d[k] = v
    return d


def scan_safetensors(buf: Buffer, fs: FileScan, *, where: str | None) -> None:
    """Check one safetensors file (or member) and report into ``fs``."""
    size = len(buf)
    if size < 8:
        fs.add("SAFETENSORS-HEADER", where, "file is shorter than the 8-byte header length", None)
        return
    (n,) = struct.unpack_from("<Q", buf, 0)
    if n > MAX_HEADER or 8 + n > size:
        fs.add("SAFETENSORS-HEADER", at(where, "byte 0"), f"header claims {n} bytes but the file has {size}",
               f"header length {n}")
        return
    raw = bytes(buf[8:8 + n])
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_pairs)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        fs.add("SAFETENSORS-HEADER", at(where, "header"), f"header is not valid UTF-8 JSON ({exc})", None)
        return
    if not isinstance(header, dict) or not raw.lstrip().startswith(b"{"):
        fs.add("SAFETENSORS-HEADER", at(where, "header"), "header is not a JSON object", None)
        return
    for node in _dup_nodes(header):
        for key in node.dups:
            fs.add("SAFETENSORS-DUPLICATE", at(where, f"tensor {key}"), f"key {key!r} appears twice in the header: "
                   "readers disagree on which entry wins", key)
    data_len = size - 8 - n
    spans: list[tuple[int, int, str]] = []
    tensors: list[tuple[str, str, int, int]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in info.items()):
                fs.add("SAFETENSORS-METADATA", at(where, "__metadata__"), "__metadata__ must map strings to strings",
                       json.dumps(info)[:120] if _jsonable(info) else None)
            continue
        loc = at(where, f"tensor {name}")
        if not isinstance(info, dict):
            fs.add("SAFETENSORS-HEADER", loc, "tensor entry is not an object", None)
            continue
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                for d in shape)):
            fs.add("SAFETENSORS-HEADER", loc, f"shape {shape!r} is not a list of non-negative integers",
                   repr(shape)[:80])
            continue
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and not isinstance(
                o, bool) for o in offsets)):
            fs.add("SAFETENSORS-HEADER", loc, f"data_offsets {offsets!r} is not a pair of integers", repr(offsets)[:80])
            continue
        begin, end = offsets
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            fs.add("SAFETENSORS-DTYPE", loc, f"unknown dtype {dtype!r}", repr(dtype)[:40])
            bits = None
        else:
            bits = DTYPE_BITS[dtype]
        if begin < 0 or end < begin or end > data_len:
            fs.add("SAFETENSORS-BOUNDS", loc, f"data_offsets [{begin}, {end}] lie outside the data section "
                   f"(0..{data_len})", f"[{begin}, {end}]")
            continue
        if bits is not None:
            numel = math.prod(shape)
            total_bits = numel * bits
            if total_bits % 8 or total_bits // 8 != end - begin:
                fs.add("SAFETENSORS-SIZE", loc, f"{dtype} x {shape} needs {total_bits / 8:g} bytes but the span is "
                       f"{end - begin}", f"{total_bits / 8:g} vs {end - begin}")
            else:
                tensors.append((name, dtype, begin, end))
        spans.append((begin, end, name))
    spans.sort()
    cursor = 0
    for begin, end, name in spans:
        if begin < cursor:
            fs.add("SAFETENSORS-OVERLAP", at(where, f"tensor {name}"), f"tensor bytes [{begin}, {end}] overlap "
                   "another tensor", f"[{begin}, {end}]")
        elif begin > cursor:
            fs.add("SAFETENSORS-GAP", at(where, f"data byte {cursor}"), f"{begin - cursor} bytes belong to no tensor",
                   f"{begin - cursor} bytes")
        cursor = max(cursor, end)
    if cursor < data_len:
        fs.add("SAFETENSORS-GAP", at(where, f"data byte {cursor}"), f"{data_len - cursor} bytes after the last "
               "tensor belong to no tensor", f"{data_len - cursor} bytes")
    if fs.options.deep:
        _deep(buf, 8 + n, tensors, fs, where)


def _dup_nodes(node: Any) -> list[_Dup]:
    out: list[_Dup] = []
    stack = [node]
    while stack:
        x = stack.pop()
        if isinstance(x, _Dup):
            out.append(x)
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return out


def _jsonable(x: Any) -> bool:
    try:
        json.dumps(x)
        return True
    except (TypeError, ValueError):
        return False


def _deep(buf: Buffer, base: int, tensors: list[tuple[str, str, int, int]], fs: FileScan, where: str | None) -> None:
    """Read tensor data in chunks: NaN/Inf in float tensors, tensors that are all zeros."""
    import numpy as np

    view = memoryview(buf)
    for name, dtype, begin, end in tensors:
        if end == begin:
            continue
        nonzero = False
        nonfinite = 0
        for off in range(base + begin, base + end, _DEEP_CHUNK):
            chunk = view[off:min(base + end, off + _DEEP_CHUNK)]
            raw = np.frombuffer(chunk, dtype=np.uint8)
            if not nonzero and raw.any():
                nonzero = True
            if dtype == "F32" and len(chunk) % 4 == 0:
                nonfinite += int((~np.isfinite(np.frombuffer(chunk, dtype="<f4"))).sum())
            elif dtype == "F64" and len(chunk) % 8 == 0:
                nonfinite += int((~np.isfinite(np.frombuffer(chunk, dtype="<f8"))).sum())
            elif dtype == "F16" and len(chunk) % 2 == 0:
                nonfinite += int(((np.frombuffer(chunk, dtype="<u2") & 0x7C00) == 0x7C00).sum())
            elif dtype == "BF16" and len(chunk) % 2 == 0:
                nonfinite += int(((np.frombuffer(chunk, dtype="<u2") & 0x7F80) == 0x7F80).sum())
        loc = at(where, f"tensor {name}")
        if nonfinite:
            fs.add("SAFETENSORS-NONFINITE", loc, f"{nonfinite} NaN or infinite value(s)", f"{nonfinite} values")
        if not nonzero:
            fs.add("SAFETENSORS-ZERO", loc, "tensor is all zeros", None)
    view.release()
