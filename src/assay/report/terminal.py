"""The terminal summary (rich): verdict first, then reasons, stages and the comparison table.

    TerminalRenderer().print(doc, console())     # what `assay vet` prints without --json
    text = TerminalRenderer().render(doc)        # the same, as plain text (for `assay report --format terminal`)
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from assay.report.base import (VERDICT_COLOURS, Renderer, behaviour_view, bench_rows, claim_rows, comparison_rows,
                               fit_rows, human_bytes, licence_terms, money, num, stage_rows)

_STATUS_STYLE = {"regressed": "bold red", "worse": "red", "better": "green", "no significant change": "dim",
                 "not comparable": "dim"}
_LEVEL_STYLE = {"fail": "bold red", "undecided": "bold magenta", "warn": "yellow"}


class TerminalRenderer(Renderer):
    """Rich tables for a terminal."""

    name = "terminal"
    default_filename = "report.txt"

    def renderable(self, doc: Mapping[str, Any]) -> Group:
        """The rich renderable for ``doc``."""
        verdict = str(doc.get("verdict"))
        cand = (doc.get("candidate") or {}).get("name", "?")
        base = (doc.get("base") or {}).get("name")
        head = Text.assemble((f" {verdict} ", f"bold white on {VERDICT_COLOURS.get(verdict, '#57606a')}"),
                             "  ", (str(cand), "bold"),
                             (f"  vs {base}" if base else f"  (no base: {doc.get('base_source', '')})", "dim"))
        parts: list[Any] = [head, Text("")]
        reasons = doc.get("reasons") or []
        for r in reasons:
            level = str(r.get("level"))
            parts.append(Text.assemble((f"{level:>9} ", _LEVEL_STYLE.get(level, "")), (str(r.get("rule")), "bold"),
                                       ": ", str(r.get("message")), (f"  [{r.get('evidence')}]", "dim")))
        if not reasons:
            parts.append(Text("every policy rule holds", style="green"))
        st = Table(title="Stages", title_justify="left", expand=False)
        st.add_column("stage", no_wrap=True)
        st.add_column("status", no_wrap=True)
        st.add_column("summary", overflow="fold")
        st.add_column("s", justify="right", style="dim", no_wrap=True)
        for s in stage_rows(doc):
            style = {"ran": "green", "error": "red", "skipped": "yellow", "blocked": "red"}.get(str(s["status"]), "dim")
            st.add_row(s["stage"], Text(str(s["status"]), style=style), escape(str(s["summary"])),
                       num(s["seconds"], ".1f") if s["seconds"] is not None else "")
        parts += [Text(""), st]
        rows = comparison_rows(doc)
        if rows:
            ct = Table(title="Candidate vs base (paired: 95% interval and Holm-adjusted test must agree)",
                       title_justify="left", pad_edge=False,
                       collapse_padding=True)
            ct.add_column("task · metric", overflow="fold", ratio=1)
            ct.add_column("", no_wrap=True)
            for col in ("base → candidate", "delta", "95% CI"):
                ct.add_column(col, justify="right")
            for r in rows:
                ci = f"[{num(r['ci'][0], '+.3g')}, {num(r['ci'][1], '+.3g')}]" if r["ci"] else ""
                ct.add_row(escape(f"{r['task']} · {r['metric']}"),
                           Text(r["status"], style=_STATUS_STYLE.get(r["status"], "")),
                           f"{num(r['base'], '.4g')} → {num(r['candidate'], '.4g')}", num(r["delta"], "+.3g"), ci)
            parts += [Text(""), ct]
            for note in sorted({f"{r['metric']}: {r['note']}" for r in rows if r["note"]}):
                parts.append(Text(escape(note), style="dim"))
        parts += _behaviour_parts(doc) + _card_parts(doc) + _deploy_parts(doc)
        return Group(*parts)

    def print(self, doc: Mapping[str, Any], console: Console) -> None:
        """Print the summary on ``console``."""
        console.print(self.renderable(doc))

    def render(self, doc: Mapping[str, Any]) -> str:
        con = Console(record=True, width=120, file=io.StringIO(), color_system=None, force_terminal=False)
        self.print(doc, con)
        return con.export_text()


def _behaviour_parts(doc: Mapping[str, Any]) -> list[Any]:
    view = behaviour_view(doc)
    if view is None:
        return []
    parts: list[Any] = [Text("")]
    if view["rows"]:
        t = Table(title="Behaviour (probes, candidate vs base, paired 95% interval)", title_justify="left",
                  pad_edge=False, collapse_padding=True)
        t.add_column("measure · probe", no_wrap=True)
        for col in ("base → candidate", "change", "95% CI", "p"):
            t.add_column(col, justify="right")
        t.add_column("", overflow="fold", max_width=14)
        for r in view["rows"]:
            t.add_row(Text.assemble(str(r["label"]), "\n", (str(r["task"]), "dim")),
                      f"{r['base']} → {r['candidate']}", r["delta"], r["ci"],
                      r["p"], Text(r["level"] or r["change"] or "",
                                   style=_LEVEL_STYLE.get(str(r["level"]), _STATUS_STYLE.get(r["change"], ""))))
        parts.append(t)
    else:
        parts.append(Text("Behaviour", style="bold"))
    for c in view["contamination"]:
        parts.append(Text.assemble(f"  contamination {c['task']}: Min-K% gap {c['candidate_gap']} against the base's "
                                   f"{c['base_gap']}, change {c['delta']} {c['ci']}, p={c['p']}, n={c['n']}",
                                   ("  possible contamination (evidence, not proof)", "yellow") if c["flagged"]
                                   else ""))
    for k in view["kl"]:
        parts.append(Text.assemble(f"  KL drift from the base on {k['task']}: mean ", (k["mean"], "bold"),
                                   f" nats/token {k['ci']}, p95 {k['p95']}, top-1 agreement {k['top1']} "
                                   f"({k['tokens']} tokens)", (f"  {k['level']}", _LEVEL_STYLE.get(str(k["level"]), ""))
                                   if k["level"] else ""))
    for n in view["notes"]:
        parts.append(Text(f"  {n}", style="yellow"))
    return parts


def _card_parts(doc: Mapping[str, Any]) -> list[Any]:
    card = doc.get("card") if isinstance(doc.get("card"), Mapping) else None
    terms = licence_terms(doc)
    if card is None and not terms:
        return []
    parts: list[Any] = [Text(""), Text("Card and licence", style="bold")]
    if card is not None:
        missing = card.get("missing") or []
        parts.append(Text.assemble("  transparency ", (f"{card.get('transparency_score')}/100", "bold"),
                                   f"; missing: {', '.join(map(str, missing))}" if missing else "; nothing missing"))
    for label, text in terms:
        parts.append(Text.assemble(f"  {label}: ", (text, "")))
    for c in claim_rows(doc):
        style = "red" if c["supported"] is False else "green"
        parts.append(Text.assemble(f"  claim {c['dataset']} {c['metric']} {num(c['claimed'], '.3f')}, measured "
                                   f"{num(c['measured'], '.3f')} ({c['measured_key']}): ",
                                   ("unsupported" if c["supported"] is False else "supported", style)))
    return parts


def _deploy_parts(doc: Mapping[str, Any]) -> list[Any]:
    parts: list[Any] = []
    rows = fit_rows(doc)
    if rows:
        hw = doc.get("hardware") or {}
        t = Table(title=f"Hardware fit (estimate from the headers; context {hw.get('context')}, batch "
                        f"{hw.get('batch')})", title_justify="left")
        for col in ("bits", "weights", "KV cache", "total"):
            t.add_column(col, justify="right", no_wrap=True)
        t.add_column("fits", overflow="fold")
        for r in rows:
            fits = ", ".join(r["fits"]) if r["fits"] else "none of the listed devices"
            if r["fits"] and len(r["fits"]) == r["devices"]:
                fits = f"all {r['devices']} listed devices"
            t.add_row(str(r["bits"]), human_bytes(r["weights_bytes"]), human_bytes(r["kv_cache_bytes"]),
                      human_bytes(r["total_bytes"]), escape(fits))
        parts += [Text(""), t]
    brows = bench_rows(doc)
    if brows:
        bench = doc.get("bench") or {}
        hw_desc = (bench.get("hardware") or {}).get("description", "")
        t = Table(title=f"Speed and memory, measured on {hw_desc}", title_justify="left")
        t.add_column("")
        t.add_column("candidate", justify="right")
        if bench.get("base"):
            t.add_column("base", justify="right")
            t.add_column("ratio", justify="right")
        for r in brows:
            cells = [r["candidate"]] + ([r["base"], r["ratio"]] if bench.get("base") else [])
            t.add_row(r["label"], *cells)
        parts += [Text(""), t]
    cost = doc.get("cost") if isinstance(doc.get("cost"), Mapping) else None
    if cost is not None:
        be = cost.get("break_even_tasks")
        parts += [Text(""), Text("Cost", style="bold"),
                  Text(f"  per task: {money(cost.get('self_per_task'))} self-hosted "
                       f"({cost.get('self_per_task_basis', '')}), {money(cost.get('api_per_task'))} via the API"),
                  Text.assemble("  break-even: ", ("never" if be is None else f"{be:,} tasks", "bold"),
                                f" (≈ {cost['payback_months']:.1f} months at the given volume)"
                                if isinstance(cost.get("payback_months"), (int, float)) else "")]
        if isinstance(cost.get("monthly_self"), (int, float)):
            parts.append(Text(f"  per month: {money(cost.get('monthly_self'))} self-hosted, "
                              f"{money(cost.get('monthly_api'))} via the API"))
    return parts
