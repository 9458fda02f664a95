"""The hub's error: what it refuses, with the HTTP status it answers with (importable without the [hub] extra)."""

from __future__ import annotations

from assay.errors import AssayError


class HubError(AssayError):
    """The hub cannot do what was asked (bad database URL, unknown model, refused publish)."""

    def __init__(self, message: str, *, status: int = 400, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status
