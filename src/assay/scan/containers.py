"""Containers, read the way their loaders read them: zip (torch, TorchScript, npz, Keras), raw and legacy torch
pickles, numpy ``.npy``, HDF5 (Keras ``.h5``), tar, gzip, bzip2 and xz.

The zip reader parses the central directory itself, as torch's reader does (no CRC check, no adjustment for
prepended bytes), then compares every local header with its central entry, so that a scanner and a loader can
never read different bytes unnoticed. Torch storages (``archive/data/N``) are raw tensor bytes that torch never
unpickles: only their sizes are checked (and CRCs with ``--deep``), which keeps a 1 GiB checkpoint fast.

    >>> fs = FileScan("pytorch_model.bin", ScanOptions())
    >>> scan_zip(open("pytorch_model.bin", "rb").read(), Format.TORCH_ZIP, fs, where=None, depth=0)
"""

from __future__ import annotations

import contextvars
import io
import json
import struct
import zlib
from typing import Any, BinaryIO

from assay.errors import FormatError
from assay.model._bufio import Buffer, BufReader, stream_of
from assay.model.formats import Format
from assay.model.pickle_allowlist import storage_element_size
from assay.model.pickle_vm import TORCH_LEGACY_MAGIC, StreamResult, constant_list, scan_pickle_stream, storage_refs
from assay.model.zipread import (
    ResourceLimit,
    ZipMember,
    ZipReadError,
    ZipReading,
    ZipView,
    member_bytes,
    read_zip,
    torch_prefix,
    torch_records,
    u16,
    u32,
    u64,
    zip64_extra,
)
from assay.scan.context import FileScan, at
from assay.scan.payload import check_tensor_start
from assay.scan.findings import Severity

#: Members larger than this are not decompressed into memory (reported as not verified).
MAX_MEMBER_BYTES = 256 * 1024 * 1024
#: All members of one file (nested archives included) decompress to at most this many bytes in total.
MAX_TOTAL_BYTES = 512 * 1024 * 1024
#: Members over this size that compress better than this ratio are not decompressed (a bomb, or all zeros).
MAX_RATIO = 100
_RATIO_FLOOR = 16 * 1024 * 1024

_DESCRIPTOR = b"PK\x07\x08"
_KNOWN_FLAGS = 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0800  # encrypted, deflate options, descriptor, utf-8

# What is left of the decompression budget of the file being scanned (set at depth 0, shared by nested archives).
_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("assay_decompress_budget")


def reset_budget() -> None:
    """Start the decompression budget of a new file (called for each file scanned at depth 0)."""
    _budget.set([MAX_TOTAL_BYTES])


def _take_budget(depth: int) -> list[int]:
    if _budget.get(None) is None:
        reset_budget()
    return _budget.get()


def _decompressed(buf: Buffer, m: ZipMember, fs: FileScan, where: str | None, depth: int,
                  ratio: int = 0) -> bytes | None:
    """A member's bytes within the per-member and per-file limits, or None (then recorded as not verified)."""
    budget = _take_budget(depth)
    limit = min(MAX_MEMBER_BYTES, budget[0])
    try:
        data = member_bytes(buf, m, limit=limit, ratio=ratio if m.usize > _RATIO_FLOOR else 0)
    except ResourceLimit as exc:
        fs.unverified(f"{_pre(where)}{exc.message}")
        return None
    except ZipReadError as exc:
        fs.unverified(f"{_pre(where)}{exc.message}")
        return None
    budget[0] -= len(data)
    if len(data) != m.usize:
        more = "more than " if len(data) > m.usize else ""
        fs.add("ZIP-HEADER-MISMATCH", at(where, f"member {m.name}"), f"member holds {more}{len(data)} bytes, the "
               f"directory says {m.usize}", f"{more}{len(data)} vs {m.usize}")
        data = data[:m.usize]  # what a loader reads
    if zlib.crc32(data) != m.crc:
        fs.add("ZIP-CRC", at(where, f"member {m.name}"), "CRC does not match the member's bytes (torch ignores "
               "CRCs, so a loader would read them anyway)", f"{zlib.crc32(data):08x} vs {m.crc:08x}")
    return data


def _pre(where: str | None) -> str:
    return f"{where}: " if where else ""


# Zip ----------------------------------------------------------------------------------------------------------

def scan_zip(buf: Buffer, fmt: Format, fs: FileScan, *, where: str | None, depth: int) -> None:
    """A zip archive as *every* loader reads it: miniz (torch) and zipfile (numpy, Keras); every member either
    could open is scanned, and every disagreement between them is a finding."""
    view = read_zip(buf)
    if not view.readings:
        fs.unverified(f"{_pre(where)}zip directory cannot be read (miniz: {view.miniz.error}; zipfile: "
                      f"{view.pyzip.error})")
        return
    for d in view.disagreements():
        fs.add("ZIP-READERS-DISAGREE", where, f"torch (miniz) and numpy/Keras (zipfile) read this archive "
               f"differently: {d}", d)
    for off in view.other_end_records:
        fs.add("ZIP-MULTIPLE-DIRECTORIES", at(where, f"byte {off}"), "a second end-of-central-directory record "
               "(a hidden directory, e.g. in a comment): another reader may list other members", f"byte {off}")
    end = max(r.end for r in view.readings)
    if 0 <= end < len(buf):
        fs.add("ZIP-TRAILING-DATA", at(where, f"byte {end}"), f"{len(buf) - end} bytes follow the archive's end "
               "record; no zip reader reads them", f"{len(buf) - end} bytes")
    for reading in view.readings:  # zip64 itself is honest (archives over 4 GiB); disagreements about it are not
        _check_zip_layout(buf, reading, fs, where)
    _check_names(view, fs, where)
    miniz = view.miniz if view.miniz.ok else None
    prefix = torch_prefix(miniz) if miniz is not None else None
    data_pkls = torch_records(miniz, "data.pkl") if miniz is not None else []
    torch_like = fmt in (Format.TORCH_ZIP, Format.TORCHSCRIPT) or bool(data_pkls)
    if len(data_pkls) > 1:
        fs.add("ZIP-AMBIGUOUS-RECORD", where, f"{len(data_pkls)} members could be torch's data.pkl (names differ "
               "only in case or repeat): which one torch reads is not specified; all were scanned",
               ", ".join(m.name for m in data_pkls))
    others = [m for r in view.readings for m in r.members if m.raw_name.lower().endswith(b"data.pkl")
              and m not in data_pkls and m.span not in {d.span for d in data_pkls}]
    if torch_like and others and miniz is not None:
        fs.add("ZIP-AMBIGUOUS-RECORD", where, "other members named like a torch data.pkl, outside the folder torch "
               "reads: a tool that searches for */data.pkl may load one of them; all were scanned",
               ", ".join(sorted({m.name for m in others})))
    if torch_like and prefix is not None:
        code = [m.name for m in miniz.members if m.raw_name.lower().startswith((prefix + "code/").encode().lower())]  # type: ignore[union-attr]
        if fmt is Format.TORCHSCRIPT or code:
            fs.add("TORCHSCRIPT-CODE", where, f"TorchScript archive with {len(code)} code member(s): "
                   "torch.jit.load runs them", ", ".join(code[:5]))
    # Every distinct byte span any reader could open, once, under every name it is known by.
    spans: dict[tuple[int, int, int, int], ZipMember] = {}
    aliases: dict[tuple[int, int, int, int], set[bytes]] = {}
    pkl_spans = {m.span for m in data_pkls}
    for r in view.readings:
        for m in r.members:
            if m.data_start >= 0 and not m.name.endswith("/"):
                spans.setdefault(m.span, m)
                aliases.setdefault(m.span, set()).add(m.raw_name.lower())
                if torch_like and m.raw_name.lower().endswith(b".pkl"):
                    pkl_spans.add(m.span)  # torch unpickles a *.pkl record by name, whatever it holds
    pickle_results: list[StreamResult] = []
    data_spans = {m.span for m in data_pkls}
    for span, m in spans.items():
        if span in pkl_spans:
            data = _decompressed(buf, m, fs, where, depth)
            if data is not None:
                res = _scan_pickle_bytes(data, fs, at(where, f"member {m.name}"), depth)
                if span in data_spans:
                    pickle_results.append(res)
    storages = _check_storages(buf, miniz, prefix, pickle_results, fs, where) if torch_like and miniz else set()
    # A storage's bytes are skipped only when no other name (one numpy or a tool could open) points at them.
    data_dir = (prefix or "").encode().lower() + b"data/"
    storages = {sp for sp in storages if all(n.startswith(data_dir) for n in aliases.get(sp, ()))}
    for span, m in spans.items():
        if span in storages or span in pkl_spans:
            continue
        if m.usize > _HEAD and _numeric_npy(buf, m):
            continue  # numpy reads a numeric array's header and then raw numbers: nothing more to scan
        data = _decompressed(buf, m, fs, where, depth, ratio=MAX_RATIO)
        if data is not None:
            fs.nested(data, m.name, where=at(where, f"member {m.name}"), depth=depth + 1)


_HEAD = 64 * 1024


def _numeric_npy(buf: Buffer, m: ZipMember) -> bool:
    """A large member whose first bytes are a ``.npy`` header of a dtype without objects (read from its head)."""
    try:
        head = member_bytes(buf, m, limit=_HEAD, head=_HEAD)
        if not head.startswith(b"\x93NUMPY"):
            return False
        dtype, _start = read_npy_header(head)
    except FormatError:
        return False
    return not dtype.hasobject


def _check_names(view: ZipView, fs: FileScan, where: str | None) -> None:
    """Duplicate names, and names equal but for case (miniz, and so torch, looks names up case-insensitively)."""
    for r in view.readings:
        seen: dict[bytes, ZipMember] = {}
        folded: dict[bytes, ZipMember] = {}
        for m in r.members:
            if m.raw_name in seen:
                fs.add("ZIP-DUPLICATE", at(where, f"member {m.name}"), f"two members are named {m.name!r}: "
                       "loaders disagree on which one they read (zipfile the last, torch the first)", m.name)
            elif m.raw_name.lower() in folded:
                other = folded[m.raw_name.lower()]
                fs.add("ZIP-CASE-COLLISION", at(where, f"member {m.name}"), f"members {other.name!r} and "
                       f"{m.name!r} differ only in case: torch looks names up case-insensitively, zipfile does "
                       "not, so they may read different bytes", f"{other.name} / {m.name}")
            seen.setdefault(m.raw_name, m)
            folded.setdefault(m.raw_name.lower(), m)


def _check_zip_layout(buf: Buffer, reading: ZipReading, fs: FileScan, where: str | None) -> None:
    """Local headers against the central directory; prefixes, gaps, overlaps, flags."""
    ends: dict[int, int] = {}
    for e in reading.members:
        mloc = at(where, f"member {e.name}")
        if e.flags & ~_KNOWN_FLAGS or e.method not in (0, 8, 12, 14):
            fs.add("ZIP-FLAGS", mloc, f"unusual flags 0x{e.flags:04x} or compression method {e.method}",
                   f"flags=0x{e.flags:04x} method={e.method}")
        if e.flags & 0x1:
            fs.add("ZIP-FLAGS", mloc, "member is encrypted", "encrypted")
            fs.unverified(f"{e.name}: encrypted zip member cannot be read")
        lo = e.header_offset
        if e.local_name is None:
            fs.add("ZIP-HEADER-MISMATCH", mloc, f"central directory points to byte {lo}, where there is no local "
                   "header", f"offset {lo}")
            continue
        lflags, lmethod = u16(buf, lo + 6), u16(buf, lo + 8)
        lcrc, lcsize, lusize = u32(buf, lo + 14), u32(buf, lo + 18), u32(buf, lo + 22)
        lname = _decode_local(e.local_name, lflags)
        diffs = []
        if lname != e.name:
            diffs.append(f"name {lname!r} vs {e.name!r}")
        if lflags != e.flags:
            diffs.append(f"flags 0x{lflags:04x} vs 0x{e.flags:04x}")
        if lmethod != e.method:
            diffs.append(f"method {lmethod} vs {e.method}")
        if not (e.flags & 0x8) or (lcrc or lcsize or lusize):
            nlen = len(e.local_name)
            lextra = bytes(buf[lo + 30 + nlen:e.data_start])
            values = {"usize": lusize, "csize": lcsize}
            need = [k for k, v in (("usize", lusize), ("csize", lcsize)) if v == 0xFFFFFFFF]
            if need:
                try:
                    zip64_extra(lextra, need, values)
                except ZipReadError:
                    pass
            if lcrc != e.crc:
                diffs.append(f"crc {lcrc:08x} vs {e.crc:08x}")
            if values["csize"] != e.csize or values["usize"] != e.usize:
                diffs.append(f"sizes {values['csize']}/{values['usize']} vs {e.csize}/{e.usize}")
        if diffs:
            fs.add("ZIP-HEADER-MISMATCH", mloc, "local header disagrees with the central directory: "
                   + "; ".join(diffs), "; ".join(diffs))
        if e.data_end > reading.cd_offset or e.data_end > len(buf):
            fs.add("ZIP-OVERLAP", mloc, "member data runs into the central directory or past the end of the file",
                   f"{e.data_start}..{e.data_end}")
            continue
        ends[e.index] = _descriptor_end(buf, e, fs, mloc) if e.flags & 0x8 else e.data_end
    placed = sorted((e for e in reading.members if e.index in ends), key=lambda e: e.header_offset)
    cursor = reading.shift
    first = True
    for e in placed:
        if e.header_offset > cursor:
            if first:
                fs.add("ZIP-PREFIX", at(where, "byte 0"), f"{e.header_offset} bytes precede the first zip member: "
                       "another loader may read them as a different file (a polyglot)", f"{e.header_offset} bytes")
            else:
                fs.add("ZIP-GAP", at(where, f"byte {cursor}"), f"{e.header_offset - cursor} bytes between members "
                       "belong to no entry (a hidden member?)", f"{e.header_offset - cursor} bytes")
        elif e.header_offset < cursor:
            fs.add("ZIP-OVERLAP", at(where, f"member {e.name}"), "member overlaps the previous one", e.name)
        first = False
        cursor = max(cursor, ends[e.index])
    if reading.shift and not placed:
        fs.add("ZIP-PREFIX", at(where, "byte 0"), f"{reading.shift} bytes precede the archive", None)
    elif reading.shift and placed and placed[0].header_offset == reading.shift:
        fs.add("ZIP-PREFIX", at(where, "byte 0"), f"{reading.shift} bytes precede the first zip member: another "
               "loader may read them as a different file (a polyglot)", f"{reading.shift} bytes")
    if placed and reading.cd_offset > cursor:
        fs.add("ZIP-GAP", at(where, f"byte {cursor}"), f"{reading.cd_offset - cursor} bytes between the last "
               "member and the central directory belong to no entry (a hidden member?)",
               f"{reading.cd_offset - cursor} bytes")


def _decode_local(raw: bytes, flags: int) -> str:
    return raw.decode("utf-8", errors="surrogateescape") if flags & 0x800 else raw.decode("cp437")


def _descriptor_end(buf: Buffer, e: ZipMember, fs: FileScan, mloc: str | None) -> int:
    p = e.data_end
    if buf[p:p + 4] == _DESCRIPTOR:
        p += 4
    if p + 12 > len(buf):
        fs.add("ZIP-HEADER-MISMATCH", mloc, "data descriptor is missing", None)
        return e.data_end
    crc = u32(buf, p)
    if u32(buf, p + 4) == e.csize & 0xFFFFFFFF and u32(buf, p + 8) == e.usize & 0xFFFFFFFF \
            and e.csize < 0xFFFFFFFF and e.usize < 0xFFFFFFFF:
        end = p + 12
    elif p + 20 <= len(buf) and u64(buf, p + 4) == e.csize and u64(buf, p + 12) == e.usize:
        end = p + 20
    else:
        fs.add("ZIP-HEADER-MISMATCH", mloc, "data descriptor sizes disagree with the central directory", None)
        return e.data_end
    if crc != e.crc:
        fs.add("ZIP-HEADER-MISMATCH", mloc, f"data descriptor CRC {crc:08x} disagrees with the central "
               f"directory ({e.crc:08x})", f"{crc:08x} vs {e.crc:08x}")
    return end


def _crc_of_span(buf: Buffer, start: int, end: int) -> int:
    crc = 0
    step = 16 << 20
    for off in range(start, end, step):
        crc = zlib.crc32(buf[off:min(end, off + step)], crc)
    return crc


def _scan_pickle_bytes(data: bytes, fs: FileScan, where: str | None, depth: int) -> StreamResult:
    return scan_pickle_stream(io.BytesIO(data), fs, where=where, nested=_nested_scanner(fs, depth),
                              expect_more=False)


def _nested_scanner(fs: FileScan, depth: int):  # type: ignore[no-untyped-def]
    def nested(blob: bytes, location: str) -> None:
        fs.nested(blob, location, where=location, depth=depth + 1)
    return nested


def _check_storages(buf: Buffer, miniz: ZipReading, prefix: str | None, results: list[StreamResult], fs: FileScan,
                    where: str | None) -> set[tuple[int, int, int, int]]:
    """Storages data.pkl references, looked up as torch does; returns their spans (raw bytes torch never
    unpickles, so they are checked by size, and by CRC with ``--deep``, not scanned by content)."""
    raw: set[tuple[int, int, int, int]] = set()
    for res in results:
        if not res.pickles:
            continue
        for stype, key, numel in storage_refs(res.pickles[0].persistent_ids):
            name = f"{prefix}data/{key}"
            elem = storage_element_size(stype)
            found = torch_records(miniz, f"data/{key}")
            if not found:
                fs.add("TORCH-STORAGE", at(where, f"member {name}"), f"storage {key} is referenced by data.pkl but "
                       "missing from the archive", name)
                continue
            for e in found:
                raw.add(e.span)
                if elem is not None and e.usize < numel * elem:
                    fs.add("TORCH-STORAGE", at(where, f"member {e.name}"), f"storage {key} holds {e.usize} bytes, "
                           f"data.pkl declares {numel} x {elem}", f"{e.usize} < {numel * elem}")
                if e.method != 0:
                    fs.add("ZIP-FLAGS", at(where, f"member {e.name}"), "torch storage is compressed (torch stores "
                           "them uncompressed and reads them by offset)", f"method {e.method}")
                elif 0 <= e.data_start <= e.data_end <= len(buf):
                    check_tensor_start(buf, e.data_start, e.data_end, fs, at(where, f"member {e.name}"))
                if fs.options.deep and e.data_start >= 0 and e.method == 0 and e.data_end <= len(buf):
                    crc = _crc_of_span(buf, e.data_start, e.data_end)
                    if crc != e.crc:
                        fs.add("ZIP-CRC", at(where, f"member {e.name}"), "CRC does not match the storage's bytes",
                               f"{crc:08x} vs {e.crc:08x}")
    return raw


# Pickles --------------------------------------------------------------------------------------------------------

def scan_pickle_file(buf: Buffer, fs: FileScan, *, where: str | None, depth: int,
                     stream: BinaryIO | None = None) -> None:
    """A raw pickle file: one or several stacked pickles, or a legacy torch file read as ``_legacy_load`` reads it.

    torch's legacy loader unpickles five pickles in a row (magic number, protocol, sys info, the data, the storage
    keys) whatever their first bytes look like, then reads raw storage records; each of those is scanned.
    """
    stream = stream if stream is not None else stream_of(buf)
    nested = _nested_scanner(fs, depth)
    probe = fs.probe()
    first = scan_pickle_stream(stream, probe, where=where, nested=nested, expect_more=False)
    legacy = bool(first.pickles) and first.error is None and type(first.pickles[0].value) is int \
        and first.pickles[0].value == TORCH_LEGACY_MAGIC
    _merge(probe, fs)
    if not legacy:
        # pickle.load reads one pickle; stacked ones (some loaders read several) are scanned while they parse
        if first.error is not None or stream.tell() >= len(buf):
            return
        start = stream.tell()
        rest = fs.probe()
        res = scan_pickle_stream(stream, rest, where=where, nested=nested)
        if res.pickles or any(f.severity > Severity.INFO for f in rest.findings):
            _merge(rest, fs)
        else:
            fs.add("PICKLE-TRAILING-DATA", at(where, f"byte {start}"), f"{len(buf) - start} bytes follow the last "
                   "pickle; no pickle loader reads them")
        return
    pickles = list(first.pickles)
    size = len(buf)
    for _ in range(4):
        if stream.tell() >= size:
            fs.add("TORCH-LEGACY-LAYOUT", at(where, f"byte {stream.tell()}"), f"legacy torch file ends after "
                   f"{len(pickles)} of its 5 pickles", None)
            return
        res = scan_pickle_stream(stream, fs, where=where, nested=nested, expect_more=False)
        if res.error is not None or not res.pickles:
            return  # reported by the pickle machine (broken or not verified)
        pickles.extend(res.pickles)
    _check_legacy_tail(buf, StreamResult(pickles, stream.tell(), True), fs, where)


def _merge(src: FileScan, dst: FileScan) -> None:
    for f in src.findings:
        dst.add(f.rule, f.location, f.message, f.evidence, severity=f.severity)
    for r in src.reasons:
        dst.unverified(r)


def _check_legacy_tail(buf: Buffer, res: StreamResult, fs: FileScan, where: str | None) -> None:
    """After the five pickles of a legacy torch file: one record (u64 count + raw bytes) per storage key."""
    if len(res.pickles) < 5:
        if res.error is None:
            fs.add("TORCH-LEGACY-LAYOUT", at(where, f"byte {res.end}"), f"legacy torch file ends after "
                   f"{len(res.pickles)} of its 5 pickles", None)
        return
    keys = constant_list(res.pickles[4].value)
    refs = {key: (stype, numel) for stype, key, numel in storage_refs(res.pickles[3].persistent_ids)}
    if keys is None or not all(isinstance(k, str) for k in keys):
        fs.add("TORCH-LEGACY-LAYOUT", at(where, f"byte {res.pickles[4].start}"),
               "the storage-key pickle is not a list of names", None)
        return
    pos = res.end
    for key in keys:
        if key not in refs:
            fs.add("TORCH-LEGACY-LAYOUT", at(where, f"byte {pos}"), f"storage {key!r} is not referenced by the "
                   "data pickle", key)
            return
        elem = storage_element_size(refs[key][0])
        if elem is None:
            fs.unverified(f"legacy torch storage type {refs[key][0]} is unknown; the raw storage records after "
                          "the pickles were not checked")
            return
        if pos + 8 > len(buf):
            break
        count = u64(buf, pos)
        check_tensor_start(buf, pos + 8, min(len(buf), pos + 8 + count * elem), fs, at(where, f"storage {key}"))
        pos += 8 + count * elem
    if pos != len(buf):
        fs.add("TORCH-LEGACY-LAYOUT", at(where, f"byte {min(pos, len(buf))}"),
               f"storage records end at byte {pos} but the file has {len(buf)} bytes: bytes no loader reads, or "
               "a truncated file", f"{pos} vs {len(buf)}")


# numpy ------------------------------------------------------------------------------------------------------------

#: A ``.npy`` header longer than this is not parsed (numpy itself refuses more than 10 000 bytes unless the
#: caller passes ``allow_pickle=True``, which lifts its limit).
MAX_NPY_HEADER = 1 << 20


def scan_npy(buf: Buffer, fs: FileScan, *, where: str | None, depth: int) -> None:
    """``.npy``: the header is read by numpy's own parser (which reads no data) and ``dtype.hasobject`` decides:
    an object array's data is a pickle that ``np.load(allow_pickle=True)`` unpickles, so it is scanned."""
    try:
        dtype, data_start = read_npy_header(buf)
    except FormatError as exc:
        fs.unverified(f"{_pre(where)}{exc.message}")
        return
    if dtype.hasobject:
        fs.add("NUMPY-OBJECT", where, "numpy array of Python objects: its data is a pickle (np.load with "
               "allow_pickle=True unpickles it); the pickle is scanned", str(dtype)[:80])
        scan_pickle_stream(stream_of(buf, data_start), fs, where=at(where, f"pickle at byte {data_start}"),
                           nested=_nested_scanner(fs, depth), expect_more=False)


def read_npy_header(buf: Buffer) -> tuple[Any, int]:
    """The dtype of a ``.npy`` file and where its data starts, by numpy's own header parser (no data is read).

    Raises :class:`ResourceLimit` for a header over :data:`MAX_NPY_HEADER` and :class:`ZipReadError` (a
    :class:`~assay.errors.FormatError` too) when numpy would refuse the header.
    """
    import warnings

    from numpy.lib import format as npf

    fh = BufReader(buf)
    try:
        major, minor = npf.read_magic(fh)
        width = 2 if major == 1 else 4
        raw = fh.read(width)
        if len(raw) < width:
            raise ValueError("truncated header length")
        hlen = int.from_bytes(raw, "little")
        if hlen > MAX_NPY_HEADER:
            raise ResourceLimit(f"resource limit: numpy header of {hlen} bytes is not parsed")
        fh.seek(8)
        reader = getattr(npf, "_read_array_header", None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if reader is not None:
                _shape, _fortran, dtype = reader(fh, (major, minor), max_header_size=2**64)
            elif (major, minor) == (1, 0):
                _shape, _fortran, dtype = npf.read_array_header_1_0(fh, max_header_size=2**64)
            else:
                _shape, _fortran, dtype = npf.read_array_header_2_0(fh, max_header_size=2**64)
    except ResourceLimit:
        raise
    except Exception as exc:
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise FormatError(f"numpy header cannot be parsed ({why})") from exc
    return dtype, fh.tell()


# HDF5 and Keras ---------------------------------------------------------------------------------------------------

def scan_hdf5(buf: Buffer, fs: FileScan, *, where: str | None) -> None:
    """HDF5 (Keras ``.h5``): read ``model_config`` from the root attributes with h5py, never with TensorFlow."""
    try:
        import h5py
    except ImportError:
        fs.unverified(f"{where + ': ' if where else ''}HDF5 file not analysed (install h5py to read Keras "
                      "model configs)")
        return
    try:
        with h5py.File(BufReader(buf), "r") as h5:
            attrs = dict(h5.attrs.items())
            configs = [attrs[k] for k in ("model_config", "training_config") if k in attrs]
    except Exception as exc:  # noqa: BLE001 - h5py raises many kinds of errors on hostile files
        fs.unverified(f"{where + ': ' if where else ''}HDF5 file cannot be read ({type(exc).__name__})")
        return
    for raw in configs:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        try:
            doc = json.loads(text)
        except ValueError:
            fs.unverified(f"{where + ': ' if where else ''}Keras model_config is not valid JSON")
            continue
        if isinstance(doc, dict):
            check_keras_config(doc, fs, where=at(where, "model_config"))


def check_keras_config(doc: dict[str, Any], fs: FileScan, *, where: str | None) -> None:
    """Lambda layers (marshalled bytecode) and custom classes in a Keras model config."""
    for node in _walk(doc):
        cls = node.get("class_name")
        if isinstance(cls, str) and (cls in ("Lambda", "__lambda__") or cls.endswith(">Lambda")):
            fs.add("KERAS-LAMBDA", where, f"Keras layer {node.get('name') or cls!r} is a Lambda: its Python "
                   "bytecode runs when the model is loaded", str(cls))
        module = node.get("module")
        registered = node.get("registered_name")
        if isinstance(module, str) and module and not module.startswith(("keras", "tensorflow.keras", "tf_keras")) \
                and module not in ("builtins", "numpy"):
            fs.add("KERAS-CUSTOM", where, f"Keras object {cls!r} comes from module {module!r}: loading imports it",
                   module)
        elif isinstance(registered, str) and ">" in registered:
            fs.add("KERAS-CUSTOM", where, f"Keras object {registered!r} is a registered custom object", registered)


def _walk(doc: Any, depth: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    stack = [(doc, 0)]
    while stack:
        node, d = stack.pop()
        if d > 200:
            continue
        if isinstance(node, dict):
            out.append(node)
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return out


# tar, gzip, bzip2, xz ---------------------------------------------------------------------------------------------

def scan_compressed(buf: Buffer, fmt: Format, fs: FileScan, *, where: str | None, depth: int) -> None:
    """A tar archive or a compressed stream: members and contents are scanned by content."""
    import bz2
    import gzip
    import lzma

    label = where or "file"
    if fmt is Format.TAR:
        _scan_tar(buf, fs, where=where, depth=depth)
        return
    budget = _take_budget(depth)
    limit = min(MAX_MEMBER_BYTES, budget[0], max(_RATIO_FLOOR, MAX_RATIO * len(buf)))
    try:
        if fmt is Format.GZIP:
            with gzip.GzipFile(fileobj=BufReader(buf)) as gz:
                data = gz.read(limit + 1)
        elif fmt is Format.BZIP2:
            data = bz2.BZ2Decompressor().decompress(bytes(buf), limit + 1)
        else:
            data = lzma.LZMADecompressor().decompress(bytes(buf), limit + 1)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as exc:
        fs.unverified(f"{label}: {fmt.value} stream is corrupt ({exc})")
        return
    if len(data) > limit:
        fs.unverified(f"{label}: resource limit: {fmt.value} stream decompresses to more than {limit >> 20} MiB "
                      f"from {len(buf)} bytes (limits: {MAX_MEMBER_BYTES >> 20} MiB, {MAX_RATIO}:1); not analysed")
        return
    budget[0] -= len(data)
    fs.nested(data, f"{label} (decompressed)", where=at(where, f"{fmt.value} content"), depth=depth + 1)


def _scan_tar(buf: Buffer, fs: FileScan, *, where: str | None, depth: int) -> None:
    import tarfile

    try:
        with tarfile.open(fileobj=BufReader(buf), mode="r:") as tf:
            for member in tf:
                mloc = at(where, f"member {member.name}")
                parts = member.name.replace("\\", "/").split("/")
                if member.name.startswith(("/", "\\")) or ".." in parts:
                    fs.add("ARCHIVE-PATH", mloc, "member path escapes the extraction folder", member.name)
                if member.issym() or member.islnk():
                    fs.add("ARCHIVE-PATH", mloc, f"member is a link to {member.linkname!r}", member.linkname)
                    continue
                if member.isdev() or member.isfifo():
                    fs.add("ARCHIVE-PATH", mloc, "member is a device or FIFO", member.name)
                    continue
                if not member.isfile():
                    continue
                budget = _take_budget(depth + 1)
                if member.size > min(MAX_MEMBER_BYTES, budget[0]):
                    fs.unverified(f"{mloc}: resource limit: {member.size} bytes, too large to analyse in memory")
                    continue
                budget[0] -= member.size
                fh = tf.extractfile(member)
                if fh is None:
                    continue
                if member.name in ("storages", "tensors"):
                    # torch's legacy tar format: torch.load unpickles these record by record (see below)
                    _scan_torch_tar_records(fh.read(), member.name, fs, where=mloc, depth=depth + 1)
                    continue
                fs.nested(fh.read(), member.name, where=mloc, depth=depth + 1)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        fs.unverified(f"{where or 'file'}: tar archive is corrupt ({exc})")


def _scan_torch_tar_records(data: bytes, kind: str, fs: FileScan, *, where: str | None, depth: int) -> None:
    """The ``storages`` and ``tensors`` members of torch's legacy tar format, read as ``legacy_load`` reads them.

    ``storages``: a count pickle, then per storage a pickle ``(key, location, storage_type)`` followed by a raw
    record (u64 element count, then the elements), then a pickle of storage views. ``tensors``: a count pickle,
    then per tensor a pickle ``(key, storage_id, type)`` followed by ndim, sizes, strides and offset. Every pickle
    torch unpickles is scanned, wherever it lies among the raw records.
    """
    stream = io.BytesIO(data)
    nested = _nested_scanner(fs, depth)

    def one() -> Any:
        res = scan_pickle_stream(stream, fs, where=where, nested=nested, expect_more=False)
        return None if res.error is not None or not res.pickles else res.pickles[0]

    count = one()
    if count is None:
        return
    n = count.value
    if type(n) is not int or not 0 <= n <= 1_000_000:
        fs.add("TORCH-LEGACY-LAYOUT", where, f"legacy torch {kind} record count is not a plausible number", None)
        return
    for _ in range(n):
        args = one()
        if args is None:
            return
        value = args.value
        if not isinstance(value, tuple) or len(value) != 3:
            fs.add("TORCH-LEGACY-LAYOUT", at(where, f"byte {args.start}"), f"legacy torch {kind} record is not a "
                   "3-tuple", None)
            return
        pos = stream.tell()
        if kind == "storages":
            stype = value[2]
            elem = storage_element_size(stype.full) if hasattr(stype, "full") else None
            if elem is None or pos + 8 > len(data):
                fs.unverified(f"{_pre(where)}legacy torch storage record of an unknown type; the records after it "
                              "were not read")
                return
            stream.seek(min(pos + 8 + u64(data, pos) * elem, len(data) + 1))
        else:
            if pos + 8 > len(data):
                break
            ndim = struct.unpack_from("<i", data, pos)[0]
            if not 0 <= ndim <= 64:
                fs.add("TORCH-LEGACY-LAYOUT", at(where, f"byte {pos}"), f"legacy torch tensor record has ndim "
                       f"{ndim}", str(ndim))
                return
            stream.seek(pos + 8 + 16 * ndim + 8)
        if stream.tell() > len(data):
            fs.add("TORCH-LEGACY-LAYOUT", at(where, f"byte {pos}"), f"legacy torch {kind} record runs past the end "
                   "of the member", None)
            return
    if kind == "storages" and one() is None:
        return
    if stream.tell() != len(data):
        fs.add("TORCH-LEGACY-LAYOUT", at(where, f"byte {stream.tell()}"), f"{len(data) - stream.tell()} bytes "
               f"follow the legacy torch {kind} records", None)
