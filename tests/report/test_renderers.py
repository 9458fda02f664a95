"""Every report format renders every kind of result, escapes what came from the model, and is written atomically."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from assay.errors import ReportError
from assay.report import FORMATS, get_renderer, write_atomic
from assay.report.base import comparison_rows
from assay.report.html import render_leaderboard
from tests.report.conftest import HOSTILE

KINDS = ("regression", "honest", "unsafe", "nobase", "deployed")


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(text: str) -> _Collect:
    p = _Collect()
    p.feed(text)
    return p


@pytest.mark.parametrize("kind", KINDS)
def test_json_is_the_document(vet_docs: dict[str, Any], kind: str) -> None:
    doc = vet_docs[kind]
    out = json.loads(get_renderer("json").render(doc))
    assert out == doc and out["schema"] == "assay.vet/1"
    assert out["verdict"] in ("PASS", "WARN", "FAIL", "NONE")
    assert {"rule", "stage", "message", "evidence"} <= set().union(*[set(r) for r in out["reasons"]] or [set(
        ["rule", "stage", "message", "evidence"])])
    env = out["environment"]
    assert env["assay"] and env["python"] and "torch" in env and "transformers" in env and env["hardware"]["cpu_count"]


def test_expected_verdicts_of_the_fixtures(vet_docs: dict[str, Any]) -> None:
    assert vet_docs["regression"]["verdict"] == "FAIL"
    assert vet_docs["honest"]["verdict"] == "PASS"
    assert vet_docs["unsafe"]["verdict"] == "FAIL"
    assert vet_docs["nobase"]["verdict"] == "WARN"
    # the card claims 0.95 where 0.62 was measured: a warning with the numbers, pointing at the claim
    assert vet_docs["deployed"]["verdict"] == "WARN"
    assert [(r["rule"], r["evidence"]) for r in vet_docs["deployed"]["reasons"]] == [("card.claims", "card.claims[0]")]


@pytest.mark.parametrize("kind", KINDS)
def test_markdown_is_short_and_names_the_verdict_and_reasons(vet_docs: dict[str, Any], kind: str) -> None:
    doc = vet_docs[kind]
    md = get_renderer("md").render(doc)
    assert f"**{doc['verdict']}**" in md
    assert len(md.splitlines()) <= 60 and len(md) < 8000  # fits a PR comment without scrolling forever
    for r in doc["reasons"][:8]:
        assert f"`{r['evidence']}`" in md
    # model strings cannot inject HTML into the comment: outside code spans (where GitHub shows text verbatim)
    # there is no raw tag from the model
    prose = re.sub(r"`[^`]*`", "", md)
    assert "<script" not in prose and "<img" not in prose


@pytest.mark.parametrize("kind", KINDS)
def test_terminal_summary(vet_docs: dict[str, Any], kind: str) -> None:
    doc = vet_docs[kind]
    text = get_renderer("terminal").render(doc)
    assert doc["verdict"] in text
    for r in doc["reasons"]:
        assert r["rule"] in text
    for row in comparison_rows(doc):
        assert row["task"] in text


@pytest.mark.parametrize("kind", KINDS)
def test_html_is_self_contained_and_escaped(vet_docs: dict[str, Any], kind: str) -> None:
    doc = vet_docs[kind]
    html = get_renderer("html").render(doc)
    page = parse_html(html)
    tags = [t for t, _ in page.tags]
    assert "script" not in tags and "link" not in tags and "iframe" not in tags
    for _, attrs in page.tags:
        for name in ("src", "href"):
            v = attrs.get(name)
            assert v is None or v.startswith("#"), f"external reference {name}={v}"
        assert not any(a.startswith("on") for a in attrs), attrs
    text = " ".join(page.text)
    assert doc["verdict"] in text
    if kind == "unsafe":
        assert HOSTILE in text  # shown as text, not markup
    banner = [a for t, a in page.tags if a.get("class") == "banner verdict"]
    assert banner and banner[0]["data-verdict"] == doc["verdict"]


def test_every_evidence_link_lands_on_its_evidence(vet_docs: dict[str, Any]) -> None:
    pages = [(get_renderer("html").render(d), len(d["reasons"])) for d in vet_docs.values()]
    pages.append((render_leaderboard(list(vet_docs.values())), sum(len(d["reasons"]) for d in vet_docs.values())))
    for html, n_reasons in pages:
        page = parse_html(html)
        ids = [a["id"] for _, a in page.tags if a.get("id")]
        assert len(ids) == len(set(ids))
        hrefs = [a["href"] for t, a in page.tags if t == "a" and a.get("href")]
        assert len(hrefs) >= n_reasons and all(h[1:] in ids for h in hrefs), [h for h in hrefs if h[1:] not in ids]
    doc = vet_docs["unsafe"]
    html = get_renderer("html").render(doc)
    for r in doc["reasons"]:
        i = r["evidence"].removeprefix("scan.findings[").rstrip("]")
        row = re.search(rf'<tr id="[^"]*-finding-{i}">(.*?)</tr>', html, re.S)
        assert row and doc["scan"]["findings"][int(i)]["rule"] in row.group(1)


def test_html_charts_follow_the_data(vet_docs: dict[str, Any]) -> None:
    doc = vet_docs["regression"]
    html = get_renderer("html").render(doc)
    rows = [r for r in comparison_rows(doc) if r["judged"]]
    # one point per judged metric in the delta chart, one bar per lineage layer
    delta_svg = re.search(r'<svg[^>]*aria-label="Change of each metric[^"]*".*?</svg>', html, re.S)
    assert delta_svg and delta_svg.group(0).count("<circle") == len(rows)
    layer_svg = re.search(r'<svg[^>]*aria-label="Relative weight change per layer".*?</svg>', html, re.S)
    assert layer_svg and layer_svg.group(0).count("<rect") == len(doc["lineage"]["layers"])
    assert "What regressed" in html
    for r in rows:
        if r["status"] == "regressed":
            assert f"{r['task']}</code> {r['metric']}" in html
    honest = get_renderer("html").render(vet_docs["honest"])
    loss = re.search(r'<svg[^>]*aria-label="Training loss curve.*?</svg>', honest, re.S)
    hist = vet_docs["honest"]["training"]["log_history"]
    assert loss and loss.group(0).count("<polyline") == (1 if all("eval_loss" not in h for h in hist) else 2)
    assert "What regressed" not in honest


@pytest.mark.parametrize("with_curve", [True, False])
def test_cost_chart_when_cost_is_known(vet_docs: dict[str, Any], with_curve: bool) -> None:
    from assay.deploy.cost import CostInputs, compute_cost, cost_document

    cost = cost_document(compute_cost(CostInputs(api_per_task=0.15, self_per_task=0.01, training_cost=3000)))
    if not with_curve:
        cost.pop("curve")
    doc = {**vet_docs["honest"], "cost": cost}
    html = get_renderer("html").render(doc)
    svg = re.search(r'<svg[^>]*aria-label="Cumulative cost.*?</svg>', html, re.S)
    be = cost["break_even_tasks"]
    assert svg and f"break-even {be:,} tasks" in svg.group(0) and svg.group(0).count("<polyline") == 2
    assert get_renderer("html").render(vet_docs["honest"]).count("Cumulative cost") == 0  # no cost, no chart


def test_leaderboard_has_a_row_and_a_section_per_model(vet_docs: dict[str, Any]) -> None:
    docs = list(vet_docs.values())
    html = render_leaderboard(docs)
    page = parse_html(html)
    sections = [a["id"] for t, a in page.tags if t == "section"]
    board_page = parse_html(html[:html.index("<section")])
    links = [a["href"] for t, a in board_page.tags if t == "a" and a.get("href", "").startswith("#")]
    assert len(sections) == len(docs) == len(set(sections))
    assert sorted(links) == sorted("#" + s for s in sections)
    # PASS ranks first, FAIL last
    order = [a["data-verdict"] for t, a in page.tags if a.get("class") == "banner verdict"]
    assert sorted(order) == sorted(d["verdict"] for d in docs)
    board = html[:html.index("<section")]
    assert board.index("PASS") < board.index("FAIL")


def test_cyclonedx_is_a_valid_ml_bom_with_measured_figures(vet_docs: dict[str, Any]) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    for kind in KINDS:
        doc = vet_docs[kind]
        text = get_renderer("cyclonedx").render(doc)
        assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
        bom = json.loads(text)
        comp = bom["components"][0]
        assert comp["type"] == "machine-learning-model" and bom["specVersion"] == "1.6"
        perf = comp["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]
        rows = comparison_rows(doc)
        measured = {(p["slice"], p["type"]): float(p["value"]) for p in perf}
        for r in rows:
            assert measured[(r["task"], r["metric"])] == pytest.approx(r["candidate"], rel=1e-5)
            assert measured[(r["task"], f"{r['metric']} delta vs base")] == pytest.approx(r["delta"], rel=1e-5,
                                                                                         abs=1e-9)
        props = {p["name"]: p["value"] for p in comp["properties"]}
        assert props["assay:verdict"] == doc["verdict"]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ReportError, match="unknown report format"):
        get_renderer("pdf")
    assert set(FORMATS) >= {"terminal", "json", "md", "html", "sarif", "cyclonedx"}


def test_write_atomic_leaves_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.html"
    target.write_text("previous report")

    def interrupted(src: str, dst: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomic(target, "x" * 1_000_000)
    monkeypatch.undo()
    assert target.read_text() == "previous report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temp file left behind
    write_atomic(target, "new")
    assert target.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask  # as readable as any file the user writes


def test_write_atomic_into_an_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ReportError, match="cannot write"):
        write_atomic(blocker / "sub" / "report.md", "x")


def test_deployment_in_every_human_format(vet_docs: dict[str, Any]) -> None:
    from assay.report.base import fit_rows, human_bytes, money

    doc = vet_docs["deployed"]
    bench, cost, card = doc["bench"], doc["cost"], doc["card"]
    ratio = bench["ratios"]["decode_tokens_per_s"]
    be = cost["break_even_tasks"]
    rows = fit_rows(doc)
    assert [r["bits"] for r in rows] == [16, 8, 4] and rows[0]["total_bytes"] > rows[2]["total_bytes"] > 0

    text = get_renderer("terminal").render(doc)
    assert "Hardware fit" in text and human_bytes(rows[0]["total_bytes"]) in text
    assert f"{ratio:.2f}x" in text and f"{be:,} tasks" in text and money(cost["self_per_task"]) in text
    assert f"{card['transparency_score']}/100" in text and "700,000,000 monthly active users" in text
    assert "unsupported" in text

    md = get_renderer("md").render(doc)
    assert f"**{be:,} tasks**" in md and f"{ratio:.2f}x the base" in md
    assert f"**{card['transparency_score']}/100**" in md
    assert "cap 700,000,000 monthly active users" in md and len(md.splitlines()) <= 60

    html = get_renderer("html").render(doc)
    deploy = re.search(r'<h2 id="[^"]*-deploy">.*?(?=<h2 )', html, re.S)
    assert deploy
    fit_table = re.search(r"<h3>Where it fits</h3>\s*<table>.*?</table>", deploy.group(0), re.S)
    assert fit_table and fit_table.group(0).count("<tr>") == 1 + len(rows)
    decode_row = re.search(r"<td>decode tokens/s</td>(.*?)</tr>", deploy.group(0), re.S)
    assert decode_row and f"{ratio:.2f}x" in decode_row.group(1)
    svg = re.search(r'<svg[^>]*aria-label="Cumulative cost.*?</svg>', html, re.S)
    assert svg and f"break-even {be:,} tasks" in svg.group(0) and f"Break-even at <b>{be:,}</b> tasks" in html
    card_section = re.search(r'<h2 id="[^"]*-card">.*?(?=<h2 )', html, re.S)
    assert card_section and "Llama 3.1 Community License" in card_section.group(0)
    assert all(m in card_section.group(0) for m in card["missing"]) and ">unsupported<" in card_section.group(0)


def test_cyclonedx_carries_speed_memory_and_cost(vet_docs: dict[str, Any]) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    doc = vet_docs["deployed"]
    text = get_renderer("cyclonedx").render(doc)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    comp = json.loads(text)["components"][0]
    perf = {p["type"]: float(p["value"]) for p in comp["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]}
    assert perf["decode tokens per second"] == pytest.approx(doc["bench"]["candidate"]["decode_tokens_per_s"])
    ratio = doc["bench"]["ratios"]["decode_tokens_per_s"]
    assert perf["decode tokens per second ratio vs base"] == pytest.approx(ratio, rel=1e-5)
    assert perf["memory, RSS growth (bytes)"] == doc["bench"]["candidate"]["model_rss_bytes"]
    assert perf["self-hosted cost per task"] == pytest.approx(doc["cost"]["self_per_task"], rel=1e-5)
    assert perf["break-even tasks"] == doc["cost"]["break_even_tasks"]
    props = {p["name"]: p["value"] for p in comp["properties"]}
    assert props["assay:card.transparency_score"] == str(doc["card"]["transparency_score"])
    assert int(props["assay:memory_estimate.4bit_bytes"]) == doc["hardware"]["estimates"][2]["total_bytes"]


def _behaviour_doc(tmp_path: Path) -> dict[str, Any]:
    """A result whose probes flag degeneration and contamination, and whose drift exceeds the policy."""
    from assay.policy import parse_policy
    from assay.vet import vet_document
    from tests.report.builders import lineage_doc, make_result, metric, outcomes, scan_doc

    policy = parse_policy({"probes": {"run": ["refusal", "degeneration"], "contamination": ["builtin:knowledge"]},
                           "drift": {"kl": "builtin:reference", "max_kl_mean": 0.1, "level": "fail"}})
    cmp = {"builtin:refusal/harmful": {"refused": metric(0.9, 0.85, 0.1, p=0.6)},
           "builtin:degeneration": {"loop_rate": metric(0.1, 0.6, 0.12, p=0.001)},
           "contamination:builtin:knowledge": {"mink_gap": {**metric(0.962, 6.395, 0.6, p=0.0005), "n": 16}}}
    probes = {"schema": "assay.probes/1", "comparison": cmp,
              "tasks": {"builtin:refusal/harmful": {"n": 68, "metrics": {"refused": 0.85}},
                        "builtin:degeneration": {"n": 48, "metrics": {"loop_rate": 0.6}}},
              "base_tasks": {"builtin:refusal/harmful": {"n": 68, "metrics": {"refused": 0.9}},
                             "builtin:degeneration": {"n": 48, "metrics": {"loop_rate": 0.1}}},
              "contamination": [{"task": "contamination:builtin:knowledge", "base_gap": 0.962, "candidate_gap": 6.395,
                                 "delta": 5.433, "ci": [4.838, 5.989], "p": 0.0005, "n": 16, "flagged": True,
                                 "message": "possible contamination"}]}
    drift = {"schema": "assay.drift/1", "tasks": {"kl:builtin:reference": {
        "kind": "kl", "n": 4, "tokens": 812, "ci": {"kl_mean": [0.21, 0.35]},
        "metrics": {"kl_mean": 0.2734, "kl_p95": 1.125, "kl_reverse_mean": 0.25, "top1_agreement": 0.81}}}}
    from assay.verdict import StageOutcome

    stages = outcomes(scan=scan_doc(), base_scan=scan_doc(), lineage=lineage_doc("finetune"),
                      signature=StageOutcome.not_applicable("signature", "no model.sig"),
                      comparison={"t": {"acc": metric(0.5, 0.5, 0.02)}},
                      evaluation={"schema": "assay.eval/1", "tasks": {"t": {"n": 10, "metrics": {"acc": 0.5}}}},
                      probes=probes, drift=drift)
    return vet_document(make_result(stages, policy=policy, tmp=tmp_path))


def test_behaviour_section_in_every_human_format(tmp_path: Path) -> None:
    doc = _behaviour_doc(tmp_path)
    rules = {r["rule"]: r["level"] for r in doc["reasons"]}
    assert rules == {"probes.degeneration": "fail", "probes.contamination": "warn", "drift.kl": "fail"}
    md = get_renderer("md").render(doc)
    assert "Behaviour" in md and "10% → 60%" in md and "+50 pt" in md and "**fail**" in md
    assert "+6.395" in md and "possible contamination" in md and "**0.2734**" in md
    text = get_renderer("terminal").render(doc)
    assert "outputs ending in a loop" in text and "10% → 60%" in text and "0.2734" in text and "+5.433" in text
    html = get_renderer("html").render(doc)
    page = parse_html(html)
    ids = {a.get("id") for _, a in page.tags}
    assert "cand-behaviour" in ids
    assert "Contamination evidence" in html and "Drift from the base" in html and "[0.2100, 0.3500]" in html
    # the reasons link to the Behaviour section
    hrefs = {a.get("href") for t, a in page.tags if t == "a"}
    assert "#cand-behaviour" in hrefs
    # the chart of probe rates marks the flagged loop rate
    assert "builtin:degeneration · loop_rate" in html and "harmful requests refused" in html
