"""Mutation fuzz of the zip readers and the container scanner: no exception, no hang, on any mutant.

Seeds are honest ``torch.save`` outputs (zip and legacy) and the hostile container corpus
(tests/factory/hostile_containers.py); mutants get byte flips, insertions, deletions and 4-byte fields set to
0 / 0xFFFFFFFF, then go through :func:`assay.model.zipread.read_zip` and :func:`assay.scan.files.scan_buffer`.

    python benchmarks/fuzz_containers.py --seed 1 --seconds 120

Exit code 1 if any mutant raised or took longer than ``--slow`` seconds.
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path


def seeds() -> list[bytes]:
    """Honest torch files and every hostile container sample under 2 MB."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.factory.hostile_containers import build_containers

    out = []
    for kw in ({}, {"_use_new_zipfile_serialization": False}):
        bio = io.BytesIO()
        torch.save({"w": torch.ones(3), "b": torch.zeros(2)}, bio, **kw)  # type: ignore[arg-type]
        out.append(bio.getvalue())
    with tempfile.TemporaryDirectory() as tmp:
        for s in build_containers(Path(tmp) / "s", marker_dir=Path(tmp) / "m"):
            if s.path.stat().st_size < 2_000_000:
                out.append(s.path.read_bytes())
    return out


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One mutant of ``data``."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randrange(len(buf)) if buf else 0
        k = rng.random()
        if k < 0.5 and buf:
            buf[pos] = rng.randrange(256)
        elif k < 0.7:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
        elif k < 0.85 and buf:
            del buf[pos:pos + rng.randint(1, 64)]
        else:
            buf[pos:pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\xff\xff\x00\x00"])
    return bytes(buf)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--slow", type=float, default=2.0)
    args = ap.parse_args()
    from assay.model.formats import detect_bytes
    from assay.model.zipread import read_zip
    from assay.scan.context import FileScan, ScanOptions
    from assay.scan.files import scan_buffer

    corpus = seeds()
    rng = random.Random(args.seed)
    end = time.monotonic() + args.seconds
    runs = failures = 0
    while time.monotonic() < end:
        data = mutate(rng, rng.choice(corpus))
        t = time.monotonic()
        try:
            read_zip(data)
            scan_buffer(data, "pytorch_model.bin", FileScan("f", ScanOptions()), where=None, depth=0,
                        fmt=detect_bytes(data))
        except Exception:  # noqa: BLE001 - what the fuzzer looks for
            failures += 1
            print("\n".join(traceback.format_exc().strip().splitlines()[-6:]))
        if time.monotonic() - t > args.slow:
            failures += 1
            print(f"slow: {time.monotonic() - t:.1f} s")
        runs += 1
    print(f"seed {args.seed}: {runs} mutants, {failures} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
