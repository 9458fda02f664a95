"""``assay lineage``: do these weights descend from the base the card claims, and how?"""

from __future__ import annotations

import click

from assay.cli.common import (EXIT_FAIL, EXIT_PASS, EXIT_UNDECIDED, console, download_option, emit_json,
                              err_console, json_option, progress, revision_option)
from assay.formatting import num
from assay.model.ref import ModelRef
from assay.progress import Progress


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return num(x, spec, missing="-")


def _scan_first(refs: list[ModelRef], bar: Progress) -> int | None:
    """Scan each model before any pickle is loaded; an exit code if one is not safe, else None."""
    from assay.scan import ScanVerdict, scan_model

    for ref in refs:
        report = scan_model(ref, progress=bar)
        if report.verdict is ScanVerdict.SAFE:
            continue
        worst = report.failing()[:1]
        why = f": {worst[0].rule} in {worst[0].path} ({worst[0].message})" if worst else ""
        err_console().print(f"error: refusing to load {ref.name} for lineage: the scan says "
                            f"{report.verdict.value}{why}. Run `assay scan {ref.spec}` for details.")
        return EXIT_FAIL if report.verdict is ScanVerdict.UNSAFE else EXIT_UNDECIDED
    return None


@click.command("lineage")
@click.argument("candidate", metavar="CANDIDATE")
@click.option("--base", "base", required=True, metavar="BASE", help="The base model the candidate should descend from.")
@click.option("--allow-pickle", is_flag=True,
              help="Read torch archives (.bin/.pt) with torch.load(weights_only=True); both models are scanned "
                   "first and nothing is loaded unless the scan says safe.")
@click.option("--tensors", "show_tensors", is_flag=True, help="Also print the per-tensor table.")
@json_option
@revision_option
@download_option
def command(candidate: str, base: str, allow_pickle: bool, show_tensors: bool, as_json: bool,
            revision: str | None, download: bool) -> int:
    """Compare CANDIDATE's weights with BASE's and name the relation, with evidence.

    Streams memory-mapped tensor pairs (never two whole models in memory) across formats (safetensors,
    GGUF dequantised, torch archives with --allow-pickle, a PEFT LoRA adapter folder applied to BASE on
    the fly) and naming schemes (GGUF names map to Hugging Face names). Relations:

    \b
      identical     every tensor equal (re-upload, re-shard)
      recast        equal up to a dtype conversion (fp32 -> bf16/fp16)
      quantized     equal up to quantisation error (GGUF Q8_0/Q4_0/..., int grids)
      finetune      dense small changes (relative change and cosine per tensor and layer)
      lora          only some matrices changed, each low rank (rounding-aware rank estimate)
      partial       some layers replaced or frozen, or vocabulary extended
      unrelated     same shapes, no shared origin (also after matching permuted rows)
      incompatible  different architecture or shapes

    The card's base_model / base_model_relation claim is checked against the weights.

    \b
    Examples:
      assay lineage ./my-finetune --base ./SmolLM2-135M
      assay lineage model.Q4_0.gguf --base ./SmolLM2-135M --json
      assay lineage ./lora-adapter --base ./SmolLM2-135M --tensors

    Exit codes: 0 related to the base and consistent with the card, 1 unrelated, incompatible, or the card's
    claim contradicts the weights, 2 bad input (missing model, unreadable tensors).
    """
    from assay.model.ref import resolve
    from assay.provenance.lineage import Relation, compare_lineage, lineage_document

    cand_ref = resolve(candidate, revision=revision, download=download)
    base_ref = resolve(base, download=download)
    with progress(enabled=True) as bar:
        if allow_pickle:
            refused = _scan_first([cand_ref, base_ref], bar)
            if refused is not None:
                return refused
        report = compare_lineage(cand_ref, base_ref, allow_pickle=allow_pickle, progress=bar)
    bad = report.relation in (Relation.UNRELATED, Relation.INCOMPATIBLE) or report.claim.get("consistent") is False
    rc = EXIT_FAIL if bad else EXIT_PASS
    if as_json:
        emit_json(lineage_document(report))
        return rc
    from rich.table import Table

    out = console()
    colour = "red" if bad else "green"
    out.print(f"[bold {colour}]{report.relation.value.upper()}[/bold {colour}]  {cand_ref.name} vs {base_ref.name}")
    out.print(report.summary)
    claim = report.claim
    if claim.get("base_model") or claim.get("base_model_relation"):
        verdict = {True: "[green]consistent[/green]", False: "[red]false[/red]", None: "not checked"}[
            claim.get("consistent")]
        out.print(f"card claims: base_model={claim.get('base_model')} relation={claim.get('base_model_relation')}"
                  f" -> {verdict}" + (f" ({claim['reason']})" if claim.get("reason") and not claim["consistent"]
                                      else ""))
    else:
        out.print("card claims: none (no base_model in the model card)")
    for note in report.notes:
        out.print(f"note: {note}")
    if report.adapter:
        a = report.adapter
        out.print(f"adapter_config.json: r={a.get('r')} targets={a.get('target_modules')}; changed "
                  f"{a.get('changed_modules')}, estimated rank {a.get('estimated_rank')}")
    table = Table(title="per layer", title_justify="left")
    for col in ("layer", "tensors", "status", "changed", "rel. change", "cosine"):
        table.add_column(col, justify="right" if col not in ("layer", "status") else "left")
    for layer in report.layers:
        table.add_row(layer.layer, str(layer.tensors), layer.status, str(layer.changed), _fmt(layer.rel_change),
                      _fmt(layer.cosine, ".5f"))
    out.print(table)
    if show_tensors:
        t = Table(title="per tensor", title_justify="left")
        for col in ("tensor", "kind", "dtype", "rel. change", "cosine", "rank", "note"):
            t.add_column(col)
        for e in report.tensors:
            rank = "" if e.rank is None else f"{e.rank}/{e.rank_of}"
            t.add_row(e.name, e.kind.value, f"{e.dtype_base}->{e.dtype_candidate}", _fmt(e.rel_change),
                      _fmt(e.cosine, ".5f"), rank, e.note)
        out.print(t)
    out.print(f"whole model: relative change {_fmt(report.rel_change)}, cosine {_fmt(report.cosine, '.5f')}, "
              f"{report.compared} tensors compared")
    return rc
