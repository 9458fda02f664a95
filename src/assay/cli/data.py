"""``assay data``: fetch standard benchmark files where a network exists, check them where none does.

    assay data list
    assay data pull gsm8k --to ./bench-data        # then: assay eval MODEL --task gsm8k:./bench-data/gsm8k
    assay data verify ./bench-data/gsm8k
"""

from __future__ import annotations

from pathlib import Path

import click

from assay.cli.common import EXIT_FAIL, EXIT_PASS, EXIT_UNDECIDED, console, emit_json, json_option


@click.group("data")
def command() -> None:
    """Benchmark data for `assay eval`: list, pull (needs a network), verify (offline).

    Built-in suites (builtin:knowledge, builtin:arithmetic, builtin:arithmetic-gen, builtin:reference) ship with
    assay. Standard benchmarks are read from local files in their published layouts; `pull` fetches them from
    the Hugging Face dataset hub once, writes SHA256SUMS, and the folder can be carried into an air-gapped site.

    \b
    Examples:
      assay data list
      assay data pull mmlu --to ./bench-data
      assay data verify ./bench-data/mmlu
      assay eval ./my-model --task mmlu:./bench-data/mmlu
    """


@command.command("list")
@json_option
def list_cmd(as_json: bool) -> int:
    """Every benchmark `assay data pull` knows, where it comes from and which --task reads it.

    \b
    Example:
      assay data list --json
    """
    from assay.evaluate.suites.download import DATASETS, list_document

    if as_json:
        emit_json(list_document())
        return EXIT_PASS
    from rich.table import Table

    table = Table(title="benchmarks (assay data pull NAME --to DIR)", title_justify="left")
    for col in ("name", "hub dataset", "read by", "licence"):
        table.add_column(col, overflow="fold")
    for d in DATASETS.values():
        table.add_row(d.name, d.repo_id, "\n".join(f"--task {t}:DIR/{d.name}" for t in d.tasks), d.licence)
    console().print(table)
    return EXIT_PASS


@command.command("pull")
@click.argument("name")
@click.option("--to", "to", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write into (the files go to TO/NAME).")
@click.option("--revision", default=None, metavar="REV", help="Dataset repository revision (default: main).")
@json_option
def pull_cmd(name: str, to: Path, revision: str | None, as_json: bool) -> int:
    """Download benchmark NAME into TO/NAME and write SHA256SUMS (needs a network).

    Uses huggingface_hub (a token from HF_TOKEN if the dataset needs one). Offline it stops with one line
    saying so: pull where a network exists, carry the folder in, and check it with `assay data verify`.

    \b
    Example:
      assay data pull gsm8k --to ./bench-data
      assay eval ./my-model --task gsm8k:./bench-data/gsm8k
    """
    from assay.evaluate.suites.download import pull, pull_document

    result = pull(name, to, revision=revision)
    if as_json:
        emit_json(pull_document(result))
        return EXIT_PASS
    console().print(f"{result.dataset.repo_id}@{result.revision[:12]}: {len(result.files)} file(s) in "
                    f"{result.folder} (checksums in SHA256SUMS)")
    for t in result.dataset.tasks:
        console().print(f"  --task {t}:{result.folder}")
    return EXIT_PASS


@command.command("verify")
@click.argument("folder", type=click.Path(path_type=Path))
@json_option
def verify_cmd(folder: Path, as_json: bool) -> int:
    """Check a pulled folder against its SHA256SUMS (offline).

    Exit codes: 0 every file present and unchanged, 1 a file changed, 2 a file missing or no SHA256SUMS.

    \b
    Example:
      assay data verify ./bench-data/mmlu
    """
    from assay.errors import EvalError
    from assay.evaluate.suites.download import verify, verify_document

    if not folder.is_dir():
        raise EvalError(f"no such folder: {folder}")
    result = verify(folder)
    rc = EXIT_UNDECIDED if result.missing else EXIT_FAIL if result.changed else EXIT_PASS
    if as_json:
        emit_json(verify_document(result))
        return rc
    out = console()
    for rel in result.changed:
        out.print(f"[red]changed[/red]  {rel}")
    for rel in result.missing:
        out.print(f"[yellow]missing[/yellow]  {rel}")
    for rel in result.extra:
        out.print(f"[dim]not listed[/dim]  {rel}")
    verdict = "intact" if result.intact else "NOT intact"
    out.print(f"{folder}: {len(result.ok)} file(s) verified, {verdict}")
    return rc
