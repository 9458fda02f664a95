"""``assay hash``: a manifest of every file (path, size, digest) and the weights root."""

from __future__ import annotations

import click

from assay.cli.common import (EXIT_PASS, EXIT_UNDECIDED, console, download_option, emit_json, json_option,
                              progress, revision_option)


@click.command("hash")
@click.argument("ref", metavar="MODEL")
@click.option("--algorithm", type=click.Choice(["blake3", "sha256"]), default="blake3", show_default=True,
              help="Digest algorithm: BLAKE3 (fast, parallel) or SHA-256 (FIPS, OpenSSF signing).")
@click.option("--exclude", multiple=True, metavar="PATH",
              help="Leave out a file, folder or glob (relative to the model folder); repeatable.")
@click.option("--workers", type=click.IntRange(1, 256), default=None, help="Files hashed at once.")
@click.option("--no-weights-root", is_flag=True, help="Skip the weights root (only file digests).")
@json_option
@revision_option
@download_option
def command(ref: str, algorithm: str, exclude: tuple[str, ...], workers: int | None, no_weights_root: bool,
            as_json: bool, revision: str | None, download: bool) -> int:
    """Hash every file of MODEL, and its weights.

    Every file (hidden folders such as .git included) gets its size and digest; BLAKE3 by default,
    memory-mapped and multi-threaded, SHA-256 with --algorithm sha256. The *weights root* is one digest
    over the tensors (name, dtype, shape, bytes, in name order): a re-sharded or re-saved copy of the same
    weights keeps its weights root while its file digests change. Pickle-based weights are not opened for
    the weights root (scan them first). Symbolic links inside the folder are hashed as the files they lead
    to; a link out of the folder (or, in a Hugging Face cache snapshot, out of its own blobs/) is not read
    and is listed as unreadable.

    \b
    Examples:
      assay hash ./my-model
      assay hash ./my-model --algorithm sha256 --json > manifest.json
      assay hash HuggingFaceTB/SmolLM2-135M-Instruct --exclude .git

    Exit codes: 0 every file hashed, 2 a file could not be read or MODEL is not found.
    """
    from assay.model.ref import resolve
    from assay.provenance.manifest import hash_model, manifest_document

    model = resolve(ref, revision=revision, download=download)
    with progress(enabled=True) as bar:
        m = hash_model(model, algorithm=algorithm, exclude=exclude, workers=workers, progress=bar,
                       with_weights_root=not no_weights_root)
    rc = EXIT_UNDECIDED if m.unreadable else EXIT_PASS
    if as_json:
        emit_json(manifest_document(m))
        return rc
    from rich.table import Table

    table = Table(title=f"{model.name} ({m.algorithm})", title_justify="left")
    table.add_column("file")
    table.add_column("size", justify="right")
    table.add_column("digest", overflow="fold")
    for f in m.files:
        table.add_row(model.files[0].name if f.path == "." else f.path, f"{f.size:,}", f.digest)
    for path, why in m.unreadable:
        table.add_row(path, "-", f"[red]unreadable: {why}[/red]")
    out = console()
    out.print(table)
    if m.weights_root:
        out.print(f"weights root ({m.algorithm}): {m.weights_root}")
    else:
        out.print(f"weights root: none ({m.weights_note})")
    total = sum(f.size for f in m.files)
    out.print(f"{len(m.files)} files, {total:,} bytes" + (f", {len(m.unreadable)} unreadable" if m.unreadable else ""))
    return rc
