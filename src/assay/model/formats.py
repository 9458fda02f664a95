"""Name a file's format from its bytes, never from its name.

A renamed pickle is still a pickle: every stage that cares about a file's format asks this module.

    >>> from assay.model.formats import detect, Format
    >>> detect(Path("weights.bin"))
    Format.TORCH_ZIP

Unknown binary content is :attr:`Format.UNKNOWN`; nothing is guessed from the extension.
"""

from __future__ import annotations

import ast
import enum
import io
import json
import mmap
import pickletools
import stat
import struct
from pathlib import Path

from assay.errors import FormatError

HEAD_BYTES = 64 * 1024
# Larger text files are classified from their head only.
_TEXT_PARSE_LIMIT = 2 * 1024 * 1024


class Format(enum.StrEnum):
    """Every format assay can tell apart. Values are stable: they appear in JSON output."""

    SAFETENSORS = "safetensors"
    GGUF = "gguf"
    TORCH_ZIP = "torch-zip"  # torch.save zip archive (data.pkl + data/ storages)
    TORCHSCRIPT = "torchscript"  # torch.jit archive: has code/ that runs when loaded
    PICKLE = "pickle"  # raw or legacy torch pickle (possibly several stacked)
    NUMPY = "numpy"  # .npy
    NPZ = "npz"  # zip of .npy
    KERAS = "keras"  # Keras v3 zip (config.json + model.weights.h5)
    HDF5 = "hdf5"
    ONNX = "onnx"
    SENTENCEPIECE = "sentencepiece"  # tokenizer.model protobuf
    ZIP = "zip"
    TAR = "tar"
    GZIP = "gzip"
    BZIP2 = "bzip2"
    XZ = "xz"
    SEVEN_ZIP = "7z"
    ZSTD = "zstd"
    ELF = "elf"
    MACHO = "mach-o"
    PE = "pe"
    JSON = "json"
    PYTHON = "python"
    JINJA = "jinja"
    MARKDOWN = "markdown"
    YAML = "yaml"
    SCRIPT = "script"  # shebang scripts other than Python
    TEXT = "text"
    EMPTY = "empty"
    UNKNOWN = "unknown"


#: Formats that hold weights.
WEIGHT_FORMATS = frozenset({Format.SAFETENSORS, Format.GGUF, Format.TORCH_ZIP, Format.PICKLE, Format.TORCHSCRIPT,
                            Format.NUMPY, Format.NPZ, Format.HDF5, Format.ONNX, Format.KERAS})
#: Formats whose loading can execute code (pickle-bearing or code-bearing).
CODE_BEARING = frozenset({Format.PICKLE, Format.TORCH_ZIP, Format.TORCHSCRIPT, Format.NUMPY, Format.NPZ,
                          Format.KERAS, Format.PYTHON, Format.SCRIPT, Format.ELF, Format.MACHO, Format.PE})
TEXT_FORMATS = frozenset({Format.JSON, Format.PYTHON, Format.JINJA, Format.MARKDOWN, Format.YAML, Format.SCRIPT,
                          Format.TEXT})


def detect(path: Path) -> Format:
    """Return the format of the file at ``path`` by reading its content.

    Raises :class:`FormatError` if the file cannot be opened (missing, permission denied, a folder, a FIFO or
    device).
    """
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(st.st_mode):  # opening a FIFO would block forever; a device never ends
            raise FormatError(f"{path} is not a regular file (FIFO, socket or device)")
        size = st.st_size
        with path.open("rb") as fh:
            head = fh.read(HEAD_BYTES)
            fmt = _detect_head(head, size)
            # A zip with bytes prepended (self-extracting, polyglot) is still a zip: its directory is at the end.
            if fmt in (None, Format.UNKNOWN) and _has_zip_end(fh, size):
                fh.seek(0)
                zfmt = _classify_zip(fh, strict=fmt is Format.UNKNOWN)
                if zfmt is not None:
                    return zfmt
            if fmt in (Format.ZIP,):
                fh.seek(0)
                return _classify_zip(fh) or Format.ZIP
            if fmt is None:
                text_head = head
                if size <= _TEXT_PARSE_LIMIT and size > len(head):
                    text_head = head + fh.read(_TEXT_PARSE_LIMIT - len(head))
                return _classify_text(text_head, complete=len(text_head) >= size)
            return fmt
    except FileNotFoundError as exc:
        raise FormatError(f"no such file: {path}") from exc
    except IsADirectoryError as exc:
        raise FormatError(f"{path} is a folder, not a file") from exc
    except PermissionError as exc:
        raise FormatError(f"permission denied: {path}") from exc
    except OSError as exc:
        raise FormatError(f"cannot read {path}: {exc.strerror or exc}") from exc


def detect_bytes(data: bytes) -> Format:
    """Return the format of an in-memory blob (an archive member, say)."""
    fmt = _detect_head(data[:HEAD_BYTES], len(data))
    if fmt in (None, Format.UNKNOWN) and _has_zip_end(io.BytesIO(data), len(data)):
        zfmt = _classify_zip(io.BytesIO(data), strict=fmt is Format.UNKNOWN)
        if zfmt is not None:
            return zfmt
    if fmt is Format.ZIP:
        return _classify_zip(io.BytesIO(data)) or Format.ZIP
    if fmt is None:
        return _classify_text(data[:_TEXT_PARSE_LIMIT], complete=len(data) <= _TEXT_PARSE_LIMIT)
    return fmt


ZIP_FAMILY = frozenset({Format.ZIP, Format.TORCH_ZIP, Format.TORCHSCRIPT, Format.NPZ, Format.KERAS})


def other_readings(buf: bytes | bytearray | mmap.mmap, primary: Format) -> list[Format]:
    """Formats other than ``primary`` that a loader could also read ``buf`` as (a polyglot), by cheap checks.

    A loader does not ask the file what it is: ``pickle.load`` (and torch's legacy loader, and
    ``np.load(allow_pickle=True)``) start unpickling at byte 0; torch's legacy loader first tries ``tarfile``;
    h5py finds an HDF5 superblock after a user block of 512, 1024, 2048... bytes; ``zipfile`` finds an archive
    from its end. Each candidate returned here still has to be read by its scanner to count.
    """
    size = len(buf)
    head = bytes(buf[:HEAD_BYTES])
    out: list[Format] = []
    if primary is not Format.PICKLE and looks_pickle(head, size):
        out.append(Format.PICKLE)
    if primary is not Format.TAR and _valid_tar_header(head):
        out.append(Format.TAR)
    if primary is not Format.HDF5 and _hdf5_superblock(buf) >= 0:
        out.append(Format.HDF5)
    if primary not in ZIP_FAMILY and size >= 22 and bytes(buf[max(0, size - 65557):]).find(b"PK\x05\x06") >= 0:
        out.append(Format.ZIP)
    if primary is not Format.GGUF and head[:4] == b"GGUF":
        out.append(Format.GGUF)
    if primary is not Format.SAFETENSORS and _looks_safetensors(head, size):
        out.append(Format.SAFETENSORS)
    if primary is not Format.NUMPY and head[:6] == b"\x93NUMPY":
        out.append(Format.NUMPY)
    return out


def _valid_tar_header(head: bytes) -> bool:
    """The first 512 bytes form a tar header ``tarfile`` accepts (its checksum), with or without ``ustar``."""
    import tarfile

    if len(head) < 512 or head[:512].count(0) == 512:
        return False
    try:
        tarfile.TarInfo.frombuf(head[:512], "utf-8", "surrogateescape")
    except (tarfile.HeaderError, ValueError, UnicodeDecodeError):
        return False
    return True


def _hdf5_superblock(buf: bytes | bytearray | mmap.mmap) -> int:
    """Offset of an HDF5 signature where HDF5 looks for one (0, 512, 1024, 2048, ...), or -1."""
    sig = b"\x89HDF\r\n\x1a\n"
    off = 0
    while off + 8 <= len(buf):
        if isinstance(buf, mmap.mmap) and off >= HEAD_BYTES:
            # one page, not the kernel's read-ahead around it: a 1 GiB file costs ~20 page reads, not ~20 MiB
            page = off - off % mmap.PAGESIZE
            buf.madvise(mmap.MADV_RANDOM, page, min(mmap.PAGESIZE, len(buf) - page))
        if buf[off:off + 8] == sig:
            return off
        off = 512 if off == 0 else off * 2
    return -1


def _detect_head(head: bytes, size: int) -> Format | None:
    """Binary magic numbers. ``None`` means: not a known binary format (maybe zip-at-end or text)."""
    if size == 0:
        return Format.EMPTY
    if head[:4] == b"GGUF":
        return Format.GGUF
    if _looks_safetensors(head, size):
        return Format.SAFETENSORS
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return Format.ZIP
    if head[:6] == b"\x93NUMPY":
        return Format.NUMPY
    if _hdf5_superblock(head) >= 0:
        return Format.HDF5
    if len(head) >= 262 and head[257:262] == b"ustar":
        return Format.TAR
    if head[:2] == b"\x1f\x8b":
        return Format.GZIP
    if head[:3] == b"BZh":
        return Format.BZIP2
    if head[:6] == b"\xfd7zXZ\x00":
        return Format.XZ
    if head[:6] == b"7z\xbc\xaf\x27\x1c":
        return Format.SEVEN_ZIP
    if head[:4] == b"\x28\xb5\x2f\xfd":
        return Format.ZSTD
    if head[:4] == b"\x7fELF":
        return Format.ELF
    if head[:4] in (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe",
                    b"\xca\xfe\xba\xbe"):
        return Format.MACHO
    if head[:2] == b"MZ" and _looks_pe(head):
        return Format.PE
    if looks_pickle(head, size):
        return Format.PICKLE
    if _looks_onnx(head):
        return Format.ONNX
    if _looks_sentencepiece(head):
        return Format.SENTENCEPIECE
    if b"\x00" in head[:8192] or not _is_text(head):
        return Format.UNKNOWN
    return None


def _looks_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    if n < 2 or n > 100 * 1024 * 1024:
        return False
    body = head[8:].lstrip(b" \t\r\n")
    return body[:1] == b"{" and (body[1:2] in (b'"', b"}", b" ", b"\n", b"\t", b"\r"))


def _looks_pe(head: bytes) -> bool:
    if len(head) < 0x40:
        return False
    (off,) = struct.unpack("<I", head[0x3C:0x40])
    return off + 4 <= len(head) and head[off:off + 4] == b"PE\x00\x00"


_PICKLE_FIRST = {op.code.encode("latin-1") for op in pickletools.opcodes}


def looks_pickle(head: bytes, size: int) -> bool:
    """A pickle stream: protocol 2+ header, or a protocol 0/1 stream that parses up to STOP."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if head[:1] not in _PICKLE_FIRST:
        return False
    bio = io.BytesIO(head)
    try:
        for n, (op, _arg, _pos) in enumerate(pickletools.genops(bio), start=1):
            if op.name == "STOP":
                return n >= 2
    except Exception:  # noqa: BLE001 - any parse failure means "not a pickle"
        # A long protocol-0 pickle may not fit in the head (one huge string, say): if it parsed cleanly up to the
        # end of the head, it is a pickle (pickle.load would run it), not text.
        return size > len(head) and bio.tell() >= len(head) - 1
    return False


def _looks_onnx(head: bytes) -> bool:
    # ModelProto: field 1 ir_version (varint, tag 0x08) first, then producer_name (0x12), graph (0x3a) or
    # opset_import (0x42); the string "onnx" or "ai.onnx" nearly always appears in the head.
    return (len(head) > 4 and head[0] == 0x08 and 1 <= head[1] <= 20
            and head[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42)
            and (b"onnx" in head[:4096] or b"ONNX" in head[:4096]))


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while pos < len(buf) and shift < 64:
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        if not b & 0x80:
            return value, pos
        shift += 7
    raise ValueError("bad varint")


def _looks_sentencepiece(head: bytes) -> bool:
    # ModelProto { repeated SentencePiece pieces = 1 { string piece = 1; float score = 2; ... } }
    try:
        if head[:1] != b"\x0a":
            return False
        _, pos = _varint(head, 1)
        if head[pos:pos + 1] != b"\x0a":
            return False
        n, pos = _varint(head, pos + 1)
        head[pos:pos + n].decode("utf-8")
        return head[pos + n:pos + n + 1] == b"\x15"
    except (ValueError, UnicodeDecodeError, IndexError):
        return False


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
        return True
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of the head is still text.
        return exc.start >= len(head) - 4


def _has_zip_end(fh: io.BufferedIOBase | io.BytesIO, size: int) -> bool:
    """True if an end-of-central-directory record sits in the last 64 KiB (a zip with a prefix)."""
    if size < 22:
        return False
    tail = min(size, 65536 + 22)
    fh.seek(size - tail)
    return b"PK\x05\x06" in fh.read(tail)


def _classify_zip(fh: io.BufferedIOBase | io.BytesIO, *, strict: bool = False) -> Format | None:
    """The kind of zip archive, from the names either loader's reader lists (:mod:`assay.model.zipread`);
    with ``strict``, None unless one of them opens the archive."""
    from assay.model.zipread import read_zip

    if isinstance(fh, io.BytesIO):
        view = read_zip(fh.getvalue())
    else:
        try:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                view = read_zip(mm)
        except (OSError, ValueError, io.UnsupportedOperation):
            fh.seek(0)
            view = read_zip(fh.read())
    names = [m.name for r in view.readings for m in r.members]
    if not names:  # an empty directory found only at the end of unknown bytes is no evidence of a zip
        return None if strict else Format.ZIP
    base = {n.split("/", 1)[1] if "/" in n else n for n in names}
    lower = {n.lower() for n in base}
    if any(n.startswith("code/") for n in lower) and ("constants.pkl" in lower or "data.pkl" in lower):
        return Format.TORCHSCRIPT
    if "data.pkl" in lower:  # torch looks records up case-insensitively
        return Format.TORCH_ZIP
    if all(n.endswith(".npy") for n in names):
        return Format.NPZ
    if "config.json" in names and any(n.endswith(".h5") for n in names):
        return Format.KERAS
    return Format.ZIP


def _classify_text(data: bytes, *, complete: bool) -> Format:
    text = data.decode("utf-8", errors="replace")
    stripped = text.lstrip()
    if stripped.startswith("#!"):
        first = stripped.split("\n", 1)[0]
        return Format.PYTHON if "python" in first else Format.SCRIPT
    if stripped[:1] in ("{", "["):
        if not complete:
            return Format.JSON
        try:
            json.loads(text)
            return Format.JSON
        except ValueError:
            pass
    if stripped.startswith(("---\n", "---\r\n")):
        return Format.MARKDOWN if "\n---" in stripped[3:] and _has_markdown(stripped) else Format.YAML
    if ("{%" in text and "%}" in text) or ("{{" in text and "}}" in text and not _parses_python(text, complete)):
        return Format.JINJA
    if _parses_python(text, complete):
        return Format.PYTHON
    if _has_markdown(stripped):
        return Format.MARKDOWN
    return Format.TEXT


def _has_markdown(text: str) -> bool:
    return any(line.startswith(("# ", "## ", "### ", "- ", "* ", "```", "|")) for line in text.splitlines()[:400])


def _parses_python(text: str, complete: bool) -> bool:
    if not complete:
        head = "\n".join(text.splitlines()[:200])
        return head.startswith(("import ", "from ", "def ", "class ", '"""', "# -*-"))
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return False
    meaningful = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Assign,
                  ast.If, ast.For, ast.While, ast.With, ast.Try)
    # A bare call such as ``__import__('os').system('...')`` is code too, not prose.
    return any(isinstance(node, meaningful) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call))
               for node in tree.body)
