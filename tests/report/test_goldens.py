"""Golden files: each report format rendered from fixed vet documents must equal the file under goldens/.

A renderer change shows up as a diff of what a reader sees. When the change is intended, rewrite the goldens with
``pytest tests/report/test_goldens.py --update-goldens`` and review the diff like any other change.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from assay.report import get_renderer

GOLDENS = Path(__file__).parent / "goldens"
EXTENSIONS = {"terminal": "txt", "md": "md", "html": "html", "json": "json", "sarif": "sarif.json",
              "cyclonedx": "cdx.json"}
#: Which fixed results each format is checked on (SARIF needs a scan; every format gets the two extremes).
CASES = {"terminal": ("honest", "regression", "unsafe", "nobase", "deployed"),
         "md": ("honest", "regression", "unsafe", "deployed"),
         "html": ("honest", "unsafe"),
         "json": ("honest",),
         "sarif": ("unsafe",),
         "cyclonedx": ("deployed",)}


def _fixed(doc: dict[str, Any], tmp: str) -> dict[str, Any]:
    """The document with what differs between runs and machines pinned: time, environment, temp paths."""
    text = json.dumps(doc).replace(tmp, "/models")
    out = json.loads(text)
    out["started_at"] = "2026-01-01T00:00:00+00:00"
    out["seconds"] = 12.5
    out["environment"] = {"assay": "0.0.0", "python": "3.11.0", "platform": "Linux-x86_64", "torch": "2.13.0",
                          "transformers": "5.0.0", "hardware": {"cpu": "test cpu", "cpu_count": 2,
                                                               "memory_bytes": 2**34, "gpus": []}}
    for stage in (out.get("stages") or {}).values():
        if isinstance(stage, dict) and "seconds" in stage:
            stage["seconds"] = 0.1
    return out


def _normalise(text: str) -> str:
    # Versions and serial numbers a renderer stamps itself (CycloneDX: serialNumber, timestamp, tool version).
    text = re.sub(r"urn:uuid:[0-9a-f-]{36}", "urn:uuid:00000000-0000-0000-0000-000000000000", text)
    text = re.sub(r'"timestamp": "[^"]+"', '"timestamp": "2026-01-01T00:00:00Z"', text)
    return text


@pytest.mark.parametrize("fmt,case", [(f, c) for f, cases in CASES.items() for c in cases])
def test_report_matches_its_golden_file(fmt: str, case: str, vet_docs: dict[str, dict[str, Any]],
                                        request: pytest.FixtureRequest) -> None:
    doc = vet_docs[case]
    tmp = str(Path(doc["candidate"]["root"]).parent) if doc.get("candidate", {}).get("root") else "/nonexistent"
    rendered = _normalise(get_renderer(fmt).render(_fixed(doc, tmp)))
    golden = GOLDENS / f"{case}.{EXTENSIONS[fmt]}"
    if request.config.getoption("--update-goldens"):
        GOLDENS.mkdir(exist_ok=True)
        golden.write_text(rendered, encoding="utf-8")
    assert golden.is_file(), f"no golden file {golden.name}: run with --update-goldens and review it"
    expected = golden.read_text(encoding="utf-8")
    assert rendered == expected, f"{fmt} report of {case!r} differs from {golden.name} (intended? --update-goldens)"
