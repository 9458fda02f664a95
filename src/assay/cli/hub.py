"""``assay hub``: run a hub, trust keys, hand out tokens, publish signed vet results.

    assay hub serve                                   # http://127.0.0.1:8000, SQLite under the user data dir
    assay hub keys add ci ci-key.pem.pub              # trust a publisher's key
    assay hub token create ci                         # prints a bearer token once
    assay hub publish vet.json --url http://127.0.0.1:8000 --token $T --key ci-key.pem
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from assay.cli.common import EXIT_PASS, console, emit_json, err_console, json_option
from assay.errors import UsageError

_db_option = click.option("--db", "db", default=None, metavar="URL", envvar="ASSAY_HUB_DB",
                          help="Database URL: sqlite:///PATH (default: hub.db in the user data dir) or "
                               "postgresql+psycopg://USER@HOST/DB. Also ASSAY_HUB_DB.")


def _hub(db: str | None) -> Any:
    from assay.hub.store import Hub

    return Hub.open(db)


def _need_hub_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"the hub needs the [hub] extra ({exc.name} is missing)",
                         hint="pip install 'assay[hub]'") from exc


@click.group("hub")
def command() -> None:
    """A model registry whose every rating is a signed, reproducible vet result.

    \b
    Examples:
      assay hub serve --port 8000
      assay hub keys add ci ci-key.pem.pub
      assay hub token create ci
      assay hub publish vet.json --url http://127.0.0.1:8000 --token $ASSAY_HUB_TOKEN --key ci-key.pem
      assay vet ./my-finetune --base ./base --publish http://127.0.0.1:8000
    """
    _need_hub_extra()


@command.command("serve")
@_db_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Loopback by default; a wider bind must be asked for here.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--max-body", default=16 * 1024 * 1024, show_default=True, type=click.IntRange(1024),
              help="Largest request body accepted (bytes).")
def serve(db: str | None, host: str, port: int, max_body: int) -> int:
    """Serve the hub: leaderboard, model pages, compare, family trees, and the API under /api/v1.

    Writes (publishing) always need a bearer token from `assay hub token create`; reading needs none.
    """
    import uvicorn

    from assay.hub.app import create_app

    hub = _hub(db)
    if host not in ("127.0.0.1", "localhost", "::1"):
        err_console().print(f"warning: binding {host}: anyone who can reach it can read the hub; publishing "
                            f"still needs a token")
    err_console().print(f"assay hub on http://{'[' + host + ']' if ':' in host else host}:{port}/ "
                        f"(database {hub.engine.url.render_as_string(hide_password=True)})")
    uvicorn.run(create_app(hub, max_body=max_body), host=host, port=port, log_level="warning")
    return EXIT_PASS


@command.group("keys")
def keys() -> None:
    """Keys this hub trusts for attestations."""


@keys.command("add")
@click.argument("name")
@click.argument("public_key", type=click.Path(dir_okay=False, path_type=Path))
@_db_option
@json_option
def keys_add(name: str, public_key: Path, db: str | None, as_json: bool) -> int:
    """Trust PUBLIC_KEY (a .pub file from `assay keygen`) under NAME."""
    from assay.hub.client import read_key

    kid = _hub(db).add_key(name, read_key(public_key))
    if as_json:
        emit_json({"schema": "assay.hub-key/1", "name": name, "key_id": kid})
    else:
        console().print(f"trusted key {name} (sha256:{kid})")
    return EXIT_PASS


@keys.command("list")
@_db_option
@json_option
def keys_list(db: str | None, as_json: bool) -> int:
    """The trusted keys."""
    rows = _hub(db).keys()
    if as_json:
        emit_json({"schema": "assay.hub-keys/1", "keys": rows})
    else:
        for k in rows:
            console().print(f"{k['name']}  sha256:{k['key_id']}" + ("  (revoked)" if k["revoked_at"] else ""))
    return EXIT_PASS


@keys.command("remove")
@click.argument("name")
@_db_option
def keys_remove(name: str, db: str | None) -> int:
    """Stop trusting the key NAME (its past attestations stay, shown as signed by a revoked key)."""
    _hub(db).remove_key(name)
    console().print(f"key {name} is no longer trusted")
    return EXIT_PASS


@command.group("token")
def token() -> None:
    """Bearer tokens for publishing (only their hash is stored)."""


@token.command("create")
@click.argument("name")
@_db_option
@json_option
def token_create(name: str, db: str | None, as_json: bool) -> int:
    """Create a token NAME and print it once."""
    tok = _hub(db).create_token(name)
    if as_json:
        emit_json({"schema": "assay.hub-token/1", "name": name, "token": tok})
    else:
        console().print(tok)
        err_console().print(f"token {name}: shown once, only its hash is stored (ASSAY_HUB_TOKEN)")
    return EXIT_PASS


@token.command("revoke")
@click.argument("name")
@_db_option
def token_revoke(name: str, db: str | None) -> int:
    """Revoke the token NAME."""
    _hub(db).revoke_token(name)
    console().print(f"token {name} revoked")
    return EXIT_PASS


@command.command("audit")
@_db_option
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@json_option
def audit(db: str | None, limit: int, as_json: bool) -> int:
    """Who published what (and what was refused), newest first."""
    rows = _hub(db).audit(limit)
    if as_json:
        emit_json({"schema": "assay.hub-audit/1", "entries": rows})
    else:
        for e in rows:
            console().print(f"{e['at']}  {e['action']:<13} {e['outcome']:<8} {e['actor'] or '-':<12} "
                            f"{e['key'] or '-':<10} {e['detail'] or ''}", soft_wrap=True)
    return EXIT_PASS


def publish_options(f: Any) -> Any:
    f = click.option("--token", default=None, metavar="TOKEN",
                     help="Bearer token (default: $ASSAY_HUB_TOKEN).")(f)
    f = click.option("--key", "key", default=None, metavar="PRIVATE_KEY", type=click.Path(dir_okay=False),
                     help="Signing key (PEM from `assay keygen`; default: $ASSAY_SIGNING_KEY).")(f)
    return f


def resolve_credentials(token: str | None, key: str | None) -> tuple[str, bytes]:
    """Token and private key from the flags or the environment; a clear refusal when either is missing."""
    from assay.hub.client import read_key

    token = token or os.environ.get("ASSAY_HUB_TOKEN")
    key = key or os.environ.get("ASSAY_SIGNING_KEY")
    if not token:
        raise UsageError("publishing needs a token", hint="pass --token or set ASSAY_HUB_TOKEN")
    if not key:
        raise UsageError("publishing needs a signing key", hint="pass --key or set ASSAY_SIGNING_KEY")
    return token, read_key(key)


def publish_vet(doc: dict[str, Any], *, url: str, token: str, key_pem: bytes, model: str | None = None,
                base: str | None = None, name: str | None = None) -> dict[str, Any]:
    """Sign ``doc`` (a vet result) and publish it; returns the hub's answer."""
    from assay.hub.client import attest_vet, post_attestation

    envelope = attest_vet(doc, private_key_pem=key_pem, model=model, base=base, name=name)
    return post_attestation(url, envelope, token=token)


@command.command("publish")
@click.argument("document", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--url", required=True, metavar="URL", envvar="ASSAY_HUB_URL", help="The hub (also $ASSAY_HUB_URL).")
@publish_options
@click.option("--model", default=None, metavar="PATH", help="Where the vetted model is (default: the path in the "
                                                             "vet result).")
@click.option("--base-model", "base", default=None, metavar="PATH", help="Where its base is (default: the path in "
                                                                           "the vet result).")
@click.option("--name", default=None, help="The name to publish under (default: the vet result's model name).")
@json_option
def publish(document: Path, url: str, token: str | None, key: str | None, model: str | None, base: str | None,
            name: str | None, as_json: bool) -> int:
    """Sign DOCUMENT and publish it to the hub at URL.

    DOCUMENT is a saved vet result (`assay vet ... --json > vet.json`, or vet.json from --out) or an already
    signed attestation (a DSSE envelope, e.g. from `assay reproduce --out`). The model is hashed again, so the
    signature covers the exact files on disk.
    """
    from assay.hub.client import load_json, post_attestation

    tok, key_pem = resolve_credentials(token, key) if not _is_envelope(document) else (
        token or os.environ.get("ASSAY_HUB_TOKEN") or "", b"")
    doc = load_json(document)
    if "payloadType" in doc:
        if not tok:
            raise UsageError("publishing needs a token", hint="pass --token or set ASSAY_HUB_TOKEN")
        reply = post_attestation(url, doc, token=tok)
    else:
        if doc.get("schema") != "assay.vet/1":
            raise UsageError(f"{document} is neither an assay.vet/1 result nor a signed attestation "
                             f"(schema: {doc.get('schema')!r})")
        reply = publish_vet(doc, url=url, token=tok, key_pem=key_pem, model=model, base=base, name=name)
    if as_json:
        emit_json(reply)
    else:
        console().print(f"published {', '.join(reply.get('aliases') or [])} "
                        f"({'new model' if reply.get('created_model') else 'known weights'}) signed by "
                        f"{reply.get('key')}: {url.rstrip('/')}{reply.get('url', '')}", soft_wrap=True)
    return EXIT_PASS


def _is_envelope(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return b'"payloadType"' in fh.read(4096)
    except OSError:
        return False


@command.command("export")
@click.argument("model")
@_db_option
@click.option("--out", "out", default=None, type=click.Path(file_okay=False, path_type=Path),
              help="Write .eval_results/*.yaml and model-index.yaml into this folder (default: print model-index).")
def export(model: str, db: str | None, out: Path | None) -> int:
    """Export MODEL's measured scores as Hugging Face .eval_results/*.yaml files and a card model-index."""
    import yaml

    from assay.hub.interop import eval_results, model_index

    doc = _hub(db).model(model)
    if out is None:
        console().print(yaml.safe_dump(model_index(doc), sort_keys=False), soft_wrap=True)
        return EXIT_PASS
    files = eval_results(doc)
    (out / ".eval_results").mkdir(parents=True, exist_ok=True)
    for fname, content in files.items():
        (out / ".eval_results" / fname).write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    (out / "model-index.yaml").write_text(yaml.safe_dump(model_index(doc), sort_keys=False), encoding="utf-8")
    console().print(f"wrote {len(files)} file(s) to {out / '.eval_results'} and {out / 'model-index.yaml'}")
    return EXIT_PASS


@command.command("import-card")
@click.argument("model")
@click.argument("card", type=click.Path(dir_okay=False, path_type=Path))
@_db_option
def import_card(model: str, card: Path, db: str | None) -> int:
    """Import the model-index of CARD (a README.md) as CLAIMED scores of MODEL, shown apart, never verified."""
    from assay.hub.interop import import_model_index

    n = import_model_index(_hub(db), model, card)
    console().print(f"imported {n} claimed score(s) for {model} (shown as claimed, not verified)")
    return EXIT_PASS
