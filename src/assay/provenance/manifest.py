"""Hash manifests: a digest of every file of a model, and a *weights root* over its tensors.

The file manifest answers "are these exactly the bytes someone vouched for?"; the weights root answers "are these
the same weights?" even when the files differ (re-sharded, re-saved, renamed). The weights root is a digest over
per-tensor digests ``H(name, dtype, shape, bytes)`` taken in tensor-name order, so the way tensors are spread over
files does not change it.

    >>> from assay.model.ref import resolve
    >>> m = hash_model(resolve("./my-model"))                    # BLAKE3, files hashed in parallel
    >>> m.files[0].path, m.files[0].digest[:16], m.weights_root[:16]
    >>> manifest_document(m)["schema"]
    'assay.manifest/1'

BLAKE3 (the default) hashes each file memory-mapped with several threads (it is a tree hash, so a large file is
cut into shards hashed in parallel and still gets one digest); SHA-256 (``algorithm="sha256"``, for FIPS sites
and for OpenSSF model signing) reads 1 MiB chunks. Files are hashed concurrently in a thread pool either way.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import mmap
import os
import re
import struct
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.errors import ModelError, ProvenanceError
from assay.model.ref import ModelRef, link_roots
from assay.progress import NULL_PROGRESS, Progress

#: Digest algorithms assay computes. ``blake2b`` only exists to verify OpenSSF signatures that use it.
ALGORITHMS = ("blake3", "sha256", "blake2b")
SCHEMA = "assay.manifest/1"
_CHUNK = 1024 * 1024
#: Domain separation so that a weights root can never collide with a file digest.
_ROOT_TAG = b"assay.weights_root/1\x00"


@dataclass(frozen=True)
class FileDigest:
    """One file of a model and its digest."""

    path: str
    """Path relative to the model folder, with ``/`` separators (``.`` for a single-file model)."""
    size: int
    """Size in bytes."""
    digest: str
    """Lower-case hex digest of the whole file, in the manifest's algorithm."""


@dataclass(frozen=True)
class Manifest:
    """Digests of every file of a model, plus the weights root."""

    algorithm: str
    """``blake3`` or ``sha256``."""
    files: tuple[FileDigest, ...]
    """Every hashed file, sorted by path."""
    weights_root: str | None
    """Hex digest over the per-tensor digests in name order; None when the model has no readable tensors."""
    unreadable: tuple[tuple[str, str], ...] = ()
    """Files that could not be hashed, with the reason (they are *not* vouched for by this manifest)."""
    weights_note: str | None = None
    """Why there is no weights root, when there is none."""


def new_hasher(algorithm: str) -> Any:
    """A fresh streaming hasher (``update``/``digest``) for ``algorithm``."""
    if algorithm == "blake3":
        import blake3

        return blake3.blake3()
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "blake2b":
        return hashlib.blake2b()
    raise ProvenanceError(f"unknown digest algorithm {algorithm!r} (choose one of: blake3, sha256)")


def hash_file(path: Path, *, algorithm: str = "blake3", start: int = 0, end: int | None = None,
              threads: bool = True) -> str:
    """Hex digest of a file (or of the byte range ``[start, end)``), memory-mapped for BLAKE3.

    Raises :class:`OSError` if the file cannot be read.
    """
    if algorithm == "blake3" and start == 0 and end is None:
        import blake3

        h = blake3.blake3(max_threads=blake3.blake3.AUTO if threads else 1)
        if path.stat().st_size:  # mmap of an empty file fails
            h.update_mmap(os.fspath(path))
        return str(h.hexdigest())
    h = new_hasher(algorithm)
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        stop = size if end is None else min(end, size)
        if stop > start:
            # One memory map, fed in 1 MiB slices: no copies, and hashlib releases the GIL for each slice.
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                view = memoryview(mm)
                try:
                    for pos in range(start, stop, _CHUNK):
                        h.update(view[pos:min(pos + _CHUNK, stop)])
                finally:
                    view.release()
    return str(h.hexdigest())


def rel_name(ref: ModelRef, rel: Path) -> str:
    """The manifest name of a model file: POSIX relative path, or ``.`` for a single-file model."""
    return "." if ref.single_file else rel.as_posix()


def _excluded(name: str, patterns: tuple[str, ...]) -> bool:
    for pat in patterns:
        pat = pat.rstrip("/")
        if name == pat or name.startswith(pat + "/") or fnmatch.fnmatchcase(name, pat):
            return True
    return False


def hash_files(ref: ModelRef, names: Iterable[tuple[str, Path]], *, algorithm: str, workers: int | None = None,
               progress: Progress = NULL_PROGRESS,
               task: str = "hashing") -> tuple[list[FileDigest], list[tuple[str, str]]]:
    """Hash ``(manifest name, absolute path)`` pairs concurrently; returns (digests, unreadable).

    A path whose real location leaves the model (a symbolic link out of the folder, or, for a Hugging Face cache
    snapshot, out of its own repository's ``blobs/``) is never read: it is listed as unreadable.
    """
    items = list(names)
    sizes: dict[str, int] = {}
    unreadable: list[tuple[str, str]] = []
    todo: list[tuple[str, Path]] = []
    roots = None if ref.single_file else link_roots(ref)  # a single file is what the user named, link or not
    for name, path in items:
        try:
            real = Path(os.path.realpath(path))
            if roots is not None and not any(real == r or r in real.parents for r in roots):
                unreadable.append((name, f"symbolic link to {real}, outside the model folder (not read)"))
                continue
            if not path.is_file():
                unreadable.append((name, "not a regular file (a folder link or special file)"))
                continue
            sizes[name] = path.stat().st_size
            todo.append((name, path))
        except OSError as exc:
            unreadable.append((name, exc.strerror or str(exc)))
    total = sum(sizes.values())
    progress.start(task, total=float(total))
    # BLAKE3 already spreads one file over all cores (its own threads); SHA-256 is one core per file.
    n = workers or (1 if algorithm == "blake3" else min(8, (os.cpu_count() or 1)))
    out: list[FileDigest] = []

    def one(name: str, path: Path) -> FileDigest:
        return FileDigest(path=name, size=sizes[name], digest=hash_file(path, algorithm=algorithm))

    with ThreadPoolExecutor(max_workers=max(1, n)) as pool:
        futures = {pool.submit(one, name, path): name for name, path in todo}
        for fut in as_completed(futures):
            name = futures[fut]
            try:
                out.append(fut.result())
            except OSError as exc:
                unreadable.append((name, exc.strerror or str(exc)))
            progress.advance(task, float(sizes[name]))
    progress.finish(task)
    out.sort(key=lambda f: f.path)
    unreadable.sort()
    return out, unreadable


def hash_model(ref: ModelRef, *, algorithm: str = "blake3", exclude: Iterable[str] = (), workers: int | None = None,
               progress: Progress = NULL_PROGRESS, with_weights_root: bool = True) -> Manifest:
    """Hash every file of ``ref`` (hidden folders such as ``.git`` included) and compute the weights root.

    ``exclude`` holds relative paths, folder prefixes or glob patterns of files to leave out.
    """
    new_hasher(algorithm)  # validates the name
    patterns = tuple(exclude)
    pairs = [(rel_name(ref, rel), ref.path(rel)) for rel in ref.files]
    pairs = [(n, p) for n, p in pairs if not _excluded(ref.files[0].name if n == "." else n, patterns)]
    if not pairs:
        raise ProvenanceError(f"nothing to hash: the exclude patterns ({', '.join(patterns)}) leave out every file "
                              f"of {ref.spec}")
    files, unreadable = hash_files(ref, pairs, algorithm=algorithm, workers=workers, progress=progress)
    root: str | None = None
    note: str | None = "not computed"
    if with_weights_root:
        root, note = _weights_root_and_note(ref, algorithm=algorithm, allow_pickle=False, progress=progress)
    return Manifest(algorithm=algorithm, files=tuple(files), weights_root=root, unreadable=tuple(unreadable),
                    weights_note=None if root else note)


def tensor_digest(name: str, dtype: str, shape: tuple[int, ...], data: bytes | memoryview, *,
                  algorithm: str = "blake3") -> bytes:
    """``H(name, dtype, shape, bytes)`` with length-prefixed fields, so no two tensors can collide."""
    h = new_hasher(algorithm)
    header = json.dumps([name, dtype, list(shape)], separators=(",", ":")).encode("utf-8")
    h.update(struct.pack("<Q", len(header)))
    h.update(header)
    h.update(struct.pack("<Q", len(data)))
    h.update(data)
    return bytes(h.digest())


def weights_root(ref: ModelRef, *, algorithm: str = "blake3", allow_pickle: bool = False) -> str | None:
    """Digest over the per-tensor digests (Hugging Face names, stored dtype, shape, raw bytes) in name order.

    A re-sharded or re-saved copy of the same weights has the same weights root. Returns None when the model
    holds no tensors assay can read (no weight files, or only pickle-based ones without ``allow_pickle``).
    """
    return _weights_root_and_note(ref, algorithm=algorithm, allow_pickle=allow_pickle)[0]


def _weights_root_and_note(ref: ModelRef, *, algorithm: str, allow_pickle: bool,
                           progress: Progress = NULL_PROGRESS) -> tuple[str | None, str | None]:
    new_hasher(algorithm)
    try:
        from assay.model.inventory import tensor_index
    except ImportError:  # pragma: no cover - the tensor reader is part of the core
        return None, "the tensor reader is not available"
    try:
        index = tensor_index(ref, allow_pickle=allow_pickle)
    except ModelError as exc:
        return None, f"tensors not readable: {exc.message}"
    if not index:
        return None, "no tensors found"
    root = new_hasher(algorithm)
    root.update(_ROOT_TAG)
    progress.start("weights root", total=float(len(index)))
    try:
        for name in sorted(index):
            info = index[name]
            root.update(tensor_digest(name, info.dtype, tuple(info.shape), info.raw(), algorithm=algorithm))
            progress.advance("weights root")
    except ModelError as exc:
        return None, f"tensors not readable: {exc.message}"
    except (OSError, ValueError) as exc:
        return None, f"tensors not readable: {exc}"
    finally:
        progress.finish("weights root")
    return str(root.hexdigest()), None


def manifest_document(m: Manifest) -> dict[str, Any]:
    """The ``assay.manifest/1`` JSON document."""
    return {
        "schema": SCHEMA,
        "algorithm": m.algorithm,
        "files": [{"path": f.path, "size": f.size, "digest": f.digest} for f in m.files],
        "weights_root": m.weights_root,
        "weights_note": m.weights_note,
        "unreadable": [{"path": p, "reason": r} for p, r in m.unreadable],
        "total_bytes": sum(f.size for f in m.files),
    }


#: Model-card keys copied into signatures and compared by lineage; the rest of the card is not needed.
CARD_KEYS = ("base_model", "base_model_relation", "license", "license_name", "model_name", "model_type",
             "pipeline_tag", "library_name", "language", "datasets", "tags")
_FRONT_MATTER = re.compile(r"\A\ufeff?---\s*\r?\n(.*?)\r?\n---\s*(?:\r?\n|\Z)", re.S)


def card_metadata(ref: ModelRef) -> dict[str, Any] | None:
    """The model card's YAML front matter (selected keys), or None when there is no card or no front matter.

    Read with ``yaml.safe_load`` only; a malformed card yields None rather than an error.
    """
    if ref.single_file:
        return None
    readme = next((ref.path(p) for p in ref.files if p.as_posix().lower() == "readme.md"), None)
    if readme is None:
        return None
    try:
        with readme.open("rb") as fh:
            text = fh.read(1024 * 1024).decode("utf-8", errors="replace")
    except OSError:
        return None
    match = _FRONT_MATTER.match(text)
    if not match:
        return None
    import yaml

    try:
        data = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return None
    if not isinstance(data, dict):
        return None
    out = {k: _plain(data[k]) for k in CARD_KEYS if k in data}
    return out or None


def _plain(value: Any) -> Any:
    """YAML values reduced to JSON types (dates become strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)

