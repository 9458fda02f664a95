"""What a model is, from its headers alone: files by detected format and role, parameters, dtypes, card, adapter.

No tensor data is read: parameter counts come from safetensors headers, GGUF tensor infos and a symbolic
walk of torch pickles (nothing is unpickled), so inspecting a 70B sharded folder takes well under a second.

    >>> inv = open_model("./my-model")
    >>> inv.architecture, inv.parameters, inv.dtypes, inv.tier
    ('LlamaForCausalLM', 1235814400, {'BF16': 1235814400}, 'edge')
    >>> inventory_document(inv)["schema"]
    'assay.inventory/1'

A file that cannot be read (permission denied, truncated) is listed in :attr:`Inventory.unreadable` with the
reason, and the rest is still described. A reference with nothing usable (its only weight file is damaged,
a malformed ``config.json``, an index naming a missing shard) raises :class:`~assay.errors.FormatError`.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from assay.errors import AssayError, FormatError, ModelError
from assay.model.formats import WEIGHT_FORMATS, Format, detect
from assay.model.ref import ModelRef, link_target, resolve
from assay.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from assay.model.tensors import TensorInfo

SCHEMA = "assay.inventory/1"
#: Tier bounds in parameters: edge up to ~3B (3.2B models included), mid up to ~70B (72B included).
EDGE_MAX, MID_MAX = 3_500_000_000, 75_000_000_000
#: Formats whose headers assay reads for parameter counts and tensors.
HEADER_FORMATS = (Format.SAFETENSORS, Format.TORCH_ZIP, Format.PICKLE, Format.GGUF)
MEMORY_NOTE = ("weights only, at 16/8/4 bits per parameter; loading needs roughly 10-20% more for activations, "
               "KV cache and runtime buffers")

_TOKENIZER_NAMES = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "vocab.txt",
                    "merges.txt", "special_tokens_map.json", "added_tokens.json", "spiece.model",
                    "sentencepiece.bpe.model", "tokenizer.tiktoken", "qwen.tiktoken"}
_TRAINING_NAMES = {"trainer_state.json", "training_args.bin", "optimizer.pt", "optimizer.bin", "scheduler.pt",
                   "scaler.pt", "training_args.json", "all_results.json", "train_results.json", "eval_results.json"}
_CARD_NAMES = {"readme.md", "readme", "model_card.md", "modelcard.md"}
_WEIGHT_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".ckpt", ".onnx", ".h5", ".hdf5", ".msgpack",
                    ".npz", ".npy", ".pkl", ".pickle", ".keras", ".joblib", ".ggml", ".mlmodel", ".tflite")


@dataclass(frozen=True)
class FileEntry:
    """One file of the model."""

    path: str
    """Path relative to the model root, with forward slashes."""
    size: int
    """Size in bytes (of the target, for a symbolic link; -1 if it cannot be known)."""
    format: Format
    """Format detected from the content (never from the name)."""
    role: str
    """What the file is for: weights, config, tokenizer, chat_template, card, adapter, code, index, training,
    signature or other (from its name and content)."""
    error: str | None = None
    """Why the file could not be read or used, or None."""


@dataclass(frozen=True)
class Inventory:
    """What a model reference holds, from headers and small text files only."""

    ref: ModelRef
    """The resolved reference."""
    files: tuple[FileEntry, ...]
    """Every file, sorted by path."""
    architecture: str | None
    """``config.json`` ``architectures[0]`` (``LlamaForCausalLM``) or GGUF ``general.architecture``."""
    model_type: str | None
    """``config.json`` ``model_type`` (``llama``) or the GGUF architecture."""
    parameters: int | None
    """Parameters in the weight files (tied tensors counted once); None when no header could be counted."""
    dtypes: dict[str, int]
    """Parameters per storage dtype (``{"BF16": n}``; GGUF quantisations by GGML name, ``Q4_1``)."""
    context_length: int | None
    """Maximum context in tokens (``max_position_embeddings`` or GGUF ``<arch>.context_length``)."""
    vocab_size: int | None
    """Vocabulary size from the config or the GGUF header."""
    chat_template: bool
    """A chat template is present (tokenizer_config.json, chat_template.jinja/json or GGUF metadata)."""
    card: dict[str, Any]
    """Model card metadata (README front matter): base_model, base_model_relation, license, datasets, ..."""
    adapter: dict[str, Any] | None
    """PEFT adapter info (base_model_name_or_path, r, target_modules, ...), None for a full model."""
    config: dict[str, Any] | None
    """The parsed ``config.json``, if any."""
    memory: dict[str, int]
    """Bytes of weights at ``16bit``, ``8bit``, ``4bit``, and ``stored`` (as the files hold them)."""
    tier: str
    """Size tier: ``edge`` (up to ~3B parameters), ``mid`` (up to ~70B), ``large``, or ``unknown``."""
    weights_format: str | None
    """Format of the weight files counted (``safetensors``, ``gguf``, ``torch-zip``, ``pickle``, ...)."""
    unreadable: tuple[FileEntry, ...]
    """Files that could not be read or used, each with its ``error``."""
    weight_files: tuple[str, ...] = ()
    """The weight files the figures come from (shards of one checkpoint, or the adapter's files)."""
    parameters_complete: bool = True
    """False when some weight file could not be counted (the figures then cover only the others)."""
    gguf: dict[str, Any] | None = None
    """Scalar GGUF metadata (``general.*``, ``<arch>.*``) for a GGUF model."""
    notes: tuple[str, ...] = ()
    """Remarks for the user (several GGUF files, files not counted, ...)."""
    tensor_count: int = 0
    """Number of tensors in the counted weight files."""


# --------------------------------------------------------------------------------------------- public API


def open_model(spec: str | Path | ModelRef, *, revision: str | None = None, download: bool = False,
               progress: Progress = NULL_PROGRESS) -> Inventory:
    """Resolve ``spec`` and build its :class:`Inventory` from headers alone.

    Raises :class:`~assay.errors.ModelError` / :class:`~assay.errors.FormatError` (one line, exit 2) for a
    reference that cannot be resolved or holds nothing usable.
    """
    ref = spec if isinstance(spec, ModelRef) else resolve(spec, revision=revision, download=download)
    return _Builder(ref, progress).build()


def weight_files(ref: ModelRef) -> list[tuple[Path, Format]]:
    """The weight files of a reference that the inventory counts (relative path, format), in sorted order."""
    inv = open_model(ref)
    by_path = {f.path: f.format for f in inv.files}
    return [(Path(p), by_path[p]) for p in inv.weight_files]


def inventory_document(inv: Inventory) -> dict[str, Any]:
    """The ``assay.inventory/1`` JSON document of an inventory."""
    return {
        "schema": SCHEMA,
        "model": inv.ref.name,
        "spec": inv.ref.spec,
        "root": inv.ref.root.as_posix(),
        "single_file": inv.ref.single_file,
        "hf_id": inv.ref.hf_id,
        "revision": inv.ref.revision,
        "architecture": inv.architecture,
        "model_type": inv.model_type,
        "parameters": inv.parameters,
        "parameters_complete": inv.parameters_complete,
        "tensor_count": inv.tensor_count,
        "dtypes": dict(inv.dtypes),
        "weights_format": inv.weights_format,
        "weight_files": list(inv.weight_files),
        "context_length": inv.context_length,
        "vocab_size": inv.vocab_size,
        "chat_template": inv.chat_template,
        "card": inv.card,
        "adapter": inv.adapter,
        "memory": dict(inv.memory),
        "memory_note": MEMORY_NOTE,
        "tier": inv.tier,
        "gguf": inv.gguf,
        "files": [{"path": f.path, "size": f.size, "format": f.format.value, "role": f.role, "error": f.error}
                  for f in inv.files],
        "unreadable": [{"path": f.path, "role": f.role, "error": f.error} for f in inv.unreadable],
        "notes": list(inv.notes),
    }


def file_role(path: str, fmt: Format) -> str:
    """The role of a file from its name and detected format."""
    p = PurePosixPath(path)
    name = p.name.lower()
    if fmt is Format.PYTHON or name.endswith(".py"):
        return "code"
    if name in _CARD_NAMES:
        return "card"
    if name == "adapter_config.json" or name.startswith("adapter_model."):
        return "adapter"
    if name in _TRAINING_NAMES or re.fullmatch(r"rng_state(_\d+)?\.pth", name):
        return "training"
    if name.endswith(".index.json"):
        return "index"
    if name.endswith((".sig", ".sigstore", ".sigstore.json")):
        return "signature"
    if name in _TOKENIZER_NAMES or fmt is Format.SENTENCEPIECE:
        return "tokenizer"
    if name.startswith("chat_template") or name.endswith(".jinja") or fmt is Format.JINJA:
        return "chat_template"
    if name.endswith("config.json") and fmt is not Format.SAFETENSORS:
        return "config"
    if fmt in WEIGHT_FORMATS or name.endswith(_WEIGHT_SUFFIXES):
        return "weights"
    return "other"


def size_tier(parameters: int | None) -> str:
    """``edge`` up to ~3B parameters, ``mid`` up to ~70B, ``large`` above, ``unknown`` if not counted."""
    if parameters is None:
        return "unknown"
    if parameters <= EDGE_MAX:
        return "edge"
    if parameters <= MID_MAX:
        return "mid"
    return "large"


def memory_estimate(parameters: int | None, stored: int) -> dict[str, int]:
    """Bytes of weights at 16, 8 and 4 bits per parameter, and as stored."""
    if parameters is None:
        return {"stored": stored}
    return {"16bit": parameters * 2, "8bit": parameters, "4bit": (parameters + 1) // 2, "stored": stored}


# --------------------------------------------------------------------------------------------- building


@dataclass
class _Count:
    parameters: int = 0
    dtypes: dict[str, int] = field(default_factory=dict)
    stored: int = 0
    tensors: int = 0
    counted_any: bool = False


class _Builder:
    def __init__(self, ref: ModelRef, progress: Progress) -> None:
        self.ref = ref
        self.progress = progress
        self.entries: dict[str, FileEntry] = {}
        self.notes: list[str] = []
        self.complete = True
        self.gguf_meta: dict[str, Any] | None = None
        self.gguf_arch: str | None = None
        self.read_failed: set[str] = set()
        """Files that could not be opened or read at all (as opposed to: read, and found unusable)."""

    # -- files

    def _scan_files(self) -> None:
        self.progress.start("inspecting", total=len(self.ref.files))
        for rel in self.ref.files:
            self.entries[rel.as_posix()] = self._entry(rel)
            self.progress.advance("inspecting")
        self.progress.finish("inspecting")

    def _entry(self, rel: Path) -> FileEntry:
        entry = self._detect_entry(rel)
        if entry.error and entry.format is Format.UNKNOWN and not entry.error.startswith("content is"):
            self.read_failed.add(entry.path)
        return entry

    def _detect_entry(self, rel: Path) -> FileEntry:
        path = self.ref.root / rel
        posix = rel.as_posix()
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            err = "broken symbolic link" if path.is_symlink() else "file vanished while inspecting"
            return FileEntry(posix, -1, Format.UNKNOWN, file_role(posix, Format.UNKNOWN), err)
        except OSError as exc:
            return FileEntry(posix, -1, Format.UNKNOWN, file_role(posix, Format.UNKNOWN),
                             f"cannot read: {exc.strerror or exc}")
        if path.is_symlink():
            _target, inside = link_target(self.ref, rel)
            if not inside:  # never read through a link that leaves the model (the scanner reports it)
                return FileEntry(posix, -1, Format.UNKNOWN, file_role(posix, Format.UNKNOWN),
                                 "symbolic link to a path outside the model folder (not read)")
        if path.is_dir():  # a linked folder that ref.list_files did not follow (a cycle)
            return FileEntry(posix, size, Format.UNKNOWN, "other", "symbolic link to a folder (not followed)")
        if not path.is_file():  # a FIFO would block the reader forever; a device is not a model file
            return FileEntry(posix, -1, Format.UNKNOWN, file_role(posix, Format.UNKNOWN),
                             "not a regular file (FIFO, socket or device)")
        try:
            fmt = detect(path)
        except FormatError as exc:
            msg = exc.message.replace(str(path), posix)
            if msg.startswith("permission denied"):
                msg = "permission denied"
            return FileEntry(posix, size, Format.UNKNOWN, file_role(posix, Format.UNKNOWN), msg)
        role = file_role(posix, fmt)
        error = None
        if role == "weights" and fmt not in WEIGHT_FORMATS:
            error = f"content is {fmt.value}, not a known weight format"
        return FileEntry(posix, size, fmt, role, error)

    def _set_error(self, path: str, error: str) -> None:
        self.entries[path] = replace(self.entries[path], error=error)

    # -- small JSON files

    def _json_file(self, rel: str, *, fatal: bool) -> Any:
        entry = self.entries.get(rel)
        if entry is None:
            return None
        if entry.error:
            if fatal:
                raise FormatError(f"{rel}: {entry.error}")
            return None
        try:
            with (self.ref.root / rel).open("rb") as fh:
                data = json.loads(fh.read(64 * 1024 * 1024))
        except (ValueError, UnicodeDecodeError) as exc:
            msg = f"{rel} is not valid JSON ({exc})"
            if fatal:
                raise FormatError(msg) from exc
            self._set_error(rel, "not valid JSON")
            return None
        except OSError as exc:
            if fatal:
                raise FormatError(f"cannot read {rel}: {exc.strerror or exc}") from exc
            self._set_error(rel, f"cannot read: {exc.strerror or exc}")
            return None
        if not isinstance(data, dict):
            if fatal:
                raise FormatError(f"{rel} is not a JSON object")
            self._set_error(rel, "not a JSON object")
            return None
        return data

    # -- weights

    def _candidates(self) -> list[FileEntry]:
        return [e for e in self.entries.values() if e.role == "weights"]

    def _select_weights(self, config_adapter: dict[str, Any] | None) -> tuple[list[str], Format | None]:
        weights = self._candidates()
        usable = [e for e in weights if e.error is None and e.format in HEADER_FORMATS]
        if not usable and config_adapter is not None:
            adapter_w = [e for e in self.entries.values()
                         if e.role == "adapter" and e.format in HEADER_FORMATS and e.error is None]
            if adapter_w:
                usable = adapter_w
        if not usable:
            others = [e for e in weights if e.error is None and e.format in WEIGHT_FORMATS]
            if others:
                fmt = others[0].format
                self.notes.append(f"weights are {fmt.value}: assay counts parameters of safetensors, GGUF and "
                                  "torch archives only")
                return [e.path for e in others if e.format is fmt], fmt
            broken = [e for e in weights if e.error]
            if broken:
                e = broken[0]
                line = self._error_line(e.path, e.error)
                raise FormatError(line if len(broken) == 1 else
                                  f"no readable weight file: {line} (and {len(broken) - 1} more)")
            return [], None
        order = {Format.SAFETENSORS: 0, Format.TORCH_ZIP: 1, Format.PICKLE: 1, Format.GGUF: 2}
        best = min(order[e.format] for e in usable)
        group = [e for e in usable if order[e.format] == best]
        depth = min(len(PurePosixPath(e.path).parts) for e in group)
        group = [e for e in group if len(PurePosixPath(e.path).parts) == depth]
        fmt = group[0].format
        index = self._index_for(group)
        if index is not None:
            return index, fmt
        names = [e.path for e in group]
        if fmt is Format.GGUF and len(names) > 1:
            return self._gguf_choice(names), fmt
        return names, fmt

    def _index_for(self, group: list[FileEntry]) -> list[str] | None:
        parent = PurePosixPath(group[0].path).parent
        kind = "safetensors" if group[0].format is Format.SAFETENSORS else "bin"
        indexes = [e for e in self.entries.values() if e.role == "index" and PurePosixPath(e.path).parent == parent
                   and e.path.endswith(f".{kind}.index.json")]
        if not indexes:
            return None
        index = sorted(indexes, key=lambda e: e.path)[0]
        data = self._json_file(index.path, fatal=True)
        wmap = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(wmap, dict) or not wmap:
            raise FormatError(f"{index.path} has no weight_map: not a shard index")
        shards = sorted({str(v) for v in wmap.values()})
        out = []
        for shard in shards:
            rel = (parent / shard).as_posix() if str(parent) != "." else shard
            if rel not in self.entries:
                raise FormatError(f"{index.path} names shard {shard}, which is missing")
            out.append(rel)
        return out

    def _gguf_choice(self, names: list[str]) -> list[str]:
        from assay.model.tensors import read_gguf

        splits = []
        for n in names:
            try:
                hdr = read_gguf(self.ref.root / n, rel=n)
                splits.append(isinstance(hdr.metadata.get("split.count"), int) and hdr.metadata["split.count"] > 1)
            except FormatError:
                splits.append(False)
        if all(splits):  # parts of one model written by gguf-split
            return names
        self.notes.append(f"{len(names)} GGUF files: figures are for {names[0]} (each GGUF file is a whole model)")
        return names[:1]

    def _count(self, files: list[str], fmt: Format | None) -> _Count:
        from assay.model.tensors import PickleWalkError, read_gguf, read_safetensors_header, torch_entries

        c = _Count()
        if fmt not in HEADER_FORMATS:
            return c
        for rel in files:
            path = self.ref.root / rel
            entry = self.entries[rel]
            if entry.error:
                self.complete = False
                continue
            try:
                if entry.format is Format.SAFETENSORS:
                    _meta, tensors = read_safetensors_header(path, rel=rel)
                    self._add(c, ((t.dtype, t.numel, t.nbytes) for t in tensors))
                elif entry.format is Format.GGUF:
                    hdr = read_gguf(path, rel=rel)
                    if self.gguf_meta is None:
                        self.gguf_meta, self.gguf_arch = hdr.metadata, hdr.architecture
                    self._add(c, ((t.dtype, t.numel, t.nbytes) for t in hdr.tensors))
                elif entry.format in (Format.TORCH_ZIP, Format.PICKLE):
                    try:
                        records = torch_entries(path, entry.format)
                    except PickleWalkError as exc:
                        self.complete = False
                        self.notes.append(f"{rel}: parameters not counted: the pickle could not be followed "
                                          f"symbolically ({exc})")
                        continue
                    seen: set[tuple[Any, ...]] = set()
                    rows = []
                    for r in records:
                        k = (r.storage, r.offset, r.shape, r.stride)
                        if k in seen:  # tied weights share one storage view
                            continue
                        seen.add(k)
                        n = 1
                        for d in r.shape:
                            n *= d
                        rows.append((r.dtype, n, n * _itemsize(r.dtype)))
                    if not rows:
                        self.complete = False
                        self.notes.append(f"{rel}: no tensors found in the pickle")
                        continue
                    self._add(c, rows)
            except FormatError as exc:
                self._set_error(rel, exc.message.replace(str(path), rel).removeprefix(f"{rel}: "))
                self.complete = False
        return c

    def _check_headers(self, counted: set[str]) -> None:
        """Read the header of every other safetensors/GGUF file, so a truncated one is not listed as ok."""
        from assay.model.tensors import read_gguf, read_safetensors_header

        for rel, entry in list(self.entries.items()):
            if rel in counted or entry.error or entry.role not in ("weights", "adapter"):
                continue
            path = self.ref.root / rel
            try:
                if entry.format is Format.SAFETENSORS:
                    read_safetensors_header(path, rel=rel)
                elif entry.format is Format.GGUF:
                    read_gguf(path, rel=rel)
            except FormatError as exc:
                self._set_error(rel, exc.message.replace(str(path), rel).removeprefix(f"{rel}: "))

    @staticmethod
    def _add(c: _Count, rows: Iterable[tuple[str, int, int]]) -> None:
        for dtype, n, nbytes in rows:
            c.parameters += n
            c.dtypes[dtype] = c.dtypes.get(dtype, 0) + n
            c.stored += nbytes
            c.tensors += 1
        c.counted_any = True

    def _display(self, rel: str) -> str:
        return self.ref.spec if self.ref.single_file else rel

    def _error_line(self, rel: str, error: str | None) -> str:
        """One line naming the file once: ``path: reason`` (messages that already start with it are kept)."""
        shown = self._display(rel)
        if error and error.startswith(rel):
            return shown + error[len(rel):]
        return f"{shown}: {error}"

    # -- text metadata

    def _card(self) -> dict[str, Any]:
        cards = sorted(e.path for e in self.entries.values() if e.role == "card" and "/" not in e.path)
        if not cards and self.gguf_meta is not None:
            from assay.model.gguf_file import card_fields

            fields = card_fields(self.gguf_meta)
            if fields:  # a GGUF file carries its card in its metadata
                gguf_card: dict[str, Any] = {"present": True, "path": "GGUF metadata", "source": "gguf"}
                for key in ("base_model", "license", "license_name", "datasets", "model_name"):
                    if key in fields:
                        gguf_card[key] = _jsonable(fields[key])
                gguf_card["metadata"] = _jsonable(fields)
                return gguf_card
        if not cards:
            return {"present": False}
        rel = next((c for c in cards if c.lower() == "readme.md"), cards[0])
        card: dict[str, Any] = {"present": True, "path": rel}
        if self.entries[rel].error:
            card["error"] = self.entries[rel].error
            return card
        try:
            with (self.ref.root / rel).open("rb") as fh:
                text = fh.read(4 * 1024 * 1024).decode("utf-8", errors="replace")
        except OSError as exc:
            card["error"] = f"cannot read: {exc.strerror or exc}"
            return card
        meta = parse_front_matter(text)
        if isinstance(meta, str):
            card["error"] = meta
            return card
        for key in ("base_model", "base_model_relation", "license", "license_name", "license_link", "datasets",
                    "language", "pipeline_tag", "library_name", "tags"):
            card[key] = _jsonable(meta.get(key))
        card["metadata"] = _jsonable(meta)
        return card

    def _chat_template(self, tok_config: dict[str, Any] | None) -> bool:
        if tok_config and tok_config.get("chat_template"):
            return True
        if any(e.role == "chat_template" and "/" not in e.path for e in self.entries.values()):
            return True
        return bool(self.gguf_meta and self.gguf_meta.get("tokenizer.chat_template"))

    # -- assembly

    def build(self) -> Inventory:
        ref = self.ref
        self._scan_files()
        if ref.single_file:
            only = self.entries[ref.files[0].as_posix()]
            if only.path in self.read_failed:
                raise FormatError(self._error_line(only.path, only.error))
            if only.format not in WEIGHT_FORMATS:
                raise FormatError(f"{ref.spec} is not a model checkpoint: its content is {only.format.value}",
                                  hint="formats are detected from content, not from the file name")
            if only.role != "weights":
                self.entries[only.path] = only = replace(only, role="weights", error=None)
        config = self._json_file("config.json", fatal=True)
        adapter_cfg = self._json_file("adapter_config.json", fatal=True)
        tok_config = self._json_file("tokenizer_config.json", fatal=False)
        files, fmt = self._select_weights(adapter_cfg)
        count = self._count(files, fmt)
        self._check_headers(set(files))
        if files and fmt in HEADER_FORMATS and not count.counted_any:
            errors = [self.entries[f] for f in files if self.entries[f].error]
            if errors:
                raise FormatError(self._error_line(errors[0].path, errors[0].error))
        if not files:
            self.notes.append("no weight files found")
        parameters = count.parameters if count.counted_any else None
        if not self.complete and parameters is not None:
            self.notes.append("some weight files could not be counted: parameters cover the readable ones only")

        architecture = model_type = None
        context = vocab = None
        if config is not None:
            archs = config.get("architectures")
            architecture = str(archs[0]) if isinstance(archs, list) and archs else None
            model_type = str(config["model_type"]) if isinstance(config.get("model_type"), str) else None
            context = _config_int(config, ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length",
                                           "n_ctx", "max_sequence_length"))
            vocab = _config_int(config, ("vocab_size", "padded_vocab_size", "n_vocab"))
        gguf_doc = None
        if self.gguf_meta is not None:
            arch = self.gguf_arch
            gguf_doc = _gguf_summary(self.gguf_meta, arch)
            architecture = architecture or arch
            model_type = model_type or arch
            if context is None and arch and isinstance(self.gguf_meta.get(f"{arch}.context_length"), int):
                context = self.gguf_meta[f"{arch}.context_length"]
            if vocab is None:
                vocab = _gguf_vocab(self.gguf_meta, arch)

        adapter = None
        tier_params = parameters
        if adapter_cfg is not None:
            adapter = self._adapter(adapter_cfg, count if fmt and files and
                                    all(self.entries[f].role == "adapter" for f in files) else None)
            base = adapter.get("base") or {}
            if isinstance(base.get("parameters"), int) and parameters is not None:
                tier_params = base["parameters"] + parameters
                self.notes.append("memory and tier include the base model the adapter applies to")
        stored = count.stored
        if tier_params != parameters and adapter is not None:
            stored += int(adapter["base"].get("stored", 0))
        memory = memory_estimate(tier_params, stored)
        entries = tuple(self.entries[k] for k in sorted(self.entries))
        return Inventory(
            ref=ref, files=entries, architecture=architecture, model_type=model_type, parameters=parameters,
            dtypes=dict(sorted(count.dtypes.items(), key=lambda kv: -kv[1])), context_length=context,
            vocab_size=vocab, chat_template=self._chat_template(tok_config), card=self._card(), adapter=adapter,
            config=config, memory=memory, tier=size_tier(tier_params),
            weights_format=fmt.value if fmt else None, unreadable=tuple(e for e in entries if e.error),
            weight_files=tuple(files), parameters_complete=self.complete, gguf=gguf_doc, notes=tuple(self.notes),
            tensor_count=count.tensors,
        )

    def _adapter(self, cfg: dict[str, Any], count: _Count | None) -> dict[str, Any]:
        out: dict[str, Any] = {key: _jsonable(cfg.get(key)) for key in (
            "peft_type", "base_model_name_or_path", "r", "lora_alpha", "lora_dropout", "target_modules",
            "task_type", "bias", "use_dora", "modules_to_save")}
        if count is None:  # the adapter's own files were not the counted weights: count them now
            files = [e.path for e in self.entries.values() if e.role == "adapter" and e.format in HEADER_FORMATS
                     and e.error is None]
            if files:
                saved = self.complete
                count = self._count(files, self.entries[files[0]].format)
                self.complete = saved
        out["parameters"] = count.parameters if count and count.counted_any else None
        base_spec = cfg.get("base_model_name_or_path")
        out["base"] = None
        if isinstance(base_spec, str) and base_spec:
            try:
                base_ref = resolve(base_spec)
                if base_ref.root == self.ref.root:
                    raise ModelError("the adapter names itself as its base")
                if any(f.name == "adapter_config.json" for f in base_ref.files):
                    raise ModelError("the base is itself an adapter")
                base = _Builder(base_ref, NULL_PROGRESS).build()
                out["base"] = {"resolved": base_ref.root.as_posix(), "architecture": base.architecture,
                               "model_type": base.model_type, "parameters": base.parameters,
                               "stored": base.memory.get("stored", 0), "tier": base.tier}
            except AssayError as exc:
                out["base_error"] = exc.message
        return out


# --------------------------------------------------------------------------------------------- helpers


def parse_front_matter(text: str) -> dict[str, Any] | str:
    """The YAML front matter of a model card as a dict ({} if none), or an error message string."""
    import yaml

    text = text.lstrip("\ufeff")
    if not text.startswith("---"):
        return {}
    lines = text.splitlines()
    if lines[0].strip() != "---":
        return {}
    for i, line in enumerate(lines[1:], start=1):
        if line.strip() in ("---", "..."):
            body = "\n".join(lines[1:i])
            break
    else:
        return "front matter is not closed by ---"
    try:
        meta = yaml.safe_load(body)
    except yaml.YAMLError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"front matter is not valid YAML ({first})"
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        return "front matter is not a YAML mapping"
    return meta


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    if isinstance(v, float) and v != v:
        return None
    return v


def _config_int(config: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for scope in (config, config.get("text_config"), config.get("llm_config")):
        if not isinstance(scope, dict):
            continue
        for k in keys:
            v = scope.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    return None


def _itemsize(dtype: str) -> int:
    from assay.model.tensors import SAFETENSORS_ITEMSIZE

    return SAFETENSORS_ITEMSIZE.get(dtype, 0)


def _gguf_vocab(meta: dict[str, Any], arch: str | None) -> int | None:
    from assay.model.gguf_file import GGUFArray

    if arch and isinstance(meta.get(f"{arch}.vocab_size"), int):
        return int(meta[f"{arch}.vocab_size"])
    tokens = meta.get("tokenizer.ggml.tokens")
    if isinstance(tokens, GGUFArray):
        return tokens.length
    if isinstance(tokens, list):
        return len(tokens)
    return None


def _gguf_summary(meta: dict[str, Any], arch: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in meta.items():
        if not (k.startswith("general.") or (arch and k.startswith(f"{arch}.")) or k.startswith("split.")
                or k in ("tokenizer.ggml.model", "tokenizer.ggml.pre")):
            continue
        if isinstance(v, str):
            out[k] = v if len(v) <= 500 else v[:500] + "…"
        elif isinstance(v, (int, float, bool)):
            out[k] = v
        elif isinstance(v, list) and len(v) <= 16 and all(isinstance(x, (str, int, float, bool)) for x in v):
            out[k] = v
    return out


# --------------------------------------------------------------------------------------------- every tensor of a model
# The model-level view over the per-file readers in assay.model.tensors: which files, then their tensors.


def iter_tensors(target: ModelRef | Path | str, *, allow_pickle: bool = False) -> Iterator[TensorInfo]:
    """Yield every tensor of the model's weight files, in name order within each file, files in sorted order.

    ``target`` is a :class:`ModelRef` (its weight files, as chosen by the inventory) or one file. Torch
    archives need ``allow_pickle=True`` (a promise that the file scanned safe) and raise :class:`ModelError`
    otherwise. Nothing but headers is read until :meth:`TensorInfo.load` or :meth:`TensorInfo.raw`.
    """
    from assay.model.tensors import file_tensors

    for root, rel, fmt in _weight_files(target):
        yield from file_tensors(root / rel, fmt=fmt, rel=rel.as_posix(), allow_pickle=allow_pickle)


def tensor_index(target: ModelRef | Path | str, *, allow_pickle: bool = False) -> dict[str, TensorInfo]:
    """Every tensor of the model by its Hugging Face name (see :func:`iter_tensors`)."""
    return {t.hf_name: t for t in iter_tensors(target, allow_pickle=allow_pickle)}


def _weight_files(target: ModelRef | Path | str) -> list[tuple[Path, Path, Format]]:
    if isinstance(target, ModelRef):
        return [(target.root, rel, fmt) for rel, fmt in weight_files(target)]
    path = Path(target)
    if path.is_dir():
        ref = resolve(path)
        return [(ref.root, rel, fmt) for rel, fmt in weight_files(ref)]
    fmt = detect(path)
    return [(path.parent, Path(path.name), fmt)]
