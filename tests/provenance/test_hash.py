"""`assay hash`: file digests a user can check with other tools, and a weights root that survives re-sharding."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import blake3
import pytest

from assay.cli.main import main
from assay.model.ref import resolve
from assay.provenance.manifest import hash_model, manifest_document, weights_root


def run_hash(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(["hash", *args, "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "assay.manifest/1"
    return rc, doc


def test_blake3_manifest_matches_reference_digests(tiny_model_dir, capsys):
    rc, doc = run_hash(capsys, str(tiny_model_dir))
    assert rc == 0 and doc["algorithm"] == "blake3"
    on_disk = sorted(p.relative_to(tiny_model_dir).as_posix() for p in tiny_model_dir.rglob("*") if p.is_file())
    assert [f["path"] for f in doc["files"]] == on_disk
    for f in doc["files"]:
        data = (tiny_model_dir / f["path"]).read_bytes()
        assert f["size"] == len(data)
        assert f["digest"] == blake3.blake3(data).hexdigest()


def test_sha256_matches_hashlib(tiny_model_dir, capsys):
    rc, doc = run_hash(capsys, str(tiny_model_dir), "--algorithm", "sha256")
    assert rc == 0 and doc["algorithm"] == "sha256"
    for f in doc["files"]:
        assert f["digest"] == hashlib.sha256((tiny_model_dir / f["path"]).read_bytes()).hexdigest()


def test_weights_root_survives_resharding_but_not_changes(zoo, capsys):
    _, one = run_hash(capsys, str(zoo.safetensors_dir))
    _, many = run_hash(capsys, str(zoo.sharded_dir))
    assert one["weights_root"] and one["weights_root"] == many["weights_root"]
    assert {f["digest"] for f in one["files"] if f["path"].endswith(".safetensors")}.isdisjoint(
        {f["digest"] for f in many["files"]})
    # same weights root with sha256 too, and a different value than with blake3
    ref = resolve(str(zoo.safetensors_dir))
    assert weights_root(ref, algorithm="sha256") == weights_root(resolve(str(zoo.sharded_dir)), algorithm="sha256")
    assert weights_root(ref, algorithm="sha256") != one["weights_root"]


def test_weights_root_changes_with_one_value(zoo, tmp_path, capsys):
    import numpy as np
    from safetensors.numpy import load_file, save_file

    dst = tmp_path / "m"
    shutil.copytree(zoo.safetensors_dir, dst)
    tensors = load_file(dst / "model.safetensors")
    name = sorted(tensors)[3]
    tensors[name] = tensors[name].copy()
    tensors[name].flat[0] = np.nextafter(tensors[name].flat[0], np.float32(1))
    save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    _, a = run_hash(capsys, str(zoo.safetensors_dir))
    _, b = run_hash(capsys, str(dst))
    assert a["weights_root"] != b["weights_root"]


def test_hidden_git_files_are_hashed_and_exclude_works(tiny_model_dir, tmp_path, capsys):
    dst = tmp_path / "m"
    shutil.copytree(tiny_model_dir, dst)
    (dst / ".git").mkdir()
    (dst / ".git" / "config").write_text("[core]\n")
    _, doc = run_hash(capsys, str(dst))
    assert ".git/config" in [f["path"] for f in doc["files"]]
    _, doc = run_hash(capsys, str(dst), "--exclude", ".git", "--exclude", "*.md")
    paths = [f["path"] for f in doc["files"]]
    assert ".git/config" not in paths and "README.md" not in paths and "config.json" in paths


def test_pickle_weights_get_no_weights_root(zoo, capsys):
    rc, doc = run_hash(capsys, str(zoo.bin_dir))
    assert rc == 0
    assert doc["weights_root"] is None and "allow_pickle" in doc["weights_note"]


def test_gguf_single_file_and_empty_file(zoo, tmp_path, capsys):
    rc, doc = run_hash(capsys, str(zoo.gguf_q8_0))
    assert rc == 0 and doc["files"][0]["path"] == "." and doc["weights_root"]
    d = tmp_path / "e"
    d.mkdir()
    (d / "empty.txt").write_bytes(b"")
    rc, doc = run_hash(capsys, str(d))
    assert doc["files"][0]["digest"] == blake3.blake3(b"").hexdigest()
    assert doc["weights_root"] is None


def test_unhashable_entry_is_reported_not_skipped(tiny_model_dir, tmp_path, capsys):
    dst = tmp_path / "m"
    shutil.copytree(tiny_model_dir, dst)
    (dst / "dangling.bin").symlink_to(tmp_path / "gone")
    rc, doc = run_hash(capsys, str(dst))
    assert rc == 2
    assert [u["path"] for u in doc["unreadable"]] == ["dangling.bin"]
    assert "config.json" in [f["path"] for f in doc["files"]]


def test_missing_model_and_human_output(tiny_model_dir, tmp_path, capsys):
    assert main(["hash", str(tmp_path / "nope")]) == 2
    assert "no such model" in capsys.readouterr().err
    assert main(["hash", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert "weights root (blake3):" in out and "model.safetensors" in out


def test_api_document(tiny_model_dir):
    m = hash_model(resolve(str(tiny_model_dir)), algorithm="sha256", workers=1)
    doc = manifest_document(m)
    assert doc["total_bytes"] == sum(f.size for f in m.files)
    assert Path(tiny_model_dir / m.files[0].path).is_file()


def test_exclude_that_leaves_nothing_is_bad_input(tiny_model_dir, capsys):
    rc = main(["hash", str(tiny_model_dir), "--exclude", "*", "--json"])
    captured = capsys.readouterr()
    assert rc == 2 and json.loads(captured.out)["schema"] == "assay.error/1"
    assert captured.err.startswith("error: nothing to hash") and len(captured.err.strip().splitlines()) == 1
