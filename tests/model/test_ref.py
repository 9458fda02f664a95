"""Model references: folders, single files and org/name[@revision] in the local Hugging Face cache, offline."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from assay.errors import ModelError
from assay.model.ref import ModelRef, hf_cache_dir, list_files, resolve


def _fake_cache(cache: Path, repo: str, snapshots: dict[str, dict[str, bytes]], refs: dict[str, str]) -> Path:
    """The huggingface_hub cache layout: blobs, snapshots/<commit>/ with symlinks into blobs, refs/<name>."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True)
    for commit, files in snapshots.items():
        for name, data in files.items():
            blob = repo_dir / "blobs" / f"{abs(hash((commit, name))):x}"
            blob.write_bytes(data)
            link = repo_dir / "snapshots" / commit / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    (repo_dir / "refs").mkdir()
    for name, commit in refs.items():
        (repo_dir / "refs" / name).write_text(commit)
    return repo_dir


C1, C2 = "a" * 40, "b" * 40


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zoo) -> Path:  # type: ignore[no-untyped-def]
    cache = tmp_path / "hub"
    src = zoo.safetensors_dir
    files = {p.name: p.read_bytes() for p in src.iterdir() if p.is_file()}
    old = dict(files)
    old.pop("README.md")
    _fake_cache(cache, "acme/tiny", {C1: old, C2: files}, {"main": C2, "v1": C1})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_folder(zoo) -> None:  # type: ignore[no-untyped-def]
    ref = resolve(zoo.sharded_dir)
    assert isinstance(ref, ModelRef) and not ref.single_file
    assert ref.root == zoo.sharded_dir.resolve()
    names = [p.as_posix() for p in ref.files]
    assert names == sorted(names)
    assert "model.safetensors.index.json" in names and "config.json" in names
    assert ref.name == "sharded"


def test_single_file(zoo) -> None:  # type: ignore[no-untyped-def]
    ref = resolve(str(zoo.gguf_q8_0))
    assert ref.single_file and ref.files == (Path(zoo.gguf_q8_0.name),)
    assert ref.path(ref.files[0]) == zoo.gguf_q8_0.resolve()


def test_missing_path() -> None:
    with pytest.raises(ModelError, match="no such model"):
        resolve("./does/not/exist")


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="empty"):
        resolve(tmp_path)


def test_broken_symlink(tmp_path: Path) -> None:
    link = tmp_path / "model.safetensors"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(ModelError, match="broken symbolic link"):
        resolve(link)


def test_hidden_files_are_listed(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / "config.json").write_text("{}")
    assert [p.as_posix() for p in list_files(tmp_path)] == [".git/HEAD", "config.json"]


def test_cache_dir_rules(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hf_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hf_cache_dir() == tmp_path / "cache"


def test_cached_main(hf_cache: Path) -> None:
    ref = resolve("acme/tiny")
    assert ref.hf_id == "acme/tiny" and ref.revision == C2
    assert "README.md" in [p.name for p in ref.files]
    assert ref.name == "acme/tiny"


@pytest.mark.parametrize("spec,kwargs", [("acme/tiny@v1", {}), ("acme/tiny", {"revision": "v1"}),
                                         ("acme/tiny", {"revision": C1}), ("acme/tiny", {"revision": C1[:10]})])
def test_cached_revision(hf_cache: Path, spec: str, kwargs: dict) -> None:
    ref = resolve(spec, **kwargs)
    assert ref.revision == C1
    assert "README.md" not in [p.name for p in ref.files]


def test_cached_files_are_readable_through_symlinks(hf_cache: Path) -> None:
    from assay.model.inventory import open_model

    inv = open_model("acme/tiny")
    assert inv.parameters is not None and inv.parameters > 0
    assert inv.ref.hf_id == "acme/tiny"
    assert inv.card["present"] is True


def test_not_cached_says_how_to_download(hf_cache: Path) -> None:
    with pytest.raises(ModelError) as err:
        resolve("acme/other")
    assert "not in the local Hugging Face cache" in err.value.message
    assert err.value.hint and "--download" in err.value.hint


def test_unknown_revision(hf_cache: Path) -> None:
    with pytest.raises(ModelError, match="acme/tiny@nope"):
        resolve("acme/tiny", revision="nope")


def test_cached_cli(hf_cache: Path, cli) -> None:  # type: ignore[no-untyped-def]
    run = cli("inspect", "acme/tiny", "--revision", "v1", "--json")
    assert run.rc == 0, run.err
    doc = run.json()
    assert doc["hf_id"] == "acme/tiny" and doc["revision"] == C1
    assert doc["card"] == {"present": False}


def test_folder_copy_is_independent_of_name(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    dst = tmp_path / "renamed-model"
    shutil.copytree(zoo.safetensors_dir, dst)
    assert resolve(str(dst)).name == "renamed-model"
