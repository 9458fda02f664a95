"""Route one file (or archive member) to the scanner for its format, detected by content.

A buffer is ``bytes`` (archive members, nested pickles) or a read-only ``mmap`` of a file on disk, so that a
1 GiB checkpoint is scanned by touching only its headers and pickles.

    >>> fs = FileScan("model.safetensors", ScanOptions())
    >>> scan_buffer(open("model.safetensors", "rb").read(), "model.safetensors", fs, where=None, depth=0)
"""

from __future__ import annotations

import io
import json
import mmap
from typing import Any, BinaryIO, Union

from assay.model._bufio import BufReader
from assay.model.formats import Format, detect_bytes
from assay.scan.context import MAX_DEPTH, FileScan, at

Buffer = Union[bytes, mmap.mmap]

#: JSON files larger than this are not parsed (reported as not verified).
MAX_JSON_BYTES = 256 * 1024 * 1024


def stream_of(buf: Buffer, start: int = 0) -> BinaryIO:
    """A C-speed seekable stream over ``buf`` positioned at ``start`` (offsets stay those of ``buf``)."""
    stream: BinaryIO = io.BytesIO(buf) if isinstance(buf, bytes) else buf  # type: ignore[assignment]
    stream.seek(start)
    return stream


def scan_buffer(buf: Buffer, name: str, fs: FileScan, *, where: str | None, depth: int,
                fmt: Format | None = None) -> Format:
    """Scan ``buf`` (a file or member called ``name``) by its content; returns the detected format."""
    from assay.scan import code, containers, gguf, safetensors, templates

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
    elif fmt is Format.PYTHON or lower.endswith((".py", ".pyw", ".pyi")):
        code.scan_python(bytes(buf), fs, where=where, name=name)
    elif fmt is Format.JSON:
        scan_json(buf, fs, where=where)
    elif fmt is Format.JINJA or lower.endswith((".jinja", ".jinja2", ".j2")):
        templates.scan_template_text(bytes(buf).decode("utf-8", "replace"), fs, where=where)
    elif fmt in (Format.MARKDOWN, Format.YAML, Format.TEXT):
        pass  # data only
    elif fmt is Format.UNKNOWN:
        fs.unverified(f"{_prefix(where)}unknown binary format, not analysed")
    else:  # pragma: no cover - every Format is routed above (tested)
        fs.unverified(f"{_prefix(where)}format {fmt.value} is not analysed")
    return fmt


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
