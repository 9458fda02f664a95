"""The one safetensors header reader: used by ``scan``, ``inspect``, ``lineage`` and the tensor reader.

It applies the rules of the ``safetensors`` library (the loader every framework uses): an 8-byte little-endian
header length of at most 100,000,000 bytes, a UTF-8 JSON object, a known dtype per tensor, ``dtype x shape``
equal to the byte span, and offsets that tile the data section exactly (sorted, contiguous, no gap, no overlap,
ending at the end of the file). Where the library would refuse a file, the header carries a :class:`Problem`;
the scanner reports every problem as a finding, the tensor reader refuses the file on the first one.

The JSON is parsed with bounded memory: before ``json.loads`` the raw header is counted (objects, arrays,
items, at C speed), and a header that would cost more than :data:`MAX_JSON_CONTAINERS` containers or
:data:`MAX_JSON_ITEMS` items is not parsed (``limit`` says why; the scanner reports it as not verified).

    >>> hdr = read_safetensors("model.safetensors")
    >>> [(e.name, e.dtype, e.shape) for e in hdr.entries][:1]
    [('lm_head.weight', 'F32', (49152, 576))]
    >>> hdr.problems
    []
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assay.errors import FormatError
from assay.model.problems import Problem

#: Bits per element of every dtype the safetensors format defines.
DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16,
    "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64, "U64": 64, "C64": 64, "F4": 4,
    "F6_E2M3": 6, "F6_E3M2": 6,
}
#: The safetensors library refuses headers above this size (``MAX_HEADER_SIZE`` in its Rust core).
MAX_HEADER = 100_000_000
#: JSON objects plus arrays a header may hold before assay declines to parse it (real headers: 3 per tensor).
MAX_JSON_CONTAINERS = 600_000
#: JSON items (roughly: commas) a header may hold before assay declines to parse it.
MAX_JSON_ITEMS = 2_400_000


@dataclass(frozen=True)
class SafetensorsEntry:
    """One tensor the header describes, with offsets relative to the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def nbytes(self) -> int:
        """Bytes of data."""
        return self.end - self.begin


@dataclass
class SafetensorsHeader:
    """A parsed header: the tensors it describes and what is wrong with it."""

    size: int
    """Size of the file (or buffer)."""
    header_len: int
    """The declared JSON length (0 if unreadable)."""
    metadata: dict[str, str] = field(default_factory=dict)
    """``__metadata__`` (only when it maps strings to strings)."""
    entries: list[SafetensorsEntry] = field(default_factory=list)
    """Tensors whose dtype, shape and offsets are consistent, sorted by name."""
    problems: list[Problem] = field(default_factory=list)
    """Everything the library would refuse (empty for a loadable file)."""
    limit: str | None = None
    """Set when the header was not parsed because of a resource limit ("resource limit: ...")."""

    @property
    def data_start(self) -> int:
        """Absolute offset of the data section."""
        return 8 + self.header_len

    @property
    def ok(self) -> bool:
        """True when the safetensors library would load this file."""
        return not self.problems and self.limit is None


def _pairs_hook(dups: list[str]) -> Any:
    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) != len(pairs):  # rare: find which keys came twice
            seen: set[str] = set()
            dups.extend(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        return d
    return hook


def json_cost(raw: bytes) -> str | None:
    """Why parsing ``raw`` as JSON would cost too much memory (None when it is within the limits).

    Counts ``{``, ``[`` and ``,`` bytes (an upper bound on what ``json.loads`` builds), at C speed.
    """
    containers = raw.count(b"{") + raw.count(b"[")
    if containers > MAX_JSON_CONTAINERS:
        return (f"resource limit: the JSON header holds up to {containers:,} objects/arrays (assay parses at most "
                f"{MAX_JSON_CONTAINERS:,}; a real header holds about three per tensor)")
    items = raw.count(b",")
    if items > MAX_JSON_ITEMS:
        return f"resource limit: the JSON header holds up to {items:,} items (assay parses at most {MAX_JSON_ITEMS:,})"
    return None


def parse_safetensors(buf: Any, size: int | None = None) -> SafetensorsHeader:
    """Parse the header at the start of ``buf`` (bytes, mmap, or the first ``8 + n`` bytes of a file of ``size``)."""
    size = len(buf) if size is None else size
    hdr = SafetensorsHeader(size=size, header_len=0)
    add = hdr.problems.append
    if size < 8 or len(buf) < 8:
        add(Problem("SAFETENSORS-HEADER", None, f"truncated: the file has {size} bytes, fewer than the 8-byte "
                    "header length", None))
        return hdr
    (n,) = struct.unpack_from("<Q", buf, 0)
    if n > MAX_HEADER:
        add(Problem("SAFETENSORS-HEADER", "byte 0", f"header length {n} exceeds the safetensors limit of "
                    f"{MAX_HEADER:,} bytes (the library refuses the file)", f"header length {n}"))
        return hdr
    if 8 + n > size:
        add(Problem("SAFETENSORS-HEADER", "byte 0", f"truncated: the header describes {8 + n} bytes, the file has "
                    f"{size}", f"header length {n}"))
        return hdr
    hdr.header_len = n
    raw = bytes(buf[8:8 + n])
    hdr.limit = json_cost(raw)
    if hdr.limit is not None:
        return hdr
    dups: list[str] = []
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_pairs_hook(dups))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        add(Problem("SAFETENSORS-HEADER", "header", f"header is not valid UTF-8 JSON ({str(exc)[:120]})", None))
        return hdr
    del raw
    if not isinstance(doc, dict):
        add(Problem("SAFETENSORS-HEADER", "header", "header is not a JSON object", None))
        return hdr
    for key in dict.fromkeys(dups):
        add(Problem("SAFETENSORS-DUPLICATE", f"tensor {key}", f"key {key!r} appears twice in the header: readers "
                    "disagree on which entry wins", key, fatal=False))
    data_len = size - 8 - n
    described = max((o[1] for o in (v.get("data_offsets") if isinstance(v, dict) else None for v in doc.values())
                     if isinstance(o, list) and len(o) == 2 and all(_is_int(x) for x in o) and 0 <= o[0] <= o[1]),
                    default=0)
    if described > data_len:
        add(Problem("SAFETENSORS-BOUNDS", None, f"truncated: the header describes {8 + n + described} bytes, the file "
                    f"has {size}", f"{8 + n + described} > {size}"))
        data_len = described  # one finding for a short file, not one per tensor beyond its end
    spans: list[tuple[int, int, str]] = []
    for name, info in doc.items():
        if name == "__metadata__":
            if isinstance(info, dict) and all(isinstance(v, str) for v in info.values()):
                hdr.metadata = dict(info)
            else:
                add(Problem("SAFETENSORS-METADATA", "__metadata__", "__metadata__ must map strings to strings",
                            _short(info)))
            continue
        _entry(name, info, data_len, hdr, spans)
    hdr.entries.sort(key=lambda e: e.name)
    spans.sort()
    cursor = 0
    for begin, end, name in spans:
        if begin < cursor:
            add(Problem("SAFETENSORS-OVERLAP", f"tensor {name}", f"tensor bytes [{begin}, {end}] overlap another "
                        "tensor", f"[{begin}, {end}]"))
        elif begin > cursor:
            add(Problem("SAFETENSORS-GAP", f"data byte {cursor}", f"{begin - cursor} bytes belong to no tensor",
                        f"{begin - cursor} bytes"))
        cursor = max(cursor, end)
    if cursor < data_len:
        add(Problem("SAFETENSORS-GAP", f"data byte {cursor}", f"{data_len - cursor} bytes after the last tensor "
                    "belong to no tensor", f"{data_len - cursor} bytes"))
    return hdr


def _entry(name: str, info: Any, data_len: int, hdr: SafetensorsHeader, spans: list[tuple[int, int, str]]) -> None:
    loc = f"tensor {name}"
    add = hdr.problems.append
    if type(info) is not dict:
        add(Problem("SAFETENSORS-HEADER", loc, "tensor entry is not an object", None))
        return
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not (type(shape) is list and all(type(d) is int and d >= 0 for d in shape)):
        add(Problem("SAFETENSORS-HEADER", loc, f"shape {_short(shape)} is not a list of non-negative integers",
                    _short(shape)))
        return
    if not (type(offsets) is list and len(offsets) == 2 and type(offsets[0]) is int and type(offsets[1]) is int):
        add(Problem("SAFETENSORS-HEADER", loc, f"data_offsets {_short(offsets)} is not a pair of integers",
                    _short(offsets)))
        return
    begin, end = offsets
    bits = DTYPE_BITS.get(dtype) if isinstance(dtype, str) else None
    if bits is None:
        add(Problem("SAFETENSORS-DTYPE", loc, f"unknown dtype {_short(dtype)}", _short(dtype)))
    if begin < 0 or end < begin or end > data_len:
        add(Problem("SAFETENSORS-BOUNDS", loc, f"data_offsets [{begin}, {end}] lie outside the data section "
                    f"(0..{data_len})", f"[{begin}, {end}]"))
        return
    if bits is not None:
        total_bits = math.prod(shape) * bits
        if total_bits % 8 or total_bits // 8 != end - begin:
            add(Problem("SAFETENSORS-SIZE", loc, f"{dtype} x {shape} needs {total_bits / 8:g} bytes but the span is "
                        f"{end - begin}", f"{total_bits / 8:g} vs {end - begin}"))
        else:
            hdr.entries.append(SafetensorsEntry(name, str(dtype), tuple(shape), begin, end))
    spans.append((begin, end, name))


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _short(x: Any) -> str:
    try:
        s = json.dumps(x)
    except (TypeError, ValueError):
        s = repr(x)
    return s if len(s) <= 120 else s[:117] + "..."


def read_safetensors(path: Path | str, *, rel: str | None = None) -> SafetensorsHeader:
    """Read and parse the header of a safetensors file (only its first ``8 + n`` bytes are read).

    Raises :class:`~assay.errors.FormatError` only when the file cannot be read at all.
    """
    path = Path(path)
    rel = rel or path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            first = fh.read(8)
            if len(first) < 8:
                return parse_safetensors(first, size)
            (n,) = struct.unpack("<Q", first)
            if n > MAX_HEADER or 8 + n > size:
                return parse_safetensors(first, size)
            return parse_safetensors(first + fh.read(n), size)
    except PermissionError as exc:
        raise FormatError(f"permission denied: {rel}") from exc
    except OSError as exc:
        raise FormatError(f"cannot read {rel}: {exc.strerror or exc}") from exc
