"""The ``assay.vet/1`` JSON document, pretty-printed: everything the vet found, for machines and archives.

    JsonRenderer().render(vet_document(result))   # same text `assay vet --json` prints
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from assay.report.base import Renderer


class JsonRenderer(Renderer):
    """The full document as JSON (UTF-8, two-space indent, NaN written as null)."""

    name = "json"
    default_filename = "vet.json"

    def render(self, doc: Mapping[str, Any]) -> str:
        from assay.jsonable import to_jsonable

        return json.dumps(to_jsonable(doc), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
