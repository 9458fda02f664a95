"""One streaming reader over the tensors of a checkpoint: safetensors, GGUF and torch archives.

Names, dtypes and shapes come from headers alone (no tensor data is read); the data of a tensor is read only
when asked for, through a memory map, so reading one tensor of a 70B model costs that tensor and nothing more.

    >>> for t in iter_tensors(resolve("./my-model")):
    ...     print(t.hf_name, t.dtype, t.shape)        # model.layers.0.self_attn.q_proj.weight BF16 (2048, 2048)
    >>> index = tensor_index(resolve("model.Q4_1.gguf"))
    >>> index["model.embed_tokens.weight"].load()    # float32, dequantised, HF layout

- safetensors: the header is parsed here and the data read with ``numpy.memmap`` at the header's offsets
  (one path for every dtype, bf16 and float8 included).
- GGUF: the header is parsed here (fast, bounded); data is dequantised with ``gguf.quants.dequantize``. GGUF
  names are mapped to Hugging Face names with gguf's own ``TensorNameMap`` tables, and the transforms
  llama.cpp applies on conversion are undone (llama Q/K row permutation, Gemma's ``norm + 1``), so values
  compare with the Hugging Face tensors.
- torch archives (zip and legacy pickle): names, dtypes and shapes come from a symbolic walk of the pickle
  opcodes (nothing is unpickled); data is loaded only with ``allow_pickle=True`` and then only through
  ``torch.load(weights_only=True, mmap=True)``. The caller promises the file scanned safe first.
"""

from __future__ import annotations

import io
import mmap
import os
import pickletools
import re
import struct
import threading
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.errors import FormatError, ModelError
from assay.model.formats import Format, detect
from assay.model.ref import ModelRef

if TYPE_CHECKING:
    import numpy as np

#: safetensors dtype -> bytes per element (as in the safetensors spec).
SAFETENSORS_ITEMSIZE: dict[str, int] = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4,
    "U16": 2, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "C64": 8,
}
_NUMPY_DTYPE = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
                "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?", "C64": "<c8"}
#: torch legacy storage class -> safetensors-style dtype name.
TORCH_STORAGE_DTYPE: dict[str, str] = {
    "FloatStorage": "F32", "HalfStorage": "F16", "BFloat16Storage": "BF16", "DoubleStorage": "F64",
    "LongStorage": "I64", "IntStorage": "I32", "ShortStorage": "I16", "CharStorage": "I8", "ByteStorage": "U8",
    "BoolStorage": "BOOL", "ComplexFloatStorage": "C64", "Float8_e4m3fnStorage": "F8_E4M3",
    "Float8_e5m2Storage": "F8_E5M2",
}
_MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
#: A torch archive's data.pkl larger than this is not walked (a real one is a few MiB for the largest models).
_MAX_DATA_PKL = 256 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a checkpoint: what its header says, and how to read it lazily."""

    name: str
    """The name as stored in the file (a GGUF name stays ``blk.0.attn_q.weight``)."""
    hf_name: str
    """The Hugging Face name (``model.layers.0.self_attn.q_proj.weight``); equal to ``name`` outside GGUF."""
    dtype: str
    """Storage dtype: safetensors names (``F32``, ``BF16``, ...) or GGML type names (``Q4_1``, ``Q8_0``)."""
    shape: tuple[int, ...]
    """Shape in Hugging Face (row-major numpy) order; for GGUF the reverse of the stored ``ne`` list."""
    file: str
    """The file that holds the tensor, relative to the model root."""
    nbytes: int
    """Bytes the tensor occupies in the file."""
    location: Path = field(repr=False, compare=False)
    """Absolute path of :attr:`file`."""
    layout: str = field(default="safetensors", repr=False, compare=False)
    """How to decode: ``safetensors``, ``gguf`` or ``torch``."""
    offset: int = field(default=-1, repr=False, compare=False)
    """Absolute byte offset of the data in the file (-1 for torch archives)."""
    key: tuple[str, ...] = field(default=(), repr=False, compare=False)
    """For torch archives: the path of keys to the tensor in the unpickled object."""
    transform: tuple[str, int, int] | None = field(default=None, repr=False, compare=False)
    """A conversion to undo on load: ``("unpermute", n_head, n_kv)`` or ``("minus_one", 0, 0)``."""
    allow_pickle: bool = field(default=False, repr=False, compare=False)
    """Whether the caller allowed loading this torch archive (it scanned safe)."""

    @property
    def numel(self) -> int:
        """Number of elements."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    def raw(self) -> bytes:
        """The tensor's bytes exactly as stored (quantised blocks stay quantised)."""
        if self.layout == "torch":
            import torch

            t = self._torch_tensor()
            return t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
        return bytes(self._bytes())

    def load(self) -> np.ndarray:
        """The tensor as a numpy array in Hugging Face layout.

        F16 stays float16; BF16, float8 and every GGUF quantisation become float32; integer types keep theirs.
        """
        import numpy as np

        if self.layout == "torch":
            t = self._torch_tensor()
            import torch

            if t.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):
                t = t.float()
            return t.detach().contiguous().numpy()
        buf = self._bytes()
        if self.layout == "gguf":
            arr = _gguf_decode(buf, self.dtype, self.shape)
        else:
            arr = _safetensors_decode(buf, self.dtype, self.shape)
        if self.transform is not None:
            kind, a, b = self.transform
            if kind == "unpermute":
                arr = _unpermute(arr, a, b)
            elif kind == "minus_one":
                arr = (arr.astype(np.float32) - 1.0).astype(arr.dtype)
        return arr

    def _bytes(self) -> np.ndarray:
        import numpy as np

        if self.nbytes == 0:
            return np.empty(0, dtype=np.uint8)
        try:
            return np.memmap(self.location, dtype=np.uint8, mode="r", offset=self.offset, shape=(self.nbytes,))
        except (OSError, ValueError) as exc:
            raise FormatError(f"cannot read tensor {self.name} from {self.file}: {exc}") from exc

    def _torch_tensor(self) -> Any:
        if not self.allow_pickle:
            raise ModelError(f"{self.file} is a torch archive (pickle): reading its data needs allow_pickle=True "
                             "after the file scanned safe")
        obj = _torch_load(str(self.location), self.location.stat().st_mtime_ns)
        for k in self.key:
            obj = obj[k] if not isinstance(obj, (list, tuple)) else obj[int(k)]
        return obj


# --------------------------------------------------------------------------------------------- public API


def iter_tensors(target: ModelRef | Path | str, *, allow_pickle: bool = False) -> Iterator[TensorInfo]:
    """Yield every tensor of the model's weight files, in name order within each file, files in sorted order.

    ``target`` is a :class:`ModelRef` (its weight files, as chosen by the inventory) or one file. Torch
    archives need ``allow_pickle=True`` (a promise that the file scanned safe) and raise :class:`ModelError`
    otherwise. Nothing but headers is read until :meth:`TensorInfo.load` or :meth:`TensorInfo.raw`.
    """
    for root, rel, fmt in _weight_files(target):
        yield from file_tensors(root / rel, fmt=fmt, rel=rel.as_posix(), allow_pickle=allow_pickle)


def tensor_index(target: ModelRef | Path | str, *, allow_pickle: bool = False) -> dict[str, TensorInfo]:
    """Every tensor of the model by its Hugging Face name (see :func:`iter_tensors`)."""
    return {t.hf_name: t for t in iter_tensors(target, allow_pickle=allow_pickle)}


def file_tensors(path: Path, *, fmt: Format | None = None, rel: str | None = None,
                 allow_pickle: bool = False) -> list[TensorInfo]:
    """The tensors of one weight file (headers only). Raises :class:`FormatError` for a damaged file."""
    fmt = fmt or detect(path)
    rel = rel or path.name
    if fmt is Format.SAFETENSORS:
        _meta, tensors = read_safetensors_header(path, rel=rel)
        return tensors
    if fmt is Format.GGUF:
        return read_gguf(path, rel=rel).tensors
    if fmt in (Format.TORCH_ZIP, Format.PICKLE):
        if not allow_pickle:
            raise ModelError(f"{rel} is a torch archive (pickle-based); reading it needs allow_pickle=True, "
                             "which callers pass only after the file scanned safe")
        return torch_tensors(path, fmt=fmt, rel=rel, allow_pickle=True)
    raise FormatError(f"{rel} is not a tensor file assay can read (its content is {fmt.value})")


def gguf_to_hf_name(name: str, arch: str, *, known: Collection[str] | None = None) -> str:
    """Map a GGUF tensor name to its Hugging Face name using gguf's ``TensorNameMap`` tables.

    gguf's tables map many source spellings onto one GGUF name; the conventional transformers spelling
    (``model.…``/``lm_head``) is preferred, which is exact for the llama family (llama, mistral, qwen2/3, gemma,
    ...). Give ``known`` (the names of a Hugging Face checkpoint) to pick the candidate that checkpoint uses.
    A name with no mapping is returned unchanged.
    """
    base, suffix = name, ""
    for s in (".weight", ".bias"):
        if name.endswith(s):
            base, suffix = name[: -len(s)], s
            break
    table = _gguf_reverse_table(arch)
    m = re.match(r"^blk\.(\d+)\.(.+)$", base)
    bid = None
    if m:
        bid, key = m.group(1), "blk.{bid}." + m.group(2)
    else:
        key = base
    cands = table.get(key)
    if not cands:
        return name
    full = [c.format(bid=bid) + suffix if bid is not None else c + suffix for c in cands]
    if known is not None:
        for c in full:
            if c in known:
                return c
    for c in full:
        if c.startswith(("model.", "lm_head")):
            return c
    return full[0]


# --------------------------------------------------------------------------------------------- safetensors


def read_safetensors_header(path: Path, *, rel: str | None = None) -> tuple[dict[str, str], list[TensorInfo]]:
    """Parse a safetensors header: (``__metadata__``, tensors sorted by name). Validates sizes and offsets."""
    import json

    rel = rel or path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            first = fh.read(8)
            if len(first) < 8:
                raise FormatError(f"{rel} is truncated: shorter than a safetensors header")
            (n,) = struct.unpack("<Q", first)
            if n > _MAX_SAFETENSORS_HEADER:
                raise FormatError(f"{rel}: safetensors header length {n} is implausible (damaged file?)")
            if 8 + n > size:
                raise FormatError(f"{rel} is truncated: its safetensors header says {n} bytes but the file "
                                  f"has {size - 8}")
            raw = fh.read(n)
    except PermissionError as exc:
        raise FormatError(f"permission denied: {rel}") from exc
    except OSError as exc:
        raise FormatError(f"cannot read {rel}: {exc.strerror or exc}") from exc
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormatError(f"{rel}: safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise FormatError(f"{rel}: safetensors header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict):
        raise FormatError(f"{rel}: safetensors __metadata__ is not an object")
    data_start = 8 + n
    data_len = size - data_start
    out: list[TensorInfo] = []
    for name in sorted(header):
        info = header[name]
        try:
            dtype = str(info["dtype"])
            shape = tuple(int(d) for d in info["shape"])
            begin, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{rel}: malformed safetensors entry for tensor {name!r}") from exc
        if any(d < 0 for d in shape) or begin < 0 or end < begin:
            raise FormatError(f"{rel}: tensor {name!r} has invalid shape or offsets")
        if end > data_len:
            raise FormatError(f"{rel} is truncated: tensor {name!r} ends at byte {data_start + end} but the file "
                              f"has {size}")
        numel = 1
        for d in shape:
            numel *= d
        item = SAFETENSORS_ITEMSIZE.get(dtype)
        if item is not None and numel * item != end - begin:
            raise FormatError(f"{rel}: tensor {name!r} is {end - begin} bytes but {dtype}{list(shape)} needs "
                              f"{numel * item}")
        out.append(TensorInfo(name=name, hf_name=name, dtype=dtype, shape=shape, file=rel, nbytes=end - begin,
                              location=path.absolute(), layout="safetensors", offset=data_start + begin))
    return {str(k): str(v) for k, v in meta.items()}, out


def _safetensors_decode(buf: np.ndarray, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    import numpy as np

    if dtype == "BF16":
        u = np.frombuffer(buf, dtype="<u2").astype(np.uint32) << 16
        return u.view(np.float32).reshape(shape)
    if dtype in ("F8_E4M3", "F8_E5M2"):
        return _float8_table(dtype)[np.frombuffer(buf, dtype=np.uint8)].reshape(shape)
    np_dtype = _NUMPY_DTYPE.get(dtype)
    if np_dtype is None:
        raise FormatError(f"tensor dtype {dtype} is not supported")
    return np.frombuffer(buf, dtype=np_dtype).reshape(shape).copy()


@lru_cache(maxsize=2)
def _float8_table(dtype: str) -> np.ndarray:
    """All 256 float8 values (e4m3fn: bias 7, no inf, 0x7f/0xff NaN; e5m2: IEEE-like, bias 15)."""
    import numpy as np

    ebits, mbits, bias = (4, 3, 7) if dtype == "F8_E4M3" else (5, 2, 15)
    out = np.empty(256, dtype=np.float32)
    for b in range(256):
        sign = -1.0 if b & 0x80 else 1.0
        e = (b >> mbits) & ((1 << ebits) - 1)
        m = b & ((1 << mbits) - 1)
        if dtype == "F8_E4M3" and e == 0xF and m == 0x7:
            out[b] = np.nan
        elif dtype == "F8_E5M2" and e == 0x1F:
            out[b] = sign * np.inf if m == 0 else np.nan
        elif e == 0:
            out[b] = sign * (m / (1 << mbits)) * 2.0 ** (1 - bias)
        else:
            out[b] = sign * (1 + m / (1 << mbits)) * 2.0 ** (e - bias)
    return out


# --------------------------------------------------------------------------------------------- GGUF

_GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                12: "<d"}
_GGUF_STRING, _GGUF_ARRAY = 8, 9
#: Arrays longer than this are summarised (type and length), not materialised.
_GGUF_ARRAY_KEEP = 64


@dataclass(frozen=True)
class GGUFArray:
    """A long GGUF metadata array, summarised: its element type code and its length."""

    type: int
    """GGUF value type of the elements (8 = string)."""
    length: int
    """Number of elements."""


@dataclass(frozen=True)
class GGUFHeader:
    """What a GGUF file's header says."""

    version: int
    """GGUF format version."""
    metadata: dict[str, Any]
    """Key/value metadata; long arrays (tokenizer vocabularies) are :class:`GGUFArray` summaries."""
    tensors: list[TensorInfo]
    """Tensor infos (names mapped to Hugging Face names), sorted by GGUF name."""
    architecture: str | None
    """``general.architecture``."""


def read_gguf(path: Path, *, rel: str | None = None) -> GGUFHeader:
    """Parse a GGUF header without reading tensor data. Raises :class:`FormatError` if damaged or truncated."""
    rel = rel or path.name
    try:
        size = path.stat().st_size
        if size < 24:
            raise FormatError(f"{rel} is truncated: too short for a GGUF header")
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _parse_gguf(mm, size, path, rel)
    except PermissionError as exc:
        raise FormatError(f"permission denied: {rel}") from exc
    except (struct.error, IndexError) as exc:
        raise FormatError(f"{rel} is truncated or damaged: its GGUF header ends early") from exc
    except OSError as exc:
        raise FormatError(f"cannot read {rel}: {exc.strerror or exc}") from exc


def _parse_gguf(mm: mmap.mmap, size: int, path: Path, rel: str) -> GGUFHeader:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    if mm[:4] != b"GGUF":
        raise FormatError(f"{rel} is not a GGUF file (bad magic)")
    (version,) = struct.unpack_from("<I", mm, 4)
    if version not in (2, 3):
        raise FormatError(f"{rel}: GGUF version {version} is not supported (2 and 3 are)")
    n_tensors, n_kv = struct.unpack_from("<QQ", mm, 8)
    # Each tensor info needs at least 24 bytes and each key/value 13: bound counts by the file size.
    if n_tensors * 24 > size or n_kv * 13 > size:
        raise FormatError(f"{rel} is truncated or damaged: GGUF header counts exceed the file size")
    pos = 24

    def read_str() -> str:
        nonlocal pos
        (n,) = struct.unpack_from("<Q", mm, pos)
        if pos + 8 + n > size:
            raise IndexError
        s = mm[pos + 8:pos + 8 + n].decode("utf-8", errors="replace")
        pos += 8 + n
        return s

    def read_value(t: int) -> Any:
        nonlocal pos
        if t == _GGUF_STRING:
            return read_str()
        if t in _GGUF_SCALAR:
            fmt = _GGUF_SCALAR[t]
            (v,) = struct.unpack_from(fmt, mm, pos)
            pos += struct.calcsize(fmt)
            return v
        if t == _GGUF_ARRAY:
            (it, count) = struct.unpack_from("<IQ", mm, pos)
            pos += 12
            if count <= _GGUF_ARRAY_KEEP:
                return [read_value(it) for _ in range(count)]
            if it in _GGUF_SCALAR:
                pos += count * struct.calcsize(_GGUF_SCALAR[it])
                if pos > size:
                    raise IndexError
            elif it == _GGUF_STRING:
                for _ in range(count):
                    (n,) = struct.unpack_from("<Q", mm, pos)
                    pos += 8 + n
                if pos > size:
                    raise IndexError
            else:
                for _ in range(count):
                    read_value(it)
            return GGUFArray(type=it, length=count)
        raise FormatError(f"{rel}: unknown GGUF metadata type {t} (damaged file?)")

    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = read_str()
        (t,) = struct.unpack_from("<I", mm, pos)
        pos += 4
        meta[key] = read_value(t)
    arch = meta.get("general.architecture") if isinstance(meta.get("general.architecture"), str) else None
    raw: list[tuple[str, tuple[int, ...], int, int]] = []
    for _ in range(n_tensors):
        name = read_str()
        (nd,) = struct.unpack_from("<I", mm, pos)
        if nd > 8:
            raise FormatError(f"{rel}: tensor {name!r} has {nd} dimensions (damaged file?)")
        dims = struct.unpack_from(f"<{nd}Q", mm, pos + 4)
        pos += 4 + 8 * nd
        ttype, toff = struct.unpack_from("<IQ", mm, pos)
        pos += 12
        raw.append((name, dims, ttype, toff))
    align = meta.get("general.alignment", 32)
    if not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise FormatError(f"{rel}: invalid general.alignment {align!r}")
    data_start = pos + (-pos % align)
    transforms = _gguf_transforms(arch, meta)
    names = [r[0] for r in raw]
    if len(set(names)) != len(names):
        raise FormatError(f"{rel}: duplicate tensor names in GGUF header")
    out: list[TensorInfo] = []
    for name, dims, ttype, toff in sorted(raw):
        try:
            qt = GGMLQuantizationType(ttype)
        except ValueError as exc:
            raise FormatError(f"{rel}: tensor {name!r} has unknown GGML type {ttype}") from exc
        block, tsize = GGML_QUANT_SIZES[qt]
        numel = 1
        for d in dims:
            numel *= d
        if dims and dims[0] % block:
            raise FormatError(f"{rel}: tensor {name!r} row of {dims[0]} is not a multiple of {qt.name} blocks")
        nbytes = numel * tsize // block
        if data_start + toff + nbytes > size:
            raise FormatError(f"{rel} is truncated: tensor {name!r} ends at byte {data_start + toff + nbytes} but "
                              f"the file has {size}")
        hf = gguf_to_hf_name(name, arch) if arch else name
        out.append(TensorInfo(name=name, hf_name=hf, dtype=qt.name, shape=tuple(int(d) for d in reversed(dims)),
                              file=rel, nbytes=nbytes, location=path.absolute(), layout="gguf",
                              offset=data_start + toff, transform=transforms(name)))
    return GGUFHeader(version=version, metadata=meta, tensors=out, architecture=arch)


def _gguf_transforms(arch: str | None, meta: dict[str, Any]) -> Any:
    """The conversion llama.cpp applied to a tensor, to undo on load (None when the values are as in HF)."""

    def none(name: str) -> tuple[str, int, int] | None:
        return None

    if arch == "llama":
        n_head = meta.get("llama.attention.head_count")
        n_kv = meta.get("llama.attention.head_count_kv", n_head)
        if not isinstance(n_head, int) or not isinstance(n_kv, int):
            return none

        def llama(name: str) -> tuple[str, int, int] | None:
            if ".attn_q." in name:
                return ("unpermute", n_head, n_head)
            if ".attn_k." in name:
                return ("unpermute", n_head, n_kv)
            return None

        return llama
    if arch in ("gemma", "gemma2", "gemma3"):
        return lambda name: ("minus_one", 0, 0) if name.endswith("norm.weight") else None
    return none


def _unpermute(arr: np.ndarray, n_head: int, n_kv: int) -> np.ndarray:
    """Undo llama.cpp's rotary row permutation of a Q or K projection."""
    heads = n_kv if n_kv != n_head else n_head
    if arr.ndim == 0 or arr.shape[0] % (heads * 2):
        return arr
    dim = arr.shape[0] // heads // 2
    return arr.reshape(heads, dim, 2, *arr.shape[1:]).swapaxes(2, 1).reshape(arr.shape)


def _gguf_decode(buf: np.ndarray, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    import numpy as np
    from gguf.constants import GGMLQuantizationType
    from gguf.quants import dequantize, quant_shape_to_byte_shape

    qt = GGMLQuantizationType[dtype]
    plain = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I8": np.int8, "I16": np.int16,
             "I32": np.int32, "I64": np.int64}
    if dtype in plain:
        return np.frombuffer(buf, dtype=plain[dtype]).reshape(shape).copy()
    data = np.asarray(buf).reshape(quant_shape_to_byte_shape(shape, qt))
    return np.asarray(dequantize(data, qt), dtype=np.float32).reshape(shape)


@lru_cache(maxsize=32)
def _gguf_reverse_table(arch: str) -> dict[str, tuple[str, ...]]:
    """GGUF name template -> HF name templates, in gguf's table order, for one architecture."""
    from gguf.constants import MODEL_ARCH_NAMES, MODEL_TENSORS, TENSOR_NAMES
    from gguf.tensor_mapping import TensorNameMap

    arch_id = next((k for k, v in MODEL_ARCH_NAMES.items() if v == arch), None)
    if arch_id is None:
        return {}
    block = dict(TensorNameMap.block_mappings_cfg)
    block.update(TensorNameMap.arch_block_mappings_cfg.get(arch_id, {}))
    table: dict[str, tuple[str, ...]] = {}
    for tensor in MODEL_TENSORS[arch_id]:
        cands = tuple(TensorNameMap.mappings_cfg.get(tensor, ())) + tuple(block.get(tensor, ()))
        if cands:
            table[TENSOR_NAMES[tensor]] = tuple(dict.fromkeys(cands))
    return table


# --------------------------------------------------------------------------------------------- torch archives


class _Mark:
    pass


_MARK = _Mark()


@dataclass
class _Global:
    module: str
    name: str


@dataclass
class _Call:
    func: Any
    args: Any
    state: Any = None


@dataclass
class _Persistent:
    pid: Any


class _SymDict:
    """A dict built by the pickle, with keys kept in order (keys may be unhashable symbols)."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, Any]] = []


class PickleWalkError(Exception):
    """The pickle uses constructs the symbolic walk does not follow."""


def walk_pickle(stream: io.BufferedIOBase | io.BytesIO, *, max_ops: int = 5_000_000) -> Any:
    """Evaluate a pickle *symbolically*: globals, calls and persistent ids become inert records.

    Nothing is imported or called; the result is plain data mixed with :class:`_Global`, :class:`_Call` and
    :class:`_Persistent` records. Raises :class:`PickleWalkError` on constructs it does not model.
    """
    stack: list[Any] = []
    memo: dict[int, Any] = {}

    def pop_mark() -> list[Any]:
        for i in range(len(stack) - 1, -1, -1):
            if stack[i] is _MARK:
                items = stack[i + 1:]
                del stack[i:]
                return items
        raise PickleWalkError("MARK missing")

    n = 0
    try:
        for op, arg, _pos in pickletools.genops(stream):
            n += 1
            if n > max_ops:
                raise PickleWalkError("pickle too long")
            name = op.name
            if name in ("PROTO", "FRAME"):
                continue
            if name == "STOP":
                return stack.pop() if stack else None
            if name == "MARK":
                stack.append(_MARK)
            elif name == "POP":
                stack.pop()
            elif name == "POP_MARK":
                pop_mark()
            elif name == "DUP":
                stack.append(stack[-1])
            elif name in ("INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
                          "STRING", "BINSTRING", "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
                          "BYTEARRAY8", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"):
                stack.append(arg)
            elif name == "NONE":
                stack.append(None)
            elif name == "NEWTRUE":
                stack.append(True)
            elif name == "NEWFALSE":
                stack.append(False)
            elif name in ("EMPTY_LIST",):
                stack.append([])
            elif name == "EMPTY_TUPLE":
                stack.append(())
            elif name == "EMPTY_DICT":
                stack.append(_SymDict())
            elif name == "EMPTY_SET":
                stack.append([])
            elif name == "LIST":
                stack.append(list(pop_mark()))
            elif name == "TUPLE":
                stack.append(tuple(pop_mark()))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                k = int(name[-1])
                items = stack[-k:]
                del stack[-k:]
                stack.append(tuple(items))
            elif name == "DICT":
                items = pop_mark()
                d = _SymDict()
                d.items = list(zip(items[::2], items[1::2]))
                stack.append(d)
            elif name == "FROZENSET":
                stack.append(list(pop_mark()))
            elif name == "APPEND":
                v = stack.pop()
                if isinstance(stack[-1], list):
                    stack[-1].append(v)
            elif name in ("APPENDS", "ADDITEMS"):
                items = pop_mark()
                if isinstance(stack[-1], list):
                    stack[-1].extend(items)
            elif name == "SETITEM":
                v = stack.pop()
                k = stack.pop()
                _setitem(stack[-1], k, v)
            elif name == "SETITEMS":
                items = pop_mark()
                for k, v in zip(items[::2], items[1::2]):
                    _setitem(stack[-1], k, v)
            elif name in ("GLOBAL", "INST"):
                module, _, gname = str(arg).partition(" ")
                if name == "INST":
                    stack.append(_Call(_Global(module, gname), tuple(pop_mark())))
                else:
                    stack.append(_Global(module, gname))
            elif name == "STACK_GLOBAL":
                gname = stack.pop()
                module = stack.pop()
                stack.append(_Global(str(module), str(gname)))
            elif name == "REDUCE":
                args = stack.pop()
                func = stack.pop()
                stack.append(_reduce(func, args))
            elif name == "NEWOBJ":
                args = stack.pop()
                cls = stack.pop()
                stack.append(_reduce(cls, args))
            elif name == "NEWOBJ_EX":
                _kw = stack.pop()
                args = stack.pop()
                cls = stack.pop()
                stack.append(_reduce(cls, args))
            elif name == "OBJ":
                items = pop_mark()
                stack.append(_Call(items[0], tuple(items[1:])) if items else None)
            elif name == "BUILD":
                state = stack.pop()
                if isinstance(stack[-1], _Call):
                    stack[-1].state = state
            elif name == "PERSID":
                stack.append(_Persistent(arg))
            elif name == "BINPERSID":
                stack.append(_Persistent(stack.pop()))
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[int(arg)] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[int(arg)])
            else:  # EXT*, NEXT_BUFFER, READONLY_BUFFER and anything newer
                raise PickleWalkError(f"opcode {name} not followed")
    except PickleWalkError:
        raise
    except (ValueError, IndexError, KeyError, TypeError, EOFError, struct.error) as exc:
        raise PickleWalkError(f"malformed pickle: {exc}") from exc
    raise PickleWalkError("pickle ends without STOP")


def _setitem(target: Any, k: Any, v: Any) -> None:
    if isinstance(target, _SymDict):
        target.items.append((k, v))
    elif isinstance(target, _Call) and isinstance(target.state, _SymDict):
        target.state.items.append((k, v))


def _reduce(func: Any, args: Any) -> Any:
    if isinstance(func, _Global) and (func.module, func.name) == ("collections", "OrderedDict") and not args:
        return _SymDict()
    return _Call(func, args)


@dataclass(frozen=True)
class _TorchEntry:
    key: tuple[str, ...]
    dtype: str
    shape: tuple[int, ...]
    storage: str
    offset: int
    stride: tuple[int, ...]


def _collect_tensors(obj: Any, key: tuple[str, ...], out: list[_TorchEntry], depth: int = 0) -> None:
    if depth > 50:
        return
    if isinstance(obj, _SymDict):
        for k, v in obj.items:
            _collect_tensors(v, key + (str(k),), out, depth + 1)
    elif isinstance(obj, (list, tuple)) and key:
        for i, v in enumerate(obj):
            _collect_tensors(v, key + (str(i),), out, depth + 1)
    elif isinstance(obj, _Call) and isinstance(obj.func, _Global):
        entry = _tensor_entry(obj, key)
        if entry is not None:
            out.append(entry)


def _tensor_entry(call: _Call, key: tuple[str, ...]) -> _TorchEntry | None:
    fn = (call.func.module, call.func.name)
    args = call.args if isinstance(call.args, tuple) else ()
    if fn == ("torch._utils", "_rebuild_parameter") and args and isinstance(args[0], _Call):
        return _tensor_entry(args[0], key)
    if fn == ("torch._tensor", "_rebuild_from_type_v2") and len(args) >= 3 and isinstance(args[0], _Global):
        return _tensor_entry(_Call(args[0], args[2]), key)
    if fn not in (("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor")) or len(args) < 4:
        return None
    storage, offset, size, stride = args[:4]
    if not isinstance(storage, _Persistent) or not isinstance(storage.pid, tuple) or len(storage.pid) < 3:
        return None
    stype = storage.pid[1]
    dtype = TORCH_STORAGE_DTYPE.get(stype.name, stype.name) if isinstance(stype, _Global) else "?"
    if not isinstance(size, tuple) or not all(isinstance(d, int) for d in size):
        return None
    return _TorchEntry(key=key, dtype=dtype, shape=tuple(size), storage=str(storage.pid[2]),
                       offset=int(offset) if isinstance(offset, int) else 0,
                       stride=tuple(stride) if isinstance(stride, tuple) else ())


def torch_entries(path: Path, fmt: Format) -> list[_TorchEntry]:
    """Tensor records of a torch archive from its pickle, without unpickling. Raises PickleWalkError/FormatError."""
    if fmt is Format.TORCH_ZIP:
        # The record torch reads, found the way torch finds it (assay.model.zipread: miniz semantics).
        from assay.model.zipread import ZipReadError, open_member

        try:
            with path.open("rb") as raw, mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                data = open_member(mm, "data.pkl", limit=_MAX_DATA_PKL)
        except ZipReadError as exc:
            raise FormatError(f"{path.name}: {exc.message}") from exc
        except (OSError, ValueError) as exc:
            raise FormatError(f"{path.name}: cannot read the archive ({exc})") from exc
        root = walk_pickle(io.BytesIO(data))
    else:
        with path.open("rb") as fh:
            first = walk_pickle(fh)
            # Legacy torch.save: magic number, protocol, sys info, then the object (then raw storages).
            if isinstance(first, int) and first == 0x1950A86A20F9469CFC6C:
                walk_pickle(fh)
                walk_pickle(fh)
                root = walk_pickle(fh)
            else:
                root = first
    out: list[_TorchEntry] = []
    _collect_tensors(root, (), out)
    return out


def torch_tensors(path: Path, *, fmt: Format, rel: str, allow_pickle: bool = False) -> list[TensorInfo]:
    """TensorInfos of a torch archive (from the symbolic walk); data needs ``allow_pickle``."""
    try:
        entries = torch_entries(path, fmt)
    except PickleWalkError as exc:
        raise FormatError(f"{rel}: cannot list tensors of this torch archive ({exc})") from exc
    out = []
    for e in entries:
        numel = 1
        for d in e.shape:
            numel *= d
        out.append(TensorInfo(name=".".join(e.key), hf_name=".".join(e.key), dtype=e.dtype, shape=e.shape,
                              file=rel, nbytes=numel * SAFETENSORS_ITEMSIZE.get(e.dtype, 0),
                              location=path.absolute(), layout="torch", key=e.key, allow_pickle=allow_pickle))
    return sorted(out, key=lambda t: t.name)


_torch_lock = threading.Lock()


@lru_cache(maxsize=2)
def _torch_load_cached(path: str, mtime_ns: int) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as exc:
        if "mmap" not in str(exc):
            raise FormatError(f"{os.path.basename(path)}: torch.load(weights_only=True) refused it: "
                              f"{str(exc).splitlines()[0]}") from exc
    except Exception as exc:  # noqa: BLE001 - weights_only refusals and damaged archives alike
        raise FormatError(f"{os.path.basename(path)}: torch.load(weights_only=True) refused it: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
    # Legacy (non-zip) archives cannot be memory-mapped: they are read whole, still with weights_only.
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise FormatError(f"{os.path.basename(path)}: torch.load(weights_only=True) refused it: "
                          f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc


def _torch_load(path: str, mtime_ns: int) -> Any:
    with _torch_lock:
        return _torch_load_cached(path, mtime_ns)


# --------------------------------------------------------------------------------------------- weight files


def _weight_files(target: ModelRef | Path | str) -> list[tuple[Path, Path, Format]]:
    if isinstance(target, ModelRef):
        from assay.model.inventory import weight_files

        return [(target.root, rel, fmt) for rel, fmt in weight_files(target)]
    path = Path(target)
    if path.is_dir():
        from assay.model.inventory import weight_files
        from assay.model.ref import resolve

        ref = resolve(path)
        return [(ref.root, rel, fmt) for rel, fmt in weight_files(ref)]
    fmt = detect(path)
    return [(path.parent, Path(path.name), fmt)]
