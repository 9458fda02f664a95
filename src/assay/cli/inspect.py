"""``assay inspect``: what a model is, from its headers alone (files, formats, roles, parameters, card).

    $ assay inspect ./my-model
    $ assay inspect HuggingFaceTB/SmolLM2-135M-Instruct --revision main --json
"""

from __future__ import annotations

from pathlib import Path

import click

from assay.cli.common import (EXIT_PASS, console, download_option, emit_json, err_console, json_option, progress,
                              revision_option)
from assay.model.inventory import MEMORY_NOTE, Inventory, inventory_document, open_model
from assay.formatting import human_bytes


@click.command("inspect")
@click.argument("ref", metavar="MODEL")
@revision_option
@download_option
@json_option
def command(ref: str, revision: str | None, download: bool, as_json: bool) -> int:
    """Describe a model from its headers: files, formats, parameters, dtypes, card, adapter, memory.

    MODEL is a folder (Hugging Face layout, sharded, PEFT adapter), one weights file (.safetensors, .gguf,
    torch .bin/.pt, legacy pickle) or org/name[@revision] in the local Hugging Face cache. No tensor data is
    read and nothing is unpickled or executed. Formats are detected from content, never from file names.

    \b
    Examples:
      assay inspect ./Llama-3.2-1B-Instruct
      assay inspect model.Q4_K_M.gguf --json
      assay inspect HuggingFaceTB/SmolLM2-135M-Instruct --revision main

    Exit codes: 0 described, 2 bad input (missing path, truncated or unreadable weights, malformed config).
    """
    if as_json:
        inv = open_model(ref, revision=revision, download=download)
    else:
        with progress() as prog:
            inv = open_model(ref, revision=revision, download=download, progress=prog)
    if as_json:
        emit_json(inventory_document(inv))
    else:
        render(inv)
    for f in inv.unreadable:  # on stderr in both modes: the JSON document lists them under "unreadable"
        why = f.error if f.error and f.error.startswith(f.path) else f"{f.path}: {f.error}"
        err_console().print(f"[yellow]warning:[/yellow] {why}", soft_wrap=True)
    return EXIT_PASS


def human_count(n: int | None) -> str:
    """``1.24B`` style parameter count."""
    if n is None:
        return "unknown"
    for div, unit in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= div:
            return f"{n / div:.2f}{unit} ({n:,})"
    return f"{n:,}"


def render(inv: Inventory) -> None:
    """Print the inventory as two rich tables: a summary and the file list."""
    from rich.table import Table  # only the human output needs it; --json stays quick

    out = console()
    summary = Table(title=f"assay inspect: {inv.ref.name}", show_header=False, title_justify="left")
    summary.add_column("field", style="bold")
    summary.add_column("value")
    where = inv.ref.root / inv.ref.files[0] if inv.ref.single_file else inv.ref.root
    summary.add_row("location", str(Path(where)) + (f"  (revision {inv.ref.revision})" if inv.ref.revision else ""))
    summary.add_row("architecture", " / ".join(x for x in (inv.architecture, inv.model_type) if x) or "unknown")
    params = human_count(inv.parameters) + ("" if inv.parameters_complete else "  [yellow](incomplete)[/yellow]")
    summary.add_row("parameters", params)
    summary.add_row("dtypes", ", ".join(f"{k} {human_count(v)}" for k, v in inv.dtypes.items()) or "-")
    summary.add_row("weights", f"{inv.weights_format or 'none'} in {len(inv.weight_files)} file(s), "
                               f"{inv.tensor_count} tensors")
    summary.add_row("context length", str(inv.context_length) if inv.context_length else "unknown")
    summary.add_row("vocabulary", str(inv.vocab_size) if inv.vocab_size else "unknown")
    summary.add_row("chat template", "yes" if inv.chat_template else "no")
    mem = inv.memory
    if "16bit" in mem:
        summary.add_row("memory (weights)", f"16-bit {human_bytes(mem['16bit'])}, 8-bit {human_bytes(mem['8bit'])}, "
                                            f"4-bit {human_bytes(mem['4bit'])}; stored {human_bytes(mem['stored'])}")
        summary.add_row("", f"[dim]{MEMORY_NOTE}[/dim]")
    summary.add_row("size tier", inv.tier)
    card = inv.card
    if card.get("present"):
        if card.get("error"):
            summary.add_row("card", f"{card.get('path')}: [yellow]{card['error']}[/yellow]")
        else:
            keys = ("model_name", "license", "base_model", "base_model_relation", "datasets")
            parts = [f"{k}={_short(card.get(k))}" for k in keys if card.get(k) is not None]
            text = ", ".join(parts) or "no metadata"
            summary.add_row("card", f"GGUF metadata: {text}" if card.get("source") == "gguf" else text)
    else:
        summary.add_row("card", "none")
    if inv.adapter is not None:
        a = inv.adapter
        summary.add_row("adapter", f"{a.get('peft_type') or '?'} r={a.get('r')} alpha={a.get('lora_alpha')} "
                                   f"targets={_short(a.get('target_modules'))} "
                                   f"parameters={human_count(a.get('parameters'))}")
        base = a.get("base")
        summary.add_row("adapter base", f"{a.get('base_model_name_or_path')}"
                        + (f"  ({base.get('architecture')}, {human_count(base.get('parameters'))})" if base else
                           f"  [dim]({a.get('base_error', 'not resolved')})[/dim]"))
    for note in inv.notes:
        summary.add_row("note", f"[yellow]{note}[/yellow]")
    out.print(summary)

    files = Table(title="files", title_justify="left")
    files.add_column("path")
    files.add_column("size", justify="right")
    files.add_column("format")
    files.add_column("role")
    files.add_column("status")
    for f in inv.files:
        files.add_row(f.path, human_bytes(f.size), f.format.value, f.role,
                      f"[red]{f.error}[/red]" if f.error else "ok")
    out.print(files)


def _short(v: object, limit: int = 60) -> str:
    text = ", ".join(map(str, v)) if isinstance(v, list) else str(v)
    return text if len(text) <= limit else text[: limit - 1] + "…"
