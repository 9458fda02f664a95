"""The one GGUF header reader: used by ``scan``, ``inspect``, ``card``, ``lineage`` and the tensor reader.

It reads what ``gguf-py`` (transformers' GGUF path) and llama.cpp read: magic, version (2 or 3; a byte-swapped
file is read big-endian as gguf-py does), the metadata key/values and the tensor infos, then places the data
section at the next multiple of ``general.alignment``. No tensor data is read. Every length is checked
against the bytes that remain before it is used (malformed GGUF headers have corrupted real loaders' memory),
and the work is bounded (:data:`MAX_KV`, :data:`MAX_TENSORS`, :data:`MAX_ITEMS`, :data:`MAX_STRING`): a header
beyond them is not parsed further and :attr:`GGUFFile.limit` says why.

Problems are collected, not raised (:class:`~assay.model.problems.Problem`): a truncated file gives one
problem ("truncated: the header describes N bytes, the file has M"); where llama.cpp and gguf-py would read
the file differently (tensor offsets that do not follow llama.cpp's packed layout, duplicate keys, long
tensor names) the problem is not fatal but is still reported by the scanner.

    >>> g = read_gguf_file("SmolLM2-135M-Instruct.Q4_1.gguf")
    >>> g.architecture, g.metadata["general.name"], len(g.tensors)
    ('llama', 'SmolLM2 135M Instruct', 272)
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from assay.errors import FormatError
from assay.model.problems import Problem

#: Metadata entries read before the header is declared beyond assay's limit (real files: a few dozen).
MAX_KV = 65_536
#: Tensor infos read before the header is declared beyond assay's limit (real files: a few thousand).
MAX_TENSORS = 262_144
#: Array items walked in total (vocabularies: up to a few hundred thousand strings each).
MAX_ITEMS = 16_000_000
#: Longest string value decoded (longer ones are summarised as :class:`GGUFString`).
MAX_STRING = 16 << 20
#: Longest key accepted.
MAX_KEY = 65_535
#: llama.cpp refuses tensor names of this many bytes or more (``GGML_MAX_NAME``).
LLAMA_CPP_MAX_NAME = 64
#: Arrays longer than this are summarised (type and length), not materialised.
ARRAY_KEEP = 64
DEFAULT_ALIGNMENT = 32
_MAX_DIMS = 4
#: Problems of one rule reported before the rest are counted in one line.
_MAX_PER_RULE = 20

_FIXED = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_SIZE = {k: struct.calcsize(v) for k, v in _FIXED.items()}
STRING, ARRAY = 8, 9


@dataclass(frozen=True)
class GGUFArray:
    """A long GGUF metadata array, summarised: its element type code and its length."""

    type: int
    """GGUF value type of the elements (8 = string)."""
    length: int
    """Number of elements."""


@dataclass(frozen=True)
class GGUFString:
    """A string value longer than :data:`MAX_STRING`, summarised by its length."""

    length: int


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor info, as stored."""

    name: str
    dims: tuple[int, ...]
    """``ne`` as stored (fastest-varying first): the reverse of the numpy/Hugging Face shape."""
    type: int
    """GGML type code."""
    type_name: str | None
    """GGML type name (``Q4_1``), None if unknown."""
    offset: int
    """Offset of the data, relative to the data section."""
    nbytes: int | None
    """Bytes of data (None when the type or dims make it unknowable)."""
    pos: int
    """Byte of the file where this tensor info starts."""

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape in Hugging Face (row-major) order."""
        return tuple(reversed(self.dims))


@dataclass
class GGUFFile:
    """A parsed GGUF header and what is wrong with it."""

    size: int
    version: int = 0
    endian: str = "<"
    metadata: dict[str, Any] = field(default_factory=dict)
    """Key/values; long arrays are :class:`GGUFArray`, very long strings :class:`GGUFString`."""
    tensors: list[GGUFTensor] = field(default_factory=list)
    """Tensor infos in header order."""
    alignment: int = DEFAULT_ALIGNMENT
    header_end: int = 0
    """Byte after the last tensor info."""
    problems: list[Problem] = field(default_factory=list)
    unsupported: str | None = None
    """Why the file was not read at all (a version assay does not know)."""
    limit: str | None = None
    """Set when parsing stopped at a resource limit (``resource limit: ...``)."""
    complete: bool = False
    """The whole header was read."""

    @property
    def data_start(self) -> int:
        """Absolute offset of the data section."""
        return -(-self.header_end // self.alignment) * self.alignment

    @property
    def architecture(self) -> str | None:
        """``general.architecture``."""
        arch = self.metadata.get("general.architecture")
        return arch if isinstance(arch, str) else None

    @property
    def described_end(self) -> int:
        """The file size the header describes (end of the furthest tensor)."""
        ends = [t.offset + t.nbytes for t in self.tensors if t.nbytes is not None]
        return self.data_start + max(ends, default=0)

    def fatal(self) -> str | None:
        """The first reason the tensors cannot be read (None when they can)."""
        if self.unsupported:
            return self.unsupported
        for p in self.problems:
            if p.fatal:
                return p.message if p.location is None else f"{p.message} ({p.location})"
        return self.limit


class _Stop(Exception):
    """Parsing cannot continue (a problem or limit was recorded)."""


@lru_cache(maxsize=1)
def quant_sizes() -> dict[int, tuple[str, int, int]]:
    """GGML type code -> (name, block size, bytes per block), from the format's own table in gguf-py."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    return {int(k): (GGMLQuantizationType(k).name, int(v[0]), int(v[1])) for k, v in GGML_QUANT_SIZES.items()}


class _Parser:
    def __init__(self, buf: Any, out: GGUFFile, *, full_arrays: bool = False) -> None:
        self.buf, self.out, self.size, self.pos = buf, out, len(buf), 0
        self.full = full_arrays
        self.e = out.endian
        self.items = 0
        self.bad_utf8 = False
        self.counts: dict[str, int] = {}

    def problem(self, rule: str, location: str | None, message: str, evidence: str | None = None, *,
                fatal: bool = True) -> None:
        n = self.counts.get(rule, 0) + 1
        self.counts[rule] = n
        if n <= _MAX_PER_RULE:
            self.out.problems.append(Problem(rule, location, message, evidence, fatal))

    def stop(self, rule: str, message: str, evidence: str | None = None, pos: int | None = None) -> _Stop:
        self.out.problems.append(Problem(rule, f"byte {self.pos if pos is None else pos}", message, evidence))
        return _Stop()

    def limit(self, reason: str) -> _Stop:
        self.out.limit = f"resource limit: {reason}"
        return _Stop()

    def need(self, n: int, what: str) -> None:
        if self.pos + n > self.size:
            raise self.stop("GGUF-HEADER", f"truncated: the header runs past the end of the file while reading "
                            f"{what} (byte {self.pos}, the file has {self.size})", f"{n} bytes")

    def u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = struct.unpack_from(self.e + "I", self.buf, self.pos)
        self.pos += 4
        return int(v)

    def u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = struct.unpack_from(self.e + "Q", self.buf, self.pos)
        self.pos += 8
        return int(v)

    def raw_string(self, what: str, cap: int | None = None) -> tuple[int, int]:
        """(start, length) of a length-prefixed string; the position moves past it."""
        start = self.pos
        n = self.u64(f"{what} length")
        if n > self.size - self.pos:
            raise self.stop("GGUF-STRING", f"truncated or damaged: {what} claims {n} bytes but only "
                            f"{self.size - self.pos} remain", f"length {n}", start)
        if cap is not None and n > cap:
            raise self.stop("GGUF-STRING", f"{what} is {n} bytes long (more than {cap})", f"length {n}", start)
        self.pos += n
        return start + 8, n

    def text(self, what: str, cap: int | None = MAX_KEY) -> str:
        begin, n = self.raw_string(what, cap)
        try:
            return bytes(self.buf[begin:begin + n]).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.stop("GGUF-STRING", f"{what} is not valid UTF-8", None, begin - 8) from exc

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        fmt = _FIXED.get(vtype)
        if fmt is not None:
            n = _SIZE[vtype]
            self.need(n, what)
            (v,) = struct.unpack_from(self.e + fmt, self.buf, self.pos)
            self.pos += n
            return v
        if vtype == STRING:
            begin, n = self.raw_string(what)
            if n > MAX_STRING:
                return GGUFString(n)
            raw = bytes(self.buf[begin:begin + n])
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                self.bad_utf8 = True
                return raw.decode("utf-8", errors="replace")
        if vtype == ARRAY:
            return self.array(what, depth)
        raise self.stop("GGUF-TYPE", f"{what}: unknown value type {vtype}", str(vtype), self.pos - 4)

    def array(self, what: str, depth: int) -> Any:
        if depth > 2:
            raise self.stop("GGUF-TYPE", f"{what}: arrays nested too deep", None)
        start = self.pos
        itype = self.u32(f"{what} item type")
        count = self.u64(f"{what} item count")
        if itype not in _FIXED and itype not in (STRING, ARRAY):
            raise self.stop("GGUF-TYPE", f"{what}: unknown array item type {itype}", str(itype), start)
        min_item = _SIZE.get(itype, 8 if itype == STRING else 12)
        if count * min_item > self.size - self.pos:
            raise self.stop("GGUF-HEADER", f"truncated or damaged: {what} declares {count} items, which cannot fit "
                            f"in the {self.size - self.pos} bytes that remain", f"count {count}", start)
        if itype in _FIXED and count > ARRAY_KEEP:
            if self.full:
                values = list(struct.unpack_from(f"{self.e}{count}{_FIXED[itype]}", self.buf, self.pos))
                self.pos += count * min_item
                return values
            self.pos += count * min_item
            return GGUFArray(itype, count)
        self.items += count
        if self.items > MAX_ITEMS:
            raise self.limit(f"metadata arrays hold more than {MAX_ITEMS:,} items")
        if itype == STRING and count > ARRAY_KEEP and not self.full:
            self.skip_strings(count, what)
            return GGUFArray(itype, count)
        items = [self.value(itype, what, depth + 1) for _ in range(count)]
        return items if count <= ARRAY_KEEP or self.full else GGUFArray(itype, count)

    def skip_strings(self, count: int, what: str) -> None:
        unpack = struct.Struct(self.e + "Q").unpack_from
        buf, size, pos = self.buf, self.size, self.pos
        for i in range(count):
            if pos + 8 > size:
                self.pos = pos
                raise self.stop("GGUF-HEADER", f"truncated: {what} item #{i} runs past the end of the file (the file "
                                f"has {size} bytes)", None)
            (n,) = unpack(buf, pos)
            pos += 8
            if n > size - pos:
                raise self.stop("GGUF-STRING", f"truncated or damaged: {what} item #{i} claims {n} bytes but only "
                                f"{size - pos} remain", f"length {n}", pos - 8)
            pos += n
        self.pos = pos


def parse_gguf(buf: Any, *, full_arrays: bool = False) -> GGUFFile:
    """Parse the GGUF header at the start of ``buf`` (bytes or a read-only mmap of the whole file).

    Long arrays are summarised (:class:`GGUFArray`) unless ``full_arrays`` (a loader needs the vocabulary).
    """
    out = GGUFFile(size=len(buf))
    if len(buf) < 24 or bytes(buf[:4]) != b"GGUF":
        what = "too short for a GGUF header" if len(buf) < 24 else "not a GGUF file (bad magic)"
        out.problems.append(Problem("GGUF-HEADER", None, f"truncated: the file has {len(buf)} bytes, {what}"
                                    if len(buf) < 24 else what, None))
        return out
    (version,) = struct.unpack_from("<I", buf, 4)
    if version & 0xFFFF == 0 and version:
        out.endian, version = ">", struct.unpack_from(">I", buf, 4)[0]
    out.version = version
    if version not in (2, 3):
        out.unsupported = f"GGUF version {version} is not supported (only 2 and 3)"
        return out
    p = _Parser(buf, out, full_arrays=full_arrays)
    p.pos = 8
    try:
        _header(p, out)
        out.complete = True
        _layout(p, out)
    except _Stop:
        out.header_end = p.pos
    for rule, n in p.counts.items():
        if n > _MAX_PER_RULE:
            out.problems.append(Problem(rule, None, f"{n - _MAX_PER_RULE} more {rule} problem(s) not listed", None,
                                        fatal=False))
    return out


def _header(p: _Parser, out: GGUFFile) -> None:
    n_tensors = p.u64("tensor count")
    n_kv = p.u64("metadata count")
    if n_kv * 13 > p.size - p.pos or n_tensors * 24 > p.size - p.pos:
        raise p.stop("GGUF-HEADER", f"truncated or damaged: {n_tensors} tensors and {n_kv} metadata entries cannot "
                     f"fit in a file of {p.size} bytes", f"tensors {n_tensors}, kv {n_kv}", 8)
    if n_kv > MAX_KV:
        raise p.limit(f"{n_kv:,} metadata entries (assay reads at most {MAX_KV:,})")
    if n_tensors > MAX_TENSORS:
        raise p.limit(f"{n_tensors:,} tensors (assay reads at most {MAX_TENSORS:,})")
    meta = out.metadata
    for i in range(n_kv):
        kpos = p.pos
        key = p.text(f"metadata key #{i}")
        vtype = p.u32(f"type of {key}")
        p.bad_utf8 = False
        value = p.value(vtype, f"metadata {key}")
        if key in meta:
            p.problem("GGUF-DUPLICATE", f"metadata {key}", f"metadata key {key!r} appears twice: llama.cpp refuses "
                      "the file, gguf-py keeps both", key, fatal=False)
        else:
            meta[key] = value
        if key == "general.alignment":
            if vtype != 4 or not isinstance(value, int) or value <= 0 or value & (value - 1):
                raise p.stop("GGUF-ALIGNMENT", f"general.alignment must be a power of two (uint32), got {value!r}",
                             repr(value), kpos)
            out.alignment = value
        if p.bad_utf8 and key.startswith("tokenizer.chat_template"):
            p.problem("GGUF-STRING", f"metadata {key}", f"{key} is not valid UTF-8", None)
    quant = quant_sizes()
    names: set[str] = set()
    for i in range(n_tensors):
        tpos = p.pos
        name = p.text(f"tensor name #{i}")
        if name in names:
            p.problem("GGUF-DUPLICATE", f"tensor {name}", f"tensor {name!r} appears twice", name)
        names.add(name)
        if len(name.encode()) >= LLAMA_CPP_MAX_NAME:
            p.problem("GGUF-LAYOUT", f"tensor {name[:80]}", f"tensor name is {len(name.encode())} bytes: llama.cpp "
                      f"refuses names of {LLAMA_CPP_MAX_NAME} bytes or more, gguf-py reads them", None, fatal=False)
        n_dims = p.u32(f"dims of {name}")
        if n_dims < 1 or n_dims > _MAX_DIMS:
            raise p.stop("GGUF-TENSOR-BOUNDS", f"tensor {name!r} has {n_dims} dimensions (1-{_MAX_DIMS})",
                         str(n_dims), tpos)
        dims = tuple(p.u64(f"dim of {name}") for _ in range(n_dims))
        ttype = p.u32(f"type of {name}")
        offset = p.u64(f"offset of {name}")
        info = quant.get(ttype)
        nbytes: int | None = None
        if info is None:
            p.problem("GGUF-TYPE", f"tensor {name}", f"tensor {name!r} has unknown type {ttype}", str(ttype))
        else:
            _qname, block, tsize = info
            numel = 1
            for d in dims:
                numel *= d
            if numel >= 1 << 62 or dims[0] % block:
                p.problem("GGUF-TENSOR-BOUNDS", f"tensor {name}", f"tensor {name!r} dims {list(dims)} are impossible "
                          f"for its type (block {block})", str(list(dims)))
            else:
                nbytes = numel // block * tsize
        out.tensors.append(GGUFTensor(name, dims, ttype, info[0] if info else None, offset, nbytes, tpos))
    out.header_end = p.pos


def _layout(p: _Parser, out: GGUFFile) -> None:
    """Tensors against the data section: truncation, alignment, overlaps, llama.cpp's packed layout."""
    data_len = out.size - out.data_start
    if out.described_end > out.size:
        p.problem("GGUF-TENSOR-BOUNDS", None, f"truncated: the header describes {out.described_end} bytes, the file "
                  f"has {out.size}", f"{out.described_end} > {out.size}")
        return
    align = out.alignment
    spans = []
    expected: int | None = 0
    for t in out.tensors:
        loc = f"tensor {t.name}"
        if t.offset % align:
            p.problem("GGUF-ALIGNMENT", loc, f"offset {t.offset} is not a multiple of the alignment {align}",
                      str(t.offset), fatal=False)
        if t.nbytes is None:
            continue
        if expected is not None and t.offset != expected:
            p.problem("GGUF-LAYOUT", loc, f"tensor data at offset {t.offset} where llama.cpp expects {expected} "
                      "(tensors packed in header order, each padded to the alignment): llama.cpp refuses the file, "
                      "gguf-py reads it", f"{t.offset} vs {expected}", fatal=False)
            expected = None
        elif expected is not None:
            expected += -(-t.nbytes // align) * align
        if t.offset + t.nbytes <= data_len:
            spans.append((t.offset, t.offset + t.nbytes, t.name))
    spans.sort()
    cursor = 0
    for begin, end, name in spans:
        if begin < cursor:
            p.problem("GGUF-OVERLAP", f"tensor {name}", f"tensor bytes [{begin}, {end}] overlap another tensor",
                      f"[{begin}, {end}]", fatal=False)
        cursor = max(cursor, end)


def read_gguf_file(path: Path | str, *, rel: str | None = None, full_arrays: bool = False) -> GGUFFile:
    """Read and parse a GGUF file's header through a memory map (tensor data is not touched).

    Raises :class:`~assay.errors.FormatError` only when the file cannot be opened.
    """
    path = Path(path)
    rel = rel or path.name
    try:
        size = path.stat().st_size
        if size == 0:
            return parse_gguf(b"")
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return parse_gguf(mm, full_arrays=full_arrays)
    except PermissionError as exc:
        raise FormatError(f"permission denied: {rel}") from exc
    except OSError as exc:
        raise FormatError(f"cannot read {rel}: {exc.strerror or exc}") from exc


def card_fields(meta: dict[str, Any]) -> dict[str, Any]:
    """The model-card fields a GGUF file carries in its ``general.*`` metadata, named as a card names them.

    ``license``, ``license_name``, ``base_model`` (``org/name`` from ``general.base_model.N.*``), ``datasets``,
    ``model_name``; only the keys present in the file.
    """
    card: dict[str, Any] = {}
    if "general.license" in meta:
        card["license"] = meta["general.license"]
    if "general.license.name" in meta:
        card["license_name"] = meta["general.license.name"]
    bases = []
    count = meta.get("general.base_model.count", 0)
    for i in range(min(count, 64) if isinstance(count, int) and count > 0 else 0):
        org, name = meta.get(f"general.base_model.{i}.organization"), meta.get(f"general.base_model.{i}.name")
        url = meta.get(f"general.base_model.{i}.repo_url")
        if isinstance(url, str) and "huggingface.co/" in url:
            bases.append(url.split("huggingface.co/", 1)[1].strip("/"))
        elif name:
            bases.append(f"{org}/{name}" if org else str(name))
    if bases:
        card["base_model"] = bases
    if "general.datasets" in meta:
        card["datasets"] = meta["general.datasets"]
    if "general.name" in meta:
        card["model_name"] = meta["general.name"]
    return card
