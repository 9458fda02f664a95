"""`assay data`: the catalogue, a clear one-line failure offline, and checksum verification."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from assay.cli.main import main
from assay.evaluate.suites.download import write_checksums


def test_data_list_names_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "list", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "assay.data/1"
    names = {d["name"]: d for d in doc["datasets"]}
    assert set(names) == {"mmlu", "arc", "hellaswag", "truthfulqa", "gsm8k", "winogrande"}
    assert names["arc"]["tasks"] == ["arc_easy", "arc_challenge"]
    assert main(["data", "list"]) == 0
    assert "cais/mmlu" in capsys.readouterr().out


def test_pull_offline_fails_with_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["data", "pull", "gsm8k", "--to", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("error: cannot download openai/gsm8k") and "Traceback" not in err
    assert not (tmp_path / "gsm8k" / "SHA256SUMS").exists()


def test_pull_unknown_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "pull", "imagenet", "--to", str(tmp_path)]) == 2
    assert "unknown dataset 'imagenet'; known: mmlu" in capsys.readouterr().err


def test_verify_detects_changed_and_missing_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "gsm8k"
    (folder / "main").mkdir(parents=True)
    (folder / "main" / "test.jsonl").write_text('{"question": "q", "answer": "#### 1"}\n', encoding="utf-8")
    (folder / "main" / "train.jsonl").write_text('{"question": "t", "answer": "#### 2"}\n', encoding="utf-8")
    write_checksums(folder)
    assert main(["data", "verify", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["intact"] is True

    (folder / "main" / "test.jsonl").write_text('{"question": "q", "answer": "#### 7"}\n', encoding="utf-8")
    assert main(["data", "verify", str(folder), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["changed"] == ["main/test.jsonl"] and doc["intact"] is False

    (folder / "main" / "train.jsonl").unlink()
    assert main(["data", "verify", str(folder)]) == 2
    out = capsys.readouterr().out
    assert "missing" in out and "main/train.jsonl" in out


def test_verify_without_checksums_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "verify", str(tmp_path)]) == 2
    assert "has no SHA256SUMS" in capsys.readouterr().err
    (tmp_path / "SHA256SUMS").write_text("abc  ../../etc/passwd\n", encoding="utf-8")
    assert main(["data", "verify", str(tmp_path)]) == 2
    assert "line 1 is not" in capsys.readouterr().err


def test_pull_without_a_reachable_hub_fails_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    from assay.errors import EvalError
    from assay.evaluate.suites.download import pull

    with socket.socket() as s:  # a local port nobody listens on: no traffic leaves the machine
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(EvalError, match=r"^cannot download allenai/ai2_arc: .*no network\?") as exc:
        pull("arc", tmp_path, endpoint=f"http://127.0.0.1:{port}")
    assert "\n" not in str(exc.value)
