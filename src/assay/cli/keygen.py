"""``assay keygen``: a key pair for ``assay sign`` / ``assay verify``."""

from __future__ import annotations

import os
from pathlib import Path

import click

from assay.cli.common import EXIT_PASS, check_output_file, console, emit_json, json_option
from assay.errors import ProvenanceError, UsageError


@click.command("keygen")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=Path("assay-key.pem"),
              show_default=True,
              help="Private key file; the public key goes to the same name + .pub. Its folder must exist.")
@click.option("--kind", type=click.Choice(["ecdsa-p256", "ed25519"]), default="ecdsa-p256", show_default=True,
              help="ECDSA P-256 interoperates with the OpenSSF model-signing tool; Ed25519 is verified by "
                   "assay only (model-signing cannot verify Ed25519 signatures).")
@click.option("--force", is_flag=True, help="Overwrite existing key files.")
@json_option
def command(out: Path, kind: str, force: bool, as_json: bool) -> int:
    """Create a signing key pair (PEM files).

    The private key is written with permissions 0600 and is not encrypted: keep it out of the model folder
    and out of version control. Give the .pub file to whoever verifies.

    \b
    Example:
      assay keygen --out release-key.pem        # writes release-key.pem and release-key.pem.pub
      assay sign ./my-model --key release-key.pem
      assay verify ./my-model --key release-key.pem.pub

    Exit codes: 0 written, 2 bad input (key files exist without --force, a folder that does not exist (it is
    never created), unwritable path).
    """
    from assay.provenance.signing import generate_keypair, key_hint

    check_output_file(out, "--out")
    pub_path = out.with_name(out.name + ".pub")
    for p in (out, pub_path):
        if p.exists() and not force:
            raise UsageError(f"{p} already exists", hint="pass --force to overwrite it")
    priv, pub = generate_keypair(kind=kind)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(priv)
        pub_path.write_bytes(pub)
    except OSError as exc:
        raise ProvenanceError(f"cannot write key file {out}: {exc.strerror or exc}") from exc
    doc = {"schema": "assay.keygen/1", "kind": kind, "private_key": out.as_posix(),
           "public_key": pub_path.as_posix(), "key_id": key_hint(pub)}
    if as_json:
        emit_json(doc)
    else:
        console().print(f"private key: {out} (keep secret)\npublic key:  {pub_path}\n"
                        f"key id:      sha256:{doc['key_id']}", soft_wrap=True)
    return EXIT_PASS
