"""`assay scan` end to end: exit codes, --json, --sarif (validated against the SARIF 2.1.0 schema), options."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pytest

from assay.cli.main import main
from tests.factory.hostile import Sample

SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"


def _sample(hostile: list[Sample], name: str) -> Path:
    return next(s for s in hostile if s.name == name).path


def _validate_sarif(path: Path) -> dict:
    doc = json.loads(path.read_text())
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema).validate(doc)
    return doc


def test_safe_model_json(zoo, capsys) -> None:  # type: ignore[no-untyped-def]
    rc = main(["scan", str(zoo.safetensors_dir), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert doc["schema"] == "assay.scan/1" and doc["verdict"] == "safe" and doc["findings"] == []
    assert {f["path"] for f in doc["files"]} >= {"model.safetensors", "config.json", "tokenizer_config.json"}
    assert all(set(f) >= {"path", "format", "status"} for f in doc["files"])


def test_unsafe_model_json(hostile, capsys) -> None:  # type: ignore[no-untyped-def]
    rc = main(["scan", str(_sample(hostile, "torch-zip-evil")), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and doc["verdict"] == "unsafe"
    f = doc["findings"][0]
    assert set(f) >= {"rule", "severity", "path", "location", "message"}
    assert f["rule"] == "PICKLE-GLOBAL-DANGEROUS" and f["severity"] == "critical"


def test_unverified_exit_2(hostile, capsys) -> None:  # type: ignore[no-untyped-def]
    rc = main(["scan", str(_sample(hostile, "seven-zip")), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 2 and doc["verdict"] == "unverified"
    assert doc["files"][0]["status"] == "not_verified" and "7z" in doc["files"][0]["reason"]


def test_missing_model_is_one_line_error(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    rc = main(["scan", str(tmp_path / "nope")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1


def test_fail_on_and_allow_global(hostile, capsys) -> None:  # type: ignore[no-untyped-def]
    path = str(_sample(hostile, "p2-custom-class"))
    assert main(["scan", path, "--json"]) == 1
    assert main(["scan", path, "--json", "--fail-on", "critical"]) == 0
    assert main(["scan", path, "--json", "--allow-global", "mylib.layers.CustomLayer"]) == 0
    out = capsys.readouterr().out
    assert '"verdict": "safe"' in out
    assert main(["scan", str(_sample(hostile, "p2-global")), "--allow-global", "mylib.layers.CustomLayer"]) == 1


def test_allow_remote_code(tmp_path, zoo, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "custom"
    shutil.copytree(zoo.safetensors_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForCausalLM": "modeling_tiny.TinyModel"}
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "modeling_tiny.py").write_text(
        '"""A custom model."""\nfrom transformers import LlamaForCausalLM\n\n\n'
        "class TinyModel(LlamaForCausalLM):\n    pass\n")
    assert main(["scan", str(folder), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert {f["rule"] for f in doc["findings"]} == {"CODE-AUTO-MAP", "CODE-FILE"}
    assert main(["scan", str(folder), "--json", "--allow-remote-code"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert {f["severity"] for f in doc["findings"]} == {"info"}


def test_sarif_validates_for_unsafe_and_safe(hostile, zoo, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "mix"
    for name in ("torch-zip-evil", "template-cycler-globals", "zip-encrypted-flag", "unknown-binary"):
        src = _sample(hostile, name)
        (folder / name).mkdir(parents=True)
        shutil.copy(src, folder / name / src.name)
    out = tmp_path / "out" / "scan.sarif"
    out.parent.mkdir()  # assay does not create a missing folder for --sarif (tests/test_cli_errors.py)
    rc = main(["scan", str(folder), "--sarif", str(out)])
    assert rc == 1
    doc = _validate_sarif(out)
    run = doc["runs"][0]
    rules = {r["id"] for r in run["tool"]["driver"]["rules"]}
    assert {"PICKLE-GLOBAL-DANGEROUS", "TEMPLATE-DUNDER", "ZIP-FLAGS"} <= rules
    assert {r["ruleId"] for r in run["results"]} == rules
    assert run["invocations"][0]["toolExecutionNotifications"]  # the unknown binary is not verified
    assert "UNSAFE" in capsys.readouterr().out
    clean = tmp_path / "clean.sarif"
    assert main(["scan", str(zoo.gguf_q8_0), "--sarif", str(clean), "--json"]) == 0
    assert _validate_sarif(clean)["runs"][0]["results"] == []


def test_sarif_from_saved_scan_document(hostile) -> None:  # type: ignore[no-untyped-def]
    from assay.model.ref import resolve
    from assay.report.sarif import sarif_document, sarif_from_scan_document
    from assay.scan import scan_document, scan_model

    report = scan_model(resolve(str(_sample(hostile, "template-jinja-file"))))
    doc = json.loads(json.dumps(scan_document(report)))
    assert sarif_from_scan_document(doc) == sarif_document(report)
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft4Validator(schema).validate(sarif_document(report))
    region = sarif_document(report)["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"]
    assert region == {"startLine": 1}


def test_human_output_and_help(hostile, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["scan", str(_sample(hostile, "gguf-bad-alignment"))]) == 1
    out = capsys.readouterr().out
    assert "GGUF-ALIGNMENT" in out and "UNSAFE" in out
    assert main(["scan", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert "assay scan ./my-model" in help_text and "--allow-global" in help_text and "Exit codes" in help_text


@pytest.mark.parametrize("bad", ["--fail-on", "--sarif"])
def test_usage_errors_exit_2(bad, zoo, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["scan", str(zoo.gguf_q8_0), bad]) == 2


@pytest.mark.parametrize("args", [
    ["--fail-on", "bogus"],           # a value click refuses
    ["--sarif", "{dir}"],             # a folder where a file is expected
    ["--no-such-option"],
    ["--allow-global", "OrderedDict"],  # not MODULE.QUALNAME: could never match, so it is refused
])
def test_usage_errors_are_one_line(args, zoo, tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    rc = main(["scan", str(zoo.gguf_q8_0), *[a.format(dir=tmp_path) for a in args]])
    captured = capsys.readouterr()
    assert rc == 2 and captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err


def test_missing_argument_names_model(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["scan"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "error: Missing argument 'MODEL'. (see `assay scan --help`)"
