"""Resolve a model reference to files on this machine, offline.

A reference is a folder (Hugging Face layout, sharded safetensors, PEFT adapter), a single checkpoint file, or
``org/name`` (optionally ``org/name@revision``) found in the local Hugging Face cache (``HF_HUB_CACHE``, else
``HF_HOME/hub``, else ``~/.cache/huggingface/hub``). Nothing is downloaded unless ``download=True``.

    >>> ref = resolve("HuggingFaceTB/SmolLM2-135M-Instruct")
    >>> ref.root, [p.name for p in ref.files][:3]
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from assay.errors import ModelError

#: A folder listing (links followed inside the folder) longer than this is refused.
MAX_FILES = 1_000_000
_HF_ID = re.compile(r"^(?P<id>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")


@dataclass(frozen=True)
class ModelRef:
    """Where a model's files are."""

    spec: str
    """What the user typed."""
    root: Path
    """The model folder (for a single file: the folder that holds it)."""
    files: tuple[Path, ...]
    """Every file of the model, relative to ``root``, sorted (hidden folders such as ``.git`` included)."""
    single_file: bool
    """True when the reference named one file rather than a folder."""
    hf_id: str | None = None
    """``org/name`` when resolved through the Hugging Face cache."""
    revision: str | None = None
    """The snapshot (commit) used, for a cached model."""

    @property
    def name(self) -> str:
        """A short display name."""
        if self.hf_id:
            return self.hf_id
        return self.files[0].name if self.single_file else self.root.name

    def path(self, rel: Path | str) -> Path:
        """Absolute path of a file of the model."""
        return self.root / rel


def hf_cache_dir() -> Path:
    """The local Hugging Face hub cache folder, by the same rules as ``huggingface_hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def resolve(spec: str | os.PathLike[str], *, revision: str | None = None, download: bool = False) -> ModelRef:
    """Turn a reference into a :class:`ModelRef`. Raises :class:`ModelError` with a one-line reason."""
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_symlink() and not path.exists():
        raise ModelError(f"{text} is a broken symbolic link")
    if revision is not None and path.exists():
        raise ModelError(f"--revision {revision} applies to an org/name in the Hugging Face cache, but {text} is a "
                         f"local {'folder' if path.is_dir() else 'file'}, which has no revisions",
                         hint="drop --revision, or name the org/name")
    if path.is_dir():
        return _from_folder(text, path)
    if path.exists():
        if not path.is_file():
            raise ModelError(f"{text} is not a regular file or a folder")
        if not os.access(path, os.R_OK):
            raise ModelError(f"permission denied: {text}")
        return ModelRef(spec=text, root=path.parent.resolve(), files=(Path(path.name),), single_file=True)
    match = _HF_ID.match(text)
    if match and not text.startswith((".", "/", "~")):
        return _from_cache(text, match.group("id"), revision or match.group("rev"), download=download)
    raise ModelError(f"no such model: {text} (not a file, not a folder, and not an org/name reference)")


def list_files(root: Path) -> list[Path]:
    """Every file under ``root`` (relative paths, sorted), as a loader sees them.

    A link to a folder inside ``root`` is followed (a loader opening ``custom_generate/generate.py`` reads through
    it), and its files are listed under the link's path; a link to a folder outside ``root`` (or one already
    visited) is listed as an entry of its own, which the scanner reports. File links are listed, not resolved.
    """
    out: list[Path] = []
    real_root = Path(os.path.realpath(root))

    def onerror(err: OSError) -> None:
        raise ModelError(f"cannot list {err.filename}: {err.strerror}")

    def walk(folder: Path, prefix: Path, seen: frozenset[str]) -> None:
        for dirpath, dirnames, filenames in os.walk(folder, onerror=onerror, followlinks=False):
            base = Path(dirpath)
            for d in list(dirnames):
                if (base / d).is_symlink():
                    dirnames.remove(d)
                    rel = prefix / (base / d).relative_to(folder)
                    target = os.path.realpath(base / d)
                    if _within(Path(target), real_root) and target not in seen and len(seen) < 32:
                        walk(Path(target), rel, seen | {target})
                    else:  # leaves the folder, or a cycle: an entry the scanner reports
                        out.append(rel)
            for f in filenames:
                out.append(prefix / (base / f).relative_to(folder))
            if len(out) > MAX_FILES:
                raise ModelError(f"{root} holds more than {MAX_FILES:,} files (counting those reached through "
                                 "symbolic links): not a model folder assay will walk")

    walk(root, Path(), frozenset({str(real_root)}))
    return sorted(out, key=lambda p: p.as_posix())


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def cache_snapshot(path: Path) -> tuple[str, str, Path] | None:
    """``(org/name, revision, blobs folder)`` when ``path`` is a Hugging Face cache snapshot folder
    (``.../models--org--name/snapshots/<rev>``), else None."""
    snaps = path.parent
    repo = snaps.parent
    if snaps.name != "snapshots" or not repo.name.startswith("models--") or not (repo / "blobs").is_dir():
        return None
    parts = repo.name[len("models--"):].split("--")
    if len(parts) < 2 or not all(parts):
        return None
    return "/".join(parts), path.name, repo / "blobs"


def link_roots(ref: ModelRef) -> tuple[Path, ...]:
    """Folders a symbolic link of ``ref`` may point into and still be read: the model folder, and for a Hugging
    Face cache snapshot its own repository's ``blobs/`` (not another repository's, not elsewhere in the cache)."""
    roots = [Path(os.path.realpath(ref.root))]
    snap = cache_snapshot(ref.root) if not ref.single_file else None
    if snap is not None:
        roots.append(Path(os.path.realpath(snap[2])))
    return tuple(roots)


def link_target(ref: ModelRef, rel: Path | str) -> tuple[Path, bool]:
    """The real path a loader reads for ``rel``, and whether it stays inside :func:`link_roots`."""
    target = Path(os.path.realpath(ref.root / rel))
    return target, any(_within(target, r) for r in link_roots(ref))


def _from_folder(spec: str, path: Path) -> ModelRef:
    if not os.access(path, os.R_OK | os.X_OK):
        raise ModelError(f"permission denied: {spec}")
    root = path.resolve()
    files = list_files(root)
    if not files:
        raise ModelError(f"folder {spec} is empty: no model files to examine")
    snap = cache_snapshot(root)
    if snap is not None:  # the same model as `org/name`: links into its blobs are its files
        return ModelRef(spec=spec, root=root, files=tuple(files), single_file=False, hf_id=snap[0],
                        revision=snap[1])
    return ModelRef(spec=spec, root=root, files=tuple(files), single_file=False)


def _from_cache(spec: str, repo_id: str, revision: str | None, *, download: bool) -> ModelRef:
    cache = hf_cache_dir()
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    snap = _cached_snapshot(repo_dir, revision)
    if snap is None:
        if not download:
            where = f"{repo_id}@{revision}" if revision else repo_id
            raise ModelError(f"{where} is not in the local Hugging Face cache ({cache}) and is not a path",
                             hint="pass --download to fetch it, or give a local folder")
        snap = _download(repo_id, revision)
    files = list_files(snap)
    if not files:
        raise ModelError(f"cached snapshot {snap} is empty")
    return ModelRef(spec=spec, root=snap, files=tuple(files), single_file=False, hf_id=repo_id,
                    revision=snap.name)


def _cached_snapshot(repo_dir: Path, revision: str | None) -> Path | None:
    snaps = repo_dir / "snapshots"
    if not snaps.is_dir():
        return None
    rev = revision or "main"
    ref_file = repo_dir / "refs" / rev
    if ref_file.is_file():
        commit = ref_file.read_text().strip()
        if (snaps / commit).is_dir():
            return snaps / commit
    if (snaps / rev).is_dir():
        return snaps / rev
    if revision and len(revision) >= 7:
        hits = [p for p in snaps.iterdir() if p.name.startswith(revision)]
        if len(hits) == 1:
            return hits[0]
    if revision is None:
        candidates = [p for p in snaps.iterdir() if p.is_dir()]
        if len(candidates) == 1:
            return candidates[0]
    return None


def _download(repo_id: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub is a core dependency
        raise ModelError("huggingface_hub is required for --download") from exc
    try:
        return Path(snapshot_download(repo_id, revision=revision))
    except Exception as exc:  # noqa: BLE001 - network/hub errors of every kind become one line
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ModelError(f"could not download {repo_id}: {type(exc).__name__}: {first}") from exc
