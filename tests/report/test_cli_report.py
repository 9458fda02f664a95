"""`assay report`: re-render a saved vet result in every format, and refuse what is not one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from assay.cli.main import main
from assay.report import FORMATS, get_renderer

_EXIT = {"PASS": 0, "WARN": 0, "FAIL": 1, "NONE": 2}


@pytest.fixture()
def saved(tmp_path: Path, vet_docs: dict[str, Any]) -> dict[str, Path]:
    out = {}
    for kind, doc in vet_docs.items():
        p = tmp_path / f"{kind}.json"
        p.write_text(json.dumps(doc))
        out[kind] = p
    return out


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "sarif"])
def test_report_every_format_to_a_file(tmp_path: Path, saved: dict[str, Path], vet_docs: dict[str, Any],
                                       fmt: str) -> None:
    for kind, path in saved.items():
        out = tmp_path / f"{kind}.{fmt}"
        rc = main(["report", str(path), "--format", fmt, "--out", str(out)])
        assert rc == _EXIT[vet_docs[kind]["verdict"]]
        assert out.read_text() == get_renderer(fmt).render(json.loads(path.read_text()))


def test_report_to_stdout(saved: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(saved["honest"]), "--format", "md"]) == 0
    assert "**PASS**" in capsys.readouterr().out
    assert main(["report", str(saved["regression"])]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_several_results_make_a_leaderboard(tmp_path: Path, saved: dict[str, Path],
                                            vet_docs: dict[str, Any]) -> None:
    out = tmp_path / "board.html"
    worst = max(_EXIT[d["verdict"]] for d in vet_docs.values())
    assert main(["report", *map(str, saved.values()), "--format", "html", "--out", str(out)]) == worst
    assert out.read_text().count('class="banner verdict"') == len(saved)


def test_bad_inputs_are_one_line_exit_2(tmp_path: Path, saved: dict[str, Path],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    not_json = tmp_path / "x.json"
    not_json.write_text("{nope")
    other = tmp_path / "scan.json"
    other.write_text(json.dumps({"schema": "assay.scan/1"}))
    for args in (["report", str(tmp_path / "missing.json")], ["report", str(not_json)], ["report", str(other)],
                 ["report", str(saved["honest"]), str(saved["unsafe"]), "--format", "md"],
                 ["report", str(saved["honest"]), "--format", "html", "--out", str(not_json / "x.html")]):
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err
