"""Hidden payloads in tensor data: a tensor whose bytes are a pickle, a native executable or a script.

No loader runs tensor bytes, but a tensor is a convenient place to carry a second-stage payload past a scanner
that only reads headers (a later ``pickle.loads(t.numpy().tobytes())`` in "helper" code, a dropper that writes
the bytes out). Only the *start* of each tensor is read (at most :data:`WINDOW` bytes), so a 1 GiB checkpoint
costs a few kilobytes per tensor. Honest weights do not match: executables need their full magic and header,
a script needs a printable ``#!/`` line, and a pickle must decode as well-formed opcodes that name a global or
make a call (random floats fail within a few bytes).

    >>> check_tensor_start(buf, 1024, 5120, fs, "tensor lm_head.weight")   # adds TENSOR-EMBEDDED-PAYLOAD or not
"""

from __future__ import annotations

import io
import pickletools
import struct
import warnings
from typing import Any

from assay.scan.context import FileScan

#: Bytes read from the start of a tensor.
WINDOW = 1 << 20
#: Opcodes decoded before the pickle check stops (a well-formed run this long is a pickle, not weights).
MAX_OPS = 100_000

_MACHO = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
_PICKLE_FIRST = frozenset(ord(op.code) for op in pickletools.opcodes if op.code != ".")
_NAMING = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "REDUCE", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD",
                     "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"})


def embedded_payload(head: bytes, stream: Any = None) -> tuple[str, str] | None:
    """``(kind, evidence)`` when ``head`` (the first bytes of a tensor) starts with a payload, else None.

    ``stream`` (positioned at the tensor's start, ending at most :data:`WINDOW` bytes later) lets the pickle
    check read further than ``head`` without copying the window up front.
    """
    if len(head) < 4:
        return None
    if head[:4] == b"\x7fELF":
        return "ELF executable or shared library", "\\x7fELF"
    if head[:4] in _MACHO:
        return "Mach-O executable or library", head[:4].hex()
    if head[:2] == b"MZ" and len(head) >= 0x40:
        (off,) = struct.unpack_from("<I", head, 0x3C)
        if off + 4 <= len(head) and head[off:off + 4] == b"PE\x00\x00":
            return "PE (Windows) executable or DLL", f"MZ, PE header at {off}"
    if head[:3] == b"#!/":
        line, nl, _ = head[:256].partition(b"\n")
        if nl and all(32 <= b < 127 or b == 9 for b in line):
            return "script with an interpreter line", line.decode("ascii")
    if head[0] in _PICKLE_FIRST or (head[0] == 0x80 and head[1] <= 5):
        found = _pickle(stream if stream is not None else io.BytesIO(head))
        if found is not None:
            return "pickle", found
    return None


def _pickle(stream: Any) -> str | None:
    """Evidence when ``stream`` decodes as a pickle that names a global or makes a call."""
    names: list[str] = []
    naming = stopped = cut = False
    n = 0
    start = stream.tell()
    stream.seek(0, io.SEEK_END)
    size = stream.tell() - start
    stream.seek(start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pickletools warns on odd string escapes in random bytes
        try:
            for n, (op, arg, _pos) in enumerate(pickletools.genops(stream)):
                if n >= MAX_OPS:
                    cut = True
                    break
                if op.name in _NAMING:
                    naming = True
                    if op.name in ("GLOBAL", "INST") and len(names) < 5:
                        names.append(str(arg).replace(" ", "."))
                if op.name == "STOP":
                    stopped = True
                    break
        except (ValueError, EOFError, UnicodeDecodeError, OverflowError, struct.error):
            # well-formed up to the end of the window: a longer pickle, cut by the window
            cut = size >= WINDOW and stream.tell() - start >= size
    if not naming or not (stopped or cut):
        return None
    what = "complete pickle" if stopped else "pickle opcodes"
    return f"{what}{' naming ' + ', '.join(names) if names else ' that makes calls'}"


def check_tensor_start(buf: Any, start: int, end: int, fs: FileScan, location: str | None) -> None:
    """Report ``TENSOR-EMBEDDED-PAYLOAD`` if the tensor at ``buf[start:end]`` begins with a payload."""
    if end - start < 4 or start < 0 or end > len(buf):
        return
    from assay.scan.files import BufReader

    head = bytes(buf[start:min(end, start + 4096)])
    found = embedded_payload(head, BufReader(buf, start, min(end, start + WINDOW)))
    if found is None:
        return
    kind, evidence = found
    fs.add("TENSOR-EMBEDDED-PAYLOAD", location, f"the tensor's bytes are a {kind}, not weights: no loader runs "
           "them, but they carry a payload past a header-only check", evidence)
