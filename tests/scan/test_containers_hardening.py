"""Which bytes get scanned as what: zip readings, polyglots, legacy torch, numpy dtypes, bombs, damaged archives.

Every hostile sample (tests/factory/hostile_containers.py) is first shown to run its payload under the real loader
(torch.load with weights_only=False, np.load with allow_pickle=True, pickle.load, a Python import) in a throwaway
subprocess, so the corpus proves itself; then ``assay scan`` must not call it safe.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from assay.model.ref import resolve
from assay.scan import ScanVerdict, scan_model
from tests.factory.hostile_containers import (
    HONEST_DICT,
    M,
    Sample,
    benign_appended_torch,
    build_containers,
    comment_directory_zip,
    make_zip,
    malformed_zips,
    npy,
    torch_members,
)
from tests.model.conftest import assert_one_line_error

_LOADER = r'''
import importlib.util, pickle, sys
kind = sys.argv[1]
for p in sys.argv[2:]:
    try:
        if kind == "torch":
            import torch
            torch.load(p, weights_only=False)
        elif kind == "numpy":
            import numpy as np
            r = np.load(p, allow_pickle=True)
            for k in getattr(r, "files", []):
                r[k]
        elif kind == "pickle":
            with open(p, "rb") as fh:
                pickle.load(fh)
        elif kind == "import":
            spec = importlib.util.spec_from_file_location("sample", p)
            spec.loader.exec_module(importlib.util.module_from_spec(spec))
    except BaseException as exc:  # the payload runs before most loaders notice anything wrong
        print(p, type(exc).__name__, exc)
'''


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[Sample], Path]]:
    root = tmp_path_factory.mktemp("containers")
    # The tar-header polyglot holds its whole pickle in a 100-byte name field: the marker path must be short,
    # whatever the temp folder (pytest-xdist's are longer).
    markers = Path(tempfile.mkdtemp(prefix="m", dir="/tmp"))
    try:
        yield build_containers(root / "samples", marker_dir=markers), markers
    finally:
        shutil.rmtree(markers, ignore_errors=True)


@pytest.fixture(scope="session")
def loaded(corpus: tuple[list[Sample], Path]) -> Path:
    """Run each real loader once, in a subprocess, over all of its samples; return the marker folder."""
    samples, markers = corpus
    for kind in ("torch", "numpy", "pickle", "import"):
        paths = [str(s.path) for s in samples if s.loader == kind]
        if paths:
            subprocess.run([sys.executable, "-c", _LOADER, kind, *paths], check=False, capture_output=True,
                           text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    return markers


def _names() -> list[str]:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return [s.name for s in build_containers(Path(tmp) / "s", marker_dir=Path(tmp) / "m")]


_NAMES = _names()


@pytest.mark.parametrize("name", _NAMES)
def test_sample_runs_under_its_loader_and_is_not_safe(corpus: tuple[list[Sample], Path], loaded: Path,
                                                      name: str) -> None:
    sample = next(s for s in corpus[0] if s.name == name)
    if sample.loader in ("torch", "numpy", "pickle", "import"):
        assert (loaded / name).exists(), f"{sample.loader} did not run the payload of {name}"
    elif sample.loader == "json+tar":  # both readers accept the very same bytes
        assert "auto_map" in json.loads(sample.path.read_bytes())
        with tarfile.open(sample.path) as tf:
            assert tf.getnames()
    report = scan_model(resolve(str(sample.path)))
    rules = {f.rule for f in report.findings}
    assert report.verdict is ScanVerdict(sample.verdict), (report.verdict, sorted(rules), report.files)
    if sample.rules:
        assert set(sample.rules) <= rules, (sorted(sample.rules), sorted(rules))
    if sample.reason:
        assert any(f.reason and sample.reason in f.reason for f in report.files), report.files


def test_corpus_covers_every_class(corpus: tuple[list[Sample], Path]) -> None:
    names = [s.name for s in corpus[0]]
    for family, minimum in {"zip-": 6, "npz-": 3, "poly-": 4, "legacy-": 4, "npy-descr-": 5, "bomb-": 3,
                            "mismatch-": 2}.items():
        assert sum(n.startswith(family) for n in names) >= minimum, family


# Honest files stay clean --------------------------------------------------------------------------------------------

def test_benign_torch_zip_with_appended_bytes_is_judged(torch_outputs: dict[str, Path], tmp_path: Path) -> None:
    import torch

    path = benign_appended_torch(torch_outputs["state_dict.bin"], tmp_path / "pytorch_model.bin")
    assert torch.load(path, weights_only=True)  # torch still loads it
    report = scan_model(resolve(str(path)))
    assert report.verdict is ScanVerdict.SAFE, (report.findings, report.files)
    assert [(f.rule, f.severity.value) for f in report.findings] == [("ZIP-TRAILING-DATA", "low")]


def test_honest_numpy_files_are_clean(tmp_path: Path) -> None:
    import numpy as np

    np.save(tmp_path / "a.npy", np.arange(10, dtype=np.float16))
    np.save(tmp_path / "rec.npy", np.zeros(3, dtype=[("x", "<f4"), ("y", "<i8", (2,))]))
    np.savez(tmp_path / "b.npz", w=np.ones((4, 4), dtype=np.float32), b=np.arange(3))
    # 64 MiB of zeros compress ~1000:1; numpy reads the header and raw numbers, so only the header is read
    np.savez_compressed(tmp_path / "zeros.npz", z=np.zeros(16 << 20, dtype=np.float32))
    report = scan_model(resolve(str(tmp_path)))
    assert report.verdict is ScanVerdict.SAFE and report.findings == (), (report.findings, report.files)


def test_honest_torch_zip_readings_agree(torch_outputs: dict[str, Path]) -> None:
    from assay.model.zipread import read_zip, torch_prefix, torch_records

    for name in ("state_dict.bin", "optimizer.pt", "mixed.pt"):
        view = read_zip(torch_outputs[name].read_bytes())
        assert view.miniz.ok and view.pyzip.ok and view.disagreements() == [] and view.other_end_records == ()
        prefix = torch_prefix(view.miniz)
        assert prefix and [m.name for m in torch_records(view.miniz, "data.pkl")] == [prefix + "data.pkl"]


# The two readings ---------------------------------------------------------------------------------------------------

def test_both_readers_take_the_last_end_record() -> None:
    from assay.model.zipread import read_zip

    data = comment_directory_zip(torch_members(HONEST_DICT), torch_members(b"\x80\x02]."))
    view = read_zip(data)
    assert view.miniz.eocd_offset == view.pyzip.eocd_offset == data.rfind(b"PK\x05\x06")
    assert len(view.other_end_records) == 1 and view.disagreements() == []


def test_torch_follows_the_zip64_locator_and_zipfile_does_not(tmp_path: Path) -> None:
    """Checked against torch itself: miniz follows the locator's offset, zipfile takes the record before it."""
    import torch

    from assay.model.zipread import read_zip
    from tests.factory.hostile_containers import payload_p2, zip64_split_zip

    path = tmp_path / "pytorch_model.bin"
    data = zip64_split_zip(torch_members(HONEST_DICT), torch_members(payload_p2(tmp_path / "never")))
    path.write_bytes(data)
    assert torch.load(path, weights_only=True) == {}  # torch reads the honest view (the other would be refused)
    view = read_zip(data)
    assert view.miniz.zip64_offset != view.pyzip.zip64_offset and view.disagreements()
    report = scan_model(resolve(str(path)))
    assert {"ZIP-READERS-DISAGREE", "PICKLE-GLOBAL-DANGEROUS"} <= {f.rule for f in report.findings}


def test_a_truncated_last_end_record_splits_the_readers(tmp_path: Path) -> None:
    """torch skips an end signature with fewer than 22 bytes after it; zipfile refuses the archive."""
    import torch

    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(make_zip(torch_members(HONEST_DICT)) + b"PK\x05\x06" + b"\x00" * 10)
    assert torch.load(path, weights_only=True) == {}
    report = scan_model(resolve(str(path)))
    assert report.verdict is ScanVerdict.UNSAFE and "ZIP-READERS-DISAGREE" in {f.rule for f in report.findings}


def test_torch_refuses_entries_outside_the_first_folder(tmp_path: Path) -> None:
    """torch takes its folder from the first entry and refuses an archive with entries elsewhere; so does
    the tensor reader, while the scanner still scans every pickle in it."""
    import torch

    from assay.errors import FormatError
    from assay.model.formats import Format
    from assay.model.tensors import torch_entries
    from tests.factory.hostile_containers import payload_p2

    path = tmp_path / "pytorch_model.bin"
    path.write_bytes(make_zip([M("x/version", b"3\n"), M("archive/data.pkl", HONEST_DICT),
                               M("archive/version", b"3\n"), M("x/data.pkl", payload_p2(tmp_path / "never"))]))
    with pytest.raises(RuntimeError, match="not in a subdirectory"):
        torch.load(path, weights_only=True)
    with pytest.raises(FormatError, match="not all in the folder"):
        torch_entries(path, Format.TORCH_ZIP)
    assert "PICKLE-GLOBAL-DANGEROUS" in {f.rule for f in scan_model(resolve(str(path))).findings}


def test_prepended_bytes_split_the_readers() -> None:
    """zipfile shifts offsets written for an archive without the prefix; torch's miniz does not."""
    from assay.model.zipread import read_zip

    view = read_zip(make_zip(torch_members(HONEST_DICT), prefix=b"PK\x03\x04" + b"\x00" * 28, fix_offsets=False))
    assert view.pyzip.ok and view.pyzip.shift == 32
    assert not view.miniz.ok or view.miniz.members[0].problem
    assert view.disagreements()


def test_case_insensitive_record_lookup_matches_torch(tmp_path: Path) -> None:
    """What the tensor reader and inventory read is what torch reads: archive/DATA.PKL answers for data.pkl."""
    import torch

    from assay.errors import FormatError
    from assay.model.formats import Format, detect
    from assay.model.tensors import torch_entries

    bio = io.BytesIO()
    torch.save({"w": torch.ones(2)}, bio)
    src = bio.getvalue()
    path = tmp_path / "upper.bin"
    path.write_bytes(src.replace(b"/data.pkl", b"/DATA.PKL"))
    assert torch.load(path, weights_only=True)["w"].tolist() == [1.0, 1.0]
    assert detect(path) is Format.TORCH_ZIP
    assert [e.key for e in torch_entries(path, Format.TORCH_ZIP)] == [("w",)]
    ambiguous = tmp_path / "two.bin"
    ambiguous.write_bytes(make_zip([M("archive/data.pkl", HONEST_DICT), M("archive/Data.pkl", HONEST_DICT),
                                    M("archive/version", b"3\n")]))
    with pytest.raises(FormatError, match="could be its data.pkl"):
        torch_entries(ambiguous, Format.TORCH_ZIP)


def test_numpy_object_dtypes_by_numpys_parser() -> None:
    from assay.scan.containers import read_npy_header

    for descr in ("'|O'", "'O'", "'object'", "[('a', '<f4'), ('b', '|O')]", "[('a', [('b', 'O')])]",
                  "[('a', '|O', (2,))]", "[('a', ('O', (3,)))]"):
        dtype, _ = read_npy_header(npy(descr, b""))
        assert dtype.hasobject, descr
    for descr in ("'<f4'", "'|u1'", "[('a', '<f4'), ('b', '<i8', (2,))]", "'<U8'"):
        dtype, _ = read_npy_header(npy(descr, b""))
        assert not dtype.hasobject, descr


# Damaged archives: one clear line, never an internal error ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["cd-offset-outside", "member-offset-outside", "unknown-method"])
def test_damaged_archive_inspect_is_one_line(tmp_path: Path, cli, kind: str) -> None:  # type: ignore[no-untyped-def]
    path = malformed_zips(tmp_path)[kind]
    assert_one_line_error(cli("inspect", path), path.name)
    report = scan_model(resolve(str(path)))
    assert report.verdict is not ScanVerdict.SAFE
    assert not any("scanner failed" in (f.reason or "") for f in report.files), report.files


def test_undecodable_name_is_judged_not_crashed(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    path = malformed_zips(tmp_path)["undecodable-name"]
    run = cli("inspect", path)
    assert "internal error" not in run.err and "Traceback" not in run.err
    report = scan_model(resolve(str(path)))
    assert "ZIP-READERS-DISAGREE" in {f.rule for f in report.findings}  # zipfile refuses the name, torch does not


def test_text_named_like_weights_is_never_safe_nor_a_supported_file(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "model.safetensors"
    path.write_text("this is not a tensor file\n" * 20)
    run = cli("scan", path, "--json")
    doc = json.loads(run.out)
    assert run.rc == 1 and doc["verdict"] == "unsafe"
    finding = next(f for f in doc["findings"] if f["rule"] == "FORMAT-MISMATCH")
    assert "plain text" in finding["message"] and finding["severity"] == "medium"
    assert_one_line_error(cli("inspect", path), "its content is text")
    run = cli("vet", path, "--base", path)
    assert run.rc == 2 and "its content is text" in run.err and "in a supported format" not in run.err


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pickletools on mutated protocol-0 strings
def test_short_mutation_fuzz_finds_nothing() -> None:
    """A short, seeded run of benchmarks/fuzz_containers.py (the long one is run by hand)."""
    import random
    import time

    from assay.model.formats import detect_bytes
    from assay.model.zipread import read_zip
    from assay.scan.context import FileScan, ScanOptions
    from assay.scan.files import scan_buffer
    from benchmarks.fuzz_containers import mutate, seeds

    corpus, rng = seeds(), random.Random(12)
    end = time.monotonic() + 10
    runs = 0
    while time.monotonic() < end:
        data = mutate(rng, rng.choice(corpus))
        read_zip(data)
        scan_buffer(data, "pytorch_model.bin", FileScan("f", ScanOptions()), where=None, depth=0,
                    fmt=detect_bytes(data))
        runs += 1
    assert runs > 100
