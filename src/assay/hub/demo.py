"""``assay demo --serve``: publish the vetted demo zoo, signed with a demo key, to a local hub and serve it.

    >>> result = run_demo(out=Path("assay-demo"))
    >>> hub, published = publish_demo(result, out=Path("assay-demo"))      # assay-demo/hub.db, demo key
    >>> serve(hub)                                                          # http://127.0.0.1:8000/

The demo key (``DIR/demo-key.pem``) is generated on first use and trusted by the demo hub under the name
``assay-demo``; it vouches for nothing outside the demo.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from assay.hub.errors import HubError
from assay.hub.store import Hub, Published

DEMO_KEY_NAME = "assay-demo"


def demo_key(out: Path) -> tuple[bytes, bytes]:
    """The demo's key pair under ``out`` (created with permissions 0600 on first use)."""
    from assay.provenance.signing import generate_keypair

    priv_path, pub_path = out / "demo-key.pem", out / "demo-key.pem.pub"
    if priv_path.is_file() and pub_path.is_file():
        return priv_path.read_bytes(), pub_path.read_bytes()
    priv, pub = generate_keypair(kind="ecdsa-p256")
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(priv_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(priv)
    pub_path.write_bytes(pub)
    return priv, pub


def publish_demo(result: Any, *, out: Path, db_url: str | None = None) -> tuple[Hub, list[Published]]:
    """Sign each vetted zoo model's result with the demo key and publish it to the hub at ``db_url`` (default:
    ``out/hub.db``). Results already on the hub are left as they are."""
    from assay.hub.attestation import public_key_id
    from assay.hub.client import attest_vet

    hub = Hub.open(db_url or f"sqlite:///{(out / 'hub.db').resolve()}")
    priv, pub = demo_key(out)
    if public_key_id(pub) not in {k["key_id"] for k in hub.keys()}:
        hub.add_key(DEMO_KEY_NAME, pub)
    token_name = f"{DEMO_KEY_NAME}-{os.getpid()}-{len(hub.audit(10_000))}"
    token = hub.create_token(token_name)
    published: list[Published] = []
    try:
        for m in result.models:
            if m.document is None:
                continue
            env = attest_vet(m.document, private_key_pem=priv, model=m.entry.path, base=result.base,
                             name=m.entry.name)
            try:
                published.append(hub.publish(env, token=token, remote="assay demo"))
            except HubError as exc:
                if exc.status != 409:  # 409: published by an earlier run
                    raise
    finally:
        hub.revoke_token(token_name)
    return hub, published


def serve(hub: Hub, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``hub`` until interrupted (loopback by default)."""
    import uvicorn

    from assay.hub.app import create_app

    uvicorn.run(create_app(hub), host=host, port=port, log_level="warning")
