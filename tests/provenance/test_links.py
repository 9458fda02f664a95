"""Signing and verification with symbolic links, git metadata and Hugging Face cache snapshots, and interop with
the OpenSSF reference implementation (``model_signing``) in both directions."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from assay.cli.main import main
from assay.model.ref import resolve
from assay.scan import scan_model


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "k.pem"
    assert main(["keygen", "--out", str(path)]) == 0
    return path


@pytest.fixture()
def model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(tiny_model_dir, dst)
    return dst


def _verify(capsys: pytest.CaptureFixture[str], target: str | Path, key: Path, *extra: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(["verify", str(target), "--key", f"{key}.pub", "--json", *extra])
    return rc, json.loads(capsys.readouterr().out)


def _reference_verify(folder: Path, key: Path, signature: Path | None = None, *, links: bool = False) -> None:
    from model_signing import hashing, verifying

    cfg = verifying.Config().use_elliptic_key_verifier(public_key=Path(f"{key}.pub"))
    if links:
        # model_signing 1.x drops the signature's allow_symlinks when it guesses the hashing settings
        # (hashing.Config.hash() resets it), so a caller must say it again.
        cfg = cfg.set_hashing_config(hashing.Config().set_allow_symlinks(True))
    cfg.verify(folder, signature or folder / "model.sig")


# ----------------------------------------------------------------------------------------------- symlinks


def test_signed_file_swapped_for_link_to_identical_copy_outside_fails(model, key, tmp_path, capsys) -> None:
    assert main(["sign", str(model), "--key", str(key)]) == 0
    outside = tmp_path / "outside.safetensors"
    shutil.copy(model / "model.safetensors", outside)  # byte-identical
    (model / "model.safetensors").unlink()
    os.symlink(outside, model / "model.safetensors")
    rc, doc = _verify(capsys, model, key)
    assert rc == 1 and not doc["valid"]
    [(path, why)] = [(m["path"], m["actual"]) for m in doc["modified"]]
    assert path == "model.safetensors" and "out of the model folder" in why
    # the reference implementation refuses it too (allow_symlinks is false in the signature)
    with pytest.raises(ValueError, match="symlink"):
        _reference_verify(model, key)


def test_signed_file_swapped_for_link_inside_fails_unless_links_were_signed(model, key, capsys) -> None:
    assert main(["sign", str(model), "--key", str(key)]) == 0
    (model / "weights").mkdir()
    shutil.move(model / "model.safetensors", model / "weights" / "model.safetensors")
    os.symlink(os.path.join("weights", "model.safetensors"), model / "model.safetensors")
    rc, doc = _verify(capsys, model, key)
    assert rc == 1
    assert any(m["path"] == "model.safetensors" and "does not allow symbolic links" in m["actual"]
               for m in doc["modified"])


def test_links_inside_the_folder_sign_and_verify_both_ways(model, key, capsys) -> None:
    (model / "weights").mkdir()
    shutil.move(model / "model.safetensors", model / "weights" / "model.safetensors")
    os.symlink(os.path.join("weights", "model.safetensors"), model / "model.safetensors")
    assert main(["sign", str(model), "--key", str(key)]) == 0
    rc, doc = _verify(capsys, model, key)
    assert rc == 0, doc["message"]
    sig = json.loads(__import__("base64").b64decode(json.loads((model / "model.sig").read_text())
                                                     ["dsseEnvelope"]["payload"]))
    assert sig["predicate"]["serialization"]["allow_symlinks"] is True
    _reference_verify(model, key, links=True)  # the reference tool follows the link too
    # the link now points out of the folder (to a byte-identical copy): fails, and the target is not read
    outside = model.parent / "copy.safetensors"
    shutil.copy(model / "weights" / "model.safetensors", outside)
    (model / "model.safetensors").unlink()
    os.symlink(outside, model / "model.safetensors")
    rc, doc = _verify(capsys, model, key)
    assert rc == 1 and "out of the model folder" in doc["message"]


def test_sign_refuses_a_link_out_of_the_folder(model, key, tmp_path, capsys) -> None:
    outside = tmp_path / "extra.txt"
    outside.write_text("x")
    os.symlink(outside, model / "extra.txt")
    assert main(["sign", str(model), "--key", str(key)]) == 2
    assert "symbolic link out of the model folder" in capsys.readouterr().err


def test_hash_does_not_read_through_a_link_out_of_the_folder(model, tmp_path, capsys) -> None:
    os.symlink("/dev/zero", model / "zero.bin")
    capsys.readouterr()
    assert main(["hash", str(model), "--json", "--no-weights-root"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert [u["path"] for u in doc["unreadable"]] == ["zero.bin"]
    assert "outside the model folder" in doc["unreadable"][0]["reason"]


# ----------------------------------------------------------------------------------------------- git metadata


def _git_metadata(folder: Path) -> None:
    (folder / ".git" / "objects").mkdir(parents=True)
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".git" / "objects" / "ab").write_bytes(b"\x78\x01blob")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs\n")


def test_folder_with_git_signed_by_assay_verifies_without_flags(model, key, capsys) -> None:
    _git_metadata(model)
    assert main(["sign", str(model), "--key", str(key)]) == 0
    rc, doc = _verify(capsys, model, key)
    assert rc == 0, doc["message"]
    assert set(doc["ignored_files"]) == {".git/HEAD", ".git/objects/ab", ".gitattributes"}
    _reference_verify(model, key)


def test_folder_with_git_signed_by_reference_verifies_with_assay(model, key, capsys) -> None:
    from model_signing import signing

    _git_metadata(model)
    signing.Config().use_elliptic_key_signer(private_key=key).sign(model, model / "model.sig")
    rc, doc = _verify(capsys, model, key)
    assert rc == 0, doc["message"]
    assert ".git" in doc["ignored_paths"]


def test_code_under_an_ignored_path_is_still_checked(model, key, capsys) -> None:
    _git_metadata(model)
    assert main(["sign", str(model), "--key", str(key)]) == 0
    hidden = model / ".git" / "objects" / "gen"
    hidden.mkdir()
    (hidden / "generate.py").write_text("import os\nos.system('true')\n")
    os.symlink(os.path.join(".git", "objects", "gen"), model / "custom_generate")
    rc, doc = _verify(capsys, model, key)
    assert rc == 1 and doc["extra"] == ["custom_generate/generate.py"]


def test_signature_without_ignore_paths_reports_git_files(model, key, capsys) -> None:
    from model_signing import hashing, signing

    _git_metadata(model)
    cfg = hashing.Config().set_ignored_paths(paths=[], ignore_git_paths=False)
    shutil.rmtree(model / ".git")
    (model / ".gitattributes").unlink()
    signing.Config().use_elliptic_key_signer(private_key=key).set_hashing_config(cfg).sign(model, model.parent / "s")
    _git_metadata(model)
    rc, doc = _verify(capsys, model, key, "--signature", str(model.parent / "s"))
    assert rc == 1 and ".git/HEAD" in doc["extra"]
    rc, doc = _verify(capsys, model, key, "--signature", str(model.parent / "s"), "--trust-ignore-paths")
    assert rc == 0, doc["message"]


# ----------------------------------------------------------------------------------------------- HF cache


def _cache(hub: Path, repo: str, source: Path, rev: str = "0" * 40) -> Path:
    """A Hugging Face hub cache entry for ``source``: files in blobs/ by digest, links in snapshots/<rev>/."""
    repo_dir = hub / ("models--" + repo.replace("/", "--"))
    snap = repo_dir / "snapshots" / rev
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(rev)
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = path.relative_to(source)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copy(path, repo_dir / "blobs" / digest)
        link = snap / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(repo_dir / "blobs" / digest, link.parent), link)
    return snap


def test_cache_snapshot_by_path_is_the_same_model_as_org_name(tiny_model_dir, key, tmp_path, monkeypatch,
                                                              capsys) -> None:
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    snap = _cache(hub, "acme/tiny", tiny_model_dir)
    by_id, by_path = scan_model(resolve("acme/tiny")), scan_model(resolve(str(snap)))
    assert by_id.verdict.value == by_path.verdict.value == "safe"
    assert [f.rule for f in by_path.findings] == [f.rule for f in by_id.findings]
    assert resolve(str(snap)).hf_id == "acme/tiny"
    assert main(["sign", "acme/tiny", "--key", str(key), "--signature", str(tmp_path / "s.sig")]) == 0
    for target in ("acme/tiny", snap):
        rc, doc = _verify(capsys, target, key, "--signature", str(tmp_path / "s.sig"))
        assert rc == 0, doc["message"]


def test_cache_link_to_another_repository_is_flagged(tiny_model_dir, key, tmp_path, monkeypatch, capsys) -> None:
    hub = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    snap = _cache(hub, "acme/tiny", tiny_model_dir)
    assert main(["sign", "acme/tiny", "--key", str(key), "--signature", str(tmp_path / "s.sig")]) == 0
    other = _cache(hub, "evil/other", tiny_model_dir)  # same bytes, another repository's blob
    (snap / "model.safetensors").unlink()
    os.symlink(os.path.relpath(os.path.realpath(other / "model.safetensors"), snap), snap / "model.safetensors")
    for target in ("acme/tiny", str(snap)):
        report = scan_model(resolve(target))
        assert [f.path for f in report.findings if f.rule == "SYMLINK-OUTSIDE"] == ["model.safetensors"]
        rc, doc = _verify(capsys, target, key, "--signature", str(tmp_path / "s.sig"))
        assert rc == 1 and "out of the model folder" in doc["message"]


# ----------------------------------------------------------------------------------------------- blake3


def test_blake3_help_names_who_can_verify_and_the_claim_holds(model, key, capsys) -> None:
    from click.testing import CliRunner

    from assay.cli.main import cli

    help_text = " ".join(CliRunner().invoke(cli, ["sign", "--help"]).output.split())
    assert "model_signing Python API" in help_text and "NOT with the `model_signing verify` CLI" in help_text
    assert main(["sign", str(model), "--key", str(key), "--algorithm", "blake3"]) == 0
    _reference_verify(model, key)  # the Python API verifies it
    exe = str(Path(sys.executable).parent / "model_signing")  # the CLI installed with the package
    proc = subprocess.run([exe, "verify", "key", str(model), "--signature", str(model / "model.sig"),
                           "--public_key", f"{key}.pub"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "mismatch" in (proc.stdout + proc.stderr).lower()
    assert main(["sign", str(model), "--key", str(key), "--algorithm", "sha256"]) == 0
    proc = subprocess.run([exe, "verify", "key", str(model), "--signature", str(model / "model.sig"),
                           "--public_key", f"{key}.pub"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
