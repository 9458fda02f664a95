"""Reports: one module per output format, each a :class:`~assay.report.base.Renderer` over an ``assay.vet/1``
document, so a saved result re-renders into any format.

- :mod:`.terminal` the rich summary ``assay vet`` prints; :mod:`.json_report` the full document;
- :mod:`.markdown` a pull-request comment; :mod:`.html` a self-contained page with inline SVG charts (and a
  leaderboard page over several results); :mod:`.sarif` scan findings as SARIF 2.1.0;
  :mod:`.cyclonedx` a CycloneDX 1.6 ML-BOM; :mod:`.io` the report folder, writing every format atomically and
  reading a saved ``vet.json``.

    >>> from assay.report import get_renderer, write_atomic
    >>> write_atomic(Path("out/report.html"), get_renderer("html").render(doc))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from assay.errors import ReportError
from assay.report.base import Renderer, write_atomic

FORMATS = ("terminal", "json", "md", "html", "sarif", "cyclonedx")
"""Format names ``assay report --format`` accepts."""


class SarifRenderer(Renderer):
    """The scan findings of a vet result as SARIF 2.1.0 (built by :mod:`assay.report.sarif`)."""

    name = "sarif"
    default_filename = "scan.sarif"

    def render(self, doc: Mapping[str, Any]) -> str:
        from assay.report import sarif

        scan = doc.get("scan")
        if not isinstance(scan, Mapping):
            why = (doc.get("stages") or {}).get("scan", {}).get("reason") or "the result has no scan"
            raise ReportError(f"cannot write SARIF: {why}")
        return json.dumps(sarif.sarif_from_scan_document(scan), indent=2, ensure_ascii=False) + "\n"


def get_renderer(fmt: str) -> Renderer:
    """The renderer for ``fmt`` (one of :data:`FORMATS`; ``markdown`` is an alias of ``md``)."""
    fmt = {"markdown": "md", "cdx": "cyclonedx"}.get(fmt, fmt)
    if fmt == "terminal":
        from assay.report.terminal import TerminalRenderer

        return TerminalRenderer()
    if fmt == "json":
        from assay.report.json_report import JsonRenderer

        return JsonRenderer()
    if fmt == "md":
        from assay.report.markdown import MarkdownRenderer

        return MarkdownRenderer()
    if fmt == "html":
        from assay.report.html import HtmlRenderer

        return HtmlRenderer()
    if fmt == "sarif":
        return SarifRenderer()
    if fmt == "cyclonedx":
        from assay.report.cyclonedx import CycloneDxRenderer

        return CycloneDxRenderer()
    raise ReportError(f"unknown report format {fmt!r} (choose from {', '.join(FORMATS)})")


__all__ = ["FORMATS", "Renderer", "SarifRenderer", "get_renderer", "write_atomic"]
