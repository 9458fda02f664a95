"""The state of scanning one file: its findings, the reasons it could not be verified, and the options.

Each format scanner receives a :class:`FileScan` and a ``where`` prefix (an archive member, a nested pickle) and
reports into it; :func:`assay.scan.scan_model` turns it into a :class:`~assay.scan.findings.FileResult`. It is
the :class:`~assay.model.pickle_vm.PickleReport` the pickle machine reports into.

    >>> fs = FileScan("model.bin", ScanOptions())
    >>> fs.add("PICKLE-GLOBAL", at(None, "byte 12"), "references os.system", "os.system")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from assay.model.problems import at as at  # re-exported: every format scanner joins locations with it
from assay.scan.findings import RULES, FileResult, FileStatus, Finding, Severity

#: Archives nested deeper than this are not opened.
MAX_DEPTH = 6


@dataclass(frozen=True)
class ScanOptions:
    """How to scan."""

    allow_globals: frozenset[str] = frozenset()
    """Extra pickle globals (exact ``module.qualname``) to accept."""
    allow_remote_code: bool = False
    """Accept custom Python code (auto_map, .py files): their presence becomes informational."""
    deep: bool = False
    """Read tensor data too (NaN/Inf, all-zero tensors; CRCs of every zip member)."""
    inside_hf_cache: bool = False
    """The model root is a Hugging Face cache snapshot (its files are links into ``../../blobs``)."""


@dataclass
class FileScan:
    """Findings and unverified reasons collected for one file of the model."""

    path: str
    options: ScanOptions
    findings: list[Finding] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    format: str = "unknown"
    _seen: set[tuple[str, str | None, str | None]] = field(default_factory=set)
    pickle_ops: int = 0
    """Pickle opcodes run so far in this file (bounded, see :data:`assay.model.pickle_vm.MAX_PICKLE_OPS`)."""
    payload_bytes: int = 0
    """Bytes of tensor starts the pickle decoder consumed so far (bounded per file, see :mod:`assay.scan.payload`)."""
    nested_seen: set[bytes] = field(default_factory=set)
    """Digests of nested byte strings already scanned in this file (each is scanned once)."""
    scan_nested: Callable[..., Any] | None = None
    """The content router (:func:`assay.scan.files.scan_buffer`), set when it first sees this file: containers
    hand every member back to it with :meth:`nested`, so they need not import the router."""

    def probe(self) -> FileScan:
        """A fresh collector for another reading of this same file (its findings are merged or dropped by the
        caller); members it finds still go to this file's router."""
        return FileScan(self.path, self.options, scan_nested=self.scan_nested)

    def nested(self, buf: Any, name: str, *, where: str | None, depth: int) -> None:
        """Scan ``buf``, a member found inside this file, by its content (through the router)."""
        if self.scan_nested is None:
            raise RuntimeError("FileScan.nested called before the content router saw this file")
        self.scan_nested(buf, name, self, where=where, depth=depth)

    def add(self, rule: str, location: str | None, message: str, evidence: str | None = None, *,
            severity: Severity | None = None) -> None:
        """Record a finding of ``rule`` (its catalogue severity unless ``severity`` is given)."""
        sev = severity if severity is not None else RULES[rule].severity
        key = (rule, location, evidence)
        if key in self._seen:
            return
        self._seen.add(key)
        if evidence is not None and len(evidence) > 300:
            evidence = evidence[:297] + "..."
        self.findings.append(Finding(rule=rule, severity=sev, path=self.path, location=location, message=message,
                                     evidence=evidence))

    def unverified(self, reason: str) -> None:
        """Record that part of the file could not be analysed (the file is then never clean)."""
        if reason not in self.reasons:
            self.reasons.append(reason)

    def result(self) -> FileResult:
        """The file's status."""
        if self.findings and any(f.severity > Severity.INFO for f in self.findings):
            status = FileStatus.FINDINGS
        elif self.reasons:
            status = FileStatus.NOT_VERIFIED
        else:
            status = FileStatus.CLEAN
        if status is FileStatus.FINDINGS and self.reasons:
            # Findings are shown first, but the file still was not analysed fully.
            return FileResult(self.path, self.format, FileStatus.NOT_VERIFIED.value, "; ".join(self.reasons))
        return FileResult(self.path, self.format, status.value, "; ".join(self.reasons) or None)
