"""Remote code without auto_map: custom_generate/, relative imports and links, proved with the real loader."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from assay.cli.main import main
from assay.model.inventory import open_model
from assay.model.ref import resolve
from assay.scan import scan_model
from assay.scan.code import loader_python_files
from tests.factory.hostile_code import (auto_map_module_symlink, custom_generate_folder,
                                        custom_generate_link_outside, custom_generate_relative_import,
                                        custom_generate_symlink_into_git)

BUILDERS: dict[str, Callable[..., Path]] = {
    "custom-generate": custom_generate_folder,
    "custom-generate-link-into-git": custom_generate_symlink_into_git,
    "custom-generate-relative-import": custom_generate_relative_import,
    "auto-map-module-link": auto_map_module_symlink,
}


def _load_with_transformers(folder: Path, home: Path) -> subprocess.CompletedProcess[str]:
    code = ("import sys\nfrom transformers import AutoModelForCausalLM\n"
            "AutoModelForCausalLM.from_pretrained(sys.argv[1], trust_remote_code=True)\n")
    env = dict(os.environ, HF_HOME=str(home), HF_MODULES_CACHE=str(home / "modules"), HF_HUB_OFFLINE="1",
               OMP_NUM_THREADS="1", TRANSFORMERS_VERBOSITY="error")
    return subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=300,
                          env=env)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_transformers_runs_the_code_and_assay_flags_it(name: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    folder = BUILDERS[name](tmp_path / "model", marker, base=tiny_model_dir)
    assert not any(k == "auto_map" for k in (folder / "config.json").read_text()) or name.startswith("auto-map")
    proc = _load_with_transformers(folder, tmp_path / "hf")
    assert marker.exists(), proc.stderr[-2000:]
    report = scan_model(resolve(str(folder)))
    assert report.verdict.value == "unsafe"
    rules = {f.rule for f in report.findings}
    assert {"CODE-EXEC", "CODE-IMPORT-TIME"} <= rules, rules
    if name.startswith("custom-generate"):
        assert "CODE-CUSTOM-GENERATE" in rules


def test_allowing_remote_code_still_names_what_it_does(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = custom_generate_folder(tmp_path / "m", tmp_path / "x", base=tiny_model_dir)
    report = scan_model(resolve(str(folder)), allow_remote_code=True)
    by_rule = {f.rule: f for f in report.findings}
    assert by_rule["CODE-CUSTOM-GENERATE"].severity.value == "info"
    assert "CODE-EXEC" in by_rule  # os.system is still named, and still fails the scan
    assert report.verdict.value == "unsafe"


def test_loader_files_follow_transformers_lookup(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = custom_generate_relative_import(tmp_path / "m", tmp_path / "x", base=tiny_model_dir)
    ref = resolve(str(folder))
    found = loader_python_files(ref.root, [f.as_posix() for f in ref.files])
    assert set(found) == {"custom_generate/generate.py", "custom_generate/helpers.py"}
    assert found["custom_generate/helpers.py"] == "imported by custom_generate/generate.py"


def test_link_into_git_is_scanned_under_its_loader_path(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = custom_generate_symlink_into_git(tmp_path / "m", tmp_path / "x", base=tiny_model_dir)
    ref = resolve(str(folder))
    assert Path("custom_generate/generate.py") in ref.files
    report = scan_model(ref)
    assert any(f.path == "custom_generate/generate.py" and f.rule == "CODE-EXEC" for f in report.findings)


def test_link_out_of_the_folder_is_reported_and_never_read(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = custom_generate_link_outside(tmp_path / "m", tmp_path / "elsewhere", tmp_path / "x",
                                          base=tiny_model_dir)
    report = scan_model(resolve(str(folder)))
    outside = [f for f in report.findings if f.rule == "SYMLINK-OUTSIDE"]
    # the link, and the file transformers would import through it, are both named; neither is read
    assert {f.path for f in outside} == {"custom_generate", "custom_generate/generate.py"}
    assert not any(f.rule == "CODE-EXEC" for f in report.findings)  # the target was not opened
    inv = open_model(folder)
    assert {f.path: f.error for f in inv.unreadable}["custom_generate"].startswith("symbolic link")


def test_cli_exit_code_and_honest_folder_stays_clean(tiny_model_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["scan", str(tiny_model_dir)]) == 0
    folder = custom_generate_folder(tmp_path / "m", tmp_path / "x", base=tiny_model_dir)
    capsys.readouterr()
    assert main(["scan", str(folder), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert {"CODE-CUSTOM-GENERATE", "CODE-EXEC"} <= {f["rule"] for f in doc["findings"]}
