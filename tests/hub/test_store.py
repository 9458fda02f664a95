"""The hub's database and trust rules: migrations match the models, keys can be revoked, pages refuse bad input
with an HTML error page and a 4xx."""

from __future__ import annotations

from typing import Any

from assay.hub.client import attest_vet
from tests.hub.builders import ModelSet, vet_doc

Keys = dict[str, tuple[bytes, bytes]]


def test_migrations_build_exactly_the_models_schema(hub: Any) -> None:
    from alembic.migration import MigrationContext
    from alembic.autogenerate import compare_metadata
    from alembic.script import ScriptDirectory
    from alembic.config import Config
    from pathlib import Path

    import assay.hub.db as db

    with hub.engine.connect() as conn:
        ctx = MigrationContext.configure(conn)
        assert compare_metadata(ctx, db.Base.metadata) == []
        cfg = Config()
        cfg.set_main_option("script_location", str(Path(db.__file__).parent / "migrations"))
        assert ctx.get_current_revision() == ScriptDirectory.from_config(cfg).get_current_head()
    from assay.hub.store import Hub

    again = Hub.open(hub.engine.url.render_as_string(hide_password=False))  # opening again upgrades nothing
    assert again.keys() == hub.keys()
    again.engine.dispose()


def test_revoked_key(client: Any, hub: Any, models: ModelSet, keys: Keys) -> None:
    env = attest_vet(vet_doc(models.finetune), private_key_pem=keys["lab"][0])
    assert client.post("/api/v1/attestations", json=env).status_code == 201
    hub.remove_key("lab")
    m = client.get("/api/v1/models/honest-finetune").json()
    assert m["vouched_by"] == ["lab"] and m["history"][0]["key"] == "lab"  # the past stays, shown as it was
    assert "signing key since revoked" in client.get("/models/honest-finetune").text
    later = attest_vet(vet_doc(models.broken, delta=-0.2), private_key_pem=keys["lab"][0])
    r = client.post("/api/v1/attestations", json=later)
    assert r.status_code == 403 and "not signed by a key this hub trusts" in r.json()["error"]
    assert [k["revoked_at"] is not None for k in hub.keys()] == [False, True]


def test_pages_refuse_bad_input_with_an_html_error(client: Any, models: ModelSet, keys: Keys) -> None:
    client.post("/api/v1/attestations", json=attest_vet(vet_doc(models.finetune), private_key_pem=keys["ci"][0]))
    for url, status, words in (("/compare?m=honest-finetune", 422, "two or three models"),
                               ("/compare?m=a&m=b&m=c&m=d", 422, "two or three models"),
                               ("/models/no-such-model", 404, "no model"), ("/family/nothing", 404, "no model or base"),
                               ("/?per_page=0", 422, "per_page"), ("/?sort=drop", 422, "unknown sort"),
                               ("/no/such/page", 404, "Not Found")):
        r = client.get(url)
        assert r.status_code == status, (url, r.status_code)
        assert r.headers["content-type"].startswith("text/html") and words in r.text, url
    hostile = "<script>alert(1)</script>"
    r = client.get("/search", params={"q": hostile})
    assert r.status_code == 200 and hostile not in r.text and "&lt;script&gt;" in r.text
