"""What a format reader found wrong with a file, in one shape for every format.

The readers (:mod:`assay.model.safetensors_file`, :mod:`assay.model.gguf_file`) never raise on a damaged file:
they return what they could read and a list of :class:`Problem`. The scanner turns each problem into a finding
(its ``rule`` is a scan rule id); the tensor reader refuses the file on the first fatal one.

    >>> Problem("GGUF-HEADER", "byte 24", "truncated: ...", fatal=True).rule
    'GGUF-HEADER'
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """Something in a file's header that a loader would refuse, or that hides bytes."""

    rule: str
    """The scan rule id (``SAFETENSORS-BOUNDS``, ``GGUF-HEADER``, ...)."""
    location: str | None
    """``tensor NAME``, ``header``, ``byte N``."""
    message: str
    """One line for a user."""
    evidence: str | None = None
    """The offending value, short."""
    fatal: bool = True
    """The tensors cannot be read as the header describes them (the tensor reader refuses the file)."""


def problem_message(rel: str, message: str, location: str | None = None) -> str:
    """One line for a user: ``x.gguf is truncated: ...`` or ``x.gguf: <problem> (<where>)``."""
    where = f" ({location})" if location else ""
    if message.startswith("truncated: "):
        return f"{rel} is truncated: {message.removeprefix('truncated: ')}{where}"
    return f"{rel}: {message}{where}"


def at(where: str | None, detail: str | None) -> str | None:
    """Join a location prefix (``member x``) and a detail (``byte 12``)."""
    parts = [p for p in (where, detail) if p]
    return ", ".join(parts) if parts else None
