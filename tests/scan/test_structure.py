"""Containers and headers: honest variants stay clean, deep reads find broken tensors, every format is routed."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from assay.model.formats import Format
from assay.model.ref import resolve
from assay.scan import RULES, ScanVerdict, Severity, scan_model
from assay.scan.context import FileScan, ScanOptions
from assay.scan.files import scan_buffer

ROOT = Path(__file__).resolve().parents[2]


def test_deep_finds_nan_and_zero_tensors(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    bad = np.ones((4, 4), dtype=np.float32)
    bad[1, 2] = np.nan
    half = np.full((8,), np.inf, dtype=np.float16)
    save_file({"bad": bad, "zeros": np.zeros((3,), dtype=np.float32), "half": half}, str(tmp_path / "m.safetensors"))
    assert scan_model(resolve(str(tmp_path / "m.safetensors"))).verdict is ScanVerdict.SAFE
    report = scan_model(resolve(str(tmp_path / "m.safetensors")), deep=True)
    got = {(f.rule, f.location) for f in report.findings}
    assert ("SAFETENSORS-NONFINITE", "tensor bad") in got and ("SAFETENSORS-NONFINITE", "tensor half") in got
    assert ("SAFETENSORS-ZERO", "tensor zeros") in got
    assert report.verdict is ScanVerdict.UNSAFE


def test_honest_archives_are_clean(tmp_path: Path, zoo) -> None:  # type: ignore[no-untyped-def]
    st = (zoo.safetensors_dir / "model.safetensors").read_bytes()
    cfg = (zoo.safetensors_dir / "config.json").read_bytes()
    with zipfile.ZipFile(tmp_path / "deflated.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model/model.safetensors", st)
        zf.writestr("model/config.json", cfg)
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:  # streamed: data descriptors
        with zf.open("streamed.json", "w") as fh:
            fh.write(cfg)
    (tmp_path / "streamed.zip").write_bytes(raw.getvalue())
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tf:
        tf.add(zoo.safetensors_dir / "model.safetensors", arcname="model/model.safetensors")
    (tmp_path / "config.json.gz").write_bytes(gzip.compress(cfg))
    report = scan_model(resolve(str(tmp_path)))
    assert report.verdict is ScanVerdict.SAFE, (report.findings, report.files)
    assert report.findings == ()


def test_every_format_is_routed() -> None:
    for fmt in Format:
        fs = FileScan("x", ScanOptions())
        scan_buffer(b"\x00" * 64, "x", fs, where=None, depth=0, fmt=fmt)
        assert not any("is not analysed" in r and "format" in r for r in fs.reasons), fmt


def test_deeply_nested_archives_stop(tmp_path: Path) -> None:
    from tests.factory.hostile import Member, raw_zip

    blob = b'{"a": 1}'
    for i in range(10):
        blob = raw_zip([Member(f"level{i}.zip", blob)])
    (tmp_path / "nest.zip").write_bytes(blob)
    report = scan_model(resolve(str(tmp_path / "nest.zip")))
    assert report.verdict is ScanVerdict.UNVERIFIED
    assert "nested more than" in (report.files[0].reason or "")


def test_symlinks_inside_the_folder_are_followed(tmp_path: Path) -> None:
    from tests.factory.hostile import P2_GLOBAL

    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "w.bin").write_bytes(P2_GLOBAL)
    (tmp_path / "link.bin").symlink_to(tmp_path / "real" / "w.bin")
    report = scan_model(resolve(str(tmp_path)))
    assert {f.path for f in report.findings} == {"link.bin", "real/w.bin"}


def test_severity_order_and_rule_catalogue() -> None:
    assert Severity.INFO < Severity.LOW < Severity.MEDIUM < Severity.HIGH < Severity.CRITICAL
    assert max([Severity.LOW, Severity.CRITICAL, Severity.MEDIUM]) is Severity.CRITICAL
    used: set[str] = set()
    for path in (ROOT / "src" / "assay" / "scan").glob("*.py"):
        used |= set(re.findall(r'\.add\(\s*"([A-Z0-9-]+)"', path.read_text()))
        used |= set(re.findall(r'_Bad\(\s*"([A-Z0-9-]+)"', path.read_text()))
    assert used and used <= set(RULES), used - set(RULES)
    docs = (ROOT / "docs" / "rules.md").read_text()
    for rule_id in RULES:
        assert f"### {rule_id}" in docs, rule_id


def test_hugging_face_cache_links_into_blobs_are_fine(tmp_path: Path, zoo, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    repo = tmp_path / "hub" / "models--org--tiny"
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots" / "0123abcd"
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    for i, src in enumerate(sorted(p for p in zoo.safetensors_dir.iterdir() if p.is_file())):
        blob = repo / "blobs" / f"blob{i}"
        blob.write_bytes(src.read_bytes())
        (snap / src.name).symlink_to(Path("../../blobs") / blob.name)
    outside = tmp_path / "elsewhere.bin"
    outside.write_bytes(b"\x00")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    report = scan_model(resolve("org/tiny"))
    assert report.verdict is ScanVerdict.SAFE and report.findings == ()
    (snap / "extra.bin").symlink_to(outside)
    report = scan_model(resolve("org/tiny"))
    assert [f.rule for f in report.findings] == ["SYMLINK-OUTSIDE"]


def test_torch_storage_crc_is_checked_only_when_deep(tmp_path: Path, zoo) -> None:  # type: ignore[no-untyped-def]
    from assay.model.zipread import read_zip

    data = bytearray((zoo.bin_dir / "pytorch_model.bin").read_bytes())
    storage = next(e for e in read_zip(bytes(data)).miniz.members if "/data/" in e.name and e.usize >= 64)
    data[storage.data_start + 10] ^= 0xFF  # torch ignores CRCs and would load the changed weights
    (tmp_path / "pytorch_model.bin").write_bytes(bytes(data))
    assert scan_model(resolve(str(tmp_path / "pytorch_model.bin"))).verdict is ScanVerdict.SAFE
    report = scan_model(resolve(str(tmp_path / "pytorch_model.bin")), deep=True)
    assert [(f.rule, f.location) for f in report.findings] == [("ZIP-CRC", f"member {storage.name}")]


def test_legacy_torch_tail_must_match_its_pickles(tmp_path: Path, zoo) -> None:  # type: ignore[no-untyped-def]
    data = zoo.legacy_pickle.read_bytes()
    (tmp_path / "extra.bin").write_bytes(data + b"hidden")
    (tmp_path / "short.bin").write_bytes(data[:-10])
    report = scan_model(resolve(str(tmp_path)))
    assert {(f.path, f.rule) for f in report.findings} == {("extra.bin", "TORCH-LEGACY-LAYOUT"),
                                                           ("short.bin", "TORCH-LEGACY-LAYOUT")}


def test_zip64_bzip2_and_lzma_members_are_read(tmp_path: Path, zoo) -> None:  # type: ignore[no-untyped-def]
    st = (zoo.safetensors_dir / "model.safetensors").read_bytes()
    with zipfile.ZipFile(tmp_path / "z64.zip", "w") as zf:
        with zf.open("model.safetensors", "w", force_zip64=True) as fh:
            fh.write(st)
    with zipfile.ZipFile(tmp_path / "bz.zip", "w", zipfile.ZIP_BZIP2) as zf:
        zf.writestr("model.safetensors", st)
    with zipfile.ZipFile(tmp_path / "xz.zip", "w", zipfile.ZIP_LZMA) as zf:
        zf.writestr("config.json", (zoo.safetensors_dir / "config.json").read_bytes())
    report = scan_model(resolve(str(tmp_path)))
    assert report.verdict is ScanVerdict.SAFE, (report.findings, report.files)
    from tests.factory.hostile import P2_GLOBAL

    with zipfile.ZipFile(tmp_path / "evil.zip", "w", zipfile.ZIP_LZMA) as zf:
        zf.writestr("w.bin", P2_GLOBAL)
    assert {f.rule for f in scan_model(resolve(str(tmp_path))).findings} == {"PICKLE-GLOBAL-DANGEROUS"}


def test_git_clone_metadata_is_not_a_finding_but_lfs_objects_are_scanned(tmp_path: Path, zoo) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from tests.factory.hostile import P2_GLOBAL

    clone = tmp_path / "clone"
    shutil.copytree(zoo.safetensors_dir, clone)
    (clone / ".git" / "hooks").mkdir(parents=True)
    (clone / ".git" / "hooks" / "pre-commit.sample").write_text("#!/bin/sh\nexit 0\n")
    (clone / ".git" / "objects" / "ab").mkdir(parents=True)
    (clone / ".git" / "objects" / "ab" / "cdef0123").write_bytes(b"x\x01" + bytes(range(64)))
    report = scan_model(resolve(str(clone)))
    assert report.verdict is ScanVerdict.SAFE
    assert [(f.rule, f.severity.value) for f in report.findings] == [("GIT-METADATA", "info")]
    lfs = clone / ".git" / "lfs" / "objects" / "12" / "34"
    lfs.mkdir(parents=True)
    (lfs / "1234abcd").write_bytes(P2_GLOBAL)
    report = scan_model(resolve(str(clone)))
    assert report.verdict is ScanVerdict.UNSAFE
    assert {f.path for f in report.findings if f.rule == "PICKLE-GLOBAL-DANGEROUS"} == {
        ".git/lfs/objects/12/34/1234abcd"}


def test_mutated_and_truncated_checkpoints_never_crash_the_scan(tmp_path: Path, zoo) -> None:  # type: ignore[no-untyped-def]
    """Bad input is a result (a finding or not verified), never an exception."""
    import random

    rng = random.Random(7)
    sources = [zoo.bin_dir / "pytorch_model.bin", zoo.legacy_pickle, zoo.gguf_q8_0,
               zoo.safetensors_dir / "model.safetensors", zoo.safetensors_dir / "tokenizer_config.json"]
    out = tmp_path / "mutants"
    out.mkdir()
    n = 0
    for src in sources:
        data = src.read_bytes()
        head = min(len(data), 4096)
        for _ in range(12):
            mutant = bytearray(data)
            for _ in range(rng.randint(1, 6)):
                mutant[rng.randrange(head)] = rng.randrange(256)
            (out / f"m{n}").write_bytes(bytes(mutant[:rng.choice([len(mutant), rng.randrange(1, len(mutant))])]))
            n += 1
    report = scan_model(resolve(str(out)))
    assert len(report.files) == n
    assert all(f.status in ("clean", "findings", "not_verified") for f in report.files)
    assert not any("internal" in (f.reason or "") for f in report.files)
