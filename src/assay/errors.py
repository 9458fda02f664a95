"""One error root for everything assay refuses, with a message written for the user.

The CLI catches :class:`AssayError` once (``assay.cli.main``), prints ``error: <message>`` on one line and
exits with :attr:`AssayError.exit_code` (2: could not decide). Anything else is a bug and shows a traceback
only with ``--debug``.

    >>> raise ModelError("no such model: ./missing (neither a folder, a file nor a cached org/name)")

A tampered or hostile file is *not* an error: it is a result (exit 1) reported by the stage that found it.
"""

from __future__ import annotations


class AssayError(Exception):
    """Root of every error assay raises on purpose. ``str(err)`` is a complete sentence for the user."""

    exit_code: int = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The one line (plus an optional hint) shown to the user."""
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class UsageError(AssayError):
    """The command line itself is wrong (bad option combination, missing argument)."""


class ModelError(AssayError):
    """A model reference cannot be resolved or a checkpoint file cannot be read."""


class FormatError(ModelError):
    """A file is not what its structure claims (truncated, malformed header, unknown format)."""


class ScanError(AssayError):
    """The scanner could not run at all (not: it found something)."""


class ProvenanceError(AssayError):
    """Hashing, signing or lineage could not be done (bad key, unreadable signature file, ...)."""


class SignatureError(ProvenanceError):
    """A signature is malformed, foreign or does not verify: the model may have been modified maliciously."""

    exit_code = 1


class EvalError(AssayError):
    """An evaluation could not run: bad task file, label out of range, model that cannot be loaded."""


class BackendError(EvalError):
    """An evaluation backend failed (missing extra, server unreachable, unsupported request)."""


class PolicyError(AssayError):
    """The policy file is invalid (unknown key, wrong type)."""


class DeployError(AssayError):
    """Bench, cost or card inputs are invalid."""


class ReportError(AssayError):
    """A report could not be written or a saved result cannot be re-rendered."""


_debug = False


def set_debug(on: bool) -> None:
    """Set by the CLI's ``--debug``: internal errors are then re-raised with their traceback."""
    global _debug
    _debug = on


def debugging() -> bool:
    """True under ``--debug`` or ``ASSAY_DEBUG=1``."""
    import os

    return _debug or os.environ.get("ASSAY_DEBUG") == "1"
