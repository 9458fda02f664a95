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
import re
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assay.errors import FormatError, ModelError
from assay.model.formats import Format, detect
from assay.model.gguf_file import read_gguf_file
from assay.model.problems import problem_message
from assay.model.safetensors_file import DTYPE_BITS, read_safetensors
from assay.model.pickle_vm import (TORCH_LEGACY_MAGIC, PickleFormatError, TorchTensorRecord, evaluate_pickle,
                                   torch_tensor_records)

if TYPE_CHECKING:
    import numpy as np

#: safetensors dtype -> bytes per element (as in the safetensors spec).
SAFETENSORS_ITEMSIZE: dict[str, int] = {k: v // 8 for k, v in DTYPE_BITS.items() if v % 8 == 0}
_NUMPY_DTYPE = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
                "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?", "C64": "<c8"}
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
            data: bytes = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
            return data
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
            out: np.ndarray = t.detach().contiguous().numpy()
            return out
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
    """Parse a safetensors header: (``__metadata__``, tensors sorted by name).

    The header is read by :mod:`assay.model.safetensors_file` (the reader the scanner uses, with the
    safetensors library's rules); a file the library would refuse raises :class:`FormatError`.
    """
    rel = rel or path.name
    hdr = read_safetensors(path, rel=rel)
    bad = next((p for p in hdr.problems if p.fatal), None)
    if bad is not None:
        raise FormatError(problem_message(rel, bad.message, bad.location))
    if hdr.limit is not None:
        raise FormatError(f"{rel}: {hdr.limit}")
    where = path.absolute()
    return hdr.metadata, [TensorInfo(name=e.name, hf_name=e.name, dtype=e.dtype, shape=e.shape, file=rel,
                                     nbytes=e.nbytes, location=where, layout="safetensors",
                                     offset=hdr.data_start + e.begin) for e in hdr.entries]


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
    """Parse a GGUF header without reading tensor data. Raises :class:`FormatError` if damaged or truncated.

    The header is read by :mod:`assay.model.gguf_file`, the reader the scanner uses.
    """
    rel = rel or path.name
    g = read_gguf_file(path, rel=rel)
    reason = g.fatal()
    if reason is not None:
        raise FormatError(problem_message(rel, reason, None))
    if g.endian != "<":  # the data is big-endian too: decoding it as little-endian would give wrong numbers
        raise FormatError(f"{rel}: a big-endian GGUF file; assay reads the tensors of little-endian files only")
    arch = g.architecture
    transforms = _gguf_transforms(arch, g.metadata)
    where = path.absolute()
    out = [TensorInfo(name=t.name, hf_name=gguf_to_hf_name(t.name, arch) if arch else t.name,
                      dtype=t.type_name or str(t.type), shape=t.shape, file=rel, nbytes=t.nbytes or 0,
                      location=where, layout="gguf", offset=g.data_start + t.offset, transform=transforms(t.name))
           for t in sorted(g.tensors, key=lambda t: t.name)]
    return GGUFHeader(version=g.version, metadata=g.metadata, tensors=out, architecture=arch)


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


class PickleWalkError(Exception):
    """The pickle of a torch archive cannot be followed symbolically (malformed, or beyond a resource limit)."""


def torch_entries(path: Path, fmt: Format) -> list[TorchTensorRecord]:
    """Tensor records of a torch archive from its pickle, without unpickling. Raises PickleWalkError/FormatError.

    The pickle runs on the scanner's symbolic machine (:func:`assay.model.pickle_vm.evaluate_pickle`), so the
    tensor reader and the scanner read the same opcodes the same way.
    """
    try:
        root = _torch_root(path, fmt)
        return torch_tensor_records(root)
    except PickleFormatError as exc:
        raise PickleWalkError(str(exc)) from exc


def _torch_root(path: Path, fmt: Format) -> Any:
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
        return evaluate_pickle(io.BytesIO(data))
    else:
        with path.open("rb") as fh:
            first = evaluate_pickle(fh)
            # Legacy torch.save: magic number, protocol, sys info, then the object (then raw storages).
            if type(first) is int and first == TORCH_LEGACY_MAGIC:
                evaluate_pickle(fh)
                evaluate_pickle(fh)
                return evaluate_pickle(fh)
            return first


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


