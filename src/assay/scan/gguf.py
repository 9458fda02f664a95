"""GGUF structure: magic and version, metadata types and string lengths, tensor infos against the data section.

Malformed GGUF headers (absurd string lengths or counts, tensors beyond the data, bad alignment) have caused
memory corruption in real loaders, so every length is checked against the bytes that remain before it is used.
The embedded chat template (``tokenizer.chat_template``) goes to :mod:`assay.scan.templates`.

    >>> fs = FileScan("model.gguf", ScanOptions())
    >>> scan_gguf(open("model.gguf", "rb").read(), fs, where=None)
"""

from __future__ import annotations

import struct

from assay.scan.context import FileScan, at
from assay.scan.files import Buffer

_FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
_MAX_DIMS = 4
_MAX_KEY = 65535
_DEFAULT_ALIGNMENT = 32


class _Bad(Exception):
    def __init__(self, rule: str, pos: int, message: str, evidence: str | None = None) -> None:
        super().__init__(message)
        self.rule, self.pos, self.message, self.evidence = rule, pos, message, evidence


def _quant_sizes() -> dict[int, tuple[int, int]]:
    from gguf.constants import GGML_QUANT_SIZES  # the format's own table of (block size, bytes per block)

    return {int(k): (int(v[0]), int(v[1])) for k, v in GGML_QUANT_SIZES.items()}


class _Reader:
    def __init__(self, buf: Buffer, endian: str) -> None:
        self.buf, self.size, self.e, self.pos = buf, len(buf), endian, 0

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.pos + n > self.size:
            raise _Bad("GGUF-HEADER", self.pos, f"{what} runs past the end of the file", f"{n} bytes")

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

    def string(self, what: str, *, decode: bool = True, cap: int | None = None) -> str | None:
        start = self.pos
        n = self.u64(f"{what} length")
        if n > self.size - self.pos or (cap is not None and n > cap):
            raise _Bad("GGUF-STRING", start, f"{what} claims {n} bytes but only {self.size - self.pos} remain",
                        f"length {n}")
        raw = self.buf[self.pos:self.pos + n]
        self.pos += n
        if not decode:
            return None
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _Bad("GGUF-STRING", start, f"{what} is not valid UTF-8", None) from exc

    def _skip_strings(self, count: int, what: str) -> None:
        unpack = struct.Struct(self.e + "Q").unpack_from
        buf, size, pos = self.buf, self.size, self.pos
        for i in range(count):
            if pos + 8 > size:
                raise _Bad("GGUF-HEADER", pos, f"{what}: item #{i} runs past the end of the file", None)
            (n,) = unpack(buf, pos)
            pos += 8
            if n > size - pos:
                raise _Bad("GGUF-STRING", pos - 8, f"{what}: item #{i} claims {n} bytes but only {size - pos} "
                           "remain", f"length {n}")
            pos += n
        self.pos = pos

    def value(self, vtype: int, what: str, depth: int = 0, *, keep: bool = False) -> object:
        if vtype in _FIXED:
            n = _FIXED[vtype]
            self.need(n, what)
            fmt = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}[vtype]
            (v,) = struct.unpack_from(self.e + fmt, self.buf, self.pos)
            self.pos += n
            return v
        if vtype == _STRING:
            return self.string(what, decode=keep)
        if vtype == _ARRAY:
            if depth > 2:
                raise _Bad("GGUF-TYPE", self.pos, f"{what}: arrays nested too deep", None)
            start = self.pos
            itype = self.u32(f"{what} item type")
            count = self.u64(f"{what} item count")
            if itype not in _FIXED and itype not in (_STRING, _ARRAY):
                raise _Bad("GGUF-TYPE", start, f"{what}: unknown array item type {itype}", str(itype))
            min_item = _FIXED.get(itype, 8 if itype == _STRING else 12)
            if count * min_item > self.size - self.pos:
                raise _Bad("GGUF-HEADER", start, f"{what}: {count} items cannot fit in the {self.size - self.pos} "
                           "bytes that remain", f"count {count}")
            if itype in _FIXED:
                self.pos += count * min_item
                return None
            if itype == _STRING:  # vocabularies: 100k+ strings, walked in a tight loop
                self._skip_strings(count, what)
                return None
            for _ in range(count):
                self.value(itype, what, depth + 1)
            return None
        raise _Bad("GGUF-TYPE", self.pos - 4, f"{what}: unknown value type {vtype}", str(vtype))


def scan_gguf(buf: Buffer, fs: FileScan, *, where: str | None) -> None:
    """Check one GGUF file (or member) and report into ``fs``; scan its chat templates."""
    from assay.scan.templates import scan_template_text

    if len(buf) < 24:
        fs.add("GGUF-HEADER", where, "file is too short for a GGUF header", None)
        return
    (version,) = struct.unpack_from("<I", buf, 4)
    endian = "<"
    if version & 0xFFFF == 0 and version:
        endian, version = ">", struct.unpack_from(">I", buf, 4)[0]
    if version not in (2, 3):
        fs.unverified(f"{where + ': ' if where else ''}GGUF version {version} is not supported (only 2 and 3)")
        return
    r = _Reader(buf, endian)
    r.pos = 8
    templates: list[tuple[str, str]] = []
    alignment = _DEFAULT_ALIGNMENT
    try:
        n_tensors = r.u64("tensor count")
        n_kv = r.u64("metadata count")
        if n_kv * 13 > r.size - r.pos or n_tensors * 32 > r.size - r.pos:
            raise _Bad("GGUF-HEADER", 8, f"{n_tensors} tensors and {n_kv} metadata entries cannot fit in a file of "
                       f"{r.size} bytes", f"tensors {n_tensors}, kv {n_kv}")
        keys: set[str] = set()
        for i in range(n_kv):
            kpos = r.pos
            key = r.string(f"metadata key #{i}", cap=_MAX_KEY) or ""
            if key in keys:
                fs.add("GGUF-DUPLICATE", at(where, f"metadata {key}"), f"metadata key {key!r} appears twice", key)
            keys.add(key)
            vtype = r.u32(f"type of {key}")
            is_template = key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template.")
            value = r.value(vtype, f"metadata {key}", keep=is_template)
            if key == "general.alignment":
                if vtype != 4 or not isinstance(value, int) or value <= 0 or value & (value - 1):
                    raise _Bad("GGUF-ALIGNMENT", kpos, f"general.alignment must be a power of two (uint32), got "
                               f"{value!r}", repr(value))
                alignment = value
            if is_template and isinstance(value, str):
                templates.append((key, value))
        quant = _quant_sizes()
        infos: list[tuple[str, int, int, int]] = []
        names: set[str] = set()
        for i in range(n_tensors):
            tpos = r.pos
            name = r.string(f"tensor name #{i}", cap=_MAX_KEY) or ""
            if name in names:
                fs.add("GGUF-DUPLICATE", at(where, f"tensor {name}"), f"tensor {name!r} appears twice", name)
            names.add(name)
            n_dims = r.u32(f"dims of {name}")
            if n_dims < 1 or n_dims > _MAX_DIMS:
                raise _Bad("GGUF-TENSOR-BOUNDS", tpos, f"tensor {name!r} has {n_dims} dimensions (1-{_MAX_DIMS})",
                           str(n_dims))
            dims = [r.u64(f"dim of {name}") for _ in range(n_dims)]
            ttype = r.u32(f"type of {name}")
            offset = r.u64(f"offset of {name}")
            if ttype not in quant:
                raise _Bad("GGUF-TYPE", tpos, f"tensor {name!r} has unknown type {ttype}", str(ttype))
            block, tsize = quant[ttype]
            numel = 1
            for d in dims:
                numel *= d
            if numel >= 1 << 62 or dims[0] % block:
                raise _Bad("GGUF-TENSOR-BOUNDS", tpos, f"tensor {name!r} dims {dims} are impossible for its type "
                           f"(block {block})", str(dims))
            infos.append((name, offset, numel // block * tsize, tpos))
    except _Bad as bad:
        fs.add(bad.rule, at(where, f"byte {bad.pos}"), bad.message, bad.evidence)
        return
    data_start = (r.pos + alignment - 1) // alignment * alignment
    data_len = len(buf) - data_start
    if data_len < 0:
        if infos:
            fs.add("GGUF-TENSOR-BOUNDS", at(where, f"byte {r.pos}"), "the file ends before its data section", None)
        data_len = 0
    spans = []
    for name, offset, nbytes, tpos in infos:
        loc = at(where, f"tensor {name}")
        if offset % alignment:
            fs.add("GGUF-ALIGNMENT", loc, f"offset {offset} is not a multiple of the alignment {alignment}",
                   str(offset))
        if offset + nbytes > data_len:
            fs.add("GGUF-TENSOR-BOUNDS", loc, f"tensor bytes [{offset}, {offset + nbytes}] lie beyond the data "
                   f"section ({data_len} bytes)", f"[{offset}, {offset + nbytes}]")
            continue
        spans.append((offset, offset + nbytes, name))
    spans.sort()
    cursor = 0
    for begin, end, name in spans:
        if begin < cursor:
            fs.add("GGUF-OVERLAP", at(where, f"tensor {name}"), f"tensor bytes [{begin}, {end}] overlap another "
                   "tensor", f"[{begin}, {end}]")
        cursor = max(cursor, end)
    for key, text in templates:
        scan_template_text(text, fs, where=at(where, f"metadata {key}"))
