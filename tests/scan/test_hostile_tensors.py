"""Payloads hidden in tensor data, and denial-of-service files: the real loader accepts them, assay is not fooled.

Each payload sample is first proved in a throwaway subprocess: the format's real loader (safetensors,
gguf.GGUFReader, torch.load with weights_only=True) accepts the file, and the tensor's bytes, used as what they
are (unpickled, or written out and executed), create a marker file. Then ``assay scan`` must not say ``safe``.
The denial-of-service files run ``assay`` in a subprocess under a time limit, and its peak memory is measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from assay.model.ref import resolve
from assay.scan import ScanVerdict, scan_model
from tests.factory.hostile_tensors import (DosSample, PayloadSample, build_dos_samples, build_payload_samples,
                                           describe)

ROOT = Path(__file__).resolve().parents[2]

_PROVE = r"""
import json, os, pickle, stat, subprocess, sys
from pathlib import Path
samples, marker, tmp = json.loads(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
out = {}
for s in samples:
    p, name = s["path"], s["tensor"]
    if s["format"] == "safetensors":
        from safetensors.numpy import load_file
        data = load_file(p)[name].tobytes()
    elif s["format"] == "gguf":
        import gguf
        data = next(t for t in gguf.GGUFReader(p).tensors if t.name == name).data.tobytes()
    else:
        import torch
        data = torch.load(p, weights_only=True)[name].numpy().tobytes()
    marker.unlink(missing_ok=True)
    kind = s["kind"]
    if kind.startswith("pickle"):
        pickle.loads(data)
    elif kind in ("elf", "script"):
        exe = tmp / (s["name"] + ".run")
        exe.write_bytes(data)
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
        subprocess.run([str(exe), str(marker)], check=True)
    out[s["name"]] = {"accepted": True, "ran": marker.exists(), "head": data[:4].hex()}
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[PayloadSample], Path]:
    root = tmp_path_factory.mktemp("tensor-payloads")
    marker = root / "MARKER"
    return build_payload_samples(root / "samples", marker=marker), marker


def test_real_loaders_accept_the_files_and_the_payloads_run(payloads: tuple[list[PayloadSample], Path],
                                                            tmp_path: Path) -> None:
    samples, marker = payloads
    res = subprocess.run([sys.executable, "-c", _PROVE, describe(samples), str(marker), str(tmp_path)],
                         capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr
    proved = json.loads(res.stdout)
    for s in samples:
        assert proved[s.name]["accepted"], s.name
        if s.kind in ("pickle", "pickle4", "elf", "script"):
            assert proved[s.name]["ran"], f"{s.name}: the payload did not run"
        else:  # PE and Mach-O do not run on Linux: the bytes are the real header
            assert proved[s.name]["head"] in ("4d5a0000", "cffaedfe"), s.name


def test_assay_reports_every_hidden_payload(payloads: tuple[list[PayloadSample], Path]) -> None:
    samples, _marker = payloads
    for s in samples:
        report = scan_model(resolve(str(s.path)))
        hits = [f for f in report.findings if f.rule == "TENSOR-EMBEDDED-PAYLOAD"]
        assert report.verdict is not ScanVerdict.SAFE, s.name
        assert hits, (s.name, [(f.rule, f.message) for f in report.findings], report.files)
        assert hits[0].severity.value == "medium"
        if s.format in ("safetensors", "gguf"):
            assert hits[0].location == f"tensor {s.tensor}", (s.name, hits[0].location)
        if s.kind.startswith("pickle"):
            assert "pickle" in hits[0].message and "system" in (hits[0].evidence or "") or s.kind == "pickle4"


# Linux keeps a process's peak RSS across execve, and a forked child starts with its parent's: a command started
# straight from a big pytest worker would report the worker's peak. So a small wrapper starts assay as its own
# child and reports that child's peak alone.
_MEASURED = r"""
import resource, subprocess, sys
code = subprocess.run([sys.executable, "-m", "assay", *sys.argv[1:]]).returncode
sys.stderr.write(f"\nMAXRSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\n")
sys.exit(code)
"""


def _run_limited(args: list[str], timeout: float) -> tuple[int, float, int, str]:
    """Run ``assay ARGS`` in a subprocess; return (exit code, seconds, its own peak RSS in MiB, stderr)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    try:
        res = subprocess.run([sys.executable, "-c", _MEASURED, *args], capture_output=True, text=True, env=env,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"assay {' '.join(args)} did not finish in {timeout} s")
    seconds = time.perf_counter() - start
    err, _, rss = res.stderr.rpartition("MAXRSS_KB=")
    return res.returncode, seconds, int(rss.strip()) // 1024, err


@pytest.fixture(scope="module")
def dos(tmp_path_factory: pytest.TempPathFactory) -> list[DosSample]:
    return build_dos_samples(tmp_path_factory.mktemp("dos"))


@pytest.mark.parametrize("name", ["pickle-memo-fanout", "pickle-16m-opcodes", "state-dict-memo-fanout",
                                  "safetensors-99mb-json", "gguf-17m-strings", "gguf-huge-lengths"])
def test_denial_of_service_files_are_decided_quickly(dos: list[DosSample], name: str) -> None:
    s = next(d for d in dos if d.name == name)
    rc, seconds, peak_mib, err = _run_limited([s.command, str(s.path), "--json"], timeout=60)
    assert rc in s.exit_codes, (rc, err)
    assert "Traceback" not in err
    # 10 s and 1 GiB on an idle 2-core machine; the limit here leaves room for a busy CI runner
    assert seconds < 30, seconds
    assert peak_mib < 1024, peak_mib


def test_memo_fanout_pickle_is_small_and_reported(dos: list[DosSample]) -> None:
    s = next(d for d in dos if d.name == "pickle-memo-fanout")
    assert s.path.stat().st_size < 600
    report = scan_model(resolve(str(s.path)))
    assert "PICKLE-NESTED-LOADER" in {f.rule for f in report.findings}


def test_state_dict_fanout_is_read_by_the_real_unpickler_quickly(dos: list[DosSample]) -> None:
    """The real unpickler builds the shared tree in microseconds: the file is cheap for a loader, so it must be
    cheap for assay too."""
    import pickle

    s = next(d for d in dos if d.name == "state-dict-memo-fanout")
    start = time.perf_counter()
    obj = pickle.loads(s.path.read_bytes())
    assert time.perf_counter() - start < 1 and isinstance(obj, dict)
    assert scan_model(resolve(str(s.path))).verdict is ScanVerdict.SAFE


def test_huge_json_header_is_accepted_by_the_safetensors_library(dos: list[DosSample]) -> None:
    """The library ignores the unknown field: the file loads, so assay may not call it malformed; it says it did
    not parse the header (resource limit), never safe."""
    from safetensors import safe_open

    s = next(d for d in dos if d.name == "safetensors-99mb-json")
    with safe_open(str(s.path), framework="numpy") as f:
        assert list(f.keys()) == ["t"]
    report = scan_model(resolve(str(s.path)))
    assert report.verdict is ScanVerdict.UNVERIFIED
    assert "resource limit" in (report.files[0].reason or "")


def test_random_weights_never_look_like_a_payload() -> None:
    """No false positives on weight-like bytes: 20,000 random tensor starts in float32, float16 and bfloat16."""
    import numpy as np

    from assay.scan.payload import embedded_payload

    rng = np.random.default_rng(0)
    for dtype in ("<f4", "<f2"):
        for _ in range(10_000 if dtype == "<f4" else 5_000):
            head = (rng.standard_normal(1024) * rng.choice([0.02, 1.0, 30.0])).astype(dtype).tobytes()
            assert embedded_payload(head) is None, head[:16]
    for _ in range(5_000):  # bfloat16: the high halves of float32
        f = (rng.standard_normal(1024) * 0.05).astype("<f4")
        head = (f.view("<u4") >> 16).astype("<u2").tobytes()
        assert embedded_payload(head) is None, head[:16]


def test_payload_checks_are_bounded_per_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file whose every tensor starts like a pickle costs at most MAX_PICKLE_BYTES of decoding, then says so."""
    import struct

    from assay.scan import payload

    monkeypatch.setattr(payload, "MAX_PICKLE_BYTES", 800)
    n = 200
    header = {f"t{i}": {"dtype": "U8", "shape": [16], "data_offsets": [16 * i, 16 * i + 16]} for i in range(n)}
    raw = json.dumps(header).encode()
    p = tmp_path / "many.safetensors"
    p.write_bytes(struct.pack("<Q", len(raw)) + raw + b"(N" * 8 * n)
    report = scan_model(resolve(str(p)))
    assert report.verdict is ScanVerdict.UNVERIFIED
    assert "resource limit: tensor starts decoded as pickle opcodes for more than" in (report.files[0].reason or "")
