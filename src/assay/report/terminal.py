"""The terminal summary (rich): verdict first, then reasons, stages and the comparison table.

    TerminalRenderer().print(doc, console())     # what `assay vet` prints without --json
    text = TerminalRenderer().render(doc)        # the same, as plain text (for `assay report --format terminal`)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console, Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from assay.report.base import VERDICT_COLOURS, Renderer, comparison_rows, num, stage_rows

_STATUS_STYLE = {"regressed": "bold red", "improved": "bold green", "worse": "yellow", "better": "green",
                 "unchanged": "dim", "unknown": "dim"}
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
            ct = Table(title="Candidate vs base (paired, 95% interval)", title_justify="left", pad_edge=False,
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
        return Group(*parts)

    def print(self, doc: Mapping[str, Any], console: Console) -> None:
        """Print the summary on ``console``."""
        console.print(self.renderable(doc))

    def render(self, doc: Mapping[str, Any]) -> str:
        con = Console(record=True, width=120, file=_Null(), color_system=None, force_terminal=False)
        self.print(doc, con)
        return con.export_text()


class _Null:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass
