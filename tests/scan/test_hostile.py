"""Every hostile sample is unsafe or not verified, for the reason it was built to exhibit."""

from __future__ import annotations

import pytest

from assay.model.ref import resolve
from assay.scan import ScanVerdict, scan_model
from tests.factory.hostile import Sample, build_hostile


def _ids() -> list[str]:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        return [s.name for s in build_hostile(Path(tmp))]


@pytest.mark.parametrize("name", _ids())
def test_hostile_sample_is_caught(hostile: list[Sample], name: str) -> None:
    sample = next(s for s in hostile if s.name == name)
    report = scan_model(resolve(str(sample.path)))
    rules = {f.rule for f in report.findings}
    assert report.verdict is ScanVerdict(sample.verdict), (report.verdict, sorted(rules), report.files)
    if sample.rules:
        assert set(sample.rules) & rules, f"expected one of {sample.rules}, got {sorted(rules)}"
        assert report.exit_code == 1
    else:
        assert report.exit_code == 2
        assert any(f.status == "not_verified" and f.reason for f in report.files)


def test_corpus_covers_the_issue(hostile: list[Sample]) -> None:
    """The corpus has every family the issue lists, in several spellings each."""
    names = [s.name for s in hostile]
    for family, minimum in {"p0-": 3, "p2-": 10, "p4-": 4, "p5-": 1, "zip-": 7, "template-": 12, "safetensors-": 6,
                            "gguf-": 6, "named-": 3, "keras-": 2, "npy-": 1, "npz-": 1, "auto-map": 2}.items():
        assert sum(n.startswith(family) for n in names) >= minimum, family


def test_findings_point_at_the_place(hostile: list[Sample]) -> None:
    """A finding names the archive member and byte offset, or the template line."""
    by = {s.name: s for s in hostile}
    report = scan_model(resolve(str(by["torch-zip-evil"].path)))
    f = next(f for f in report.findings if f.rule == "PICKLE-GLOBAL-DANGEROUS")
    assert f.path == "pytorch_model.bin" and f.evidence == "os.system"
    assert f.location is not None and f.location.startswith("member archive/data.pkl, byte ")
    report = scan_model(resolve(str(by["template-cycler-globals"].path)))
    f = next(f for f in report.findings if f.rule == "TEMPLATE-DUNDER")
    assert f.location == "chat_template, line 1"
    report = scan_model(resolve(str(by["p3-nested-torch-load"].path)))
    nested = [f for f in report.findings if f.evidence == "os.system"]
    assert nested and "nested bytes #1 of torch.load" in (nested[0].location or "")


def test_broken_stream_keeps_what_came_before(hostile: list[Sample]) -> None:
    sample = next(s for s in hostile if s.name == "p2-broken-after-reduce")
    report = scan_model(resolve(str(sample.path)))
    assert [f.rule for f in report.findings] == ["PICKLE-GLOBAL-DANGEROUS", "PICKLE-BROKEN"]


def test_a_folder_of_honest_and_hostile_files_is_unsafe(hostile: list[Sample], zoo) -> None:  # type: ignore[no-untyped-def]
    import shutil

    folder = hostile[0].path.parent.parent / "mixed-folder"
    shutil.copytree(zoo.safetensors_dir, folder, dirs_exist_ok=True)
    shutil.copy(next(s for s in hostile if s.name == "p4-stack-global").path, folder / "training_args.bin")
    report = scan_model(resolve(str(folder)))
    assert report.verdict is ScanVerdict.UNSAFE
    assert {f.path for f in report.findings} == {"training_args.bin"}
    assert {f.path: f.status for f in report.files}["model.safetensors"] == "clean"
