"""Published JSON Schemas: one for every document kind assay writes, each a valid draft 2020-12 schema, served by
``assay schema``; documents that break their schema are refused by name. (Every document a command prints in any
test is validated against its schema by the autouse fixture in tests/conftest.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from assay.cli.main import main
from assay.schemas import SchemaError, kinds, load_schema, validate

SRC = Path(__file__).resolve().parents[1] / "src" / "assay"


def _kinds_named_in_the_code() -> set[str]:
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        found |= set(re.findall(r"[\"']assay\.([a-z][a-z0-9-]*)/1[\"']", path.read_text(encoding="utf-8")))
    return found


def test_every_document_kind_in_the_code_has_a_schema() -> None:
    named = _kinds_named_in_the_code()
    assert {"vet", "scan", "eval", "verify", "lineage", "inventory"} <= named  # the search finds them
    assert named - set(kinds()) == set()


@pytest.mark.parametrize("kind", kinds())
def test_each_schema_is_a_valid_draft_2020_12_schema(kind: str) -> None:
    schema = load_schema(kind)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == f"urn:assay:{kind}:1"
    assert schema["properties"]["schema"] == {"const": f"assay.{kind}/1"}
    assert "schema" in schema["required"]
    assert schema.get("description")


def test_a_document_that_breaks_its_schema_is_refused_naming_the_field() -> None:
    good = {"schema": "assay.keygen/1", "kind": "ecdsa-p256", "private_key": "k.pem", "public_key": "k.pub",
            "key_id": "ab12"}
    validate(good)
    with pytest.raises(SchemaError, match="at key_id"):
        validate({**good, "key_id": 12})
    with pytest.raises(SchemaError, match="public_key"):
        validate({k: v for k, v in good.items() if k != "public_key"})
    with pytest.raises(SchemaError, match="no schema for 'assay.nonsense/1'"):
        validate({"schema": "assay.nonsense/1"})


def test_a_vet_document_checks_the_documents_it_embeds() -> None:
    scan = {"schema": "assay.scan/1", "model": "m", "root": "m", "verdict": "maybe", "files": [], "findings": [],
            "fail_on": "high", "options": {"allow_globals": [], "allow_remote_code": False, "deep": False},
            "summary": {"files": 0, "findings": {}, "not_verified": 0}}
    with pytest.raises(SchemaError, match="verdict"):
        validate(scan)
    vet = load_schema("vet")
    assert vet["properties"]["scan"] == {"$ref": "urn:assay:scan:1"}


def test_assay_schema_prints_a_schema_and_lists_kinds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "vet"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["$id"] == "urn:assay:vet:1"
    assert main(["schema", "assay.scan/1"]) == 0
    assert json.loads(capsys.readouterr().out)["$id"] == "urn:assay:scan:1"
    assert main(["schema"]) == 0
    listed = capsys.readouterr().out.split()
    assert listed == [f"assay.{k}/1" for k in kinds()] and "assay.vet/1" in listed


def test_an_unknown_kind_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "nonsense"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: no schema for 'nonsense'") and "vet" in err[0]
