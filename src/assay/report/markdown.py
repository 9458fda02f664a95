"""A Markdown summary short enough for a pull-request comment: verdict, reasons, stages, regressions.

    text = MarkdownRenderer().render(doc)      # GitHub-flavoured Markdown, a few dozen lines at most

Long lists are cut (with a count of what was left out); the full evidence is in the JSON and HTML reports.
Model-provided strings are put in code spans with backticks and pipes neutralised, so a model name cannot inject
Markdown or HTML into the comment.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from assay.report.base import (Renderer, behaviour_view, claim_rows, comparison_rows, fit_rows, human_bytes, money, num,
                               stage_rows)

_ICONS = {"PASS": "✅", "WARN": "⚠️", "FAIL": "❌", "NONE": "❔"}
_MAX_REASONS = 8
_MAX_ROWS = 12


def code(text: Any) -> str:
    """``text`` as an inline code span that cannot break out of a table cell."""
    s = str(text).replace("`", "ˋ").replace("|", "¦").replace("\n", " ").replace("\r", " ")
    if len(s) > 120:
        s = s[:117] + "..."
    return f"`{s}`"


def plain(text: Any) -> str:
    """``text`` with Markdown/HTML control characters neutralised, for prose cells."""
    s = str(text).replace("\n", " ").replace("\r", " ")
    s = s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\`*_[]|#":
        s = s.replace(ch, "\\" + ch)
    return s[:300] + ("..." if len(s) > 300 else "")


def _deployment(doc: Mapping[str, Any]) -> list[str]:
    """A few bullet lines: card and licence, memory at 16/8/4 bits, measured speed, cost and break-even."""
    items: list[str] = []
    card = doc.get("card") if isinstance(doc.get("card"), Mapping) else None
    if card is not None:
        missing = card.get("missing") or []
        items.append(f"- Card transparency **{card.get('transparency_score')}/100**"
                     + (f"; missing: {plain(', '.join(map(str, missing)))}" if missing else ""))
        claims = claim_rows(doc)
        if claims:
            bad = [c for c in claims if c["supported"] is False]
            items.append(f"- Claimed scores checked: {len(claims)}, unsupported: {len(bad)}"
                         + "".join(f"; {code(c['dataset'])} {plain(c['metric'])} claimed {num(c['claimed'], '.3f')}, "
                                   f"measured {num(c['measured'], '.3f')}" for c in bad[:3]))
    lic = doc.get("licence") if isinstance(doc.get("licence"), Mapping) else None
    if lic is not None:
        terms = lic.get("terms") if isinstance(lic.get("terms"), Mapping) else {}
        text = f"- Licence {code(lic.get('licence') or 'none declared')}"
        if terms:
            text += f": {plain(terms.get('name'))}, commercial use {plain(terms.get('commercial_use'))}"
            if terms.get("mau_cap"):
                text += f", cap {terms['mau_cap']:,} monthly active users"
        items.append(text)
    rows = fit_rows(doc)
    if rows:
        items.append("- Memory (estimate): " + "; ".join(
            f"{r['bits']}-bit {human_bytes(r['total_bytes'])}, fits {len(r['fits'])}/{r['devices']} devices"
            for r in rows))
    bench = doc.get("bench") if isinstance(doc.get("bench"), Mapping) else None
    if bench is not None and isinstance(bench.get("candidate"), Mapping):
        c, ratios = bench["candidate"], bench.get("ratios") or {}
        text = f"- Measured: decode {num(c.get('decode_tokens_per_s'), ',.1f')} tokens/s"
        if isinstance(ratios.get("decode_tokens_per_s"), (int, float)):
            text += f" ({ratios['decode_tokens_per_s']:.2f}x the base)"
        text += f", memory {human_bytes(c.get('model_rss_bytes'))}"
        if isinstance(ratios.get("model_rss_bytes"), (int, float)):
            text += f" ({ratios['model_rss_bytes']:.2f}x the base)"
        items.append(text)
    cost = doc.get("cost") if isinstance(doc.get("cost"), Mapping) else None
    if cost is not None:
        be = cost.get("break_even_tasks")
        items.append(f"- Cost per task: {money(cost.get('self_per_task'))} self-hosted, "
                     f"{money(cost.get('api_per_task'))} via the API; break-even "
                     f"**{'never' if be is None else f'{be:,} tasks'}**")
    if not items:
        return []
    return ["<details><summary>Deployment, card and licence</summary>", "", *items, "", "</details>", ""]


def _behaviour(doc: Mapping[str, Any]) -> list[str]:
    """Probe measures candidate against base, contamination evidence and KL drift, folded."""
    view = behaviour_view(doc)
    if view is None:
        return []
    lines = ["<details><summary>Behaviour: refusal, degeneration, stability, contamination, drift</summary>", ""]
    if view["rows"]:
        lines += ["| probe | measure | base → candidate | change [95% CI] | p | |", "|---|---|---|---|---:|---|"]
        for r in view["rows"]:
            lines.append(f"| {code(r['task'])} | {r['label']} | {r['base']} → {r['candidate']} | {r['delta']} "
                         f"{r['ci']} | {r['p']} | {('**' + r['level'] + '**') if r['level'] else r['change']} |")
        lines.append("")
    for c in view["contamination"]:
        lines.append(f"- Contamination {code(c['task'])}: Min-K% gap {c['candidate_gap']} against the base's "
                     f"{c['base_gap']}, change {c['delta']} {c['ci']}, p={c['p']}, n={c['n']}"
                     + (" — **possible contamination** (evidence, not proof)" if c["flagged"] else ""))
    for k in view["kl"]:
        lines.append(f"- KL drift on {code(k['task'])}: mean **{k['mean']}** nats/token {k['ci']}, p95 {k['p95']}, "
                     f"top-1 agreement {k['top1']}" + (f" — **{k['level']}**" if k["level"] else ""))
    for n in view["notes"]:
        lines.append(f"- {plain(n)}")
    return [*lines, "", "</details>", ""]


class MarkdownRenderer(Renderer):
    """PR-comment summary."""

    name = "md"
    default_filename = "report.md"

    def render(self, doc: Mapping[str, Any]) -> str:
        verdict = str(doc.get("verdict"))
        cand = (doc.get("candidate") or {}).get("name", "?")
        base = (doc.get("base") or {}).get("name")
        lines = [f"### {_ICONS.get(verdict, '')} assay vet: **{verdict}** for {code(cand)}", ""]
        lines.append(f"Base: {code(base)}" if base else f"Base: none ({plain(doc.get('base_source', ''))})")
        lines.append("")
        reasons = doc.get("reasons") or []
        if reasons:
            lines.append("| level | rule | reason | evidence |")
            lines.append("|---|---|---|---|")
            for r in reasons[:_MAX_REASONS]:
                lines.append(f"| {r.get('level', '')} | {code(r.get('rule'))} | {plain(r.get('message'))} "
                             f"| {code(r.get('evidence'))} |")
            if len(reasons) > _MAX_REASONS:
                lines.append(f"| | | and {len(reasons) - _MAX_REASONS} more reasons (see the full report) | |")
        else:
            lines.append("No policy rule was violated.")
        lines.append("")
        rows = comparison_rows(doc)
        if rows:
            shown = sorted(rows, key=lambda r: (r["status"] != "regressed", not r["judged"],
                                                r["status"] not in ("worse", "better")))[:_MAX_ROWS]
            lines += ["<details><summary>Candidate vs base</summary>", "",
                      "| task | metric | base | candidate | delta [95% CI] | |", "|---|---|---:|---:|---|---|"]
            for r in shown:
                ci = f" [{num(r['ci'][0], '+.3f')}, {num(r['ci'][1], '+.3f')}]" if r["ci"] else ""
                lines.append(f"| {code(r['task'])} | {r['metric']} | {num(r['base'])} | {num(r['candidate'])} "
                             f"| {num(r['delta'], '+.4f')}{ci} | {r['status']} |")
            if len(rows) > len(shown):
                lines.append(f"| | and {len(rows) - len(shown)} more | | | | |")
            lines.append("")
            lines.append("better / worse only when the paired 95% interval and the Holm-adjusted paired test agree; "
                         "otherwise no significant change.")
            for note in sorted({f"{r['metric']}: {r['note']}" for r in rows if r["note"]}):
                lines.append(f"- {plain(note)}")
            lines += ["", "</details>", ""]
        lines += _behaviour(doc)
        lines += _deployment(doc)
        lines += ["<details><summary>Stages</summary>", "", "| stage | status | summary |", "|---|---|---|"]
        for s in stage_rows(doc):
            lines.append(f"| {s['stage']} | {s['status']} | {plain(s['summary'])} |")
        lines += ["", "</details>", ""]
        env = doc.get("environment") or {}
        lines.append(f"<sub>assay {env.get('assay', '?')} · torch {env.get('torch') or 'n/a'} · "
                     f"transformers {env.get('transformers') or 'n/a'} · {doc.get('seconds', '?')} s</sub>")
        return "\n".join(lines) + "\n"
