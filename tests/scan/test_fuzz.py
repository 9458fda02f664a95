"""A short run of the mutation fuzzer (benchmarks/fuzz_scan.py): no traceback, no odd exit code, no hang, no
memory blow-up in `scan`, `inspect` or `verify`, and `verify` never accepts a changed file. The long run is
done by hand and recorded in benchmarks/RESULTS.md."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _fuzzer():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("fuzz_scan", ROOT / "benchmarks" / "fuzz_scan.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["fuzz_scan"] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_mutations_are_deterministic_and_change_the_bytes() -> None:
    import random

    fuzz = _fuzzer()
    data = bytes(range(256)) * 40
    a = [fuzz.mutate(data, random.Random(5), data) for _ in range(1)]
    b = [fuzz.mutate(data, random.Random(5), data) for _ in range(1)]
    assert a == b
    rng = random.Random(1)
    assert sum(fuzz.mutate(data, rng, data)[0] != data for _ in range(50)) >= 45


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_short_fuzz_run_finds_nothing(seed: int, tmp_path: Path) -> None:
    fuzz = _fuzzer()
    failures = fuzz.fuzz(seed=seed, seconds=20, out=tmp_path, case_timeout=30, max_rss_mib=1024, max_as_mib=4096,
                         quiet=True)
    assert failures == [], failures[:3]
