"""The HTML leaderboard: one order for the table and the sections, intervals shown, the must-improve task's delta
for every model, and charts that say why they are empty."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

from assay.policy import default_policy
from assay.report import get_renderer
from assay.report.html import LEADERBOARD_ORDER, render_leaderboard
from assay.verdict import StageOutcome
from assay.vet import vet_document
from tests.report.builders import lineage_doc, make_result, metric, outcomes, scan_doc
from tests.report.test_renderers import parse_html

MUST = "ticket-routing"


def _policy() -> Any:
    p = default_policy()
    return replace(p, evaluation=replace(p.evaluation, must_improve=(MUST,)))


def _doc(tmp: Path, name: str, domain: tuple[float, float, float], knowledge: tuple[float, float, float],
         *, change: float = 0.01, relation: str = "finetune") -> dict[str, Any]:
    """A vet document whose four judged metrics all move like ``knowledge`` and whose must-improve task moves like
    ``domain`` (base, candidate, half-width of the interval)."""
    stages = outcomes(
        inventory={"architecture": "LlamaForCausalLM", "parameters": 135_000_000},
        scan=scan_doc(), base_scan=scan_doc(), signature=StageOutcome.not_applicable("signature", "no model.sig"),
        lineage=lineage_doc(relation, layers=6, change=change),
        evaluation={"schema": "assay.eval/1", "tasks": {}},
        comparison={"builtin:knowledge": {"acc": metric(*knowledge, p=0.001), "acc_norm": metric(*knowledge, p=0.001)},
                    "builtin:arithmetic": {"acc": metric(*knowledge, p=0.001),
                                           "acc_norm": metric(*knowledge, p=0.001)},
                    MUST: {"acc": metric(*domain, p=0.001 if domain[0] != domain[1] else 1.0)}})
    return vet_document(make_result(stages, policy=_policy(), tmp=tmp, name=name))


def _board_and_sections(html: str) -> tuple[list[str], list[str], str]:
    board = html[:html.index("<section")]
    links = [a["href"][1:] for t, a in parse_html(board).tags if t == "a" and a.get("href", "").startswith("#")]
    sections = [a["id"] for t, a in parse_html(html).tags if t == "section"]
    return links, sections, board


def test_table_and_sections_share_the_terminal_order(tmp_path: Path) -> None:
    docs = [_doc(tmp_path, "zeta-broken", (0.3, 0.3, 0.05), (0.6, 0.3, 0.04)),
            _doc(tmp_path, "alpha-same", (0.3, 0.3, 0.05), (0.6, 0.6, 0.0), change=0.0, relation="identical"),
            _doc(tmp_path, "mid-honest", (0.3, 0.7, 0.1), (0.6, 0.61, 0.02))]
    links, sections, _ = _board_and_sections(render_leaderboard(docs))
    # `assay demo` prints its table sorted by verdict, ties in zoo order: the page follows the same key.
    expected = [d["candidate"]["name"] for d in sorted(docs, key=lambda d: LEADERBOARD_ORDER[d["verdict"]])]
    assert [d["verdict"] for d in docs] == ["FAIL", "FAIL", "PASS"]
    assert links == sections == expected == ["mid-honest", "zeta-broken", "alpha-same"]


def test_every_row_shows_the_must_improve_delta_with_its_interval(tmp_path: Path) -> None:
    docs = [_doc(tmp_path, "honest", (0.30, 0.70, 0.10), (0.60, 0.61, 0.02)),
            _doc(tmp_path, "broken", (0.30, 0.28, 0.05), (0.60, 0.30, 0.04)),
            _doc(tmp_path, "same", (0.30, 0.30, 0.0), (0.60, 0.60, 0.0), change=0.0, relation="identical")]
    _, _, board = _board_and_sections(render_leaderboard(docs))
    rows = re.findall(r"<tr>.*?</tr>", board[board.index("<tbody>"):], re.S)
    assert len(rows) == 3
    for row, (name, delta, lo, hi) in zip(rows, (("honest", "+0.400", "+0.300", "+0.500"),
                                                 ("broken", "-0.020", "-0.070", "+0.030"),
                                                 ("same", "+0.000", "+0.000", "+0.000")), strict=True):
        assert name in row
        # the must-improve task, first in the cell, with its delta and 95% interval, for every model
        cell = re.search(rf"<b>{MUST}</b> acc {re.escape(delta)} <span class=\"ci\">\[{re.escape(lo)}, "
                         rf"{re.escape(hi)}\]</span>", row)
        assert cell, row
    # the broken model's four regressions are all listed too (with intervals), after the must-improve task
    broken = rows[1]
    assert broken.count("-0.300 <span class=\"ci\">[-0.340, -0.260]</span>") == 4
    assert "95% interval" in board


def test_identical_weights_say_why_the_charts_are_empty(tmp_path: Path) -> None:
    same = _doc(tmp_path, "same", (0.3, 0.3, 0.0), (0.6, 0.6, 0.0), change=0.0, relation="identical")
    html = get_renderer("html").render(same)
    assert 'aria-label="Relative weight change per layer"' not in html  # no empty bar chart
    assert "all 6 layers have a relative change of exactly 0" in html and "identical to the base" in html
    assert "scored exactly as the base on every item" in html
    moved = get_renderer("html").render(_doc(tmp_path, "moved", (0.3, 0.7, 0.1), (0.6, 0.61, 0.02)))
    assert 'aria-label="Relative weight change per layer"' in moved and "empty-chart" not in moved
