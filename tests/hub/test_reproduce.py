"""``assay reproduce``: a real vet of a tiny model re-run from its signed attestation; a second key's reproduction
makes the hub show the entry as reproduced; a tampered number is caught."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assay.cli.main import main

pytestmark = pytest.mark.slow

LIMIT = "6"


@pytest.fixture(scope="session")
def real_vet(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Llama base and a perturbed copy, vetted for real on builtin:knowledge (a few items)."""
    from tests.conftest import single_thread_torch
    from tests.factory.models import build_model, save_safetensors_folder, tiny_tokenizer

    single_thread_torch()
    import torch

    root = tmp_path_factory.mktemp("repro")
    tok = tiny_tokenizer()
    base = build_model(seed=0)
    cand = build_model(seed=0)
    with torch.no_grad():
        for p in cand.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    out = {"base": save_safetensors_folder(base, tok, root / "base", card={"license": "apache-2.0"}),
           "cand": save_safetensors_folder(cand, tok, root / "nudged", card={"license": "apache-2.0"})}
    mp = pytest.MonkeyPatch()
    mp.setenv("ASSAY_CACHE_DIR", str(root / "cache"))
    rc = main(["vet", str(out["cand"]), "--base", str(out["base"]), "--task", "builtin:knowledge", "--limit", LIMIT,
               "--out", str(root / "vet"), "--format", "json"])
    mp.undo()
    assert rc in (0, 1)
    out["vet"] = root / "vet" / "vet.json"
    return out


def test_reproduced_by_a_second_key(real_vet: dict[str, Path], hub: Any, live_hub: str,
                                    keys: dict[str, tuple[bytes, bytes]], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from assay.hub.client import attest_vet

    vet = json.loads(real_vet["vet"].read_text())
    assert vet["comparison"]["builtin:knowledge"]
    env = attest_vet(vet, private_key_pem=keys["ci"][0])
    hub.publish(env, token=hub.test_token)
    att = tmp_path / "attestation.json"
    att.write_text(json.dumps(env))
    assert hub.model("nudged")["reproduced"] is False
    # the original publisher reproducing its own rating does not count as independent
    (tmp_path / "ci.pem").write_bytes(keys["ci"][0])
    (tmp_path / "lab.pem").write_bytes(keys["lab"][0])
    monkeypatch.setenv("ASSAY_HUB_TOKEN", hub.test_token)
    assert main(["reproduce", str(att), "--publish", live_hub, "--key", str(tmp_path / "ci.pem"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True and doc["attestation"] == doc["published"]["reproduces"]
    assert {c["metric"] for c in doc["checks"]} >= {"acc"} and all(c["ok"] for c in doc["checks"])
    m = hub.model("nudged")
    assert m["reproduced"] is False and m["vouched_by"] == ["ci"]
    # a second, independent key
    assert main(["reproduce", str(att), "--publish", live_hub, "--key", str(tmp_path / "lab.pem")]) == 0
    assert "REPRODUCED" in capsys.readouterr().out
    m = hub.model("nudged")
    assert m["reproduced"] is True and m["reproduced_by"] == ["lab"]
    assert [h["kind"] for h in m["history"]] == ["vet", "reproduction", "reproduction"]


def test_a_changed_number_is_not_reproduced(real_vet: dict[str, Path], tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    vet = json.loads(real_vet["vet"].read_text())
    cmp = vet["comparison"]["builtin:knowledge"]["acc"]
    cmp["candidate"] += 0.1
    cmp["delta"] += 0.1
    bad = tmp_path / "vet.json"
    bad.write_text(json.dumps(vet))
    assert main(["reproduce", str(bad), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    acc = next(c for c in doc["checks"] if c["metric"] == "acc")
    assert acc["ok"] is False and acc["recorded"] - acc["reproduced"] == pytest.approx(0.1)
    assert any("not checked" in n for n in doc["notes"])  # a bare vet result pins no digests


def test_the_wrong_model_is_refused(real_vet: dict[str, Path], keys: dict[str, tuple[bytes, bytes]], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from assay.hub.client import attest_vet

    env = attest_vet(json.loads(real_vet["vet"].read_text()), private_key_pem=keys["ci"][0])
    att = tmp_path / "att.json"
    att.write_text(json.dumps(env))
    # the base's weights are not the candidate's: refused by digest, whatever the path says
    assert main(["reproduce", str(att), "--model", str(real_vet["base"])]) == 2
    assert "is not the model that was vetted" in capsys.readouterr().err
    # a statement whose model is nowhere to be found
    import base64

    st = json.loads(base64.b64decode(env["payload"]))
    st["predicate"]["model"]["weights_root"] = "cd" * 32
    st["predicate"]["model"]["manifest_digest"] = "ef" * 32
    st["predicate"]["vet"]["candidate"]["root"] = str(tmp_path / "gone")
    st["predicate"]["vet"]["candidate"]["hf_id"] = None
    payload = base64.b64encode(json.dumps(st).encode()).decode()
    (tmp_path / "att2.json").write_text(json.dumps({**env, "payload": payload}))
    assert main(["reproduce", str(tmp_path / "att2.json")]) == 2
    assert "no copy of the model with the recorded digests was found" in capsys.readouterr().err


def test_vet_publish_signs_and_publishes(real_vet: dict[str, Path], hub: Any, live_hub: str,
                                         keys: dict[str, tuple[bytes, bytes]], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    args = ["vet", str(real_vet["cand"]), "--base", str(real_vet["base"]), "--task", "builtin:knowledge",
            "--limit", LIMIT, "--publish", live_hub]
    monkeypatch.delenv("ASSAY_HUB_TOKEN", raising=False)
    monkeypatch.delenv("ASSAY_SIGNING_KEY", raising=False)
    assert main(args) == 2  # refused before any work: no token
    assert "ASSAY_HUB_TOKEN" in capsys.readouterr().err
    (tmp_path / "lab.pem").write_bytes(keys["lab"][0])
    monkeypatch.setenv("ASSAY_HUB_TOKEN", hub.test_token)
    monkeypatch.setenv("ASSAY_SIGNING_KEY", str(tmp_path / "lab.pem"))
    monkeypatch.setenv("ASSAY_CACHE_DIR", str(tmp_path / "cache"))
    assert main(args) in (0, 1)
    assert "published to" in capsys.readouterr().err
    m = hub.model("nudged")
    assert m["vouched_by"] == ["lab"] and m["base"]["name"] == "base" and m["base"]["weights_root"]
    assert m["history"][0]["metrics"] and m["verdict"] in ("PASS", "WARN", "FAIL", "NONE")
