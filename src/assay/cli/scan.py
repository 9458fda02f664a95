"""``assay scan MODEL``: is anything in this model able to run code when it is loaded?

    assay scan ./my-model
    assay scan ./pytorch_model.bin --json
    assay scan org/name --fail-on high --sarif scan.sarif

Exit 0 safe, 1 unsafe, 2 not verified (a file could not be analysed fully) or bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from assay.cli.common import (check_output_file, console, download_option, emit_json, err_console, json_option,
                              progress, revision_option)
from assay.errors import ReportError, UsageError
from assay.severity import SEVERITIES

_SEVERITIES = list(reversed(SEVERITIES))  # least severe first, as --fail-on lists them
_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "cyan", "info": "dim"}


@click.command("scan")
@click.argument("ref", metavar="MODEL")
@click.option("--fail-on", "fail_on", type=click.Choice(_SEVERITIES), default="medium", show_default=True,
              help="Findings at or above this severity make the model unsafe (exit 1).")
@click.option("--allow-global", "allow_globals", multiple=True, metavar="MODULE.QUALNAME",
              help="Accept one more pickle global, by its exact name (repeatable).")
@click.option("--allow-remote-code", is_flag=True, default=False,
              help="Accept custom Python code (auto_map, .py files): you will run it with trust_remote_code.")
@click.option("--deep", is_flag=True, default=False,
              help="Also read tensor data: NaN/Inf and all-zero tensors, CRCs of torch storages.")
@click.option("--sarif", "sarif_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              metavar="FILE", help="Also write the findings as SARIF 2.1.0 to FILE (its folder must exist).")
@revision_option
@download_option
@json_option
def command(ref: str, fail_on: str, allow_globals: tuple[str, ...], allow_remote_code: bool, deep: bool,
            sarif_path: Path | None, revision: str | None, download: bool, as_json: bool) -> int:
    """Scan a model for anything that can run code when it is loaded, without loading it.

    MODEL is a folder, one file, or org/name[@revision] in the local Hugging Face cache.
    Every file is examined by its content, whatever its name: pickles (on a symbolic machine, against an
    allowlist of what honest checkpoints need), torch/zip/tar archives, numpy, Keras, safetensors and GGUF
    headers, chat templates (Jinja syntax tree, never rendered) and remote code (auto_map, .py files).
    Nothing is unpickled, imported, rendered or executed; torch is never imported.

    \b
    Examples:
      assay scan ./my-model
      assay scan ./pytorch_model.bin --json
      assay scan org/name --fail-on high --sarif scan.sarif
      assay scan ./ckpt --allow-global transformers.training_args.TrainingArguments

    \b
    Exit codes: 0 safe, 1 unsafe (a finding at or above --fail-on),
                2 not verified (a file could not be analysed fully) or bad input.
    Rules and how to allow each one: docs/rules.md.
    """
    from assay.model.ref import resolve
    from assay.scan import Severity, scan_document, scan_model

    for name in allow_globals:
        module, dot, qualname = name.rpartition(".")
        if not dot or not module or not qualname or any(c.isspace() or c == ":" for c in name):
            raise UsageError(f"--allow-global wants the exact MODULE.QUALNAME a pickle imports "
                             f"(e.g. collections.OrderedDict), got {name!r}")
    if sarif_path is not None:
        check_output_file(sarif_path, "--sarif")
    model = resolve(ref, revision=revision, download=download)
    if as_json or not err_console().is_terminal:  # no bar to draw: skip loading rich.progress
        report = scan_model(model, fail_on=Severity(fail_on), allow_globals=allow_globals,
                            allow_remote_code=allow_remote_code, deep=deep)
    else:
        with progress() as bar:
            report = scan_model(model, fail_on=Severity(fail_on), allow_globals=allow_globals,
                                allow_remote_code=allow_remote_code, deep=deep, progress=bar)
    doc = scan_document(report)
    if sarif_path is not None:
        from assay.report.sarif import sarif_document

        try:
            sarif_path.write_text(json.dumps(sarif_document(report), indent=2, ensure_ascii=False) + "\n",
                                  encoding="utf-8")
        except OSError as exc:
            raise ReportError(f"cannot write SARIF to {sarif_path}: {exc.strerror or exc}") from exc
    if as_json:
        emit_json(doc)
    else:
        _print(doc)
        if sarif_path is not None:
            err_console().print(f"SARIF written to {sarif_path}")
    return report.exit_code


def _print(doc: dict) -> None:  # type: ignore[type-arg]
    from rich.table import Table

    out = console()
    if doc["findings"]:
        table = Table(title="Findings", show_lines=False, expand=False)
        for col in ("severity", "rule", "file", "where", "what"):
            table.add_column(col, overflow="fold")
        order = {s: i for i, s in enumerate(SEVERITIES)}
        for f in sorted(doc["findings"], key=lambda f: (order[f["severity"]], f["path"])):
            table.add_row(f"[{_STYLE[f['severity']]}]{f['severity']}[/]", f["rule"], f["path"], f["location"] or "",
                          f["message"])
        out.print(table)
    unverified = [f for f in doc["files"] if f["status"] == "not_verified"]
    if unverified:
        table = Table(title="Not verified", expand=False)
        table.add_column("file", overflow="fold")
        table.add_column("format")
        table.add_column("why", overflow="fold")
        for f in unverified:
            table.add_row(f["path"], f["format"], f["reason"] or "")
        out.print(table)
    verdict = doc["verdict"]
    style = {"safe": "bold green", "unsafe": "bold red", "unverified": "bold yellow"}[verdict]
    counts = ", ".join(f"{n} {s}" for s, n in doc["summary"]["findings"].items() if n)
    out.print(f"[{style}]{verdict.upper()}[/]  {doc['summary']['files']} file(s) scanned"
              + (f"; findings: {counts}" if counts else "; no findings")
              + (f"; {len(unverified)} not verified" if unverified else "")
              + f"  (fail on {doc['fail_on']} and above)")
