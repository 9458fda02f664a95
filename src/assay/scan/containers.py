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

import io
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from assay.model.formats import Format
from assay.scan.allowlist import storage_element_size
from assay.scan.context import FileScan, at
from assay.scan.files import Buffer, BufReader, scan_buffer, stream_of
from assay.scan.payload import check_tensor_start
from assay.scan.pickle_vm import StreamResult, constant_list, scan_pickle_stream, storage_refs

#: Members larger than this are not decompressed into memory (reported as not verified).
MAX_MEMBER_BYTES = 256 * 1024 * 1024

_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_EOCD64_LOC = b"PK\x06\x07"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_DESCRIPTOR = b"PK\x07\x08"
_KNOWN_FLAGS = 0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0800  # encrypted, deflate options, descriptor, utf-8


# Zip ----------------------------------------------------------------------------------------------------------

@dataclass
class ZipEntry:
    """One central directory entry, with where its data lies (as a loader reading local headers finds it)."""

    name: str
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    local_offset: int
    data_start: int = -1
    data_end: int = -1
    record_end: int = -1


class _ZipError(Exception):
    pass


def _u16(b: Buffer, o: int) -> int:
    return int(struct.unpack_from("<H", b, o)[0])


def _u32(b: Buffer, o: int) -> int:
    return int(struct.unpack_from("<I", b, o)[0])


def _u64(b: Buffer, o: int) -> int:
    return int(struct.unpack_from("<Q", b, o)[0])


def _zip64_extra(extra: bytes, need: list[str], values: dict[str, int]) -> None:
    pos = 0
    while pos + 4 <= len(extra):
        hid, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + size]
        if hid == 1:
            off = 0
            for key in need:
                if off + 8 > len(body):
                    raise _ZipError("zip64 extra field is too short")
                values[key] = struct.unpack_from("<Q", body, off)[0]
                off += 8
            return
        pos += 4 + size
    if need:
        raise _ZipError("zip64 sizes announced but no zip64 extra field")


def read_central_directory(buf: Buffer) -> tuple[list[ZipEntry], int, int, int]:
    """Entries, central directory offset and size, and where the directory records end (EOCD end)."""
    size = len(buf)
    lo = max(0, size - (65535 + 22))
    pos = buf.rfind(_EOCD, lo)
    while pos >= 0 and pos + 22 + _u16(buf, pos + 20) != size and pos > lo:
        pos = buf.rfind(_EOCD, lo, pos)
    if pos < 0 or pos + 22 > size:
        raise _ZipError("no end-of-central-directory record")
    eocd_end = pos + 22 + _u16(buf, pos + 20)
    count, cd_size, cd_offset = _u16(buf, pos + 10), _u32(buf, pos + 12), _u32(buf, pos + 16)
    if pos >= 20 and buf[pos - 20:pos - 16] == _EOCD64_LOC:
        e64 = _u64(buf, pos - 12)
        if e64 + 56 > size or buf[e64:e64 + 4] != _EOCD64:
            raise _ZipError("zip64 end-of-central-directory record is missing")
        count, cd_size, cd_offset = _u64(buf, e64 + 32), _u64(buf, e64 + 40), _u64(buf, e64 + 48)
    shift = 0
    if buf[cd_offset:cd_offset + 4] != _CENTRAL and count:
        # Bytes were prepended without fixing the offsets: Python's zipfile shifts them, torch does not.
        shift = pos - cd_size - cd_offset
        if shift <= 0 or buf[cd_offset + shift:cd_offset + shift + 4] != _CENTRAL:
            raise _ZipError("central directory is not where the end record says")
        cd_offset += shift
    if cd_offset + cd_size > size:
        raise _ZipError("central directory lies outside the file")
    entries: list[ZipEntry] = []
    p = cd_offset
    while p + 46 <= cd_offset + cd_size and buf[p:p + 4] == _CENTRAL:
        flags, method = _u16(buf, p + 8), _u16(buf, p + 10)
        crc, csize, usize = _u32(buf, p + 16), _u32(buf, p + 20), _u32(buf, p + 24)
        nlen, xlen, clen = _u16(buf, p + 28), _u16(buf, p + 30), _u16(buf, p + 32)
        local = _u32(buf, p + 42)
        raw_name = bytes(buf[p + 46:p + 46 + nlen])
        extra = bytes(buf[p + 46 + nlen:p + 46 + nlen + xlen])
        values = {"usize": usize, "csize": csize, "local": local}
        need = [k for k, v in (("usize", usize), ("csize", csize), ("local", local)) if v == 0xFFFFFFFF]
        _zip64_extra(extra, need, values)
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", errors="replace")
        entries.append(ZipEntry(name, flags, method, crc, values["csize"], values["usize"],
                                values["local"] + shift))
        p += 46 + nlen + xlen + clen
    if len(entries) != count:
        raise _ZipError(f"central directory announces {count} entries but holds {len(entries)}")
    return entries, cd_offset, cd_size, eocd_end


def _check_zip_layout(buf: Buffer, entries: list[ZipEntry], cd_offset: int, cd_size: int, fs: FileScan,
                      where: str | None) -> None:
    """Local headers against the central directory; prefixes, gaps, overlaps, duplicates, flags."""
    names: dict[str, int] = {}
    for e in entries:
        names[e.name] = names.get(e.name, 0) + 1
        mloc = at(where, f"member {e.name}")
        if names[e.name] == 2:
            fs.add("ZIP-DUPLICATE", mloc, f"two members are named {e.name!r}: loaders disagree on which one "
                   "they read", e.name)
        if e.flags & ~_KNOWN_FLAGS or e.method not in (0, 8, 12, 14):
            fs.add("ZIP-FLAGS", mloc, f"unusual flags 0x{e.flags:04x} or compression method {e.method}",
                   f"flags=0x{e.flags:04x} method={e.method}")
        if e.flags & 0x1:
            fs.add("ZIP-FLAGS", mloc, "member is encrypted", "encrypted")
            fs.unverified(f"{e.name}: encrypted zip member cannot be read")
        lo = e.local_offset
        if lo + 30 > len(buf) or buf[lo:lo + 4] != _LOCAL:
            fs.add("ZIP-HEADER-MISMATCH", mloc, f"central directory points to byte {lo}, where there is no local "
                   "header", f"offset {lo}")
            continue
        lflags, lmethod = _u16(buf, lo + 6), _u16(buf, lo + 8)
        lcrc, lcsize, lusize = _u32(buf, lo + 14), _u32(buf, lo + 18), _u32(buf, lo + 22)
        nlen, xlen = _u16(buf, lo + 26), _u16(buf, lo + 28)
        lname_raw = bytes(buf[lo + 30:lo + 30 + nlen])
        lname = lname_raw.decode("utf-8" if lflags & 0x800 else "cp437", errors="replace")
        lextra = bytes(buf[lo + 30 + nlen:lo + 30 + nlen + xlen])
        diffs = []
        if lname != e.name:
            diffs.append(f"name {lname!r} vs {e.name!r}")
        if lflags != e.flags:
            diffs.append(f"flags 0x{lflags:04x} vs 0x{e.flags:04x}")
        if lmethod != e.method:
            diffs.append(f"method {lmethod} vs {e.method}")
        if not (e.flags & 0x8) or (lcrc or lcsize or lusize):
            values = {"usize": lusize, "csize": lcsize}
            need = [k for k, v in (("usize", lusize), ("csize", lcsize)) if v == 0xFFFFFFFF]
            try:
                _zip64_extra(lextra, need, values)
            except _ZipError:
                pass
            if lcrc != e.crc:
                diffs.append(f"crc {lcrc:08x} vs {e.crc:08x}")
            if values["csize"] != e.csize or values["usize"] != e.usize:
                diffs.append(f"sizes {values['csize']}/{values['usize']} vs {e.csize}/{e.usize}")
        if diffs:
            fs.add("ZIP-HEADER-MISMATCH", mloc, "local header disagrees with the central directory: "
                   + "; ".join(diffs), "; ".join(diffs))
        e.data_start = lo + 30 + nlen + xlen
        e.data_end = e.data_start + e.csize
        e.record_end = e.data_end
        if e.data_end > cd_offset:
            fs.add("ZIP-OVERLAP", mloc, "member data runs into the central directory or past the end of the file",
                   f"{e.data_start}..{e.data_end}")
            continue
        if e.flags & 0x8:
            e.record_end = _descriptor_end(buf, e, fs, mloc)
    placed = sorted((e for e in entries if e.data_start >= 0), key=lambda e: e.local_offset)
    cursor = 0
    for e in placed:
        if e.local_offset > cursor:
            if cursor == 0:
                fs.add("ZIP-PREFIX", at(where, "byte 0"), f"{e.local_offset} bytes precede the first zip member: "
                       "another loader may read them as a different file (a polyglot)", f"{e.local_offset} bytes")
            else:
                fs.add("ZIP-GAP", at(where, f"byte {cursor}"), f"{e.local_offset - cursor} bytes between members "
                       "belong to no entry (a hidden member?)", f"{e.local_offset - cursor} bytes")
        elif e.local_offset < cursor:
            fs.add("ZIP-OVERLAP", at(where, f"member {e.name}"), "member overlaps the previous one", e.name)
        cursor = max(cursor, e.record_end)
    if placed and cd_offset > cursor:
        fs.add("ZIP-GAP", at(where, f"byte {cursor}"), f"{cd_offset - cursor} bytes between the last member and "
               "the central directory belong to no entry (a hidden member?)", f"{cd_offset - cursor} bytes")


def _descriptor_end(buf: Buffer, e: ZipEntry, fs: FileScan, mloc: str | None) -> int:
    p = e.data_end
    if buf[p:p + 4] == _DESCRIPTOR:
        p += 4
    if p + 12 > len(buf):
        fs.add("ZIP-HEADER-MISMATCH", mloc, "data descriptor is missing", None)
        return e.data_end
    crc = _u32(buf, p)
    if _u32(buf, p + 4) == e.csize & 0xFFFFFFFF and _u32(buf, p + 8) == e.usize & 0xFFFFFFFF \
            and e.csize < 0xFFFFFFFF and e.usize < 0xFFFFFFFF:
        end = p + 12
    elif p + 20 <= len(buf) and _u64(buf, p + 4) == e.csize and _u64(buf, p + 12) == e.usize:
        end = p + 20
    else:
        fs.add("ZIP-HEADER-MISMATCH", mloc, "data descriptor sizes disagree with the central directory", None)
        return e.data_end
    if crc != e.crc:
        fs.add("ZIP-HEADER-MISMATCH", mloc, f"data descriptor CRC {crc:08x} disagrees with the central "
               f"directory ({e.crc:08x})", f"{crc:08x} vs {e.crc:08x}")
    return end


def _member_bytes(buf: Buffer, e: ZipEntry, fs: FileScan, where: str | None) -> bytes | None:
    mloc = at(where, f"member {e.name}")
    if e.data_start < 0 or e.data_end > len(buf):
        return None
    if e.usize > MAX_MEMBER_BYTES:
        fs.unverified(f"{mloc}: {e.usize} bytes, too large to analyse in memory")
        return None
    raw = bytes(buf[e.data_start:e.data_end])
    if e.method == 0:
        data = raw
    elif e.method == 8:
        d = zlib.decompressobj(-15)
        try:
            data = d.decompress(raw, MAX_MEMBER_BYTES + 1)
        except zlib.error as exc:
            fs.unverified(f"{mloc}: deflate data is corrupt ({exc})")
            return None
    elif e.method in (12, 14):
        import bz2
        import lzma

        try:
            if e.method == 12:
                data = bz2.BZ2Decompressor().decompress(raw, MAX_MEMBER_BYTES + 1)
            else:  # zip's LZMA: 2-byte version, 2-byte properties size, the LZMA1 properties, then the stream
                psize = struct.unpack_from("<H", raw, 2)[0]
                filters = [lzma._decode_filter_properties(lzma.FILTER_LZMA1,  # type: ignore[attr-defined]
                                                          raw[4:4 + psize])]
                data = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters).decompress(
                    raw[4 + psize:], MAX_MEMBER_BYTES + 1)
        except (OSError, ValueError, EOFError, struct.error, lzma.LZMAError) as exc:
            fs.unverified(f"{mloc}: compressed data is corrupt ({exc})")
            return None
    else:
        fs.unverified(f"{mloc}: compression method {e.method} is not supported")
        return None
    if len(data) != e.usize:
        fs.add("ZIP-HEADER-MISMATCH", mloc, f"member holds {len(data)} bytes, the directory says {e.usize}",
               f"{len(data)} vs {e.usize}")
    if zlib.crc32(data) != e.crc:
        fs.add("ZIP-CRC", mloc, "CRC does not match the member's bytes (torch ignores CRCs, so a loader would "
               "read them anyway)", f"{zlib.crc32(data):08x} vs {e.crc:08x}")
    return data


def _crc_of_span(buf: Buffer, start: int, end: int) -> int:
    crc = 0
    step = 16 << 20
    for off in range(start, end, step):
        crc = zlib.crc32(buf[off:min(end, off + step)], crc)
    return crc


def scan_zip(buf: Buffer, fmt: Format, fs: FileScan, *, where: str | None, depth: int) -> None:
    """A zip archive of any kind: layout checks, then each member by content (torch storages by size)."""
    try:
        entries, cd_offset, cd_size, _eocd_end = read_central_directory(buf)
    except (_ZipError, struct.error) as exc:
        fs.unverified(f"{where + ': ' if where else ''}zip directory cannot be read ({exc})")
        return
    _check_zip_layout(buf, entries, cd_offset, cd_size, fs, where)
    prefix = entries[0].name.split("/", 1)[0] + "/" if entries and "/" in entries[0].name else ""
    by_name = {e.name: e for e in reversed(entries)}  # first one wins, as a reader scanning in order finds it
    raw_storages: dict[str, ZipEntry] = {}
    torch_like = fmt in (Format.TORCH_ZIP, Format.TORCHSCRIPT)
    code_members = [e.name for e in entries if torch_like and e.name[len(prefix):].startswith("code/")]
    if fmt is Format.TORCHSCRIPT or code_members:
        fs.add("TORCHSCRIPT-CODE", where, f"TorchScript archive with {len(code_members)} code member(s): "
               "torch.jit.load runs them", ", ".join(code_members[:5]))
    if torch_like:
        raw_storages = {e.name: e for e in entries if e.name.startswith(prefix + "data/")}
    pickle_results: dict[str, StreamResult] = {}
    for e in entries:
        if e.name in raw_storages or e.name.endswith("/"):
            continue
        data = _member_bytes(buf, e, fs, where)
        if data is None:
            continue
        mwhere = at(where, f"member {e.name}")
        base = e.name[len(prefix):] if torch_like else e.name
        if torch_like and base.endswith(".pkl"):
            # torch unpickles these by name, whatever they hold
            pickle_results[base] = _scan_pickle_bytes(data, fs, mwhere, depth)
            continue
        scan_buffer(data, e.name, fs, where=mwhere, depth=depth + 1)
    if torch_like:
        _check_storages(buf, pickle_results.get("data.pkl"), prefix, raw_storages, fs, where)


def _scan_pickle_bytes(data: bytes, fs: FileScan, where: str | None, depth: int) -> StreamResult:
    return scan_pickle_stream(io.BytesIO(data), fs, where=where, nested=_nested_scanner(fs, depth),
                              expect_more=False)


def _nested_scanner(fs: FileScan, depth: int):  # type: ignore[no-untyped-def]
    def nested(blob: bytes, location: str) -> None:
        scan_buffer(blob, location, fs, where=location, depth=depth + 1)
    return nested


def _check_storages(buf: Buffer, res: StreamResult | None, prefix: str, raw: dict[str, ZipEntry], fs: FileScan,
                    where: str | None) -> None:
    if res is None or not res.pickles:
        return
    for stype, key, numel in storage_refs(res.pickles[0].persistent_ids):
        name = f"{prefix}data/{key}"
        elem = storage_element_size(stype)
        e = raw.get(name)
        if e is None:
            fs.add("TORCH-STORAGE", at(where, f"member {name}"), f"storage {key} is referenced by data.pkl but "
                   "missing from the archive", name)
            continue
        if elem is not None and e.usize < numel * elem:
            fs.add("TORCH-STORAGE", at(where, f"member {name}"), f"storage {key} holds {e.usize} bytes, data.pkl "
                   f"declares {numel} x {elem}", f"{e.usize} < {numel * elem}")
        if e.method != 0:
            fs.add("ZIP-FLAGS", at(where, f"member {name}"), "torch storage is compressed (torch stores them "
                   "uncompressed and reads them by offset)", f"method {e.method}")
        elif 0 <= e.data_start <= e.data_end <= len(buf):
            check_tensor_start(buf, e.data_start, e.data_end, fs, at(where, f"member {name}"))
        if fs.options.deep and e.data_start >= 0 and e.method == 0 and e.data_end <= len(buf):
            crc = _crc_of_span(buf, e.data_start, e.data_end)
            if crc != e.crc:
                fs.add("ZIP-CRC", at(where, f"member {name}"), "CRC does not match the storage's bytes",
                       f"{crc:08x} vs {e.crc:08x}")


# Pickles --------------------------------------------------------------------------------------------------------

def scan_pickle_file(buf: Buffer, fs: FileScan, *, where: str | None, depth: int) -> None:
    """A raw pickle file: one or several stacked pickles, or a legacy torch file (pickles then storages)."""
    res = scan_pickle_stream(stream_of(buf), fs, where=where, nested=_nested_scanner(fs, depth))
    if res.legacy_torch:
        _check_legacy_tail(buf, res, fs, where)


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
        count = _u64(buf, pos)
        check_tensor_start(buf, pos + 8, min(len(buf), pos + 8 + count * elem), fs, at(where, f"storage {key}"))
        pos += 8 + count * elem
    if pos != len(buf):
        fs.add("TORCH-LEGACY-LAYOUT", at(where, f"byte {min(pos, len(buf))}"),
               f"storage records end at byte {pos} but the file has {len(buf)} bytes: bytes no loader reads, or "
               "a truncated file", f"{pos} vs {len(buf)}")


# numpy ------------------------------------------------------------------------------------------------------------

def scan_npy(buf: Buffer, fs: FileScan, *, where: str | None, depth: int) -> None:
    """``.npy``: parse the header like numpy does (a literal dict); object arrays hold a pickle, scanned."""
    import ast

    try:
        major = buf[6]
        if major == 1:
            hlen, hstart = _u16(buf, 8), 10
        elif major in (2, 3):
            hlen, hstart = _u32(buf, 8), 12
        else:
            fs.unverified(f"{where + ': ' if where else ''}numpy format version {major} is unknown")
            return
        header = bytes(buf[hstart:hstart + hlen]).decode("utf-8" if major == 3 else "latin-1")
        meta = ast.literal_eval(header)
        descr = meta["descr"]
    except (IndexError, struct.error, ValueError, SyntaxError, KeyError, TypeError, UnicodeDecodeError,
            MemoryError, RecursionError) as exc:
        fs.unverified(f"{where + ': ' if where else ''}numpy header cannot be parsed ({exc})")
        return
    if _descr_has_object(descr):
        fs.add("NUMPY-OBJECT", where, "numpy array of Python objects: its data is a pickle (np.load with "
               "allow_pickle=True unpickles it); the pickle is scanned", str(descr)[:80])
        scan_pickle_stream(stream_of(buf, hstart + hlen), fs, where=at(where, f"pickle at byte {hstart + hlen}"),
                           nested=_nested_scanner(fs, depth), expect_more=False)


def _descr_has_object(descr: Any) -> bool:
    if isinstance(descr, str):
        return descr.lstrip("<>|=")[:1] == "O"
    if isinstance(descr, list):  # structured: [(name, descr[, shape]), ...]
        return any(not isinstance(f, tuple) or len(f) < 2 or _descr_has_object(f[1]) for f in descr)
    return True  # anything else is not a dtype numpy writes: treat as objects


# HDF5 and Keras ---------------------------------------------------------------------------------------------------

def scan_hdf5(buf: Buffer, fs: FileScan, *, where: str | None) -> None:
    """HDF5 (Keras ``.h5``): read ``model_config`` from the root attributes with h5py, never with TensorFlow."""
    try:
        import h5py  # type: ignore[import-untyped]
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
    try:
        if fmt is Format.GZIP:
            with gzip.GzipFile(fileobj=BufReader(buf)) as gz:
                data = gz.read(MAX_MEMBER_BYTES + 1)
        elif fmt is Format.BZIP2:
            data = bz2.BZ2Decompressor().decompress(bytes(buf), MAX_MEMBER_BYTES + 1)
        else:
            data = lzma.LZMADecompressor().decompress(bytes(buf), MAX_MEMBER_BYTES + 1)
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error) as exc:
        fs.unverified(f"{label}: {fmt.value} stream is corrupt ({exc})")
        return
    if len(data) > MAX_MEMBER_BYTES:
        fs.unverified(f"{label}: decompresses to more than {MAX_MEMBER_BYTES >> 20} MiB; not analysed")
        return
    scan_buffer(data, f"{label} (decompressed)", fs, where=at(where, f"{fmt.value} content"), depth=depth + 1)


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
                if member.size > MAX_MEMBER_BYTES:
                    fs.unverified(f"{mloc}: {member.size} bytes, too large to analyse in memory")
                    continue
                fh = tf.extractfile(member)
                if fh is None:
                    continue
                scan_buffer(fh.read(), member.name, fs, where=mloc, depth=depth + 1)
    except (tarfile.TarError, OSError, EOFError, ValueError) as exc:
        fs.unverified(f"{where or 'file'}: tar archive is corrupt ({exc})")
