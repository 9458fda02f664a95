"""``assay verify``: check a model against its OpenSSF model signing signature."""

from __future__ import annotations

from pathlib import Path

import click

from assay.cli.common import (EXIT_FAIL, EXIT_PASS, console, download_option, emit_json, json_option, progress,
                              revision_option)
from assay.cli.sign import read_key


@click.command("verify")
@click.argument("ref", metavar="MODEL")
@click.option("--key", "key", type=click.Path(path_type=Path), required=True, metavar="PUBLIC.pem",
              help="PEM public key of the signer.")
@click.option("--signature", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH",
              help="The signature file [default: model.sig inside the model folder].")
@click.option("--trust-ignore-paths", is_flag=True,
              help="Also leave out git metadata (.git/, .gitattributes, .github/, .gitignore) when the signature "
                   "does not record it in ignore_paths, as the reference tool does. Paths the signature records "
                   "as ignored are always left out (and listed).")
@json_option
@revision_option
@download_option
def command(ref: str, key: Path, signature: Path | None, trust_ignore_paths: bool, as_json: bool,
            revision: str | None, download: bool) -> int:
    """Verify MODEL against its signature and name exactly what differs.

    Reads signatures made by `assay sign` or by the OpenSSF `model_signing sign key` tool (file or shard
    serialization; SHA-256, BLAKE2b or BLAKE3 digests). Reports extra files, missing files, modified files
    with both digests, and a tampered, foreign or wrong-key signature. Paths the signature records in
    ignore_paths (git metadata, the signature itself) are left out and listed, except Python files
    transformers would import. A signed file that is now a symbolic link fails unless the signature
    allows links (allow_symlinks), and a link out of the folder always fails and is never read; in a
    Hugging Face cache snapshot, links into the repository's own blobs/ are its files. When files
    differ, the weights root recorded by `assay sign` tells whether the weights are still the signed
    ones (a re-sharded copy).

    \b
    Example:
      assay verify ./my-model --key key.pem.pub
      assay verify ./my-model --key key.pem.pub --signature release.sig --json

    Exit codes: 0 valid and every file matches, 1 tampered/mismatch/wrong key, 2 bad input (unreadable
    key, missing model or signature file).
    """
    from assay.model.ref import resolve
    from assay.provenance.signing import verify_document, verify_model

    pem = read_key(key, "public")
    model = resolve(ref, revision=revision, download=download)
    with progress(enabled=True) as bar:
        result = verify_model(model, public_key_pem=pem, signature_path=signature,
                              trust_ignore_paths=trust_ignore_paths, progress=bar)
    rc = EXIT_PASS if result.valid else EXIT_FAIL
    if as_json:
        emit_json(verify_document(result))
        return rc
    out = console()
    if result.valid:
        out.print(f"[green]VALID[/green] {model.name}: {result.message}")
        return rc
    out.print(f"[red]NOT VALID[/red] {model.name}")
    if not result.signature_ok:
        out.print(result.message)
        return rc
    from rich.table import Table

    table = Table(title_justify="left")
    table.add_column("problem")
    table.add_column("file")
    table.add_column("signed digest", overflow="fold")
    table.add_column("actual digest", overflow="fold")
    for p, a, b in result.modified:
        table.add_row("modified", model.files[0].name if p == "." and model.single_file else p, a, b)
    for p in result.missing:
        table.add_row("missing", p, "", "")
    for p in result.extra:
        table.add_row("extra", p, "", "")
    out.print(table)
    out.print(result.message)
    return rc
