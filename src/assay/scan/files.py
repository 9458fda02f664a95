"""Route one file (or archive member) to the scanner for its format, detected by content.

A buffer is ``bytes`` (archive members, nested pickles) or a read-only ``mmap`` of a file on disk, so that a
1 GiB checkpoint is scanned by touching only its headers and pickles.

    >>> fs = FileScan("model.safetensors", ScanOptions())
    >>> scan_buffer(open("model.safetensors", "rb").read(), "model.safetensors", fs, where=None, depth=0)
"""

from __future__ import annotations

import json
from typing import BinaryIO, assert_never, cast

from assay.model._bufio import Buffer, BufReader
from assay.model.formats import TEXT_FORMATS, Format, detect_bytes, other_readings
from assay.scan.context import MAX_DEPTH, FileScan, at
from assay.scan.findings import Severity

#: JSON files larger than this are not parsed (reported as not verified).
MAX_JSON_BYTES = 256 * 1024 * 1024


def scan_buffer(buf: Buffer, name: str, fs: FileScan, *, where: str | None, depth: int,
                fmt: Format | None = None) -> Format:
    """Scan ``buf`` (a file or member called ``name``) by its content; returns the detected format."""
    from assay.scan import code, containers, gguf, safetensors, templates

    if fs.scan_nested is None:  # members found inside this file come back here
        fs.scan_nested = scan_buffer
    if depth == 0:
        containers.reset_budget()
    if depth > MAX_DEPTH:
        fs.unverified(f"{_prefix(where)}archives nested more than {MAX_DEPTH} deep are not opened")
        return Format.UNKNOWN
    if fmt is None:
        fmt = detect_bytes(buf if isinstance(buf, bytes) else bytes(buf))
    lower = name.lower()
    if fmt is Format.EMPTY:
        pass
    elif fmt is Format.SAFETENSORS:
        safetensors.scan_safetensors(buf, fs, where=where)
    elif fmt is Format.GGUF:
        gguf.scan_gguf(buf, fs, where=where)
    elif fmt in (Format.ZIP, Format.TORCH_ZIP, Format.TORCHSCRIPT, Format.NPZ, Format.KERAS):
        containers.scan_zip(buf, fmt, fs, where=where, depth=depth)
    elif fmt is Format.PICKLE:
        containers.scan_pickle_file(buf, fs, where=where, depth=depth)
    elif fmt is Format.NUMPY:
        containers.scan_npy(buf, fs, where=where, depth=depth)
    elif fmt is Format.HDF5:
        containers.scan_hdf5(buf, fs, where=where)
    elif fmt in (Format.TAR, Format.GZIP, Format.BZIP2, Format.XZ):
        containers.scan_compressed(buf, fmt, fs, where=where, depth=depth)
    elif fmt in (Format.SEVEN_ZIP, Format.ZSTD):
        fs.unverified(f"{_prefix(where)}{fmt.value} archives are not opened (no reader installed), so their "
                      "members were not scanned")
    elif fmt is Format.ONNX:
        fs.unverified(f"{_prefix(where)}ONNX graphs are not analysed (custom operators and external data "
                      "are not checked)")
    elif fmt is Format.SENTENCEPIECE:
        pass  # a protobuf vocabulary: data only
    elif fmt in (Format.ELF, Format.MACHO, Format.PE):
        fs.add("EXEC-BINARY", where, f"{fmt.value} executable or shared library: it can run native code when "
               "loaded as an extension or executed", fmt.value)
    elif fmt is Format.SCRIPT:
        first = bytes(buf[:200]).split(b"\n", 1)[0].decode("utf-8", "replace")
        fs.add("SCRIPT", where, "script with an interpreter line", first)
    elif fmt is Format.PYTHON or lower.endswith(_PY_SUFFIXES):
        code.scan_python(bytes(buf), fs, where=where, name=name)
    elif fmt is Format.JSON:
        scan_json(buf, fs, where=where)
    elif fmt is Format.JINJA or lower.endswith((".jinja", ".jinja2", ".j2")):
        templates.scan_template_text(bytes(buf).decode("utf-8", "replace"), fs, where=where)
    elif fmt in (Format.MARKDOWN, Format.YAML, Format.TEXT):
        pass  # data only
    elif fmt is Format.UNKNOWN:
        fs.unverified(f"{_prefix(where)}unknown binary format, not analysed")
    else:  # pragma: no cover - every Format is routed above (the checker proves it)
        assert_never(fmt)
    _scan_by_name(buf, name, fmt, fs, where=where)
    if fmt is not Format.EMPTY:
        _scan_other_readings(buf, name, fmt, fs, where=where, depth=depth)
    return fmt


_PY_SUFFIXES = (".py", ".pyw", ".pyi")
#: What a file's name promises: a loader picked by the name expects one of these formats.
_NAME_FORMATS: dict[str, frozenset[Format]] = {
    ".safetensors": frozenset({Format.SAFETENSORS}),
    ".gguf": frozenset({Format.GGUF}),
    ".npy": frozenset({Format.NUMPY}),
    ".npz": frozenset({Format.NPZ, Format.ZIP}),
    ".h5": frozenset({Format.HDF5}),
    ".hdf5": frozenset({Format.HDF5}),
    ".keras": frozenset({Format.KERAS, Format.ZIP}),
    ".pt": frozenset({Format.TORCH_ZIP, Format.TORCHSCRIPT, Format.PICKLE, Format.TAR}),  # tar: torch's oldest
    ".pth": frozenset({Format.TORCH_ZIP, Format.TORCHSCRIPT, Format.PICKLE, Format.TAR}),
}


def _scan_by_name(buf: Buffer, name: str, fmt: Format, fs: FileScan, *, where: str | None) -> None:
    """What loaders choose by name: JSON files are parsed as JSON and ``.py`` files analysed as Python, whatever
    else their bytes are; a name that promises another format than the content is a finding."""
    from assay.scan import code

    lower = name.lower()
    if lower.endswith(".json") and fmt is not Format.JSON and fmt is not Format.EMPTY:
        scan_json(buf, fs, where=where)
        if fmt not in TEXT_FORMATS and _parses_as_json(buf):
            fs.add("FORMAT-POLYGLOT", where, f"{name} is JSON, as loaders read it, and also a valid {fmt.value} "
                   "file: a loader of that format reads other content", f"json + {fmt.value}")
    if lower.endswith(_PY_SUFFIXES) and fmt not in (Format.PYTHON, Format.TEXT, Format.MARKDOWN, Format.YAML,
                                                    Format.JINJA, Format.JSON, Format.EMPTY):
        code.scan_python(bytes(buf), fs, where=where, name=name)
    suffix = "." + lower.rsplit(".", 1)[-1] if "." in lower.rsplit("/", 1)[-1] else ""
    expected = _NAME_FORMATS.get(suffix)
    if expected is not None and fmt not in expected and fmt is not Format.EMPTY:
        fs.add("FORMAT-MISMATCH", where, f"{name.rsplit('/', 1)[-1]} is named like a {suffix[1:]} file but its "
               f"content is {_describe(fmt)}", f"{suffix} holds {fmt.value}")


def _describe(fmt: Format) -> str:
    if fmt in (Format.TEXT, Format.MARKDOWN, Format.YAML):
        return f"plain text ({fmt.value})"
    if fmt is Format.PICKLE:
        return "a pickle (loading it can run code)"
    if fmt in (Format.ZIP, Format.TORCH_ZIP, Format.TORCHSCRIPT, Format.NPZ, Format.KERAS):
        return f"a zip archive ({fmt.value})"
    return fmt.value


def _parses_as_json(buf: Buffer) -> bool:
    if len(buf) > MAX_JSON_BYTES:
        return False
    try:
        json.loads(bytes(buf).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return True


class _ProbeReader(BufReader):
    """A reader for a speculative parse: a read past the end returns nothing instead of copying the rest of a
    large file (a short read fails the parse either way)."""

    def read(self, n: int | None = -1) -> bytes:
        if n is not None and n > self._end - self._pos:
            self._pos = self._end
            return b""
        return super().read(n)


def _scan_other_readings(buf: Buffer, name: str, fmt: Format, fs: FileScan, *, where: str | None,
                         depth: int) -> None:
    """Scan ``buf`` as every other format a loader could read it as; what such a reading finds is reported,
    with a ``FORMAT-POLYGLOT`` finding naming both formats."""
    from assay.scan import containers, gguf, safetensors

    for other in other_readings(buf, fmt):
        probe = fs.probe()
        try:
            if other is Format.PICKLE:
                containers.scan_pickle_file(buf, probe, where=where, depth=depth,
                                            stream=cast(BinaryIO, _ProbeReader(buf)))
            elif other is Format.TAR:
                containers.scan_compressed(buf, Format.TAR, probe, where=where, depth=depth)
            elif other is Format.HDF5:
                containers.scan_hdf5(buf, probe, where=where)
            elif other is Format.ZIP:
                containers.scan_zip(buf, Format.ZIP, probe, where=where, depth=depth)
            elif other is Format.GGUF:
                gguf.scan_gguf(buf, probe, where=where)
            elif other is Format.SAFETENSORS:
                safetensors.scan_safetensors(buf, probe, where=where)
            elif other is Format.NUMPY:
                containers.scan_npy(buf, probe, where=where, depth=depth)
        except (ValueError, IndexError, KeyError, TypeError, OSError, EOFError):
            continue  # the other reading does not hold up: no loader reads the file that way either
        serious = [f for f in probe.findings if f.severity > Severity.INFO]
        if not serious:
            continue
        fs.add("FORMAT-POLYGLOT", where, f"{name.rsplit('/', 1)[-1]} is {fmt.value} but also a valid "
               f"{other.value} file: {_LOADERS.get(other, 'its loader')} reads it as {other.value}; that reading "
               "was scanned too", f"{fmt.value} + {other.value}")
        for f in probe.findings:
            fs.add(f.rule, f.location, f.message, f.evidence, severity=f.severity)
        for r in probe.reasons:
            fs.unverified(r)


_LOADERS = {Format.PICKLE: "pickle.load (and torch.load, np.load with allow_pickle)",
            Format.TAR: "torch.load (its legacy loader tries tarfile first)", Format.HDF5: "h5py (Keras .h5)",
            Format.ZIP: "zipfile (numpy, Keras)", Format.GGUF: "llama.cpp", Format.SAFETENSORS: "safetensors",
            Format.NUMPY: "numpy"}


def _prefix(where: str | None) -> str:
    return f"{where}: " if where else ""


def scan_json(buf: Buffer, fs: FileScan, *, where: str | None) -> None:
    """A JSON file: ``auto_map`` (remote code), ``chat_template``, and Keras model configs."""
    from assay.scan import code, containers, templates

    if len(buf) > MAX_JSON_BYTES:
        fs.unverified(f"{_prefix(where)}JSON larger than {MAX_JSON_BYTES >> 20} MiB is not parsed")
        return
    try:
        doc = json.loads(bytes(buf).decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        fs.unverified(f"{_prefix(where)}JSON does not parse ({str(exc).splitlines()[0]})")
        return
    if not isinstance(doc, dict):
        return
    if "auto_map" in doc:
        code.check_auto_map(doc["auto_map"], fs, where=where)
    if "chat_template" in doc:
        templates.scan_chat_template_value(doc["chat_template"], fs, where=at(where, "chat_template"))
    if isinstance(doc.get("class_name"), str) and "config" in doc:
        containers.check_keras_config(doc, fs, where=where)
