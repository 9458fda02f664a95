"""The hub from the command line: keys, tokens, publish to a live server, audit, export and import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from assay.cli.main import main
from tests.hub.builders import TASK, ModelSet, vet_doc

Keys = dict[str, tuple[bytes, bytes]]


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def test_keys_and_tokens(db_url: str, tmp_path: Path, keys: Keys, capsys: pytest.CaptureFixture[str]) -> None:
    pub = _write(tmp_path / "ci.pub", keys["ci"][1])
    assert main(["hub", "keys", "add", "ci", str(pub), "--db", db_url, "--json"]) == 0
    kid = json.loads(capsys.readouterr().out)["key_id"]
    assert main(["hub", "keys", "add", "again", str(pub), "--db", db_url]) == 2
    assert "already trusted as 'ci'" in capsys.readouterr().err
    priv = _write(tmp_path / "ci.pem", keys["ci"][0])
    assert main(["hub", "keys", "add", "oops", str(priv), "--db", db_url]) == 2
    assert "private key" in capsys.readouterr().err
    assert main(["hub", "keys", "list", "--db", db_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["keys"][0]["key_id"] == kid
    assert main(["hub", "token", "create", "ci", "--db", db_url, "--json"]) == 0
    token = json.loads(capsys.readouterr().out)["token"]
    from assay.hub.store import Hub

    hub = Hub.open(db_url)
    assert hub.token_name(token) == "ci"
    with hub.session() as s:  # only the hash is stored
        from sqlalchemy import text

        stored = [r[0] for r in s.execute(text("SELECT token_hash FROM tokens"))]
    assert token not in stored and len(stored) == 1
    assert main(["hub", "token", "revoke", "ci", "--db", db_url]) == 0
    assert hub.token_name(token) is None
    assert main(["hub", "token", "revoke", "ci", "--db", db_url]) == 2
    capsys.readouterr()
    assert main(["hub", "audit", "--db", db_url, "--json"]) == 0
    actions = [e["action"] for e in json.loads(capsys.readouterr().out)["entries"]]
    assert actions[:2] == ["token.revoke", "token.create"] and "key.add" in actions
    hub.engine.dispose()


def test_bad_database_url_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hub", "keys", "list", "--db", "mysql://x/y"]) == 2
    assert "unsupported database URL" in capsys.readouterr().err
    assert main(["hub", "keys", "list", "--db", "sqlite:////proc/no/such/dir/hub.db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_publish_from_the_cli(live_hub: str, hub: Any, models: ModelSet, keys: Keys, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    vet = _write(tmp_path / "vet.json", json.dumps(vet_doc(models.finetune)))
    key = _write(tmp_path / "ci.pem", keys["ci"][0])
    monkeypatch.delenv("ASSAY_HUB_TOKEN", raising=False)
    monkeypatch.delenv("ASSAY_SIGNING_KEY", raising=False)
    assert main(["hub", "publish", str(vet), "--url", live_hub, "--key", str(key)]) == 2
    assert "needs a token" in capsys.readouterr().err
    monkeypatch.setenv("ASSAY_HUB_TOKEN", hub.test_token)
    monkeypatch.setenv("ASSAY_SIGNING_KEY", str(key))
    assert main(["hub", "publish", str(vet), "--url", live_hub, "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert reply["aliases"] == ["honest-finetune"] and reply["key"] == "ci"
    # the same result again: refused by the hub, reported in one line
    assert main(["hub", "publish", str(vet), "--url", live_hub]) == 2
    assert "already published" in capsys.readouterr().err
    # a stranger's key: refused with the hint that names the fix
    stranger = _write(tmp_path / "stranger.pem", keys["stranger"][0])
    other = _write(tmp_path / "vet2.json", json.dumps(vet_doc(models.broken, delta=-0.2)))
    assert main(["hub", "publish", str(other), "--url", live_hub, "--key", str(stranger)]) == 2
    err = capsys.readouterr().err
    assert "(403)" in err and "assay hub keys add" in err
    # a model that is no longer where the vet result says
    moved = vet_doc(models.finetune)
    moved["candidate"]["root"] = str(tmp_path / "gone")
    assert main(["hub", "publish", str(_write(tmp_path / "vet3.json", json.dumps(moved))), "--url", live_hub]) == 2
    assert "--model" in capsys.readouterr().err
    assert main(["hub", "publish", str(tmp_path / "vet3.json"), "--url", live_hub, "--model",
                 str(models.finetune), "--name", "org/honest"]) == 0
    assert sorted(hub.model("org/honest")["aliases"]) == ["honest-finetune", "org/honest"]
    # nothing listening
    assert main(["hub", "publish", str(other), "--url", "http://127.0.0.1:9"]) == 2
    assert "cannot reach the hub" in capsys.readouterr().err


def test_export_and_claimed_scores(hub: Any, db_url: str, models: ModelSet, keys: Keys, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from assay.hub.client import attest_vet

    hub.publish(attest_vet(vet_doc(models.finetune, delta=0.04), private_key_pem=keys["ci"][0]),
                token=hub.test_token)
    out = tmp_path / "export"
    assert main(["hub", "export", "honest-finetune", "--db", db_url, "--out", str(out)]) == 0
    [f] = list((out / ".eval_results").glob("*.yaml"))
    [entry] = yaml.safe_load(f.read_text())
    assert entry["dataset"] == {"id": TASK, "task_id": "acc"} and entry["value"] == pytest.approx(0.54)
    assert "delta vs base +0.0400" in entry["notes"]
    index = yaml.safe_load((out / "model-index.yaml").read_text())
    assert index[0]["name"] == "honest-finetune"
    assert index[0]["results"][0]["metrics"][0]["value"] == pytest.approx(0.54)
    # a card claiming 0.95 on the same task: stored as claimed, shown apart from the measured 0.54
    card = _write(tmp_path / "README.md", "---\n" + yaml.safe_dump({"model-index": [{
        "name": "honest-finetune", "results": [{"task": {"type": "text-generation"},
                                                "dataset": {"type": TASK, "name": "Knowledge"},
                                                "metrics": [{"type": "acc", "value": 0.95}]}]}]}) + "---\n# card\n")
    assert main(["hub", "import-card", "honest-finetune", str(card), "--db", db_url]) == 0
    m = hub.model("honest-finetune")
    assert m["claims"] == [{"task": TASK, "dataset": "Knowledge", "metric": "acc", "value": 0.95,
                            "source": "model card README.md"}]
    assert m["history"][0]["metrics"][0]["value"] == pytest.approx(0.54)  # measured stays measured
    bad = _write(tmp_path / "bad.md", "---\nmodel-index: [\n---\n")
    assert main(["hub", "import-card", "honest-finetune", str(bad), "--db", db_url]) == 2
    assert "not valid YAML" in capsys.readouterr().err
