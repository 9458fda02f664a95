"""Refusals a new user meets first: early (before any model is loaded), one line on stderr, exit 2, and with
``--json`` one ``assay.error/1`` document on stdout that a script can read."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from assay.cli.main import main

#: Loose bound: the target is under 2 s; a shared CI machine may be slower, a model load is much slower still.
EARLY_S = 10.0


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every way a command loads a model (or reads all its tensors) records itself here instead of working."""
    import assay.deploy.bench.local as bench_local
    import assay.evaluate.backends.hf as hf
    import assay.provenance.lineage as lineage

    seen: list[str] = []

    def recorder(name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> Any:
            seen.append(name)
            raise AssertionError(f"{name} was called: a model was loaded before the input was checked")
        return record

    monkeypatch.setattr(hf, "load_after_scan", recorder("load_after_scan"))
    monkeypatch.setattr(hf.HFBackend, "from_ref", recorder("HFBackend.from_ref"))
    monkeypatch.setattr(bench_local, "load", recorder("bench.load"))
    monkeypatch.setattr(lineage, "compare_lineage", recorder("compare_lineage"))
    return seen


def refused(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[dict[str, Any], str, float]:
    """Run a command that must be refused: ``(its assay.error/1 document, its stderr, seconds)``."""
    t0 = time.perf_counter()
    rc = main([*argv, "--json"])
    seconds = time.perf_counter() - t0
    out = capsys.readouterr()
    assert rc == 2, out.err
    doc = json.loads(out.out)  # exactly one document, nothing else on stdout
    assert doc["schema"] == "assay.error/1" and doc["exit_code"] == 2 and doc["error"]
    assert set(doc) == {"schema", "error", "hint", "exit_code"}
    lines = out.err.strip().splitlines()
    assert lines[-1].startswith("error: ") and doc["error"] in lines[-1] and "Traceback" not in out.err
    return doc, out.err, seconds


# ------------------------------------------------------------------------------ --json errors, several commands


def test_json_error_document_for_several_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "no-such-model")
    for argv in (["inspect", missing], ["scan", missing], ["card", missing], ["hash", missing],
                 ["eval", missing, "--task", "builtin:knowledge"], ["vet", missing],
                 ["lineage", missing, "--base", missing]):
        doc, _, _ = refused(capsys, argv)
        assert "no such model" in doc["error"] and missing in doc["error"], argv


def test_json_error_for_a_usage_error_carries_the_hint(capsys: pytest.CaptureFixture[str]) -> None:
    doc, err, _ = refused(capsys, ["scan", "x", "--no-such-option"])
    assert "--no-such-option" in doc["error"] and doc["hint"] == "see `assay scan --help`"
    assert err.strip() == f"error: {doc['error']} ({doc['hint']})"


def test_json_error_for_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad_policy = tmp_path / "policy.yaml"
    bad_policy.write_text("evaluation:\n  taks: [builtin:knowledge]\n")
    doc, _, _ = refused(capsys, ["policy", "show", "--policy", str(bad_policy)])
    assert "taks" in doc["error"]
    not_json = tmp_path / "eval.json"
    not_json.write_text("{ not json")
    doc, _, _ = refused(capsys, ["advise", "--api-per-task", "0.1", "--self-per-task", "0.01",
                                 "--monthly-tasks", "10", "--eval", str(not_json)])
    assert str(not_json) in doc["error"] or "JSON" in doc["error"]


def test_without_json_stdout_stays_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inspect", str(tmp_path / "nothing")]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err.startswith("error: no such model")


def test_help_with_json_is_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--json", "--help"]) == 0
    assert capsys.readouterr().out.startswith("Usage: assay scan")


# ------------------------------------------------------------------------ errors arrive before any model load


def test_eval_refuses_a_bad_task_and_a_bad_device_before_loading(tiny_model_dir: Path, loads: list[str],
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    doc, _, s = refused(capsys, ["eval", str(tiny_model_dir), "--task", "builtin:nonsense"])
    assert "builtin:knowledge" in doc["error"] and s < EARLY_S  # names the suites that exist
    doc, _, s = refused(capsys, ["eval", str(tiny_model_dir), "--task", "builtin:knowledge", "--device", "gpu"])
    assert "gpu" in doc["error"] and "cuda" in doc["hint"] and s < EARLY_S
    doc, _, s = refused(capsys, ["eval", str(tiny_model_dir), "--task", "builtin:knowledge", "--backend", "openai"])
    assert "--base-url" in doc["error"] and s < EARLY_S
    doc, _, s = refused(capsys, ["eval", str(tiny_model_dir), "--task", "builtin:knowledge",
                                 "--log-items", str(tiny_model_dir / "missing-folder" / "items.jsonl")])
    assert "--log-items" in doc["error"] and s < EARLY_S
    assert loads == []


def test_eval_refuses_cuda_on_a_torch_without_it(tiny_model_dir: Path, loads: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    doc, _, s = refused(capsys, ["eval", str(tiny_model_dir), "--task", "builtin:knowledge", "--device", "cuda"])
    assert "cuda" in doc["error"] and doc["hint"] == "use --device cpu" and s < EARLY_S
    assert loads == []


def test_vet_refuses_bad_tasks_and_keys_before_scanning_or_loading(tiny_model_dir: Path, tmp_path: Path,
                                                                    loads: list[str], monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import assay.scan as scan

    scanned: list[str] = []
    monkeypatch.setattr(scan, "scan_model", lambda *a, **k: scanned.append("scan") or pytest.fail("scanned"))
    doc, _, s = refused(capsys, ["vet", str(tiny_model_dir), "--base", str(tiny_model_dir),
                                 "--task", "builtin:nonsense"])
    assert "nonsense" in doc["error"] and s < EARLY_S
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    task = tmp_path / "t.yaml"
    task.write_text(f"name: t\ndata: {empty}\nprompt: '{{{{q}}}}'\nchoices: c\nlabel: a\n")
    doc, _, s = refused(capsys, ["vet", str(tiny_model_dir), "--task", str(task)])
    assert s < EARLY_S
    for key_text, expect in ((None, "cannot read trusted key"), ("not a key", "not a PEM public key")):
        key = tmp_path / "trusted.pub"
        if key_text is None:
            key.unlink(missing_ok=True)
        else:
            key.write_text(key_text)
        policy = tmp_path / "policy.yaml"
        policy.write_text(f"signature:\n  required: true\n  trusted_keys: [{key}]\n")
        doc, _, s = refused(capsys, ["vet", str(tiny_model_dir), "--policy", str(policy)])
        assert expect in doc["error"] and str(key) in doc["error"] and s < EARLY_S
    assert loads == [] and scanned == []


def test_bench_and_lineage_refuse_before_loading(tiny_model_dir: Path, tmp_path: Path, loads: list[str],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for argv, needle in ((["--context", "-5"], "--context"), (["--repeats", "0"], "--repeats"),
                         (["--batch-size", "1,x"], "--batch-size"), (["--base", str(tmp_path / "nope")], "nope")):
        doc, _, s = refused(capsys, ["bench", str(tiny_model_dir), *argv])
        assert needle in doc["error"] and s < EARLY_S
    doc, _, s = refused(capsys, ["lineage", str(tiny_model_dir), "--base", str(tmp_path / "nope")])
    assert "nope" in doc["error"] and s < EARLY_S
    assert loads == []


# ---------------------------------------------------------------------------------- small bad-input items


def test_output_files_in_missing_folders_are_refused_not_created(tiny_model_dir: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "typo-folder"
    doc, _, _ = refused(capsys, ["keygen", "--out", str(missing / "key.pem")])
    assert str(missing) in doc["error"] and "does not exist" in doc["error"] and "mkdir" in doc["hint"]
    doc, _, s = refused(capsys, ["scan", str(tiny_model_dir), "--sarif", str(missing / "scan.sarif")])
    assert str(missing) in doc["error"] and s < EARLY_S
    assert not missing.exists()
    doc, _, _ = refused(capsys, ["keygen", "--out", str(tmp_path)])
    assert "is a directory" in doc["error"]  # click refuses it (dir_okay=False)
    # An existing folder is fine: both files are written there.
    assert main(["keygen", "--out", str(tmp_path / "key.pem")]) == 0
    assert (tmp_path / "key.pem").is_file() and (tmp_path / "key.pem.pub").is_file()
    assert main(["scan", str(tiny_model_dir), "--sarif", str(tmp_path / "scan.sarif")]) == 0
    assert json.loads((tmp_path / "scan.sarif").read_text())["version"] == "2.1.0"


def test_revision_on_a_local_file_or_folder_is_refused(tiny_model_dir: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    weights = tiny_model_dir / "model.safetensors"
    for target, kind in ((weights, "file"), (tiny_model_dir, "folder")):
        for command in ("inspect", "scan", "hash"):
            doc, _, _ = refused(capsys, [command, str(target), "--revision", "main"])
            assert "--revision main" in doc["error"] and f"local {kind}" in doc["error"], (command, kind)
            assert "drop --revision" in doc["hint"]
