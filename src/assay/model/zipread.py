"""Read a zip archive the way each loader that opens it does: miniz (torch) and Python's ``zipfile`` (numpy, Keras).

Two readers of one archive can disagree: which end-of-central-directory record they take, where a zip64 record
is, which bytes a member name resolves to. A scanner that reads the archive one way while the loader reads it
another is bypassed, so this module gives *both* readings of the same bytes and lists every disagreement:

    >>> view = read_zip(buf)                      # bytes or an mmap of the file
    >>> [m.name for m in view.miniz.members]       # torch.load's view (miniz semantics, by hand)
    >>> [m.name for m in view.pyzip.members]       # numpy.load's and Keras' view (zipfile's own parser)
    >>> view.disagreements()                       # ["zipfile reads 2 members, miniz 3", ...]
    >>> torch_records(view.miniz, "data.pkl")      # what PyTorchStreamReader.getRecord("data.pkl") may return

miniz semantics (torch's ``PyTorchStreamReader``, built without CRC checks): the *last* end-record signature
with 22 bytes after it in the last 64 KiB; a zip64 record found through its locator's offset; offsets taken as
written (no adjustment for prepended bytes); records looked up case-insensitively under the folder named by the
first entry (an entry outside it makes torch refuse the archive), the first of several equal names winning;
only stored and deflated members. Each of these was checked against ``torch.load``
(tests/scan/test_containers_hardening.py). zipfile semantics are zipfile's own (its
parser is run), with member data located exactly as ``ZipFile.open`` does. Nothing here decompresses more than
the caller's limit.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zipfile
import zlib
from dataclasses import dataclass, field

from assay.errors import FormatError
from assay.model._bufio import Buffer, BufReader

EOCD_SIG = b"PK\x05\x06"
EOCD64_SIG = b"PK\x06\x06"
EOCD64_LOCATOR_SIG = b"PK\x06\x07"
CENTRAL_SIG = b"PK\x01\x02"
LOCAL_SIG = b"PK\x03\x04"
_EOCD_SIZE = 22
_EOCD64_SIZE = 56
_LOCATOR_SIZE = 20
_MAX_COMMENT = 0xFFFF


class ZipReadError(FormatError):
    """The archive cannot be read by a loader (damaged, hostile or not a zip)."""


class ResourceLimit(ZipReadError):
    """Reading a member would exceed the caller's size or ratio limit (a zip bomb, or simply too large)."""


@dataclass(frozen=True)
class ZipMember:
    """One central-directory entry as one reader sees it, with where its data starts."""

    index: int
    """Position in the central directory."""
    raw_name: bytes
    """The name's bytes, as miniz compares them."""
    name: str
    """The decoded name (UTF-8 if flag 0x800 else cp437, as zipfile decodes it)."""
    flags: int
    method: int
    crc: int
    csize: int
    usize: int
    header_offset: int
    """Absolute offset of the local header in the buffer (after the reader's start shift)."""
    data_start: int = -1
    """Absolute offset of the data, or -1 when the local header cannot be read (then ``problem`` says why)."""
    local_name: bytes | None = None
    local_flags: int | None = None
    problem: str | None = None
    """Why this reader cannot open the member (its loader would fail on it), if it cannot."""

    @property
    def data_end(self) -> int:
        """Where the member's compressed bytes end (-1 when unknown)."""
        return self.data_start + self.csize if self.data_start >= 0 else -1

    @property
    def span(self) -> tuple[int, int, int, int]:
        """What identifies the bytes a loader reads: (data start, compressed size, method, uncompressed size)."""
        return (self.data_start, self.csize, self.method, self.usize)


@dataclass(frozen=True)
class ZipReading:
    """An archive as one reader sees it; ``error`` is set when that reader refuses the whole archive."""

    reader: str
    """``miniz`` (torch) or ``zipfile`` (numpy, Keras)."""
    members: tuple[ZipMember, ...] = ()
    eocd_offset: int = -1
    """Where the end-of-central-directory record it uses starts."""
    cd_offset: int = -1
    """Absolute offset of the central directory."""
    cd_size: int = 0
    shift: int = 0
    """Bytes before the archive that this reader skips (the start-offset adjustment)."""
    zip64_offset: int = -1
    """Where the zip64 end record it uses lies, or -1."""
    end: int = -1
    """Where the end record and its comment end."""
    error: str | None = None

    @property
    def ok(self) -> bool:
        """True when the reader opens the archive."""
        return self.error is None


@dataclass(frozen=True)
class ZipView:
    """Both readings of one archive, and the other end records hidden in it."""

    size: int
    miniz: ZipReading
    pyzip: ZipReading
    other_end_records: tuple[int, ...] = field(default=())
    """Offsets of further plausible end records (a second directory, e.g. hidden in a comment)."""

    @property
    def readings(self) -> tuple[ZipReading, ...]:
        """The readings that open the archive."""
        return tuple(r for r in (self.miniz, self.pyzip) if r.ok)

    def disagreements(self) -> list[str]:
        """Every way the two readings differ, one sentence each (empty when they agree)."""
        a, b = self.miniz, self.pyzip
        if a.ok != b.ok:
            good, bad = (a, b) if a.ok else (b, a)
            return [f"{good.reader} opens the archive but {bad.reader} refuses it ({bad.error})"]
        if not a.ok:
            return []
        out = []
        if a.eocd_offset != b.eocd_offset:
            out.append(f"miniz uses the end record at byte {a.eocd_offset}, zipfile the one at {b.eocd_offset}")
        if a.zip64_offset != b.zip64_offset:
            out.append(f"miniz uses the zip64 record at byte {a.zip64_offset}, zipfile the one at {b.zip64_offset}")
        if a.cd_offset != b.cd_offset:
            out.append(f"miniz reads the central directory at byte {a.cd_offset}, zipfile at {b.cd_offset}")
        if len(a.members) != len(b.members):
            out.append(f"miniz lists {len(a.members)} members, zipfile {len(b.members)}")
        for ma, mb in zip(a.members, b.members, strict=False):  # lengths may differ: reported above
            if ma.raw_name != mb.raw_name:
                out.append(f"entry {ma.index} is {ma.name!r} for miniz but {mb.name!r} for zipfile")
            elif ma.span != mb.span:
                out.append(f"{ma.name!r}: miniz reads bytes {ma.data_start}..{ma.data_end}, zipfile "
                           f"{mb.data_start}..{mb.data_end}")
        return out


# --------------------------------------------------------------------------------------------- end records


def u16(b: Buffer, o: int) -> int:
    return int(struct.unpack_from("<H", b, o)[0])


def u32(b: Buffer, o: int) -> int:
    return int(struct.unpack_from("<I", b, o)[0])


def u64(b: Buffer, o: int) -> int:
    return int(struct.unpack_from("<Q", b, o)[0])


def _end_signatures(buf: Buffer) -> list[int]:
    """Offsets of every end-record signature in the last 64 KiB + 22 bytes, last first."""
    lo = max(0, len(buf) - (_MAX_COMMENT + _EOCD_SIZE))
    out: list[int] = []
    hi = len(buf)
    while True:
        pos = buf.rfind(EOCD_SIG, lo, hi)
        if pos < 0:
            return out
        out.append(pos)
        hi = pos + 3


def _plausible_end(buf: Buffer, pos: int) -> bool:
    """An end record whose central directory offset lands on a central directory signature."""
    if pos + _EOCD_SIZE > len(buf):
        return False
    count, cd_size, cd_off = u16(buf, pos + 10), u32(buf, pos + 12), u32(buf, pos + 16)
    if count == 0:
        return cd_size == 0
    for start in (cd_off, pos - cd_size):
        if 0 <= start and start + 4 <= len(buf) and buf[start:start + 4] == CENTRAL_SIG:
            return True
    return False


#: Archives announcing more entries than this are not listed (a directory of millions of tiny entries is a
#: denial of service, not a model).
MAX_ENTRIES = 200_000


def read_zip(buf: Buffer) -> ZipView:
    """Both readings of the archive in ``buf``. Never raises for a damaged archive: a reading carries its error."""
    count = _announced_entries(buf)
    if count > MAX_ENTRIES:
        why = f"resource limit: the archive announces {count} entries (more than {MAX_ENTRIES})"
        return ZipView(len(buf), ZipReading("miniz", error=why), ZipReading("zipfile", error=why))
    miniz = _read_miniz(buf)
    pyzip = _read_zipfile(buf)
    used = {r.eocd_offset for r in (miniz, pyzip) if r.eocd_offset >= 0}
    inside = [(m.data_start, m.data_end) for r in (miniz, pyzip) for m in r.members if m.data_start >= 0]
    # An end record inside a member's data belongs to a nested archive (scanned as that member), not to this one.
    others = tuple(p for p in _end_signatures(buf) if p not in used and _plausible_end(buf, p)
                   and not any(s <= p < e for s, e in inside))
    return ZipView(len(buf), miniz, pyzip, others)


def _announced_entries(buf: Buffer) -> int:
    """The largest entry count any end record (or its zip64 record) in the tail announces."""
    most = 0
    for p in _end_signatures(buf):
        if p + _EOCD_SIZE <= len(buf):
            most = max(most, u16(buf, p + 10))
        loc = p - _LOCATOR_SIZE
        if loc >= 0 and buf[loc:loc + 4] == EOCD64_LOCATOR_SIG:
            for rec in (u64(buf, loc + 8), loc - _EOCD64_SIZE):
                if 0 <= rec <= len(buf) - _EOCD64_SIZE and buf[rec:rec + 4] == EOCD64_SIG:
                    most = max(most, u64(buf, rec + 32))
    return most


# --------------------------------------------------------------------------------------------- miniz


def _read_miniz(buf: Buffer) -> ZipReading:
    """The archive as miniz 3 (``mz_zip_reader_read_central_dir``) reads it for torch."""
    size = len(buf)
    err = ZipReading("miniz")
    if size < _EOCD_SIZE:
        return _fail(err, "file is too small to be a zip archive")
    # mz_zip_reader_locate_header_sig: scanning back from the end, the first signature with 22 bytes after it.
    eocd = next((p for p in _end_signatures(buf) if size - p >= _EOCD_SIZE), -1)
    if eocd < 0:
        return _fail(err, "no end-of-central-directory record in the last 64 KiB")
    total, on_disk = u16(buf, eocd + 10), u16(buf, eocd + 8)
    this_disk, cd_disk = u16(buf, eocd + 4), u16(buf, eocd + 6)
    cd_size, cd_off = u32(buf, eocd + 12), u32(buf, eocd + 16)
    zip64 = -1
    if eocd >= _LOCATOR_SIZE + _EOCD64_SIZE and buf[eocd - _LOCATOR_SIZE:eocd - _LOCATOR_SIZE + 4] == \
            EOCD64_LOCATOR_SIG:
        loc = eocd - _LOCATOR_SIZE
        zip64 = u64(buf, loc + 8)
        if zip64 > size - _EOCD64_SIZE:
            return _fail(err, "zip64 locator points outside the file")
        if buf[zip64:zip64 + 4] != EOCD64_SIG:
            return _fail(err, "zip64 locator does not point at a zip64 end record")
        if u64(buf, zip64 + 4) < _EOCD64_SIZE - 12:
            return _fail(err, "zip64 end record is too short")
        if u32(buf, loc + 16) != 1:
            return _fail(err, "multi-disk zip64 archive")
        total64 = u64(buf, zip64 + 32)
        if total64 > 0xFFFFFFFF:
            return _fail(err, "zip64 entry count is too large")
        total, on_disk = total64, u64(buf, zip64 + 24)
        cd_size, cd_off = u64(buf, zip64 + 40), u64(buf, zip64 + 48)
        this_disk, cd_disk = u32(buf, zip64 + 16), u32(buf, zip64 + 20)
    if total != on_disk or ((this_disk | cd_disk) != 0 and (this_disk != 1 or cd_disk != 1)):
        return _fail(err, "multi-disk archive")
    if cd_size < total * 46:
        return _fail(err, "central directory is smaller than its entries")
    if cd_off + cd_size > size:
        return _fail(err, "central directory lies outside the file")
    # torch's miniz does not shift offsets for bytes prepended to the archive (seen: such archives fail to load)
    shift = 0
    start = cd_off + shift
    members: list[ZipMember] = []
    p = start
    end_cd = start + cd_size
    for i in range(total):
        if p + 46 > end_cd or buf[p:p + 4] != CENTRAL_SIG:
            return _fail(err, f"central directory entry {i} is missing or damaged")
        try:
            m = _central_entry(buf, p, i, shift, this_disk)
        except ZipReadError as exc:
            return _fail(err, exc.message)
        if m.method == 0 and m.csize != m.usize and 0xFFFFFFFF not in (m.csize, m.usize):
            return _fail(err, f"stored member {m.name!r} has different compressed and uncompressed sizes")
        if m.usize and not m.csize:
            return _fail(err, f"member {m.name!r} has data but no compressed size")
        if m.header_offset + 30 + m.csize > size:
            return _fail(err, f"member {m.name!r} lies outside the file")
        if m.flags & 0x2000:
            return _fail(err, "central directory is encrypted")
        n = 46 + u16(buf, p + 28) + u16(buf, p + 30) + u16(buf, p + 32)
        if n > end_cd - p:
            return _fail(err, f"central directory entry {i} runs past the directory")
        members.append(_miniz_locate(buf, m))
        p += n
    return ZipReading("miniz", tuple(members), eocd, start, cd_size, shift, zip64, eocd + _EOCD_SIZE
                      + u16(buf, eocd + 20))


def _central_entry(buf: Buffer, p: int, index: int, shift: int, this_disk: int) -> ZipMember:
    flags, method = u16(buf, p + 8), u16(buf, p + 10)
    crc, csize, usize = u32(buf, p + 16), u32(buf, p + 20), u32(buf, p + 24)
    nlen, xlen = u16(buf, p + 28), u16(buf, p + 30)
    disk, local = u16(buf, p + 34), u32(buf, p + 42)
    if disk == 0xFFFF or (disk != this_disk and disk != 1):
        raise ZipReadError(f"central directory entry {index} is on another disk")
    raw = bytes(buf[p + 46:p + 46 + nlen])
    extra = bytes(buf[p + 46 + nlen:p + 46 + nlen + xlen])
    values = {"usize": usize, "csize": csize, "local": local}
    need = [k for k in ("usize", "csize", "local") if values[k] == 0xFFFFFFFF]
    if need:
        zip64_extra(extra, need, values)
    name = _decode_name(raw, flags)
    return ZipMember(index, raw, name, flags, method, crc, values["csize"], values["usize"],
                     values["local"] + shift)


def zip64_extra(extra: bytes, need: list[str], values: dict[str, int]) -> None:
    pos = 0
    while pos + 4 <= len(extra):
        hid, n = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + n]
        if hid == 1:
            off = 0
            for key in need:
                if off + 8 > len(body):
                    raise ZipReadError("zip64 extra field is too short")
                values[key] = struct.unpack_from("<Q", body, off)[0]
                off += 8
            return
        pos += 4 + n
    raise ZipReadError("zip64 sizes announced but no zip64 extra field")


def _decode_name(raw: bytes, flags: int) -> str:
    if flags & 0x800:
        return raw.decode("utf-8", errors="surrogateescape")
    return raw.decode("cp437")


def _miniz_locate(buf: Buffer, m: ZipMember) -> ZipMember:
    """Where miniz finds the data: after the local header's own name and extra lengths; names are not compared."""
    lo = m.header_offset
    if lo < 0 or lo + 30 > len(buf) or buf[lo:lo + 4] != LOCAL_SIG:
        return _replace(m, problem=f"no local header at byte {lo}")
    nlen, xlen = u16(buf, lo + 26), u16(buf, lo + 28)
    start = lo + 30 + nlen + xlen
    problem = None
    if start + m.csize > len(buf):
        problem = "member data runs past the end of the file"
    elif m.method not in (0, 8):
        problem = f"compression method {m.method} is not supported by miniz"
    return _replace(m, data_start=start, local_name=bytes(buf[lo + 30:lo + 30 + nlen]),
                    local_flags=u16(buf, lo + 6), problem=problem)


def _replace(m: ZipMember, **kw: object) -> ZipMember:
    """``dataclasses.replace`` without its per-call introspection (thousands of members per archive)."""
    new = object.__new__(ZipMember)
    new.__dict__.update(m.__dict__, **kw)
    return new


def _fail(r: ZipReading, why: str) -> ZipReading:
    from dataclasses import replace

    return replace(r, error=why)


# --------------------------------------------------------------------------------------------- zipfile


def _read_zipfile(buf: Buffer) -> ZipReading:
    """The archive as Python's zipfile reads it (its own parser), members located as ``ZipFile.open`` does."""
    try:
        zf = zipfile.ZipFile(BufReader(buf))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error,
            NotImplementedError, UnicodeDecodeError, IndexError, OverflowError) as exc:
        return ZipReading("zipfile", error=f"{type(exc).__name__}: {exc}")
    infos = zf.infolist()
    members = []
    for i, zi in enumerate(infos):
        raw = zi.orig_filename.encode("utf-8" if zi.flag_bits & 0x800 else "cp437", errors="surrogateescape")
        m = ZipMember(i, raw, zi.orig_filename, zi.flag_bits, zi.compress_type, zi.CRC, zi.compress_size,
                      zi.file_size, zi.header_offset)
        members.append(_zipfile_locate(buf, m))
    eocd, zip64 = _zipfile_end(buf)
    start = int(getattr(zf, "start_dir", -1))
    if eocd < 0:
        return ZipReading("zipfile", tuple(members), error="end record not found again")
    cd_size = u64(buf, zip64 + 40) if zip64 >= 0 else u32(buf, eocd + 12)
    cd_off = u64(buf, zip64 + 48) if zip64 >= 0 else u32(buf, eocd + 16)
    end = eocd + _EOCD_SIZE + u16(buf, eocd + 20)
    return ZipReading("zipfile", tuple(members), eocd, start, cd_size, start - cd_off, zip64, end)


def _zipfile_end(buf: Buffer) -> tuple[int, int]:
    """The end record and zip64 record zipfile's ``_EndRecData`` uses (offsets; -1 when absent)."""
    size = len(buf)
    if size >= _EOCD_SIZE and buf[size - _EOCD_SIZE:size - _EOCD_SIZE + 4] == EOCD_SIG \
            and buf[size - 2:size] == b"\x00\x00":
        eocd = size - _EOCD_SIZE
    else:
        sigs = _end_signatures(buf)
        eocd = sigs[0] if sigs else -1
    zip64 = -1
    loc = eocd - _LOCATOR_SIZE
    if loc >= 0 and buf[loc:loc + 4] == EOCD64_LOCATOR_SIG and loc - _EOCD64_SIZE >= 0 \
            and buf[loc - _EOCD64_SIZE:loc - _EOCD64_SIZE + 4] == EOCD64_SIG:
        zip64 = loc - _EOCD64_SIZE  # zipfile assumes it lies right before the locator, whatever the locator says
    return eocd, zip64


def _zipfile_locate(buf: Buffer, m: ZipMember) -> ZipMember:
    """``ZipFile.open``: local signature, local name equal to the central name, data after the local extra."""
    lo = m.header_offset
    if lo < 0 or lo + 30 > len(buf) or buf[lo:lo + 4] != LOCAL_SIG:
        return _replace(m, problem=f"no local header at byte {lo}")
    lflags, nlen, xlen = u16(buf, lo + 6), u16(buf, lo + 26), u16(buf, lo + 28)
    lname = bytes(buf[lo + 30:lo + 30 + nlen])
    start = lo + 30 + nlen + xlen
    problem = None
    if m.flags & 0x20:
        problem = "compressed patched data is not supported by zipfile"
    elif m.flags & 0x40:
        problem = "strong encryption is not supported by zipfile"
    elif m.flags & 0x1:
        problem = "member is encrypted"
    elif _decode_name(lname, lflags) != m.name:
        problem = f"local header names it {_decode_name(lname, lflags)!r}"
    elif m.method not in (0, 8, 12, 14):
        problem = f"compression method {m.method} is not supported by zipfile"
    elif start + m.csize > len(buf):
        problem = "member data runs past the end of the file"
    return _replace(m, data_start=start, local_name=lname, local_flags=lflags, problem=problem)


# --------------------------------------------------------------------------------------------- lookups and data


def torch_prefix(reading: ZipReading) -> str | None:
    """The folder torch prefixes to every record: the first entry's name up to its first ``/``.

    None when torch refuses the archive for it: the first entry has no folder, or another entry lies outside
    that folder (``PyTorchStreamReader``: "file in archive is not in a subdirectory").
    """
    if not reading.members:
        return None
    first = reading.members[0].raw_name
    cut = first.find(b"/")
    if cut < 0:
        return None
    folder = first[:cut + 1]
    if any(not m.raw_name.startswith(folder) for m in reading.members):
        return None
    return folder.decode("latin-1")


def torch_records(reading: ZipReading, record: str) -> list[ZipMember]:
    """Every member ``getRecord(record)`` could return: miniz compares names case-insensitively (ASCII), and with
    several equal names which one its sorted binary search lands on is not specified, so all are candidates."""
    prefix = torch_prefix(reading)
    if prefix is None:
        return []
    want = (prefix + record).encode("latin-1").lower()
    return [m for m in reading.members if m.raw_name.lower() == want]


def member_bytes(buf: Buffer, m: ZipMember, *, limit: int, ratio: int = 0, head: int | None = None) -> bytes:
    """The member's uncompressed bytes, never more than its declared size plus one byte (loaders stop at the
    declared size, so a longer result shows the directory lies) and never more than ``limit``.

    ``ratio`` (when not 0) also bounds the declared size to ``ratio`` times the compressed size plus 1 MiB;
    ``head`` asks for the first ``head`` bytes only (no limit applies, nothing is refused). CRCs
    are not checked (torch does not check them; numpy runs a pickle before zipfile checks it at the end). Raises
    :class:`ResourceLimit` past a limit and :class:`ZipReadError` for damaged data.
    """
    if m.data_start < 0:
        raise ZipReadError(f"member {m.name!r}: {m.problem or 'no data'}")
    if m.data_start + m.csize > len(buf):
        raise ZipReadError(f"member {m.name!r}: data runs past the end of the file")
    cap = limit
    if ratio:
        cap = min(cap, ratio * m.csize + (1 << 20))
    if head is not None:
        cap = head
    elif m.usize > cap:
        why = f"more than {ratio}:1 compression" if ratio and m.usize <= limit else f"limit {cap}"
        raise ResourceLimit(f"resource limit: member {m.name!r} declares {m.usize} bytes ({why}); not "
                            "decompressed")
    # Loaders stop at the declared size (zipfile's ZipExtFile, miniz's extract): one byte more shows a lie.
    cap = min(cap, m.usize + 1)
    raw = buf[m.data_start:m.data_start + m.csize]
    try:
        if m.method == 0:
            return bytes(raw)
        if m.method == 8:
            d = zlib.decompressobj(-15)
            data = d.decompress(bytes(raw), cap + 1)
        elif m.method == 12:
            data = bz2.BZ2Decompressor().decompress(bytes(raw), cap + 1)
        elif m.method == 14:
            raw_b = bytes(raw)
            psize = struct.unpack_from("<H", raw_b, 2)[0]
            filters = [lzma._decode_filter_properties(lzma.FILTER_LZMA1,  # type: ignore[attr-defined]
                                                      raw_b[4:4 + psize])]
            data = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters).decompress(raw_b[4 + psize:], cap + 1)
        else:
            raise ZipReadError(f"member {m.name!r}: compression method {m.method} is not supported")
    except (zlib.error, OSError, ValueError, EOFError, struct.error, lzma.LZMAError) as exc:
        raise ZipReadError(f"member {m.name!r}: compressed data is corrupt ({exc})") from exc
    return data


def open_member(buf: Buffer, record: str, *, limit: int) -> bytes:
    """The bytes torch reads for ``record`` (``data.pkl``); refuses an archive where readers or candidates disagree.

    For the loader side (the tensor reader, the inventory): raises :class:`ZipReadError` with one clear line.
    """
    view = read_zip(buf)
    if not view.miniz.ok:
        raise ZipReadError(f"damaged zip archive ({view.miniz.error})")
    if torch_prefix(view.miniz) is None:
        raise ZipReadError("not a torch archive: its entries are not all in the folder of the first one")
    found = torch_records(view.miniz, record)
    if not found:
        raise ZipReadError(f"torch archive without {record}")
    if len(found) > 1:
        raise ZipReadError(f"torch archive holds {len(found)} members that could be its {record}")
    if found[0].problem:
        raise ZipReadError(f"{found[0].name}: {found[0].problem}")
    return member_bytes(buf, found[0], limit=limit)
