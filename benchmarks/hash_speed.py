"""Hashing speed: `assay hash` (BLAKE3 and SHA-256) against `sha256sum` and `model_signing`, in one run.

Builds a model-like folder (a few multi-hundred-MB "shards" plus small JSON files) of ``--size-gb`` GB, warms the
page cache, measures the machine's read speed from cache (``cat > /dev/null``), then times every hasher on the
same folder, best of ``--repeat`` runs. Figures are ratios to ``model_signing``'s default (SHA-256 per file).

    /work/venv/bin/python benchmarks/hash_speed.py --size-gb 2

The folder is deleted afterwards unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def build(folder: Path, size_gb: float) -> int:
    """Random shards (incompressible, like weights) totalling ``size_gb``; returns the byte count."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    total = int(size_gb * 1024**3)
    n_shards = max(1, round(total / (512 * 1024**2)))
    per = total // n_shards
    rng = np.random.default_rng(0)
    chunk = 64 * 1024**2
    for i in range(n_shards):
        with (folder / f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors").open("wb") as fh:
            left = per
            while left > 0:
                n = min(chunk, left)
                fh.write(rng.integers(0, 256, size=n, dtype=np.uint8).tobytes())
                left -= n
    for name in ("config.json", "tokenizer.json", "generation_config.json"):
        (folder / name).write_text('{"note": "small file"}\n' * 100)
    return sum(p.stat().st_size for p in folder.iterdir())


def timed(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--dir", type=Path, default=None, help="where to build the folder (default: a temp dir)")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="assay-hash-bench-", dir=args.dir))
    folder = tmp / "model"
    try:
        size = build(folder, args.size_gb)
        files = sorted(str(p) for p in folder.iterdir())
        # Warm the page cache, then measure the read limit: reading every byte from cache, no hashing.
        subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)
        results: dict[str, float] = {}
        results["read limit (cat > /dev/null)"] = timed(
            lambda: subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True), args.repeat)

        from assay.model.ref import resolve
        from assay.provenance.manifest import hash_model

        ref = resolve(folder)
        results["assay hash (blake3)"] = timed(
            lambda: hash_model(ref, algorithm="blake3", with_weights_root=False), args.repeat)
        results["assay hash --algorithm sha256"] = timed(
            lambda: hash_model(ref, algorithm="sha256", with_weights_root=False), args.repeat)
        if shutil.which("sha256sum"):
            results["sha256sum"] = timed(
                lambda: subprocess.run(["sha256sum", *files], stdout=subprocess.DEVNULL, check=True), args.repeat)
        if shutil.which("b3sum"):
            results["b3sum"] = timed(
                lambda: subprocess.run(["b3sum", *files], stdout=subprocess.DEVNULL, check=True), args.repeat)
        import model_signing.hashing as msh

        results["model_signing (sha256, files: default)"] = timed(lambda: msh.Config().hash(folder), args.repeat)
        results["model_signing (sha256, 1 GB shards)"] = timed(
            lambda: msh.Config().use_shard_serialization().hash(folder), args.repeat)
        results["model_signing (blake3)"] = timed(
            lambda: msh.Config().use_file_serialization(hashing_algorithm="blake3").hash(folder), args.repeat)

        peer = results["model_signing (sha256, files: default)"]
        limit = results["read limit (cat > /dev/null)"]
        mib = size / 1024**2
        print(f"folder: {size / 1024**3:.2f} GiB in {len(files)} files, page cache warm; "
              f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
        print(f"{'hasher':42s} {'seconds':>8s} {'MiB/s':>8s} {'vs model_signing':>17s} {'vs read limit':>14s}")
        for name, sec in results.items():
            print(f"{name:42s} {sec:8.2f} {mib / sec:8.0f} {peer / sec:16.2f}x {limit / sec:13.2f}x")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
