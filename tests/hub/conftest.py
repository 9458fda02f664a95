"""Fixtures for the hub: tiny real model folders, vet results about them, keys, and a hub on SQLite AND on
PostgreSQL (every test that takes ``hub`` runs on both).

PostgreSQL comes from ``$ASSAY_TEST_POSTGRES_URL`` (``.ci/run`` starts a throw-away cluster and sets it); when it
is unset, a throw-away cluster is started here with Debian's ``initdb``. If neither works the PostgreSQL tests
FAIL with the reason; they are never skipped silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.hub.builders import ModelSet, build_models

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> ModelSet:
    return build_models(tmp_path_factory.mktemp("hub-models"))


@pytest.fixture(scope="session")
def keys() -> dict[str, tuple[bytes, bytes]]:
    """Key pairs by name: two publishers (ECDSA P-256, Ed25519) and a stranger nobody trusts."""
    from assay.provenance.signing import generate_keypair

    return {"ci": generate_keypair(kind="ecdsa-p256"), "lab": generate_keypair(kind="ed25519"),
            "stranger": generate_keypair(kind="ecdsa-p256")}


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    url = os.environ.get("ASSAY_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    from tests.hub.postgres import throwaway_cluster

    with throwaway_cluster() as started:
        yield started


def _fresh_postgres_db(server: str) -> str:
    """A new empty database on the server (one per test, so tests cannot see each other's rows)."""
    import sqlalchemy as sa

    name = f"hub_{uuid.uuid4().hex[:12]}"
    eng = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    return server.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return _fresh_postgres_db(request.getfixturevalue("postgres_server"))


@pytest.fixture
def hub(db_url: str, keys: dict[str, tuple[bytes, bytes]]) -> Iterator[Any]:
    """A hub that trusts ``ci`` and ``lab`` and has a token ``ci`` (``hub.test_token``)."""
    from assay.hub.store import Hub

    h = Hub.open(db_url)
    h.add_key("ci", keys["ci"][1])
    h.add_key("lab", keys["lab"][1])
    h.test_token = h.create_token("ci")  # type: ignore[attr-defined]
    yield h
    h.engine.dispose()


@pytest.fixture
def client(hub: Any) -> Iterator[Any]:
    """An in-process client; every JSON answer that names a schema is validated against it."""
    from fastapi.testclient import TestClient

    from assay.hub.app import create_app
    from assay.schemas import validate

    class Checked(TestClient):
        def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            r = super().request(*args, **kwargs)
            if r.headers.get("content-type", "").startswith("application/json"):
                doc = r.json()
                if isinstance(doc, dict) and "schema" in doc:
                    validate(doc)
            return r

    with Checked(create_app(hub, max_body=4 * 1024 * 1024)) as c:
        c.headers["Authorization"] = f"Bearer {hub.test_token}"
        yield c


@pytest.fixture
def live_hub(hub: Any) -> Iterator[str]:
    """The hub served by uvicorn on 127.0.0.1 (a free port) in a background thread; yields its URL."""
    import socket
    import threading
    import time

    import uvicorn

    from assay.hub.app import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(hub), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the hub did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
