"""Fetch the files of standard benchmarks where a network exists, and check them where none does.

``assay data pull NAME --to DIR`` downloads the published files of a benchmark from the Hugging Face dataset hub
(through ``huggingface_hub``, pinned to the commit it resolved), writes ``SHA256SUMS`` and ``assay-data.json``
beside them, and prints the ``--task`` spec that reads them. The folder can then be carried into an air-gapped
site and checked there with ``assay data verify DIR`` (exit 0 intact, 1 a file changed, 2 a file missing).

    result = pull("gsm8k", Path("benchmarks-data"))     # needs a network
    verify(result.folder).ok
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from assay.errors import EvalError

CHECKSUM_FILE = "SHA256SUMS"
MANIFEST_FILE = "assay-data.json"
DATA_SCHEMA = "assay.data/1"


@dataclass(frozen=True)
class Dataset:
    """A benchmark assay knows where to find."""

    name: str
    """Name for ``assay data pull``."""
    repo_id: str
    """Dataset repository on the Hugging Face hub."""
    patterns: tuple[str, ...]
    """Files to fetch (glob patterns); only what the loaders read."""
    tasks: tuple[str, ...]
    """Task names that read the folder (``--task NAME:DIR``)."""
    licence: str
    """Licence of the data as published."""


DATASETS: dict[str, Dataset] = {d.name: d for d in (
    Dataset("mmlu", "cais/mmlu", ("all/test-*.parquet", "all/dev-*.parquet", "all/validation-*.parquet"),
            ("mmlu",), "MIT"),
    Dataset("arc", "allenai/ai2_arc", ("ARC-Easy/*.parquet", "ARC-Challenge/*.parquet"),
            ("arc_easy", "arc_challenge"), "CC-BY-SA-4.0"),
    Dataset("hellaswag", "Rowan/hellaswag", ("data/*.parquet",), ("hellaswag",), "MIT"),
    Dataset("truthfulqa", "truthfulqa/truthful_qa", ("multiple_choice/*.parquet",),
            ("truthfulqa_mc1", "truthfulqa_mc2"), "Apache-2.0"),
    Dataset("gsm8k", "openai/gsm8k", ("main/*.parquet",), ("gsm8k",), "MIT"),
    Dataset("winogrande", "allenai/winogrande", ("winogrande_xl/*.parquet",), ("winogrande",), "CC-BY"),
)}
"""Every name ``assay data pull`` accepts."""


@dataclass(frozen=True)
class PullResult:
    """What ``pull`` fetched."""

    dataset: Dataset
    """The benchmark."""
    folder: Path
    """Where its files are (``DIR/NAME``)."""
    revision: str
    """The dataset repository commit the files came from."""
    files: tuple[tuple[str, str], ...]
    """(relative path, sha256) of every fetched file."""


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of checking a pulled folder against its ``SHA256SUMS``."""

    folder: Path
    """The folder checked."""
    ok: tuple[str, ...]
    """Files whose digest matches."""
    changed: tuple[str, ...]
    """Files whose digest differs (modified after the pull)."""
    missing: tuple[str, ...]
    """Files listed but absent or unreadable."""
    extra: tuple[str, ...]
    """Data files present but not listed."""

    @property
    def intact(self) -> bool:
        """Every listed file present and unchanged."""
        return not self.changed and not self.missing


def dataset(name: str) -> Dataset:
    """The catalogue entry for ``name``; unknown names list what exists."""
    try:
        return DATASETS[name]
    except KeyError:
        raise EvalError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, streamed."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _data_files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                  and p.name not in (CHECKSUM_FILE, MANIFEST_FILE))


def write_checksums(folder: Path) -> tuple[tuple[str, str], ...]:
    """Write ``SHA256SUMS`` (``sha256sum -c`` format) for every file under ``folder``; returns the entries."""
    entries = tuple((rel, sha256_file(folder / rel)) for rel in _data_files(folder))
    (folder / CHECKSUM_FILE).write_text("".join(f"{digest}  {rel}\n" for rel, digest in entries), encoding="utf-8")
    return entries


def verify(folder: Path) -> VerifyResult:
    """Check every file listed in ``folder/SHA256SUMS``."""
    sums = folder / CHECKSUM_FILE
    if not sums.is_file():
        raise EvalError(f"{folder} has no {CHECKSUM_FILE} (was it made with assay data pull?)")
    listed: dict[str, str] = {}
    for n, line in enumerate(sums.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, rel = line.partition("  ")
        if not sep or len(digest) != 64 or not rel or rel.startswith("/") or ".." in Path(rel).parts:
            raise EvalError(f"{sums} line {n} is not '<sha256>  <relative path>'")
        listed[rel] = digest.lower()
    ok: list[str] = []
    changed: list[str] = []
    missing: list[str] = []
    for rel, digest in listed.items():
        path = folder / rel
        try:
            actual = sha256_file(path)
        except OSError:
            missing.append(rel)
            continue
        (ok if actual == digest else changed).append(rel)
    extra = [rel for rel in _data_files(folder) if rel not in listed]
    return VerifyResult(folder=folder, ok=tuple(ok), changed=tuple(changed), missing=tuple(missing),
                        extra=tuple(extra))


def pull(name: str, to: Path, *, revision: str | None = None, token: str | None = None,
         endpoint: str | None = None) -> PullResult:
    """Download ``name`` into ``to/NAME`` and write its checksums. Fails with one clear line offline.

    ``endpoint``: a Hugging Face hub mirror (default: ``HF_ENDPOINT`` or huggingface.co).
    """
    ds = dataset(name)
    folder = to / ds.name
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise EvalError(f"cannot download {ds.repo_id}: HF_HUB_OFFLINE is set; pull it where a network exists "
                        f"and carry the folder in (then: assay data verify DIR/{ds.name})")
    try:
        from huggingface_hub import HfApi, snapshot_download

        info = HfApi(endpoint=endpoint).dataset_info(ds.repo_id, revision=revision, token=token)
        commit = str(info.sha or revision or "")
        snapshot_download(ds.repo_id, repo_type="dataset", revision=commit or None, local_dir=folder,
                          allow_patterns=list(ds.patterns), token=token, endpoint=endpoint)
    except ImportError:
        raise EvalError("downloading datasets needs huggingface_hub (pip install huggingface_hub)") from None
    except Exception as exc:  # noqa: BLE001 - network, auth and hub errors all end the same way for the user
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EvalError(f"cannot download {ds.repo_id}: {reason[:200]} (no network? pull it where one exists "
                        f"and carry the folder in)") from None
    if not _data_files(folder):
        raise EvalError(f"{ds.repo_id} at {commit[:12]} has no files matching {', '.join(ds.patterns)}")
    entries = write_checksums(folder)
    manifest = {"schema": DATA_SCHEMA, "name": ds.name, "repo_id": ds.repo_id, "revision": commit,
                "licence": ds.licence, "tasks": [f"{t}:{folder}" for t in ds.tasks],
                "files": [{"path": rel, "sha256": digest} for rel, digest in entries]}
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return PullResult(dataset=ds, folder=folder, revision=commit, files=entries)


def list_document() -> dict[str, object]:
    """``assay data list --json``."""
    return {"schema": DATA_SCHEMA, "datasets": [
        {"name": d.name, "repo_id": d.repo_id, "files": list(d.patterns), "tasks": list(d.tasks),
         "licence": d.licence} for d in DATASETS.values()]}


def pull_document(result: PullResult) -> dict[str, object]:
    """``assay data pull --json``."""
    return {"schema": DATA_SCHEMA, "name": result.dataset.name, "repo_id": result.dataset.repo_id,
            "revision": result.revision, "folder": str(result.folder),
            "tasks": [f"{t}:{result.folder}" for t in result.dataset.tasks],
            "files": [{"path": rel, "sha256": digest} for rel, digest in result.files]}


def verify_document(result: VerifyResult) -> dict[str, object]:
    """``assay data verify --json``."""
    return {"schema": DATA_SCHEMA, "folder": str(result.folder), "intact": result.intact, "ok": list(result.ok),
            "changed": list(result.changed), "missing": list(result.missing), "extra": list(result.extra)}
