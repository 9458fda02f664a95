"""``assay demo --serve``'s publishing step: each vetted zoo model signed with the demo key and published to a
local hub, the booby-trapped pickle included (identified by its files: it has no readable weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from assay.demo import DemoModel, DemoResult, ZooEntry
from assay.hub.demo import publish_demo
from tests.hub.builders import ModelSet, vet_doc

# PROTO 2, GLOBAL 'os system', BINUNICODE 'true', TUPLE1, REDUCE, STOP (written, never unpickled)
BOOBY_TRAP = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R."


def _result(models: ModelSet, tmp_path: Path) -> DemoResult:
    trap = tmp_path / "FastLoad-bin"
    trap.mkdir()
    (trap / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    (trap / "pytorch_model.bin").write_bytes(BOOBY_TRAP)
    entries = [(models.finetune, "finetune", vet_doc(models.finetune, delta=0.03)),
               (models.reupload, "reupload", vet_doc(models.reupload, relation="identical", delta=0.0)),
               (trap, "booby_trap", vet_doc(trap, delta=0.0))]
    out = []
    for path, kind, doc in entries:
        entry = ZooEntry(name=f"SmolLM2-{path.name}", kind=kind, path=path, story="", expected=doc["verdict"],  # type: ignore[arg-type]
                         expected_rule=None)
        out.append(DemoModel(entry=entry, verdict=doc["verdict"], reasons=(), relation=None, domain=None,
                             knowledge=None, as_expected=True, report=None, seconds=1.0, document=doc))
    return DemoResult(base=models.base, zoo=tmp_path, task_file=tmp_path / "t.yaml", models=tuple(out),
                      report=tmp_path / "report.html", limit=10, seconds=1.0)


def test_demo_zoo_is_published_signed(models: ModelSet, tmp_path: Path) -> None:
    result = _result(models, tmp_path)
    hub, published = publish_demo(result, out=tmp_path / "demo")
    assert len(published) == 3
    assert (tmp_path / "demo" / "demo-key.pem").stat().st_mode & 0o777 == 0o600
    trap = hub.model("SmolLM2-FastLoad-bin")
    assert trap["id"].startswith("files:") and trap["vouched_by"] == ["assay-demo"]
    fine = hub.model("SmolLM2-honest-finetune")
    assert fine["base"]["weights_root"] and fine["vouched_by"] == ["assay-demo"]
    # a second run publishes nothing new, and leaves no usable token behind
    hub2, again = publish_demo(result, out=tmp_path / "demo")
    assert again == [] and hub2.counts()["attestations"] == 3
    assert all(e["outcome"] in ("ok", "refused") for e in hub2.audit())
    from sqlalchemy import select

    from assay.hub.db import Token

    with hub2.session() as s:
        assert all(t.revoked_at is not None for t in s.scalars(select(Token)))
    hub.engine.dispose()
    hub2.engine.dispose()


def test_demo_serve_option_is_offered(capsys: Any) -> None:
    from assay.cli.main import main

    assert main(["demo", "--help"]) == 0
    assert "--serve" in capsys.readouterr().out
