"""Lineage speed and memory: `assay lineage` streaming tensor pairs vs. loading both checkpoints whole.

Writes two Llama-shaped float32 safetensors checkpoints (about ``--size-gb`` GB each: a base and a dense
"fine-tune" of it), streamed to disk tensor by tensor. Then, each in a fresh process, it measures wall time and
peak RSS of

- ``assay lineage`` (``compare_lineage``: one memory-mapped pair at a time, full evidence incl. rank tests), and
- the naive peer: ``safetensors.numpy.load_file`` of both models, then relative change and cosine per tensor.

    /work/venv/bin/python benchmarks/lineage_speed.py --size-gb 1

Peak RSS of the streaming path should stay near a few times the largest tensor, not the model size.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path


def shapes(size_gb: float) -> dict[str, tuple[int, ...]]:
    """Llama-like tensor shapes whose float32 total is close to ``size_gb``."""
    hidden, inter, vocab = 1024, 2816, 32000
    per_layer = 4 * hidden * hidden + 3 * hidden * inter + 2 * hidden
    fixed = 2 * vocab * hidden + hidden
    layers = max(1, round((size_gb * 1024**3 / 4 - fixed) / per_layer))
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for n in ("q", "k", "v", "o"):
            out[p + f"self_attn.{n}_proj.weight"] = (hidden, hidden)
        out[p + "mlp.gate_proj.weight"] = (inter, hidden)
        out[p + "mlp.up_proj.weight"] = (inter, hidden)
        out[p + "mlp.down_proj.weight"] = (hidden, inter)
        out[p + "input_layernorm.weight"] = (hidden,)
        out[p + "post_attention_layernorm.weight"] = (hidden,)
    out["model.norm.weight"] = (hidden,)
    out["lm_head.weight"] = (vocab, hidden)
    return out


def write_pair(base_dir: Path, cand_dir: Path, spec: dict[str, tuple[int, ...]]) -> int:
    """Stream both checkpoints to disk (one tensor in memory at a time); returns the size of one."""
    import numpy as np

    names = sorted(spec)
    header: dict[str, object] = {}
    offset = 0
    for n in names:
        nbytes = 4 * int(np.prod(spec[n]))
        header[n] = {"dtype": "F32", "shape": list(spec[n]), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    rng = np.random.default_rng(0)
    for d in (base_dir, cand_dir):
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with (base_dir / "model.safetensors").open("wb") as fb, (cand_dir / "model.safetensors").open("wb") as fc:
        for fh in (fb, fc):
            fh.write(struct.pack("<Q", len(raw)) + raw)
        for n in names:
            shape = spec[n]
            w = np.ones(shape, np.float32) if len(shape) == 1 else rng.standard_normal(shape, np.float32) * 0.02
            fb.write(w.tobytes())
            w += rng.standard_normal(shape, np.float32) * 0.0005  # a dense small update: a "fine-tune"
            fc.write(w.tobytes())
            del w
    return 8 + len(raw) + offset


CHILD_ASSAY = """
import json, resource, sys, time
from assay.model.ref import resolve
from assay.provenance.lineage import compare_lineage
t = time.perf_counter()
r = compare_lineage(resolve(sys.argv[1]), resolve(sys.argv[2]))
print(json.dumps({"seconds": time.perf_counter() - t, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "relation": r.relation.value, "tensors": r.compared}))
"""

CHILD_NAIVE = """
import json, resource, sys, time
import numpy as np
from safetensors.numpy import load_file
t = time.perf_counter()
a = load_file(sys.argv[2] + "/model.safetensors")
b = load_file(sys.argv[1] + "/model.safetensors")
out = {}
for k in a:
    x, y = a[k].astype(np.float64).ravel(), b[k].astype(np.float64).ravel()
    out[k] = (float(np.linalg.norm(y - x) / np.linalg.norm(x)), float(x @ y / np.linalg.norm(x) / np.linalg.norm(y)))
print(json.dumps({"seconds": time.perf_counter() - t, "peak_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "relation": "n/a (numbers only)", "tensors": len(out)}))
"""


def run(code: str, cand: Path, base: Path) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    proc = subprocess.run([sys.executable, "-c", code, str(cand), str(base)], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="assay-lineage-bench-", dir=args.dir))
    try:
        spec = shapes(args.size_gb)
        size = write_pair(tmp / "base", tmp / "cand", spec)
        largest = max(4 * int(__import__("numpy").prod(s)) for s in spec.values())
        for d in ("base", "cand"):  # warm the page cache so both runs read from memory
            subprocess.run(["cat", str(tmp / d / "model.safetensors")], stdout=subprocess.DEVNULL, check=True)
        assay = run(CHILD_ASSAY, tmp / "cand", tmp / "base")
        naive = run(CHILD_NAIVE, tmp / "cand", tmp / "base")
        mib = 1024**2
        print(f"two checkpoints of {size / mib:.0f} MiB each ({len(spec)} tensors, largest {largest / mib:.0f} MiB); "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, OMP_NUM_THREADS="
              f"{os.environ.get('OMP_NUM_THREADS', '1')}")
        print(f"{'method':44s} {'seconds':>8s} {'peak RSS MiB':>13s} {'RSS / largest tensor':>21s} "
              f"{'RSS / model':>12s}")
        for name, r in (("assay lineage (streaming, full evidence)", assay),
                        ("naive: load both, norms + cosine only", naive)):
            rss = r["peak_kib"] * 1024
            print(f"{name:44s} {r['seconds']:8.1f} {rss / mib:13.0f} {rss / largest:20.1f}x {rss / size:11.2f}x")
        print(f"assay relation: {assay['relation']} over {assay['tensors']} tensors; memory ratio naive/assay = "
              f"{naive['peak_kib'] / assay['peak_kib']:.1f}x, time ratio assay/naive = "
              f"{assay['seconds'] / naive['seconds']:.1f}x")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
