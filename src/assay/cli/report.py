"""``assay report``: re-render saved ``assay vet --json`` results in another format.

    assay report vet.json --format html --out report.html
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from assay.cli.common import console

_FORMATS = ("terminal", "json", "md", "html", "sarif", "cyclonedx")


@click.command("report")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(_FORMATS), default="terminal", show_default=True,
              help="Output format.")
@click.option("--out", "out_file", default=None, metavar="FILE", type=click.Path(dir_okay=False),
              help="Write to FILE (atomically) instead of stdout.")
def command(results: tuple[str, ...], fmt: str, out_file: str | None) -> int:
    """Re-render saved vet results (RESULTS: `assay vet --json` output) as terminal, json, md, html, sarif or
    cyclonedx. Several results with --format html give one leaderboard page with a section per model.

    \b
    Examples:
      assay vet ./my-finetune --base ./base --json > vet.json
      assay report vet.json --format html --out report.html
      assay report vet.json --format md            # a pull-request comment
      assay report a.json b.json c.json --format html --out leaderboard.html

    Exit code: the saved verdict's (0 PASS/WARN, 1 FAIL, 2 NONE); 2 for an unreadable file.
    """
    from assay.errors import UsageError
    from assay.report import get_renderer, write_atomic
    from assay.report.terminal import TerminalRenderer
    from assay.report.io import load_vet_document

    docs = [load_vet_document(Path(p)) for p in results]
    if len(docs) > 1 and fmt != "html":
        raise UsageError("several results can only be combined into one html leaderboard (--format html)")
    if len(docs) > 1:
        from assay.report.html import render_leaderboard

        text = render_leaderboard(docs)
    elif fmt == "terminal" and out_file is None:
        TerminalRenderer().print(docs[0], console())
        text = None
    else:
        text = get_renderer(fmt).render(docs[0])
    if text is not None:
        if out_file:
            write_atomic(Path(out_file), text)
        else:
            sys.stdout.write(text)
            sys.stdout.flush()
    codes = [int(d.get("exit_code", {"PASS": 0, "WARN": 0, "FAIL": 1}.get(str(d.get("verdict")), 2))) for d in docs]
    return max(codes)
