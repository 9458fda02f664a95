"""``assay card``: read a model card offline; transparency score, licence terms and cross-checks."""

from __future__ import annotations

from typing import Any

import click

from assay.cli.common import (EXIT_FAIL, EXIT_PASS, console, download_option, emit_json, json_option,
                              revision_option)
from assay.errors import UsageError


def _measured(pairs: tuple[str, ...]) -> dict[str, float]:
    out: dict[str, float] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError
            out[key.strip()] = float(value)
        except ValueError as exc:
            raise UsageError(f"--measured wants TASK[/METRIC]=VALUE (e.g. arc_easy/acc=0.43), got {pair!r}") from exc
        if not 0.0 <= out[key.strip()] <= 1.0:
            raise UsageError(f"--measured scores are between 0 and 1 (0.43, not 43), got {pair!r}")
    return out


@click.command("card")
@click.argument("model")
@click.option("--base", default=None, metavar="BASE",
              help="The base model (folder, file or cached org/name): its card gives the base licence.")
@click.option("--measured", multiple=True, metavar="TASK[/METRIC]=VALUE",
              help="A measured score (0..1) to check the card's claims against; repeatable.")
@revision_option
@download_option
@json_option
def command(model: str, base: str | None, measured: tuple[str, ...], revision: str | None, download: bool,
            as_json: bool) -> int:
    """Read a model card offline and report what a careful reviewer looks for.

    Shows base model and relation, datasets, licence and its key terms, training procedure and
    hyper-parameters, claimed evaluation results (model-index), the loss curve (trainer_state.json),
    intended use and limitations, and a transparency score (0-100) with what is missing. Cross-checks: a
    derivative of a base under a restrictive licence relabelled permissive (licence laundering), naming
    duties, claimed scores against --measured ones.

    \b
    Examples:
      assay card ./my-finetune
      assay card ./my-finetune --base ./Llama-3.1-8B --json
      assay card ./my-finetune --measured arc_easy/acc=0.43

    Exit codes: 0 no high-severity finding, 1 a high-severity finding (e.g. licence laundering), 2 bad input.
    """
    from assay.deploy.card import card_document, check_claims, claim_findings, read_card
    from assay.model.ref import resolve

    ref = resolve(model, revision=revision, download=download)
    base_ref = resolve(base, download=download) if base else None
    report = read_card(ref, base=base_ref)
    claims = check_claims(report, _measured(measured)) if measured else []
    findings = list(report.findings) + claim_findings(claims)
    rc = EXIT_FAIL if any(f.severity in ("critical", "high") for f in findings) else EXIT_PASS
    if as_json:
        emit_json(card_document(report, claims=claims))
        return rc
    render(report, findings, claims)
    return rc


def render(report: Any, findings: list[Any], claims: list[Any]) -> None:
    """Print a card report."""
    from rich.table import Table

    out = console()
    t = Table(title=f"Model card: {report.model}", title_justify="left", show_header=False)
    t.add_column("", style="bold")
    t.add_column("")
    lic = report.licence or "[red]none declared[/red]"
    if report.licence_terms is not None:
        lic += f" ({report.licence_terms.name}; commercial use: {report.licence_terms.commercial_use})"
    t.add_row("card", report.card_path or "[red]none[/red]")
    t.add_row("base model", ", ".join(report.base_model) or "-")
    t.add_row("relation", report.base_model_relation or "-")
    t.add_row("licence", lic)
    if report.base_licence:
        t.add_row("base licence", f"{report.base_licence} [dim]({report.base_licence_source})[/dim]")
    t.add_row("datasets", ", ".join(report.datasets) or "-")
    t.add_row("hyper-parameters", ", ".join(f"{k}={v}" for k, v in list(report.hyperparameters.items())[:8]) or "-")
    t.add_row("claimed results", str(len(report.eval_results)))
    if report.loss_curve is not None:
        c = report.loss_curve
        t.add_row("loss curve", f"{len(c.train)} points, first {c.first}, last {c.last}, min {c.minimum}")
    t.add_row("transparency", f"{report.transparency_score}/100"
              + (f"  missing: {', '.join(report.missing)}" if report.missing else ""))
    out.print(t)
    terms = report.licence_terms
    if terms is not None:
        for label, value in (("MAU cap", f"{terms.mau_cap:,} ({terms.mau_clause})" if terms.mau_cap else None),
                             ("attribution", terms.attribution), ("naming", terms.naming),
                             ("acceptable use", terms.acceptable_use_clause if terms.acceptable_use_policy else None),
                             ("derivatives", terms.derivatives_clause if terms.derivatives_keep_licence else None)):
            if value:
                out.print(f"  [bold]{label}:[/bold] {value}")
    for c in claims:
        mark = "[green]ok[/green]" if c.supported else "[red]unsupported[/red]"
        out.print(f"  claim {c.claim.metric} {c.claimed:.3f} vs measured {c.measured:.3f} ({c.measured_key}): {mark}")
    if findings:
        f = Table(title="Findings", title_justify="left")
        for col in ("rule", "severity", "message"):
            f.add_column(col)
        for x in findings:
            f.add_row(x.rule, x.severity, x.message)
        out.print(f)
    else:
        out.print("No findings.")
