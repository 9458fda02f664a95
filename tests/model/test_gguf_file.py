"""The one GGUF reader on the real SmolLM2 GGUF and on damaged copies: scan, inspect, card and lineage agree."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assay.model.gguf_file import GGUFArray, read_gguf_file
from assay.model.ref import resolve
from assay.scan import ScanVerdict, scan_model
from tests.model.conftest import assert_one_line_error


def test_reader_agrees_with_gguf_py(smollm2_gguf: Path, smollm2_reader) -> None:  # type: ignore[no-untyped-def]
    g = read_gguf_file(smollm2_gguf)
    assert g.complete and not g.problems and g.limit is None
    assert [t.name for t in g.tensors] == [t.name for t in smollm2_reader.tensors]
    for ours, theirs in zip(g.tensors, smollm2_reader.tensors, strict=True):
        assert g.data_start + ours.offset == int(theirs.data_offset)
        assert ours.nbytes == int(theirs.n_bytes)
        assert ours.dims == tuple(int(d) for d in theirs.shape)
    assert g.data_start == smollm2_reader.data_offset
    tokens = g.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GGUFArray) and tokens.length == len(smollm2_reader.fields["tokenizer.ggml.tokens"].data)
    assert g.metadata["general.license"] == "apache-2.0"


@pytest.fixture
def truncated(smollm2_gguf: Path, tmp_path: Path) -> Path:
    out = tmp_path / "cut.gguf"
    with smollm2_gguf.open("rb") as src, out.open("wb") as dst:
        dst.write(src.read(smollm2_gguf.stat().st_size // 2))
    return out


def test_truncated_gguf_is_one_finding(truncated: Path, smollm2_gguf: Path) -> None:
    report = scan_model(resolve(str(truncated)))
    assert report.verdict is ScanVerdict.UNSAFE
    assert len(report.findings) == 1, [f.message for f in report.findings]
    f = report.findings[0]
    assert f.message == (f"truncated: the header describes {smollm2_gguf.stat().st_size} bytes, the file has "
                         f"{truncated.stat().st_size}")


def test_truncated_gguf_is_bad_input_for_card_inspect_and_lineage(truncated: Path, cli) -> None:  # type: ignore[no-untyped-def]
    assert_one_line_error(cli("card", truncated), "cut.gguf is truncated: the header describes")
    run = cli("inspect", truncated, "--json")
    assert run.rc == 2 and "truncated" in run.out + run.err


def test_card_reads_gguf_metadata(smollm2_gguf: Path, cli) -> None:  # type: ignore[no-untyped-def]
    run = cli("card", smollm2_gguf, "--json")
    assert run.rc == 0, run.err
    doc = run.json()
    assert "apache-2.0" in str(doc)


def test_inspect_shows_the_card_fields_a_gguf_carries(smollm2_gguf: Path, cli) -> None:  # type: ignore[no-untyped-def]
    doc = cli("inspect", smollm2_gguf, "--json").json()
    card = doc["card"]
    assert card["present"] and card["source"] == "gguf"
    assert card["license"] == "apache-2.0" and card["model_name"].startswith("Smollm2")
    text = cli("inspect", smollm2_gguf).out
    assert "GGUF metadata: model_name=Smollm2" in " ".join(text.split())


def test_lineage_of_a_file_with_itself_is_settled_by_bytes(smollm2_gguf: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from assay.model import tensors
    from assay.provenance.lineage import Relation, compare_lineage

    def no_decoding(*_a, **_k):  # type: ignore[no-untyped-def]
        raise AssertionError("byte-identical weights must not be dequantised")

    monkeypatch.setattr(tensors, "_gguf_decode", no_decoding)
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(smollm2_gguf, copy)
    for base in (smollm2_gguf, copy):
        rep = compare_lineage(resolve(str(smollm2_gguf)), resolve(str(base)))
        assert rep.relation is Relation.IDENTICAL
        assert rep.identical == rep.compared == 272
        assert rep.rel_change == 0 and rep.cosine == 1


def test_gguf_limits_are_resource_limits(tmp_path: Path) -> None:
    """Counts beyond the reader's limits make the file not verified with the reason, never clean."""
    import struct

    from assay.model import gguf_file

    p = tmp_path / "many.gguf"
    body = b"GGUF" + struct.pack("<IQQ", 3, 0, gguf_file.MAX_KV + 1)
    p.write_bytes(body + b"\x00" * (13 * (gguf_file.MAX_KV + 2)))
    g = read_gguf_file(p)
    assert g.limit is not None and g.limit.startswith("resource limit: ")
    report = scan_model(resolve(str(p)))
    assert report.verdict is ScanVerdict.UNVERIFIED and "resource limit" in (report.files[0].reason or "")


def test_offsets_llama_cpp_refuses_are_reported(tmp_path: Path) -> None:
    """gguf-py reads tensors at any aligned offset; llama.cpp wants them packed in header order. A gap between
    two tensors is bytes one loader skips: GGUF-LAYOUT, and the real gguf-py reader accepts the file."""
    import struct

    import gguf

    from tests.factory.hostile import gguf_bytes

    data = b"\x01" * 64 + b"\x00" * 64 + b"\x02" * 64  # tensor b starts 64 bytes after a ends
    p = tmp_path / "gap.gguf"
    p.write_bytes(gguf_bytes([("general.architecture", 8, struct.pack("<Q", 5) + b"llama")],
                             [("a", [16], 0, 0), ("b", [16], 0, 128)], data))
    reader = gguf.GGUFReader(str(p))
    assert [t.name for t in reader.tensors] == ["a", "b"]
    g = read_gguf_file(p)
    assert [x.rule for x in g.problems] == ["GGUF-LAYOUT"] and g.fatal() is None
    report = scan_model(resolve(str(p)))
    assert {f.rule for f in report.findings} == {"GGUF-LAYOUT"} and report.verdict is ScanVerdict.UNSAFE


def test_truncated_safetensors_is_one_finding(zoo, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src = Path(zoo.safetensors_dir) / "model.safetensors"
    cut = tmp_path / "model.safetensors"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    report = scan_model(resolve(str(cut)))
    assert len(report.findings) == 1, [f.message for f in report.findings]
    assert report.findings[0].message == (f"truncated: the header describes {src.stat().st_size} bytes, the file "
                                          f"has {cut.stat().st_size}")


def test_big_endian_gguf_is_scanned_but_its_tensors_are_not_misread(tmp_path: Path) -> None:
    """gguf-py reads byte-swapped files; assay checks their structure but refuses to decode their data as
    little-endian numbers (a silently wrong value)."""
    import struct

    from assay.errors import FormatError
    from assay.model.tensors import file_tensors

    head = b"GGUF" + struct.pack(">IQQ", 3, 1, 0) + struct.pack(">Q", 1) + b"a" + struct.pack(">IQIQ", 1, 8, 0, 0)
    p = tmp_path / "be.gguf"
    p.write_bytes(head + b"\x00" * (-len(head) % 32) + struct.pack(">8f", *range(8)))
    g = read_gguf_file(p)
    assert g.endian == ">" and g.complete and not g.problems
    with pytest.raises(FormatError, match="big-endian"):
        file_tensors(p)
