"""Saving and reading ``assay.vet/1`` results: the report folder, the saved document, every format written.

    >>> check_out_dir(Path("vet-out"))                                   # before any long work
    >>> write_reports(doc, Path("vet-out"), formats=("json", "html"))    # {"json": .../vet.json, ...}
    >>> load_vet_document(Path("vet-out/vet.json"))["verdict"]
    'PASS'

Each report is written atomically (:func:`assay.report.base.write_atomic`), so an interrupted vet never leaves a
half-written report under its final name.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from assay.errors import ReportError
from assay.report import get_renderer
from assay.report.base import write_atomic

VET_SCHEMA = "assay.vet/1"
"""The kind of the document ``assay vet`` saves and ``assay report`` reads."""


def check_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` if needed and prove it writable now, before any long work. Raises ReportError."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".assay-probe-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ReportError(f"cannot write reports to {out_dir}: {exc.strerror or exc}") from exc
    return out_dir


def load_vet_document(path: Path) -> dict[str, Any]:
    """Read a saved ``assay.vet/1`` document (for ``assay report``). Raises ReportError on anything else."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReportError(f"no such file: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read {path}: {exc}") from exc
    except ValueError as exc:
        raise ReportError(f"{path} is not JSON ({exc}); expected a saved `assay vet --json` result") from exc
    if not isinstance(doc, dict) or doc.get("schema") != VET_SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ReportError(f"{path} is not an {VET_SCHEMA} document (schema: {found!r}); save one with "
                          f"`assay vet MODEL --json > vet.json`")
    return doc


def write_reports(doc: Mapping[str, Any], out_dir: Path, *, formats: Sequence[str]) -> dict[str, Path]:
    """Write each report format into ``out_dir`` atomically; returns format -> path."""
    written: dict[str, Path] = {}
    for fmt in formats:
        renderer = get_renderer(fmt)
        path = out_dir / renderer.default_filename
        write_atomic(path, renderer.render(doc))
        written[fmt] = path
    return written
