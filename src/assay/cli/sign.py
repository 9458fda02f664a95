"""``assay sign``: an OpenSSF model signing (v1.0) signature made with a local key."""

from __future__ import annotations

from pathlib import Path

import click

from assay.cli.common import EXIT_PASS, console, download_option, emit_json, json_option, progress, revision_option
from assay.errors import ProvenanceError


def read_key(path: Path, what: str) -> bytes:
    """The bytes of a key file, or a one-line error (exit 2)."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ProvenanceError(f"{what} key file not found: {path}") from exc
    except IsADirectoryError as exc:
        raise ProvenanceError(f"{what} key {path} is a folder, not a PEM file") from exc
    except OSError as exc:
        raise ProvenanceError(f"cannot read {what} key {path}: {exc.strerror or exc}") from exc


@click.command("sign")
@click.argument("ref", metavar="MODEL")
@click.option("--key", "key", type=click.Path(path_type=Path), required=True, metavar="PRIVATE.pem",
              help="PEM private key (from `assay keygen`).")
@click.option("--signature", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PATH",
              help="Where to write the signature [default: model.sig inside the model folder].")
@click.option("--algorithm", type=click.Choice(["sha256", "blake3"]), default="sha256", show_default=True,
              help="File digest algorithm in the signature. sha256 verifies everywhere: assay, the "
                   "model_signing CLI and its Python API. blake3 verifies with assay and with the model_signing "
                   "Python API (verifying.Config().verify), but NOT with the `model_signing verify` CLI, which "
                   "re-hashes with SHA-256 and reports every file as mismatched.")
@json_option
@revision_option
@download_option
def command(ref: str, key: Path, signature: Path | None, algorithm: str, as_json: bool, revision: str | None,
            download: bool) -> int:
    """Sign every file of MODEL with a private key.

    Writes a Sigstore bundle in the OpenSSF model signing format v1.0 (DSSE envelope around an in-toto
    statement, predicate https://model_signing/signature/v1.0), so `model_signing verify key` accepts it
    for ECDSA P-256 keys and SHA-256 digests. The signature file and git metadata (.git/, .gitattributes,
    .github/, .gitignore) are left out, as the reference tool does, and recorded in the signature's
    ignore_paths, which `assay verify` honours. Symbolic links inside the folder are signed as the files
    they lead to (allow_symlinks is then recorded); a link out of the folder is refused. The signed
    predicate also carries assay.weights_root (to match a re-sharded copy later) and assay.card (the model
    card's base_model, licence, ...). Ed25519 keys work with assay only: model-signing cannot verify them.

    \b
    Example:
      assay keygen --out key.pem
      assay sign ./my-model --key key.pem            # writes ./my-model/model.sig
      model_signing verify key ./my-model --signature ./my-model/model.sig --public_key key.pem.pub

    Exit codes: 0 signed, 2 bad input (unreadable or wrong key, missing model, unwritable signature path).
    """
    from assay.model.ref import resolve
    from assay.provenance.signing import sign_model

    pem = read_key(key, "private")
    model = resolve(ref, revision=revision, download=download)
    with progress(enabled=True) as bar:
        path = sign_model(model, private_key_pem=pem, signature_path=signature, algorithm=algorithm, progress=bar)
    if as_json:
        emit_json({"schema": "assay.sign/1", "model": model.spec, "signature": path.as_posix(),
                   "algorithm": algorithm})
    else:
        console().print(f"signed {model.name}: {path}")
    return EXIT_PASS
