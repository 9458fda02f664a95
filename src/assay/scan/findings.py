"""Severities, the rule catalogue, and the result types of a scan.

Every finding carries a stable rule id from :data:`RULES`; ``docs/rules.md`` explains each one and how to allow it.

    >>> f = Finding(rule="PICKLE-GLOBAL-DANGEROUS", severity=Severity.CRITICAL, path="pytorch_model.bin",
    ...             location="member archive/data.pkl, byte 42", message="calls os.system", evidence="os.system")
    >>> f.severity >= Severity.MEDIUM
    True
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from assay.severity import Severity

__all__ = ["Severity"]  # re-exported: findings carry it


class ScanVerdict(enum.StrEnum):
    """The outcome of a scan."""

    SAFE = "safe"
    UNSAFE = "unsafe"
    UNVERIFIED = "unverified"


class FileStatus(enum.StrEnum):
    """What the scanner could say about one file."""

    CLEAN = "clean"
    FINDINGS = "findings"
    NOT_VERIFIED = "not_verified"


@dataclass(frozen=True)
class Rule:
    """One rule of the catalogue."""

    id: str
    """Stable identifier, e.g. ``PICKLE-GLOBAL``."""
    severity: Severity
    """Default severity of its findings."""
    title: str
    """One line: what was found."""
    allow: str
    """How a user who trusts the file accepts it."""


def _r(rule_id: str, severity: Severity, title: str, allow: str = "not allowable: fix or remove the file") -> Rule:
    return Rule(rule_id, severity, title, allow)


_ALLOW_GLOBAL = "--allow-global MODULE.QUALNAME (exact name) once you have read what it does"
_ALLOW_CODE = "--allow-remote-code, if you will run this model's code with trust_remote_code=True"

#: Every rule assay can report, by id.
RULES: dict[str, Rule] = {r.id: r for r in [
    # pickle
    _r("PICKLE-GLOBAL-DANGEROUS", Severity.CRITICAL,
       "pickle references a global that runs commands, evaluates code or reaches arbitrary objects", _ALLOW_GLOBAL),
    _r("PICKLE-GLOBAL", Severity.HIGH, "pickle references a global that is not on the allowlist", _ALLOW_GLOBAL),
    _r("PICKLE-COMPUTED-GLOBAL", Severity.CRITICAL, "pickle builds a global's name at load time"),
    _r("PICKLE-EXTENSION", Severity.HIGH, "pickle uses the copyreg extension registry (EXT1/EXT2/EXT4)"),
    _r("PICKLE-NESTED-LOADER", Severity.HIGH, "pickle calls a loader of nested serialized bytes", _ALLOW_GLOBAL),
    _r("PICKLE-CALL", Severity.HIGH, "pickle calls something that is not a named global (a call result, a "
       "persistent reference)"),
    _r("PICKLE-BUILD", Severity.HIGH, "pickle sets attributes on a class or module (BUILD on a global)"),
    _r("PICKLE-ARGS", Severity.HIGH, "an allowlisted global is called with arguments honest files never use"),
    _r("PICKLE-BROKEN", Severity.HIGH, "pickle stream breaks after it has already called something"),
    _r("PICKLE-TRAILING-DATA", Severity.LOW, "bytes after the last pickle that no loader reads"),
    # torch
    _r("TORCH-STORAGE", Severity.MEDIUM, "torch archive storage missing or not the size its pickle declares"),
    _r("TORCH-LEGACY-LAYOUT", Severity.MEDIUM, "legacy torch file: storage records do not match the pickles"),
    _r("TORCHSCRIPT-CODE", Severity.HIGH, "TorchScript archive carries code that runs when it is loaded"),
    # zip and other archives
    _r("ZIP-HEADER-MISMATCH", Severity.HIGH, "zip local header disagrees with the central directory"),
    _r("ZIP-CRC", Severity.HIGH, "zip member's CRC does not match its bytes"),
    _r("ZIP-FLAGS", Severity.MEDIUM, "zip member uses unusual flags or an unusual compression method"),
    _r("ZIP-DUPLICATE", Severity.HIGH, "zip has two members with the same name"),
    _r("ZIP-PREFIX", Severity.HIGH, "zip has bytes before its first member (a polyglot file)"),
    _r("ZIP-GAP", Severity.MEDIUM, "zip has bytes between members that no central directory entry covers"),
    _r("ZIP-OVERLAP", Severity.HIGH, "zip members overlap"),
    _r("ZIP-READERS-DISAGREE", Severity.HIGH, "torch (miniz) and zipfile (numpy, Keras) read the archive differently"),
    _r("ZIP-MULTIPLE-DIRECTORIES", Severity.HIGH, "zip holds a second end-of-central-directory record"),
    _r("ZIP-CASE-COLLISION", Severity.HIGH, "zip member names differ only in case (torch looks names up "
       "case-insensitively)"),
    _r("ZIP-AMBIGUOUS-RECORD", Severity.HIGH, "several zip members could be the torch record a loader reads"),
    _r("ZIP-TRAILING-DATA", Severity.LOW, "bytes after the zip end record that no zip reader reads"),
    _r("FORMAT-POLYGLOT", Severity.HIGH, "the file is valid as two formats: a loader of the other one reads "
       "different content"),
    _r("FORMAT-MISMATCH", Severity.MEDIUM, "the file's content contradicts its name (a text file named "
       "model.safetensors)", "rename the file to what it is"),
    _r("ARCHIVE-PATH", Severity.HIGH, "archive member escapes the extraction folder or is a link or device"),
    # numpy, keras
    _r("NUMPY-OBJECT", Severity.MEDIUM, "numpy array of Python objects: np.load needs allow_pickle=True"),
    _r("KERAS-LAMBDA", Severity.CRITICAL, "Keras Lambda layer: serialized Python code runs when loaded"),
    _r("KERAS-CUSTOM", Severity.MEDIUM, "Keras model names a custom class or module outside Keras", _ALLOW_CODE),
    # safetensors
    _r("SAFETENSORS-HEADER", Severity.HIGH, "safetensors header is malformed or larger than the file"),
    _r("SAFETENSORS-DUPLICATE", Severity.HIGH, "safetensors header names a key twice"),
    _r("SAFETENSORS-DTYPE", Severity.HIGH, "safetensors tensor has an unknown dtype"),
    _r("SAFETENSORS-SIZE", Severity.HIGH, "safetensors tensor's byte span differs from dtype x shape"),
    _r("SAFETENSORS-BOUNDS", Severity.HIGH, "safetensors tensor's offsets lie outside the data section"),
    _r("SAFETENSORS-OVERLAP", Severity.HIGH, "safetensors tensors overlap"),
    _r("SAFETENSORS-GAP", Severity.MEDIUM, "safetensors data section has bytes no tensor covers"),
    _r("SAFETENSORS-METADATA", Severity.MEDIUM, "safetensors __metadata__ is not a string-to-string map"),
    _r("SAFETENSORS-NONFINITE", Severity.MEDIUM, "tensor holds NaN or infinite values (--deep)",
       "--fail-on high, if a broken tensor is acceptable"),
    _r("SAFETENSORS-ZERO", Severity.INFO, "tensor is all zeros (--deep)", "informational only"),
    # gguf
    _r("GGUF-HEADER", Severity.HIGH, "GGUF header is truncated or its counts are impossible"),
    _r("GGUF-STRING", Severity.HIGH, "GGUF string length is absurd or runs past the end of the file"),
    _r("GGUF-TYPE", Severity.HIGH, "GGUF value or tensor type is unknown"),
    _r("GGUF-TENSOR-BOUNDS", Severity.HIGH, "GGUF tensor lies outside the data section or has impossible dims"),
    _r("GGUF-ALIGNMENT", Severity.HIGH, "GGUF alignment is invalid or a tensor offset is misaligned"),
    _r("GGUF-DUPLICATE", Severity.HIGH, "GGUF metadata key or tensor name appears twice"),
    _r("GGUF-OVERLAP", Severity.HIGH, "GGUF tensors overlap"),
    _r("GGUF-LAYOUT", Severity.MEDIUM, "GGUF tensor offsets differ from the layout llama.cpp requires"),
    _r("TENSOR-EMBEDDED-PAYLOAD", Severity.MEDIUM, "tensor data is a pickle, an executable or a script"),
    # templates
    _r("TEMPLATE-DUNDER", Severity.CRITICAL, "chat template reaches a dunder or private attribute"),
    _r("TEMPLATE-ATTR-FILTER", Severity.HIGH, "chat template uses the attr filter with a computed or private name"),
    _r("TEMPLATE-GLOBAL", Severity.HIGH, "chat template uses a Jinja global (lipsum, cycler, joiner, namespace, "
       "self) to reach Python objects"),
    _r("TEMPLATE-IMPORT", Severity.HIGH, "chat template imports, includes or extends another template"),
    _r("TEMPLATE-REFLECTION", Severity.HIGH, "chat template uses a reflective method or a format string"),
    _r("TEMPLATE-COMPUTED-NAME", Severity.CRITICAL, "chat template reads an item whose key it builds at render "
       "time (Jinja falls back to the attribute of that name)"),
    _r("TEMPLATE-DATA-KEY", Severity.MEDIUM, "chat template reads an item whose key comes from the conversation "
       "data (outside a literal lookup table)"),
    _r("TEMPLATE-METHOD", Severity.HIGH, "chat template calls a method outside the read-only string and dict "
       "allowlist (format, format_map, mutators, ...)"),
    _r("TEMPLATE-CALL", Severity.HIGH, "chat template calls something that is not a macro, caller() or a "
       "global transformers defines"),
    # remote code
    _r("CODE-AUTO-MAP", Severity.HIGH, "auto_map names Python modules that trust_remote_code=True imports",
       _ALLOW_CODE),
    _r("CODE-AUTO-MAP-REMOTE", Severity.HIGH, "auto_map pulls code from another repository"),
    _r("CODE-FILE", Severity.MEDIUM, "Python code in the model folder", _ALLOW_CODE),
    _r("CODE-CUSTOM-GENERATE", Severity.HIGH, "custom_generate/generate.py: transformers imports it under "
       "trust_remote_code=True without any auto_map", _ALLOW_CODE),
    _r("CODE-IMPORT", Severity.HIGH, "Python code imports a process, network, FFI or dynamic-import module"),
    _r("CODE-IMPORT-FS", Severity.LOW, "Python code imports a file-system module"),
    _r("CODE-EXEC", Severity.HIGH, "Python code calls eval, exec, compile, __import__ or runs commands"),
    _r("CODE-IMPORT-TIME", Severity.LOW, "Python code runs statements when the module is imported"),
    # everything else
    _r("SYMLINK-OUTSIDE", Severity.HIGH, "symbolic link points outside the model folder"),
    _r("EXEC-BINARY", Severity.HIGH, "executable or shared library in the model folder"),
    _r("SCRIPT", Severity.MEDIUM, "shell or other script in the model folder"),
    _r("GIT-METADATA", Severity.INFO, "git's own metadata (.git/) was not scanned: no model loader reads it",
       "informational only"),
]}


@dataclass(frozen=True)
class Finding:
    """One thing the scanner found."""

    rule: str
    """Stable rule id (a key of :data:`RULES`)."""
    severity: Severity
    """How bad it is."""
    path: str
    """The file, relative to the model root (POSIX separators)."""
    location: str | None
    """Where in the file: archive member, byte offset, template line; None for the file as a whole."""
    message: str
    """One sentence for a human."""
    evidence: str | None = None
    """The exact name, bytes or text that triggered the rule, shortened."""


@dataclass(frozen=True)
class FileResult:
    """What the scanner could say about one file."""

    path: str
    """The file, relative to the model root."""
    format: str
    """Its format, detected by content (:class:`assay.model.formats.Format` value, or ``symlink``)."""
    status: str
    """``clean``, ``findings`` or ``not_verified`` (:class:`FileStatus` values)."""
    reason: str | None = None
    """Why the file could not be analysed fully (only for ``not_verified``)."""


@dataclass(frozen=True)
class ScanReport:
    """The result of scanning a model."""

    verdict: ScanVerdict
    """``safe``, ``unsafe`` (a finding at or above ``fail_on``) or ``unverified`` (a file not analysed fully)."""
    findings: tuple[Finding, ...]
    """Every finding, at every severity, in file order."""
    files: tuple[FileResult, ...]
    """One entry per file of the model."""
    fail_on: Severity
    """Findings at or above this severity make the verdict ``unsafe``."""
    model: str = ""
    """The reference that was scanned, as given."""
    root: str = ""
    """The model folder that was scanned."""
    allow_globals: tuple[str, ...] = ()
    """Pickle globals the caller added to the allowlist."""
    allow_remote_code: bool = False
    """Whether custom Python code was accepted."""
    deep: bool = False
    """Whether tensor data was read (NaN/Inf, all-zero tensors)."""

    @property
    def exit_code(self) -> int:
        """0 safe, 1 unsafe, 2 unverified."""
        return {ScanVerdict.SAFE: 0, ScanVerdict.UNSAFE: 1, ScanVerdict.UNVERIFIED: 2}[self.verdict]

    def failing(self) -> tuple[Finding, ...]:
        """Findings at or above ``fail_on``."""
        return tuple(f for f in self.findings if f.severity >= self.fail_on)


def decide(findings: tuple[Finding, ...], files: tuple[FileResult, ...], fail_on: Severity) -> ScanVerdict:
    """The verdict rule: any finding at ``fail_on`` or above is unsafe; else any unverified file is unverified."""
    if any(f.severity >= fail_on for f in findings):
        return ScanVerdict.UNSAFE
    if any(f.status == FileStatus.NOT_VERIFIED for f in files):
        return ScanVerdict.UNVERIFIED
    return ScanVerdict.SAFE
