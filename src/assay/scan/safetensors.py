"""safetensors structure: a header that lies about the data is how a loader gets memory-corrupted.

The header is read by :mod:`assay.model.safetensors_file` (the one reader, with the safetensors library's
rules and limits); every problem it finds (header length, JSON, duplicate keys, dtypes, ``dtype x shape ==
byte span``, bounds, overlaps, hidden bytes, ``__metadata__``) becomes a finding here. The start of every
tensor is checked for a hidden payload (:mod:`assay.scan.payload`). With ``--deep`` the data is read too:
NaN/Inf values and all-zero tensors.

    >>> fs = FileScan("model.safetensors", ScanOptions())
    >>> scan_safetensors(open("model.safetensors", "rb").read(), fs, where=None)
"""

from __future__ import annotations

from assay.model.safetensors_file import DTYPE_BITS, MAX_HEADER, parse_safetensors
from assay.scan.context import FileScan, at
from assay.model._bufio import Buffer
from assay.scan.payload import check_tensor_start

__all__ = ["DTYPE_BITS", "MAX_HEADER", "scan_safetensors"]

_DEEP_CHUNK = 16 << 20


def scan_safetensors(buf: Buffer, fs: FileScan, *, where: str | None) -> None:
    """Check one safetensors file (or member) and report into ``fs``."""
    hdr = parse_safetensors(buf)
    for p in hdr.problems:
        fs.add(p.rule, at(where, p.location), p.message, p.evidence)
    if hdr.limit is not None:
        fs.unverified(f"{where + ': ' if where else ''}{hdr.limit}")
        return
    base = hdr.data_start
    for e in hdr.entries:
        check_tensor_start(buf, base + e.begin, base + e.end, fs, at(where, f"tensor {e.name}"))
    if fs.options.deep:
        _deep(buf, base, [(e.name, e.dtype, e.begin, e.end) for e in hdr.entries], fs, where)


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
