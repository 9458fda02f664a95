"""Decide whether anything in a model folder can run code when a loader opens it, without running anything.

The scanner is safe by construction: it never unpickles, imports, renders or executes what it scans, never imports
torch, and sends nothing anywhere. Every file is examined by its content, whatever its name:

- :mod:`assay.model.pickle_vm` runs pickles on a symbolic machine against a default-deny allowlist
  (:mod:`assay.model.pickle_allowlist`); it is the one reader of pickles, shared with the tensor reader;
- :mod:`.containers` reads zip (torch, TorchScript, npz, Keras), legacy torch, numpy, HDF5, tar and compressed
  files the way their loaders do;
- :mod:`.safetensors` and :mod:`.gguf` check headers against the data they describe;
- :mod:`.templates` walks chat templates' Jinja syntax trees; :mod:`.code` reads ``auto_map`` and Python files;
- :mod:`.findings` holds the rule catalogue and the result types; :mod:`.files` routes a file to its scanner.

    >>> from assay.model.ref import resolve
    >>> report = scan_model(resolve("./my-model"))
    >>> report.verdict, report.exit_code
    (<ScanVerdict.SAFE: 'safe'>, 0)
    >>> scan_document(report)["schema"]
    'assay.scan/1'

A file that cannot be analysed fully is *not verified* (verdict ``unverified``, exit 2); it never counts as clean.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from assay.errors import FormatError
from assay.model.formats import Format, detect
from assay.model.ref import ModelRef
from assay.progress import NULL_PROGRESS, Progress
from assay.scan.context import FileScan, ScanOptions
from assay.scan.findings import (RULES, FileResult, FileStatus, Finding, Rule, ScanReport, ScanVerdict, Severity,
                                 decide)

__all__ = ["FileResult", "FileStatus", "Finding", "RULES", "Rule", "ScanReport", "ScanVerdict", "Severity",
           "scan_model", "scan_path", "scan_document"]

SCHEMA = "assay.scan/1"


def scan_model(ref: ModelRef, *, fail_on: Severity = Severity.MEDIUM, allow_globals: Iterable[str] = (),
               allow_remote_code: bool = False, deep: bool = False,
               progress: Progress = NULL_PROGRESS) -> ScanReport:
    """Scan every file of ``ref`` and return the report (never raises for a bad file: it is recorded).

    ``fail_on`` may also be given as its string value (``"medium"``), as policy files spell it.
    """
    fail_on = Severity(fail_on)
    options = ScanOptions(allow_globals=frozenset(allow_globals), allow_remote_code=allow_remote_code, deep=deep,
                          inside_hf_cache=ref.hf_id is not None)
    results: list[FileResult] = []
    findings: list[Finding] = []
    git_meta = [rel for rel in ref.files if _is_git_metadata(rel)]
    todo = [rel for rel in ref.files if not _is_git_metadata(rel)]
    from assay.scan.code import loader_python_files

    imported = {} if ref.single_file else loader_python_files(ref.root, [r.as_posix() for r in ref.files])
    listed = {r.as_posix() for r in todo}
    todo += [Path(r) for r in sorted(imported) if r not in listed]  # reachable by the loader though not listed
    progress.start("scanning", total=len(todo))
    for rel in todo:
        fs = _scan_one(ref.root, rel, options, imported=imported.get(rel.as_posix()))
        results.append(fs.result())
        findings.extend(fs.findings)
        progress.advance("scanning")
    progress.finish("scanning")
    if git_meta:
        findings.append(Finding(rule="GIT-METADATA", severity=Severity.INFO, path=".git", location=None,
                                message=f"{len(git_meta)} file(s) of git's own metadata (hooks, objects, index) were "
                                "not scanned: loaders read the work tree, which was; git LFS objects were scanned",
                                evidence=None))
    if not results:  # a folder holding nothing but git metadata: nothing was verified
        results.append(FileResult(path=".", format="empty", status=FileStatus.NOT_VERIFIED.value,
                                  reason="no model files to scan (only git metadata)"))
    files_t, findings_t = tuple(results), tuple(findings)
    return ScanReport(verdict=decide(findings_t, files_t, fail_on), findings=findings_t, files=files_t,
                      fail_on=fail_on, model=ref.spec, root=ref.root.as_posix(),
                      allow_globals=tuple(sorted(options.allow_globals)), allow_remote_code=allow_remote_code,
                      deep=deep)


def _is_git_metadata(rel: Path) -> bool:
    """Files git keeps for itself in a clone; ``.git/lfs/objects`` (the publisher's file contents) are not."""
    parts = rel.parts
    return len(parts) > 1 and parts[0] == ".git" and parts[1:3] != ("lfs", "objects")


def scan_path(path: Path, *, options: ScanOptions | None = None, root: Path | None = None) -> FileScan:
    """Scan one file on disk and return its :class:`~assay.scan.context.FileScan` (findings and reasons)."""
    path = Path(path)
    base = root if root is not None else path.parent
    return _scan_one(base, path.relative_to(base), options or ScanOptions())


def _scan_one(root: Path, rel: Path, options: ScanOptions, *, imported: str | None = None) -> FileScan:
    """Scan one file; ``imported`` says why transformers would import it as Python (it is then analysed as such)."""
    fs = _scan_content(root, rel, options)
    if imported is not None:
        from assay.scan.code import check_loader_file

        outside = any(f.rule == "SYMLINK-OUTSIDE" for f in fs.findings)  # never read through such a link
        analysed = outside or any(f.rule == "CODE-FILE" for f in fs.findings)
        source = b""
        if not analysed:
            try:
                source = (root / rel).read_bytes()
            except OSError as exc:
                fs.unverified(f"cannot read the file ({exc})")
                return fs
        check_loader_file(source, fs, rel=rel.as_posix(), why=imported, analysed=analysed)
    return fs


def _scan_content(root: Path, rel: Path, options: ScanOptions) -> FileScan:
    from assay.scan.files import scan_buffer

    fs = FileScan(rel.as_posix(), options)
    path = root / rel
    if path.is_symlink() or os.path.realpath(path) != os.path.join(os.path.realpath(root), *rel.parts):
        # the file or a folder on its way is a link: never read through one that leaves the model
        target = _check_symlink(root, path, fs, options)
        if target is None:
            return fs
        path = target
    try:
        fmt = detect(path)
    except FormatError as exc:
        fs.unverified(exc.message)
        return fs
    fs.format = fmt.value
    if fmt is Format.EMPTY:
        return fs
    try:
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            try:
                scan_buffer(mm, rel.name, fs, where=None, depth=0, fmt=fmt)
            except (MemoryError, RecursionError) as exc:
                fs.unverified(f"analysis ran out of resources ({type(exc).__name__})")
            except Exception as exc:  # noqa: BLE001 - a scanner bug on one hostile file must not end the run
                first = str(exc).splitlines()[0][:120] if str(exc) else ""
                fs.unverified(f"the scanner failed on this file ({type(exc).__name__}: {first}); not analysed fully")
    except BufferError:
        pass  # a numpy view outlived the scan; the mapping is released when it is collected
    except (OSError, ValueError) as exc:
        fs.unverified(f"cannot read the file ({exc})")
    return fs


def _check_symlink(root: Path, path: Path, fs: FileScan, options: ScanOptions) -> Path | None:
    """Report links that leave the folder; return the target to scan, or None."""
    fs.format = "symlink"
    try:
        target = Path(os.path.realpath(path))
    except OSError as exc:
        fs.unverified(f"symbolic link cannot be resolved ({exc})")
        return None
    allowed_roots = [root.resolve()]
    if options.inside_hf_cache:
        allowed_roots.append(root.resolve().parent.parent / "blobs")
    inside = any(target == r or r in target.parents for r in allowed_roots)
    if not inside:
        fs.add("SYMLINK-OUTSIDE", None, f"symbolic link points outside the model folder, to {target}: a loader "
               "following it reads a file nobody vetted", os.readlink(path) if path.is_symlink() else str(target))
        return None
    if target.is_dir():
        return None  # a linked folder inside the model: its files are listed and scanned in place
    if not target.exists():
        fs.unverified("symbolic link is broken")
        return None
    return target


def scan_document(report: ScanReport) -> dict[str, Any]:
    """The ``assay.scan/1`` JSON document of a report."""
    return {
        "schema": SCHEMA,
        "model": report.model,
        "root": report.root,
        "verdict": report.verdict.value,
        "fail_on": report.fail_on.value,
        "options": {"allow_globals": list(report.allow_globals), "allow_remote_code": report.allow_remote_code,
                    "deep": report.deep},
        "summary": {
            "files": len(report.files),
            "not_verified": sum(1 for f in report.files if f.status == FileStatus.NOT_VERIFIED),
            "findings": {s.value: sum(1 for f in report.findings if f.severity is s) for s in Severity},
        },
        "findings": [{"rule": f.rule, "severity": f.severity.value, "path": f.path, "location": f.location,
                      "message": f.message, "evidence": f.evidence} for f in report.findings],
        "files": [{"path": f.path, "format": f.format, "status": f.status, "reason": f.reason}
                  for f in report.files],
    }
