"""GGUF structure: every problem the one GGUF reader finds, the embedded chat templates, hidden payloads.

The header is read by :mod:`assay.model.gguf_file` (the reader ``inspect``, ``card``, ``lineage`` and the
tensor reader share, with one set of limits); each of its problems (truncation, absurd string lengths or
counts, unknown types, tensors beyond the data, bad alignment, overlaps, offsets llama.cpp would refuse)
becomes a finding here. The embedded chat templates (``tokenizer.chat_template*``) go to
:mod:`assay.scan.templates`, and the start of every tensor is checked for a payload (:mod:`assay.scan.payload`).

    >>> fs = FileScan("model.gguf", ScanOptions())
    >>> scan_gguf(open("model.gguf", "rb").read(), fs, where=None)
"""

from __future__ import annotations

from assay.model.gguf_file import GGUFString, parse_gguf
from assay.scan.context import FileScan, at
from assay.model._bufio import Buffer
from assay.scan.payload import check_tensor_start


def scan_gguf(buf: Buffer, fs: FileScan, *, where: str | None) -> None:
    """Check one GGUF file (or member) and report into ``fs``; scan its chat templates."""
    from assay.scan.templates import scan_template_text

    g = parse_gguf(buf)
    prefix = f"{where}: " if where else ""
    if g.unsupported:
        fs.unverified(prefix + g.unsupported)
        return
    for p in g.problems:
        fs.add(p.rule, at(where, p.location), p.message, p.evidence)
    if g.limit:
        fs.unverified(prefix + g.limit)
    for key, value in g.metadata.items():
        if not key.startswith("tokenizer.chat_template"):
            continue
        if isinstance(value, GGUFString):
            fs.unverified(f"{prefix}resource limit: chat template {key} of {value.length:,} bytes was not analysed")
        elif isinstance(value, str):
            scan_template_text(value, fs, where=at(where, f"metadata {key}"))
    if not g.complete:
        return
    base = g.data_start
    for t in g.tensors:
        if t.nbytes is not None and base + t.offset + t.nbytes <= len(buf):
            check_tensor_start(buf, base + t.offset, base + t.offset + t.nbytes, fs, at(where, f"tensor {t.name}"))
