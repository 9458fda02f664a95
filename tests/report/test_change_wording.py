"""Every report renders the comparison's own judgement: better / worse only for significant changes.

Before (issue 13) the reports re-derived a judgement from the interval alone and painted changes with p = 0.69
green "improved"; the verdict and the reports could then disagree with the paired test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from assay.evaluate.compare import compare_results, eval_document
from assay.policy import default_policy
from assay.report import get_renderer
from assay.report.base import comparison_rows
from assay.verdict import Outcome, decide
from assay.vet import vet_document
from tests.evaluate.test_change_rule import _issue_case
from tests.report.builders import make_result, metric
from tests.test_verdict import clean_stages


def _doc(tmp_path: Path, comparison: dict[str, Any]) -> dict[str, Any]:
    return vet_document(make_result(clean_stages(comparison=comparison), tmp=tmp_path))


def test_a_change_the_test_does_not_support_is_no_significant_change_everywhere(tmp_path: Path) -> None:
    # interval above zero but p = 0.69 after Holm: not significant; and a real, significant loss
    comparison = {"builtin:knowledge": {"acc": {**metric(0.50, 0.60, 0.05, p=0.69), "higher_is_better": True}},
                  "domain": {"acc": {**metric(0.61, 0.35, 0.04, p=1e-6), "higher_is_better": True}}}
    doc = _doc(tmp_path, comparison)
    assert doc["verdict"] == "FAIL"
    rows = {r["task"]: r for r in comparison_rows(doc)}
    assert rows["builtin:knowledge"]["status"] == "no significant change"
    assert rows["domain"]["status"] == "regressed" and rows["domain"]["change"] == "worse"
    md = get_renderer("md").render(doc)
    line = next(x for x in md.splitlines() if "builtin:knowledge" in x and "acc" in x)
    assert "no significant change" in line and "better" not in line and "improved" not in line
    text = get_renderer("terminal").render(doc)
    line = next(x for x in text.splitlines() if "builtin:knowledge" in x)
    assert "no significant change" in line or "no significant" in line
    assert "improved" not in text
    html = get_renderer("html").render(doc)
    row = re.search(r'<tr id="[^"]*cmp-builtin-knowledge[^"]*">(.*?)</tr>', html, re.S)
    assert row is not None and "no significant change" in row.group(1) and "st-no-significant-change" in row.group(1)
    assert 'class="pill st-improved"' not in html and 'class="pill st-better"' not in html


def test_the_issue_case_passes_the_verdict_and_reads_the_same_in_json(tmp_path: Path) -> None:
    base, cand = _issue_case()
    for seed in (0, 1, 2, 3):
        cmp = compare_results(base, cand, seed=seed)
        ev = eval_document(model="c", results=cand, base="b", base_results=base, comparison=cmp)
        comparison = json.loads(json.dumps(ev["comparison"]))
        doc = _doc(tmp_path, comparison)
        assert doc["verdict"] == "PASS", doc["reasons"]
        assert decide(clean_stages(comparison=comparison), default_policy()).outcome is Outcome.PASS
        assert doc["comparison"]["small"]["acc"]["change"] == "no significant change"
        md = get_renderer("md").render(doc)
        assert "regressed" not in md and "| worse |" not in md
