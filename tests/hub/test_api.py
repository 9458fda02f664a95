"""The hub's API with an in-process client, on SQLite and PostgreSQL: publish signed vet results, read them back,
rank them; and every kind of bad input refused with a clear 4xx and nothing written."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from assay.hub.attestation import canonical, sign_statement
from assay.hub.client import attest_vet
from tests.hub.builders import TASK, ModelSet, vet_doc

Keys = dict[str, tuple[bytes, bytes]]


def publish(client: Any, envelope: dict[str, Any]) -> Any:
    return client.post("/api/v1/attestations", content=json.dumps(envelope),
                       headers={"Content-Type": "application/json"})


def statement_of(envelope: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(envelope["payload"]))


# --- publishing and reading back ----------------------------------------------------------------------------


def test_publish_and_read_back(client: Any, hub: Any, models: ModelSet, keys: Keys) -> None:
    doc = vet_doc(models.finetune, delta=0.04, half_width=0.01)
    r = publish(client, attest_vet(doc, private_key_pem=keys["ci"][0]))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created_model"] is True and body["aliases"] == ["honest-finetune"] and body["key"] == "ci"
    from assay.provenance.manifest import hash_model
    from assay.model.ref import resolve

    root = hash_model(resolve(str(models.finetune))).weights_root
    assert body["model"] == root  # content-addressed by the weights root
    for ident in (root, "honest-finetune", root[:16]):
        m = client.get(f"/api/v1/models/{ident}").json()
        assert m["id"] == root and m["verdict"] == doc["verdict"] == "PASS"
        assert m["vouched_by"] == ["ci"] and m["reproduced"] is False
    m = client.get(f"/api/v1/models/{root}").json()
    [row] = m["history"][0]["metrics"]
    assert row["task"] == TASK and row["delta"] == pytest.approx(0.04) and row["ci"] == pytest.approx([0.03, 0.05])
    assert m["base"]["name"] == "base" and m["relation"] == "finetune" and m["licence"] == "apache-2.0"
    atts = client.get(f"/api/v1/models/{root}/attestations").json()["attestations"]
    assert len(atts) == 1 and atts[0]["envelope"]["payloadType"] == "application/vnd.in-toto+json"
    listing = client.get("/api/v1/models").json()
    assert listing["total"] == 1 and listing["models"][0]["aliases"] == ["honest-finetune"]
    assert [e["action"] for e in hub.audit()][:1] == ["publish"]
    assert hub.audit()[0]["actor"] == "ci" and hub.audit()[0]["key"] == "ci"


def test_identical_weights_under_two_names_are_one_model(client: Any, hub: Any, models: ModelSet,
                                                          keys: Keys) -> None:
    a = publish(client, attest_vet(vet_doc(models.base, relation="identical", delta=0.0),
                                   private_key_pem=keys["ci"][0]))
    # the re-upload holds the same tensors re-sharded into two files: another manifest, the same weights root
    b = publish(client, attest_vet(vet_doc(models.reupload, relation="identical", delta=0.0),
                                   private_key_pem=keys["ci"][0]))
    assert a.status_code == b.status_code == 201
    assert a.json()["model"] == b.json()["model"] and b.json()["created_model"] is False
    m = client.get("/api/v1/models/Ultimate-Lord").json()
    assert sorted(m["aliases"]) == ["Ultimate-Lord", "base"] and len(m["manifests"]) == 2
    assert {len(x["files"]) for x in m["manifests"]} == {3, 5}  # config+card+weights vs two shards + index
    assert client.get("/api/v1/models").json()["total"] == 1


def test_leaderboard_ranks_filters_and_pages(client: Any, models: ModelSet, keys: Keys) -> None:
    for folder, delta, lic in ((models.finetune, 0.03, "apache-2.0"), (models.broken, -0.2, "llama3.1"),
                               (models.impostor, 0.01, "mit")):
        doc = vet_doc(folder, delta=delta, half_width=0.01, licence=lic,
                      relation="unrelated" if folder == models.impostor else "finetune")
        assert publish(client, attest_vet(doc, private_key_pem=keys["ci"][0])).status_code == 201
    board = client.get("/api/v1/leaderboard", params={"task": TASK}).json()
    assert [r["name"] for r in board["rows"]] == ["honest-finetune", "impostor", "broken-finetune"]
    assert board["rows"][0]["ci"] == pytest.approx([0.02, 0.04]) and board["metric"] == "acc"
    asc = client.get("/api/v1/leaderboard", params={"task": TASK, "order": "asc"}).json()
    assert [r["name"] for r in asc["rows"]] == ["broken-finetune", "impostor", "honest-finetune"]
    fails = client.get("/api/v1/leaderboard", params={"task": TASK, "verdict": "FAIL"}).json()
    assert {r["name"] for r in fails["rows"]} == {"broken-finetune", "impostor"}
    lic = client.get("/api/v1/leaderboard", params={"licence": "llama3.1"}).json()
    assert [r["name"] for r in lic["rows"]] == ["broken-finetune"]
    page2 = client.get("/api/v1/leaderboard", params={"limit": 2, "offset": 2}).json()
    assert page2["total"] == 3 and [r["name"] for r in page2["rows"]] == ["broken-finetune"]
    fam = client.get("/api/v1/leaderboard", params={"base": "base"}).json()
    assert fam["total"] == 3  # all three were compared against the same base folder (its weights root)
    assert client.get("/api/v1/leaderboard", params={"base": "no-such-base"}).status_code == 404


def test_openapi_document(client: Any) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/api/v1/models", "/api/v1/models/{ident}", "/api/v1/leaderboard", "/api/v1/attestations",
                 "/api/v1/models/{ident}/attestations"):
        assert path in spec["paths"]


# --- refusals: a clear 4xx, a JSON error, nothing written -----------------------------------------------------


def _refused(client: Any, hub: Any, response: Any, status: int, *needles: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["schema"] == "assay.hub-error/1"
    for n in needles:
        assert n in (body["error"] + " " + (body.get("hint") or ""))
    assert hub.counts() == {"models": 0, "aliases": 0, "manifests": 0, "attestations": 0, "metrics": 0,
                            "claims": 0, "fingerprints": 0}


def test_untrusted_key_is_refused(client: Any, hub: Any, models: ModelSet, keys: Keys) -> None:
    env = attest_vet(vet_doc(models.finetune), private_key_pem=keys["stranger"][0])
    _refused(client, hub, publish(client, env), 403, "not signed by a key this hub trusts", "assay hub keys add")
    assert hub.audit()[0]["outcome"] == "refused"


def test_unsigned_and_tampered_attestations_are_refused(client: Any, hub: Any, models: ModelSet,
                                                        keys: Keys) -> None:
    env = attest_vet(vet_doc(models.finetune), private_key_pem=keys["ci"][0])
    unsigned = {**env, "signatures": []}
    _refused(client, hub, publish(client, unsigned), 400, "unsigned")
    st = statement_of(env)
    st["predicate"]["verdict"] = "PASS" if st["predicate"]["verdict"] != "PASS" else "WARN"
    tampered = {**env, "payload": base64.b64encode(canonical(st)).decode()}
    _refused(client, hub, publish(client, tampered), 400, "modified after signing")
    _refused(client, hub, publish(client, {**env, "payload": "%%% not base64"}), 400, "payload")
    _refused(client, hub, publish(client, {**env, "payloadType": "text/plain"}), 400, "payloadType")


def test_malformed_bodies_are_refused(client: Any, hub: Any) -> None:
    bad = client.post("/api/v1/attestations", content=b"{not json", headers={"Content-Type": "application/json"})
    _refused(client, hub, bad, 400, "not JSON")
    _refused(client, hub, publish(client, [1, 2, 3]), 400, "DSSE envelope")  # type: ignore[arg-type]
    _refused(client, hub, client.post("/api/v1/attestations", content=b"\xff\xfe"), 400, "not JSON")


def test_subjects_that_do_not_match_are_refused(client: Any, hub: Any, models: ModelSet, keys: Keys) -> None:
    env = attest_vet(vet_doc(models.finetune), private_key_pem=keys["ci"][0])
    st = statement_of(env)
    st["subject"][0]["digest"] = {"blake3": "00" * 32}  # a file swapped after the manifest digest was taken
    _refused(client, hub, publish(client, sign_statement(st, private_key_pem=keys["ci"][0])), 400,
             "manifest_digest", "does not match the subjects")


def test_same_files_claimed_for_other_weights_are_refused(client: Any, hub: Any, models: ModelSet,
                                                          keys: Keys) -> None:
    assert publish(client, attest_vet(vet_doc(models.finetune), private_key_pem=keys["ci"][0])).status_code == 201
    before = hub.counts()
    env = attest_vet(vet_doc(models.finetune, delta=0.02), private_key_pem=keys["ci"][0])
    st = statement_of(env)
    st["predicate"]["model"]["weights_root"] = "ab" * 32  # the registered files, claimed to be other weights
    r = publish(client, sign_statement(st, private_key_pem=keys["ci"][0]))
    assert r.status_code == 409 and "do not match the model entry" in r.json()["error"]
    assert hub.counts() == before


def test_wrong_schema_is_refused(client: Any, hub: Any, models: ModelSet, keys: Keys) -> None:
    env = attest_vet(vet_doc(models.finetune), private_key_pem=keys["ci"][0])
    for path, value, needle in ((("predicate", "schema"), "assay.attestation/99", "predicate.schema"),
                                (("predicateType",), "https://slsa.dev/provenance/v1", "predicateType"),
                                (("predicate", "metrics"), [{"task": "x", "metric": "acc", "value": "high"}],
                                 "predicate.metrics[0].value"),
                                (("predicate", "policy_digest"), "0" * 64, "does not match predicate.policy")):
        st = statement_of(env)
        target = st
        for k in path[:-1]:
            target = target[k]
        target[path[-1]] = value
        _refused(client, hub, publish(client, sign_statement(st, private_key_pem=keys["ci"][0])), 400, needle)


def test_huge_body_is_refused_before_reading_it(client: Any, hub: Any) -> None:
    big = b'{"payload": "' + b"A" * (5 * 1024 * 1024) + b'"}'
    _refused(client, hub, client.post("/api/v1/attestations", content=big), 413, "over the hub's limit")

    def chunks() -> Any:  # no Content-Length: the limit is enforced while reading
        for _ in range(6):
            yield b"A" * (1024 * 1024)

    _refused(client, hub, client.post("/api/v1/attestations", content=chunks()), 413, "over the hub's limit")


def test_writes_need_a_valid_token(client: Any, hub: Any, models: ModelSet, keys: Keys) -> None:
    env = attest_vet(vet_doc(models.finetune), private_key_pem=keys["ci"][0])
    no_token = client.post("/api/v1/attestations", content=json.dumps(env), headers={"Authorization": ""})
    _refused(client, hub, no_token, 401, "bearer token")
    wrong = client.post("/api/v1/attestations", content=json.dumps(env),
                        headers={"Authorization": "Bearer assay_not-a-token"})
    _refused(client, hub, wrong, 401, "valid bearer token")
    hub.revoke_token("ci")
    _refused(client, hub, publish(client, env), 401, "valid bearer token")


SQLISH = ["x' OR '1'='1", "'; DROP TABLE models; --", "%", "_", "\\", "a\" OR 1=1 --", "名前", "../../etc/passwd"]


@pytest.mark.parametrize("name", SQLISH)
def test_sql_looking_names_are_just_names(client: Any, hub: Any, models: ModelSet, keys: Keys, name: str) -> None:
    env = attest_vet(vet_doc(models.finetune), private_key_pem=keys["ci"][0], name=name)
    r = publish(client, env)
    assert r.status_code == 201, r.text
    assert client.get("/api/v1/models/" + _quote(name)).json()["aliases"] == [name]
    assert client.get("/api/v1/models", params={"q": name}).json()["total"] == 1
    assert client.get("/api/v1/models", params={"q": "'; DROP TABLE models; --x"}).json()["total"] == 0
    assert client.get("/api/v1/leaderboard", params={"task": name, "licence": name}).json()["rows"] == []
    assert hub.counts()["models"] == 1


def _quote(s: str) -> str:
    from urllib.parse import quote

    return quote(s, safe="")


def test_bad_query_parameters_are_4xx_json(client: Any) -> None:
    for url, status in (("/api/v1/leaderboard?limit=0", 422), ("/api/v1/leaderboard?limit=abc", 422),
                        ("/api/v1/leaderboard?offset=-1", 422), ("/api/v1/leaderboard?sort=password", 422),
                        ("/api/v1/leaderboard?order=sideways", 422), ("/api/v1/models?limit=100000", 422),
                        ("/api/v1/models/nope", 404), ("/api/v1/models/" + "x" * 300, 422),
                        ("/api/v1/no-such-endpoint", 404), ("/api/v1/models?q=" + "q" * 300, 422)):
        r = client.get(url)
        assert r.status_code == status, (url, r.text)
        assert r.json()["schema"] == "assay.hub-error/1" and r.json()["error"]


def test_duplicate_publish_is_a_conflict(client: Any, hub: Any, models: ModelSet, keys: Keys) -> None:
    env = attest_vet(vet_doc(models.finetune), private_key_pem=keys["ci"][0])
    assert publish(client, env).status_code == 201
    before = hub.counts()
    r = publish(client, copy.deepcopy(env))
    assert r.status_code == 409 and "already published" in r.json()["error"]
    assert hub.counts() == before


def test_a_failure_half_way_leaves_nothing(hub: Any, models: ModelSet, keys: Keys, monkeypatch: Any) -> None:
    """The metric rows are written after the model, alias, manifest and attestation: make them fail."""
    from assay.hub import store

    env = attest_vet(vet_doc(models.finetune), private_key_pem=keys["ci"][0])

    class Boom(RuntimeError):
        pass

    def broken_metric_rows(*a: Any, **kw: Any) -> Any:
        raise Boom("disk full")

    monkeypatch.setattr(store, "metric_rows", broken_metric_rows)
    with pytest.raises(Boom):
        hub.publish(env, token=hub.test_token)
    assert hub.counts() == {"models": 0, "aliases": 0, "manifests": 0, "attestations": 0, "metrics": 0,
                            "claims": 0, "fingerprints": 0}
