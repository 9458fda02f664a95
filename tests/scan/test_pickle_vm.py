"""The symbolic pickle machine: every opcode, name resolution, the allowlist, robustness against junk."""

from __future__ import annotations

import io
import pickle
import pickletools
import random
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path

import pytest

from assay.scan.context import FileScan, ScanOptions
from assay.scan.files import BufReader
from assay.model.pickle_vm import _HANDLERS, Global, scan_pickle_stream
from tests.factory.hostile import P2_GLOBAL, P2_NOT_ALLOWLISTED, P3_NESTED_PICKLE_LOADS, _su, _u


def _scan(data: bytes, **opts: object) -> FileScan:
    fs = FileScan("x.pkl", ScanOptions(**opts))  # type: ignore[arg-type]
    scan_pickle_stream(BufReader(data), fs, where=None, nested=lambda blob, loc: scan_pickle_stream(
        BufReader(blob), fs, where=loc))
    return fs


def test_every_opcode_has_a_handler() -> None:
    assert {op.name for op in pickletools.opcodes} == set(_HANDLERS)


def test_python2_names_are_mapped_like_the_unpickler_does() -> None:
    # protocol 2: __builtin__.set is builtins.set (allowed); protocol 3+ does not map names
    assert _scan(b"\x80\x02c__builtin__\nset\n]\x85R.").findings == []
    fs = _scan(b"\x80\x03c__builtin__\nset\n]\x85R.")
    assert [f.rule for f in fs.findings] == ["PICKLE-GLOBAL"]


def test_user_allowlist_accepts_exact_names_only() -> None:
    assert [f.rule for f in _scan(P2_NOT_ALLOWLISTED).findings] == ["PICKLE-GLOBAL"]
    assert _scan(P2_NOT_ALLOWLISTED, allow_globals=frozenset({"mylib.layers.CustomLayer"})).findings == []
    fs = _scan(P2_NOT_ALLOWLISTED, allow_globals=frozenset({"mylib.layers"}))
    assert [f.rule for f in fs.findings] == ["PICKLE-GLOBAL"]


def test_dotted_names_through_a_dunder_are_dangerous() -> None:
    data = b"\x80\x04" + _su("collections") + _su("OrderedDict.__init__.__globals__") + b"\x93."
    assert [f.rule for f in _scan(data).findings] == ["PICKLE-GLOBAL-DANGEROUS"]


def test_allowing_a_nested_loader_still_scans_its_bytes() -> None:
    fs = _scan(P3_NESTED_PICKLE_LOADS, allow_globals=frozenset({"_pickle.loads"}))
    assert {f.rule for f in fs.findings} == {"PICKLE-GLOBAL-DANGEROUS"}
    fs = _scan(P3_NESTED_PICKLE_LOADS)
    assert {f.rule for f in fs.findings} == {"PICKLE-NESTED-LOADER", "PICKLE-GLOBAL-DANGEROUS"}


def test_call_of_a_memoized_call_result_is_reported() -> None:
    data = (b"\x80\x02ccollections\nOrderedDict\n)Rq\x00h\x00)R.")
    assert [f.rule for f in _scan(data).findings] == ["PICKLE-CALL"]


def test_truncated_honest_pickle_is_not_verified_not_unsafe() -> None:
    data = pickle.dumps({"a": [1, 2, 3]}, protocol=2)[:-4]
    fs = _scan(data)
    assert fs.findings == [] and fs.reasons and fs.result().status == "not_verified"


def test_torch_persistent_ids_are_collected() -> None:
    data = (b"\x80\x02(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x04t"
            b"Q.")
    fs = FileScan("x", ScanOptions())
    res = scan_pickle_stream(BufReader(data), fs, where=None)
    pid = res.pickles[0].persistent_ids[0]
    assert pid[0] == "storage" and isinstance(pid[1], Global) and pid[1].full == "torch.FloatStorage"
    assert fs.findings == []


def test_stacked_pickles_are_all_read() -> None:
    data = pickle.dumps(1, protocol=2) + pickle.dumps([2], protocol=0) + P2_GLOBAL
    fs = FileScan("x", ScanOptions())
    res = scan_pickle_stream(BufReader(data), fs, where=None)
    assert len(res.pickles) == 3
    assert [f.rule for f in fs.findings] == ["PICKLE-GLOBAL-DANGEROUS"]


def test_trailing_non_pickle_bytes_are_low() -> None:
    fs = _scan(pickle.dumps({"a": 1}, protocol=4) + b"\x00\x00\x00\xffjunk")
    assert [(f.rule, f.severity.value) for f in fs.findings] == [("PICKLE-TRAILING-DATA", "low")]


@pytest.mark.parametrize("seed", range(4))
def test_mutated_pickles_never_crash_the_scanner(seed: int) -> None:
    """Random byte flips of honest and hostile pickles: the machine reports, it never raises."""
    rng = random.Random(seed)
    corpus = [pickle.dumps({"w": [1.0, 2.0], "o": OrderedDict(a=1)}, protocol=p) for p in range(6)] + [P2_GLOBAL]
    for _ in range(150):
        data = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        fs = _scan(bytes(data))
        assert fs.result().status in ("clean", "findings", "not_verified")


def test_scanning_never_executes_the_payload(tmp_path: Path) -> None:
    """A pickle that would create a file: after scanning it in every container, the file does not exist."""
    marker = tmp_path / "executed"
    payload = (b"\x80\x02cbuiltins\nopen\n" + _u(str(marker)) + _u("w") + b"\x86R.")
    sysline = b"\x80\x02cos\nsystem\n" + _u(f"touch {marker}") + b"\x85R."
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "a.pkl").write_bytes(payload)
    (folder / "b.bin").write_bytes(sysline)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
        zf.writestr("archive/version", "3\n")
    (folder / "c.pt").write_bytes(buf.getvalue())
    from assay.model.ref import resolve
    from assay.scan import scan_model

    report = scan_model(resolve(str(folder)))
    assert report.verdict.value == "unsafe"
    assert not marker.exists()
    assert len({f.path for f in report.findings}) == 3


def test_long_binunicode_length_is_not_trusted() -> None:
    data = b"\x80\x04\x8d" + struct.pack("<Q", 1 << 62) + b"abc"
    fs = _scan(data)
    assert fs.findings == [] and fs.result().status == "not_verified"


def test_too_many_stacked_pickles_are_not_verified() -> None:
    data = pickle.dumps(1, protocol=2) * 1100 + P2_GLOBAL
    fs = _scan(data)
    assert fs.findings == [] and fs.result().status == "not_verified"
    assert "stacked pickles" in fs.reasons[0]
