"""Hostile containers and polyglots, built in code: *which bytes get scanned as what*.

Each sample hides a payload where a real loader reads it but a scanner reading the bytes another way would not:
zip end records and member lookups (torch's miniz against Python's zipfile), files that are two formats at once,
pickles stacked where torch's legacy loader reads them, numpy object dtypes in every spelling, and decompression
bombs. The payload only creates a marker file (``touch``), so a test can run the real loader and see it ran.

    samples = build_containers(tmp_path, marker_dir=tmp_path / "markers")
    for s in samples:
        run s.loader on s.path in a subprocess; assert (marker_dir / s.name).exists()
        assert scan_model(resolve(str(s.path))).verdict is not ScanVerdict.SAFE

Nothing here is unpickled, imported or loaded by the builder itself.
"""

from __future__ import annotations

import functools
import gzip
import io
import struct
import tarfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass(frozen=True)
class Sample:
    """One hostile file and how to prove it: the loader that runs it, and what the scanner must say."""

    name: str
    """Test id, and the marker file's name."""
    path: Path
    """The file to scan (and to load)."""
    loader: str | None
    """``torch`` (torch.load, weights_only=False), ``numpy`` (np.load, allow_pickle=True), ``pickle``
    (pickle.load), ``import`` (import the .py file), ``json+tar`` (both readers accept it) or None (no payload)."""
    rules: tuple[str, ...] = ()
    """At least one of these rules must be reported."""
    verdict: str = "unsafe"
    """``unsafe`` or ``unverified``."""
    reason: str | None = None
    """For ``unverified``: a phrase the not-verified reason must contain."""
    extra: dict[str, str] = field(default_factory=dict)


# Pickles -------------------------------------------------------------------------------------------------------------

def _su(s: str) -> bytes:
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def _bu(s: str) -> bytes:
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def payload_p2(marker: Path) -> bytes:
    """Protocol 2: ``os.system('touch MARKER')`` with GLOBAL."""
    return b"\x80\x02cos\nsystem\n" + _bu(f"touch {marker}") + b"\x85R."


def payload_p4_bare(marker: Path) -> bytes:
    """Protocol 4 opcodes without a PROTO header: ``posix.system`` via STACK_GLOBAL, first byte ``\\x8c``."""
    return _su("posix") + _su("system") + b"\x93" + _bu(f"touch {marker}") + b"\x85R."


def payload_p0(marker: Path) -> bytes:
    """Protocol 0 text: ``os.system`` with GLOBAL and STRING (ASCII, no binary opcodes)."""
    return f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()


HONEST_DICT = b"\x80\x02}."
PROTO2_LONG = b"\x80\x02\x8a\x0a" + TORCH_LEGACY_MAGIC.to_bytes(10, "little") + b"."


# Zip, by hand --------------------------------------------------------------------------------------------------------

@dataclass
class M:
    """One member: name, data, compression (0 stored, 8 deflate), a CRC to lie with."""

    name: str
    data: bytes
    method: int = 0
    crc: int | None = None
    flags: int = 0
    raw_name: bytes | None = None


def zip_parts(members: Sequence[M], *, base: int = 0) -> tuple[bytes, bytes]:
    """Local records and the central directory of ``members``, offsets counted from ``base``."""
    local, central = bytearray(), bytearray()
    for m in members:
        body = m.data if m.method == 0 else _deflate(m.data)
        crc = zlib.crc32(m.data) if m.crc is None else m.crc
        name = m.raw_name if m.raw_name is not None else m.name.encode()
        offset = base + len(local)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, m.flags, m.method, 0, 0x21, crc, len(body), len(m.data),
                             len(name), 0) + name + body
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, m.flags, m.method, 0, 0x21, crc, len(body),
                               len(m.data), len(name), 0, 0, 0, 0, 0, offset) + name
    return bytes(local), bytes(central)


def eocd(count: int, cd_size: int, cd_offset: int, comment: bytes = b"") -> bytes:
    """An end-of-central-directory record."""
    return struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, cd_size, cd_offset, len(comment)) + comment


def make_zip(members: Sequence[M], *, prefix: bytes = b"", fix_offsets: bool = True, tail: bytes = b"") -> bytes:
    """A zip of ``members`` after ``prefix`` (offsets corrected for it unless ``fix_offsets`` is False)."""
    base = len(prefix) if fix_offsets else 0
    local, central = zip_parts(members, base=base)
    return prefix + local + central + eocd(len(members), len(central), base + len(local)) + tail


def comment_directory_zip(decoy: Sequence[M], hidden: Sequence[M]) -> bytes:
    """A zip whose own directory lists ``decoy``, with a second directory for ``hidden`` inside its comment.

    Both torch's miniz and Python's zipfile take the *last* end-record signature: the hidden one.
    """
    dl, dc = zip_parts(decoy)
    hl, hc = zip_parts(hidden, base=len(dl))
    body = dl + hl
    comment_start = len(body) + len(dc) + 22
    comment = hc + eocd(len(hidden), len(hc), comment_start)
    return body + dc + eocd(len(decoy), len(dc), len(body), comment)


def zip64_split_zip(torch_view: Sequence[M], zipfile_view: Sequence[M]) -> bytes:
    """A zip64 archive with two zip64 end records: miniz follows the locator's offset to the first (listing
    ``torch_view``); zipfile takes the record right before the locator (listing ``zipfile_view``)."""
    al, ac = zip_parts(torch_view)
    bl, bc = zip_parts(zipfile_view, base=len(al))
    body = al + bl
    a_cd = len(body)
    a_rec = a_cd + len(ac)
    b_cd = a_rec + 56

    def rec(count: int, size: int, offset: int) -> bytes:
        return struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, size, offset)

    locator = struct.pack("<IIQI", 0x07064B50, 0, a_rec, 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return (body + ac + rec(len(torch_view), len(ac), a_cd) + bc + rec(len(zipfile_view), len(bc), b_cd)
            + locator + end)


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def torch_members(data_pkl: bytes, *, name: str = "archive/data.pkl") -> list[M]:
    """A minimal torch archive: data.pkl and the version record torch requires."""
    return [M(name, data_pkl), M("archive/version", b"3\n")]


# numpy ---------------------------------------------------------------------------------------------------------------

def npy(descr: str, body: bytes, shape: str = "(1,)") -> bytes:
    """A version 1.0 ``.npy`` with any ``descr`` text (as written in the header dict)."""
    header = f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (-(10 + len(header) + 1) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin-1") + body


def honest_npy() -> bytes:
    import numpy as np

    bio = io.BytesIO()
    np.save(bio, np.arange(4, dtype=np.float32))
    return bio.getvalue()


# Legacy torch --------------------------------------------------------------------------------------------------------

def legacy_file(data_pickle: bytes, keys_pickle: bytes = b"\x80\x02]q\x00.") -> bytes:
    """torch's legacy (non-zip, non-tar) layout around ``data_pickle``: magic, protocol, sys info, data, keys."""
    proto = b"\x80\x02M\xe9\x03."
    sysinfo = b"\x80\x02}(" + _bu("protocol_version") + b"M\xe9\x03" + _bu("little_endian") + b"\x88u."
    return PROTO2_LONG + proto + sysinfo + data_pickle + keys_pickle


def legacy_tar(storages: bytes, tensors: bytes, pickle_member: bytes) -> bytes:
    """torch's oldest format: a tar with ``storages``, ``tensors`` and ``pickle`` members."""
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in (("sys_info", b"\x80\x02}."), ("storages", storages), ("tensors", tensors),
                           ("pickle", pickle_member)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return bio.getvalue()


# Polyglots -----------------------------------------------------------------------------------------------------------

def pickle_tar(pickle_text: bytes) -> bytes:
    """A tar archive whose first header's name field is a protocol-0 pickle: pickle.load runs it from byte 0."""
    assert len(pickle_text) < 100 and b"\x00" not in pickle_text
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        info = tarfile.TarInfo(pickle_text.decode("latin-1"))
        info.size = 4
        tf.addfile(info, io.BytesIO(b"data"))
    return bio.getvalue()


def pickle_hdf5(path: Path, pickle_bytes: bytes) -> Path:
    """An HDF5 file (h5py, 512-byte user block) whose user block is a pickle: pickle.load runs it from byte 0."""
    import h5py  # type: ignore[import-untyped]
    import numpy as np

    assert len(pickle_bytes) <= 512
    with h5py.File(path, "w", userblock_size=512) as h5:
        h5.create_dataset("weights", data=np.zeros(4, dtype=np.float32))
    with path.open("r+b") as fh:
        fh.write(pickle_bytes)
    return path


def json_tar(doc_head: str, doc_tail: str) -> bytes:
    """512 bytes that are both a JSON document and a v7 tar header ``tarfile`` accepts (no NUL byte anywhere).

    The tar header's numeric fields sit inside a JSON string value; ``doc_head`` must end inside that string.
    """
    name = doc_head.encode()
    assert len(name) <= 100
    block = bytearray(b"x" * 512)
    block[:100] = name + b"x" * (100 - len(name))
    fields = {100: b"0000644 ", 108: b"0000000 ", 116: b"0000000 ", 124: b"00000000000 ", 136: b"00000000000 ",
              329: b"0000000 ", 337: b"0000000 "}
    for off, val in fields.items():
        block[off:off + len(val)] = val
    block[156:157] = b"0"
    block[257:263] = b"ustar "  # what a magic-number sniffer sees
    tail = doc_tail.encode()
    block[512 - len(tail):] = tail
    block[148:156] = b"        "
    chk = sum(block)
    block[148:156] = b"%07o " % chk
    return bytes(block)


# Corpus --------------------------------------------------------------------------------------------------------------

def build_containers(root: Path, *, marker_dir: Path) -> list[Sample]:
    """Write every sample under ``root``; payloads create ``marker_dir / <sample name>``."""
    root.mkdir(parents=True, exist_ok=True)
    marker_dir.mkdir(parents=True, exist_ok=True)
    out: list[Sample] = []

    def add(name: str, filename: str, data: bytes | None, loader: str | None, rules: tuple[str, ...] = (),
            verdict: str = "unsafe", reason: str | None = None) -> Path:
        folder = root / name
        folder.mkdir(exist_ok=True)
        path = folder / filename
        if data is not None:
            path.write_bytes(data)
        out.append(Sample(name, path, loader, rules, verdict, reason))
        return path

    def mk(name: str) -> Path:
        return marker_dir / name

    dangerous = ("PICKLE-GLOBAL-DANGEROUS",)

    # 1. zip end records and member lookup (torch: miniz) -------------------------------------------------------------
    add("zip-comment-directory", "pytorch_model.bin",
        comment_directory_zip(torch_members(HONEST_DICT),
                              torch_members(payload_p2(mk("zip-comment-directory")))),
        "torch", dangerous + ("ZIP-MULTIPLE-DIRECTORIES",))
    add("zip-case-variant-only", "pytorch_model.bin",
        make_zip(torch_members(payload_p4_bare(mk("zip-case-variant-only")), name="archive/DATA.PKL")),
        "torch", dangerous)
    add("zip-case-variant-first", "pytorch_model.bin",
        make_zip([M("archive/DATA.PKL", payload_p0(mk("zip-case-variant-first"))), M("archive/data.pkl", HONEST_DICT),
                  M("archive/version", b"3\n")]), "torch", dangerous + ("ZIP-CASE-COLLISION",))
    add("zip-duplicate-evil-first", "pytorch_model.bin",
        make_zip([M("archive/data.pkl", payload_p2(mk("zip-duplicate-evil-first")), method=8),
                  M("archive/data.pkl", HONEST_DICT), M("archive/version", b"3\n")]), "torch",
        dangerous + ("ZIP-DUPLICATE",))
    add("zip-appended-bytes", "pytorch_model.bin",
        make_zip(torch_members(payload_p2(mk("zip-appended-bytes"))), tail=b"\x00appended" * 50), "torch",
        dangerous)
    add("zip-fake-local-prefix", "pytorch_model.bin",
        make_zip(torch_members(payload_p4_bare(mk("zip-fake-local-prefix"))), prefix=b"PK\x03\x04" + b"\x00" * 60),
        "torch", dangerous)
    add("zip-bad-crc-deflated", "pytorch_model.bin",
        make_zip([M("archive/data.pkl", payload_p2(mk("zip-bad-crc-deflated")), method=8, crc=0x1234),
                  M("archive/version", b"3\n")]), "torch", dangerous)
    # numpy and Keras read zips with zipfile
    evil_obj = npy("'|O'", payload_p2(mk("npz-comment-directory")))
    add("npz-comment-directory", "arrays.npz",
        comment_directory_zip([M("arr_0.npy", honest_npy())], [M("arr_0.npy", evil_obj)]), "numpy",
        dangerous + ("ZIP-MULTIPLE-DIRECTORIES",))
    add("npz-duplicate-last-wins", "arrays.npz",
        make_zip([M("arr_0.npy", honest_npy()), M("arr_0.npy", npy("'|O'", payload_p0(mk("npz-duplicate-last-wins"))),
                                                   method=8)]), "numpy", dangerous + ("ZIP-DUPLICATE",))
    add("npz-zip64-two-records", "arrays.npz",
        zip64_split_zip([M("arr_0.npy", honest_npy())],
                        [M("arr_0.npy", npy("'|O'", payload_p2(mk("npz-zip64-two-records"))))]), "numpy",
        dangerous + ("ZIP-READERS-DISAGREE",))
    add("npz-prefix-unfixed", "arrays.npz",
        make_zip([M("arr_0.npy", npy("'O'", payload_p2(mk("npz-prefix-unfixed"))))],
                 prefix=b"PK\x03\x04" + b"\x00" * 28, fix_offsets=False), "numpy", dangerous)

    # 2. polyglots ----------------------------------------------------------------------------------------------------
    pickle_hdf5(add("poly-pickle-hdf5-userblock", "model.h5", None, "pickle", dangerous + ("FORMAT-POLYGLOT",)),
                payload_p2(mk("poly-pickle-hdf5-userblock")))
    add("poly-pickle-tar-header", "weights.pkl", pickle_tar(payload_p0(mk("poly-pickle-tar-header"))), "pickle",
        dangerous + ("FORMAT-POLYGLOT",))
    py = (f"N.real if 0 else 0\nimport os\nos.system('touch {mk('poly-python-also-pickle')}')\n").encode()
    add("poly-python-also-pickle", "modeling_evil.py", py, "import", ("CODE-EXEC", "CODE-FILE"))
    add("poly-json-tar-config", "config.json",
        json_tar('{"auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}, "model_type": "x", "pad": "',
                 '"}' + " " * 8), "json+tar", ("CODE-AUTO-MAP",))
    add("mismatch-text-safetensors", "model.safetensors", b"this is not a tensor file\n" * 20, None,
        ("FORMAT-MISMATCH",))
    add("mismatch-pickle-npy", "weights.npy", payload_p2(mk("mismatch-pickle-npy")), "numpy",
        dangerous + ("FORMAT-MISMATCH",))
    # legacy torch: pickles torch reads whatever their first byte is
    add("legacy-data-pickle-bare-proto4", "pytorch_model.bin",
        legacy_file(payload_p4_bare(mk("legacy-data-pickle-bare-proto4"))), "torch", dangerous)
    add("legacy-keys-pickle-bare-proto4", "pytorch_model.bin",
        legacy_file(b"\x80\x02}q\x00.", payload_p4_bare(mk("legacy-keys-pickle-bare-proto4"))), "torch", dangerous)
    one_storage = (b"\x80\x02K\x01." + b"\x80\x02(X\x01\x00\x00\x000X\x03\x00\x00\x00cpuctorch\nFloatStorage\ntq\x00."
                   + struct.pack("<Q", 2) + b"\x00" * 8)
    add("legacy-tar-storage-views", "pytorch_model.bin",
        legacy_tar(one_storage + payload_p4_bare(mk("legacy-tar-storage-views")), b"\x80\x02K\x00.",
                   HONEST_DICT), "torch", dangerous)
    add("legacy-tar-pickle-member", "pytorch_model.bin",
        legacy_tar(b"\x80\x02K\x00.\x80\x02].", b"\x80\x02K\x00.", payload_p0(mk("legacy-tar-pickle-member"))),
        "torch", dangerous)

    # 3. numpy object dtypes, every spelling --------------------------------------------------------------------------
    for name, descr in (("npy-descr-object-word", "'object'"), ("npy-descr-O", "'O'"),
                        ("npy-descr-record-field", "[('a', '<f4'), ('b', '|O')]"),
                        ("npy-descr-nested-record", "[('a', [('b', '<i4'), ('c', 'O')])]"),
                        ("npy-descr-subarray", "[('a', '|O', (2,))]")):
        add(name, "array.npy", npy(descr, payload_p2(mk(name))), "numpy", dangerous + ("NUMPY-OBJECT",))
    add("npz-descr-object-word", "arrays.npz",
        make_zip([M("w.npy", npy("'object'", payload_p2(mk("npz-descr-object-word"))), method=8)]), "numpy",
        dangerous + ("NUMPY-OBJECT",))

    # 6. decompression bounded (no payload: these must end as "not verified", quickly) --------------------------------
    zeros, crc = _zeros_64mib()
    local, central = bytearray(), bytearray()
    for m in [M(f"part{i}.bin", b"", method=8) for i in range(5)]:
        off = len(local)
        local += struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, crc, len(zeros), 64 << 20,
                             len(m.name), 0) + m.name.encode() + zeros
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, crc, len(zeros), 64 << 20,
                               len(m.name), 0, 0, 0, 0, 0, off) + m.name.encode()
    add("bomb-zip-members", "bundle.zip", bytes(local + central) + eocd(5, len(central), len(local)), None,
        verdict="unverified", reason="resource limit")
    add("bomb-zip-lying-size", "bundle.zip", _lying_size_zip(zeros), None, ("ZIP-HEADER-MISMATCH",))
    add("bomb-gzip", "model.bin.gz", _gzip_zeros_64mib(), None,
        verdict="unverified", reason="resource limit")
    return out


@functools.lru_cache(maxsize=1)
def _zeros_64mib() -> tuple[bytes, int]:
    data = b"\x00" * (64 << 20)
    return _deflate(data), zlib.crc32(data)


@functools.lru_cache(maxsize=1)
def _gzip_zeros_64mib() -> bytes:
    return gzip.compress(b"\x00" * (64 << 20), compresslevel=1)


def _lying_size_zip(deflated: bytes) -> bytes:
    """One deflated member that declares 64 bytes and inflates to 64 MiB."""
    name = b"weights.bin"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0x21, 0, len(deflated), 64, len(name), 0) \
        + name + deflated
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0x21, 0, len(deflated), 64,
                          len(name), 0, 0, 0, 0, 0, 0) + name
    return local + central + eocd(1, len(central), len(local))


def benign_appended_torch(path: Path, target: Path) -> Path:
    """A real ``torch.save`` output with bytes appended after its end record (torch still loads it)."""
    target.write_bytes(path.read_bytes() + b"\x00trailer written by a careless uploader\n")
    return target


def malformed_zips(root: Path) -> dict[str, Path]:
    """Damaged torch archives every command must refuse in one line: negative offsets, unknown methods, bad names."""
    root.mkdir(parents=True, exist_ok=True)
    good = make_zip(torch_members(HONEST_DICT))
    out: dict[str, Path] = {}
    # central directory offset past the file (an offset that goes "negative" when a reader subtracts it)
    bad_off = bytearray(good)
    struct.pack_into("<I", bad_off, len(bad_off) - 6, 0xFFFFFF00)
    out["cd-offset-outside"] = root / "cd-offset-outside.bin"
    # a member whose local header offset points before the start of the file once zipfile shifts it
    local, central = zip_parts(torch_members(HONEST_DICT))
    central = bytearray(central)
    struct.pack_into("<I", central, 42, 0xFFFFFFF0)
    out["member-offset-outside"] = root / "member-offset-outside.bin"
    member_off = local + bytes(central) + eocd(2, len(central), len(local))
    # unknown compression method on data.pkl
    out["unknown-method"] = root / "unknown-method.bin"
    unknown = make_zip([M("archive/data.pkl", HONEST_DICT), M("archive/version", b"3\n")])
    unknown = unknown.replace(b"\x14\x00\x00\x00\x00\x00\x00\x00\x21\x00", b"\x14\x00\x00\x00\x63\x00\x00\x00\x21\x00")
    # a name flagged UTF-8 that is not UTF-8
    out["undecodable-name"] = root / "undecodable-name.bin"
    bad_name = make_zip([M("archive/data.pkl", HONEST_DICT), M("", b"x", flags=0x800, raw_name=b"archive/\xff\xfe"),
                         M("archive/version", b"3\n")])
    for key, data in (("cd-offset-outside", bytes(bad_off)), ("member-offset-outside", member_off),
                      ("unknown-method", unknown), ("undecodable-name", bad_name)):
        out[key].write_bytes(data)
    return out


