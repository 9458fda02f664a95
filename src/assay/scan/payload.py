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
WINDOW = 64 << 10
#: Opcodes decoded before the pickle check stops (a well-formed run this long is a pickle, not weights).
MAX_OPS = 100_000

_MACHO = (b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf", b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe", b"\xca\xfe\xba\xbe")
_PICKLE_FIRST = frozenset(ord(op.code) for op in pickletools.opcodes if op.code != ".")
_NAMING = frozenset({"GLOBAL", "STACK_GLOBAL", "INST", "REDUCE", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD",
                     "EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"})


#: Bytes of tensor starts the pickle decoder may consume per file (random weights stop after a few bytes per
#: tensor); beyond it the file is not verified (resource limit).
MAX_PICKLE_BYTES = 2 << 20
#: Bytes decoded first; the window is read only when a pickle runs well-formed to the end of this head.
_SHORT = 256
_NATIVE_FIRST = frozenset(b"\x7f\xfe\xce\xcf\xcaM#")


def embedded_payload(head: bytes) -> tuple[str, str] | None:
    """``(kind, evidence)`` when ``head`` (the first bytes of a tensor) starts with a payload, else None."""
    if len(head) < 4:
        return None
    found = _native(head)
    if found is None and _may_be_pickle(head):
        evidence = _pickle(io.BytesIO(head), len(head) >= WINDOW)[0]
        found = ("pickle", evidence) if evidence else None
    return found


def _native(head: bytes) -> tuple[str, str] | None:
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
    return None


def _may_be_pickle(head: bytes) -> bool:
    return head[0] in _PICKLE_FIRST or (head[0] == 0x80 and len(head) > 1 and head[1] <= 5)


def _pickle(stream: Any, window_is_full: bool) -> tuple[str | None, bool]:
    """(evidence if ``stream`` is a pickle that names a global, whether decoding ran well-formed to its end).

    The scanner's symbolic machine runs it (:mod:`assay.model.pickle_vm`): opcodes must also make sense on the
    stack (``0R.`` decodes as opcodes but no unpickler accepts it), and at least one global must be named.
    """
    from assay.model.pickle_vm import PickleFormatError, PickleResourceLimit

    machine = _recorder()
    names = machine.names
    stopped = cut = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pickletools warns on odd string escapes in random bytes
        try:
            machine.run(stream)
            stopped = True
        except PickleResourceLimit:
            pass
        except (PickleFormatError, struct.error, RecursionError):
            # well-formed up to the end of what was given: a longer pickle, cut by the window
            end = stream.tell()
            stream.seek(0, io.SEEK_END)
            cut = end >= stream.tell()
    if not names or not (stopped or (cut and window_is_full)):
        return None, cut
    what = "complete pickle" if stopped else "pickle opcodes"
    return f"{what} naming {', '.join(dict.fromkeys(names[:5]))}", cut


def _recorder() -> Any:
    """A symbolic pickle machine that records the globals a pickle names (its findings are dropped)."""
    global _RECORDER
    if _RECORDER is None:
        from assay.model.pickle_vm import DiscardReport, Global, PickleMachine

        class Recorder(PickleMachine):
            names: list[str]

            def global_(self, module: Any, name: Any, pos: int, op: str) -> Global:
                g = super().global_(module, name, pos, op)
                self.names.append(g.full)
                return g

        def make() -> Any:
            m = Recorder(DiscardReport(), None, None)
            m.names = []
            return m

        _RECORDER = make
    return _RECORDER()


_RECORDER: Any = None


def check_tensor_start(buf: Any, start: int, end: int, fs: FileScan, location: str | None) -> None:
    """Report ``TENSOR-EMBEDDED-PAYLOAD`` if the tensor at ``buf[start:end]`` begins with a payload."""
    if end - start < 4 or start < 0 or end > len(buf):
        return
    first = buf[start]
    found = None
    if first in _NATIVE_FIRST:
        found = _native(bytes(buf[start:min(end, start + 4096)]))
    if found is None and (first in _PICKLE_FIRST or (first == 0x80 and buf[start + 1] <= 5)):
        if fs.payload_bytes > MAX_PICKLE_BYTES:
            fs.unverified(f"resource limit: tensor starts decoded as pickle opcodes for more than "
                          f"{MAX_PICKLE_BYTES:,} bytes; the remaining tensors were not checked for payloads")
            return
        short = min(end, start + _SHORT)
        head = io.BytesIO(bytes(buf[start:short]))
        evidence, ran_to_end = _pickle(head, short - start >= WINDOW)
        fs.payload_bytes += head.tell()
        if evidence is None and ran_to_end and end > short:
            from assay.model._bufio import BufReader

            window_end = min(end, start + WINDOW)
            window = BufReader(buf, start, window_end)
            evidence, _ = _pickle(window, window_end - start >= WINDOW)
            fs.payload_bytes += window.tell()
        if evidence is not None:
            found = ("pickle", evidence)
    if found is None:
        return
    kind, evidence = found
    fs.add("TENSOR-EMBEDDED-PAYLOAD", location, f"the tensor's bytes are a {kind}, not weights: no loader runs "
           "them, but they carry a payload past a header-only check", evidence)
