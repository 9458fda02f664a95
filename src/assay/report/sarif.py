"""Scan findings as SARIF 2.1.0, the format code-scanning dashboards (GitHub, GitLab, Azure DevOps) ingest.

One run, tool ``assay``, one rule per rule id that fired (with its catalogue text and how to allow it), one result
per finding. Files the scanner could not verify become tool notifications, so a dashboard shows them too. The
document validates against the official SARIF 2.1.0 JSON schema (tested).

    >>> doc = sarif_document(scan_model(resolve("./model")))
    >>> doc["version"], doc["runs"][0]["tool"]["driver"]["name"]
    ('2.1.0', 'assay')

:func:`sarif_from_scan_document` does the same from a saved ``assay.scan/1`` document (``assay report``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from assay import __version__

SARIF_SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note", "info": "note"}
# GitHub code scanning ranks security results by this property (0-10).
_SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "0.0"}
_LINE = re.compile(r"^line (\d+)$")
_BYTE = re.compile(r"^byte (\d+)$")


def sarif_document(report: Any) -> dict[str, Any]:
    """SARIF 2.1.0 for a :class:`assay.scan.ScanReport`."""
    from assay.scan import scan_document

    return sarif_from_scan_document(scan_document(report))


def sarif_from_scan_document(scan: Mapping[str, Any]) -> dict[str, Any]:
    """SARIF 2.1.0 for an ``assay.scan/1`` document (as saved inside ``assay.vet/1``)."""
    from assay.scan.findings import RULES

    findings = list(scan.get("findings") or [])
    rule_ids = sorted({str(f.get("rule")) for f in findings})
    index = {rid: i for i, rid in enumerate(rule_ids)}
    rules = []
    for rid in rule_ids:
        rule = RULES.get(rid)
        title = rule.title if rule else rid
        severity = rule.severity.value if rule else "high"
        rules.append({
            "id": rid,
            "name": "".join(part.capitalize() for part in rid.split("-")),
            "shortDescription": {"text": title},
            "fullDescription": {"text": f"{title}. To accept it: {rule.allow if rule else 'see docs/rules.md'}."},
            "help": {"text": f"See docs/rules.md#{rid.lower()}. To accept it: "
                             f"{rule.allow if rule else 'see docs/rules.md'}."},
            "defaultConfiguration": {"level": _LEVEL.get(severity, "warning")},
            "properties": {"security-severity": _SECURITY_SEVERITY.get(severity, "5.5"),
                           "tags": ["security", "model-supply-chain"]},
        })
    results = []
    for f in findings:
        severity = str(f.get("severity", "high"))
        location = f.get("location")
        physical: dict[str, Any] = {"artifactLocation": {"uri": _uri(str(f.get("path", ""))),
                                                         "uriBaseId": "MODEL_ROOT"}}
        if isinstance(location, str):
            if m := _LINE.match(location):
                physical["region"] = {"startLine": max(1, int(m.group(1)))}
            elif m := _BYTE.match(location):
                physical["region"] = {"byteOffset": int(m.group(1))}
        message = str(f.get("message", ""))
        if location:
            message = f"{message} ({location})"
        result: dict[str, Any] = {
            "ruleId": str(f.get("rule")),
            "ruleIndex": index[str(f.get("rule"))],
            "level": _LEVEL.get(severity, "warning"),
            "message": {"text": message},
            "locations": [{"physicalLocation": physical}],
            "properties": {"severity": severity},
        }
        if location:
            result["properties"]["location"] = location
        if f.get("evidence") is not None:
            result["properties"]["evidence"] = str(f["evidence"])
        results.append(result)
    notifications = [
        {"level": "warning", "message": {"text": f"not verified: {f.get('path')}: {f.get('reason') or 'not analysed'}"},
         "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(str(f.get("path", ""))),
                                                                  "uriBaseId": "MODEL_ROOT"}}}]}
        for f in scan.get("files") or [] if f.get("status") == "not_verified"
    ]
    root = str(scan.get("root") or "")
    run: dict[str, Any] = {
        "tool": {"driver": {"name": "assay", "version": __version__, "semanticVersion": __version__,
                            "rules": rules}},
        "results": results,
        "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
        "properties": {"verdict": scan.get("verdict"), "failOn": scan.get("fail_on"), "model": scan.get("model")},
    }
    if root:
        run["originalUriBaseIds"] = {"MODEL_ROOT": {"uri": "file://" + _uri(root.rstrip("/")) + "/"}}
    return {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def _uri(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")
