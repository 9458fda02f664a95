"""How long `assay inspect --json` takes on a ~21 GB sharded safetensors folder, against a peer in the same run.

The folder is a Llama-shaped 10.5B-parameter BF16 checkpoint in five ~4.3 GB shards with real headers and a
real index; the tensor data are holes (files extended with os.truncate), so it costs no disk and no time to
build, and any tool that read tensor data would be caught by its run time. Every command runs as a fresh
subprocess (Python start-up included), several times; the median is reported.

Peers measured in the same run:
  - python start-up alone (`python -c pass`): the floor every command pays;
  - the safetensors library reading the same headers (`safe_open` on every shard, summing shape products),
    i.e. the minimum a Python tool must do to count the parameters.

    python benchmarks/inspect_large.py            # 7 runs each
    python benchmarks/inspect_large.py --runs 15
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, LAYERS, INTER, VOCAB, HEADS = 5120, 32, 13824, 32000, 40
SHARD_BYTES = 5 * 1000**3


def tensors() -> list[tuple[str, list[int]]]:
    """Llama-13B-like tensor names and shapes (HF layout)."""
    out = [("model.embed_tokens.weight", [VOCAB, HIDDEN])]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out += [(p + "input_layernorm.weight", [HIDDEN]),
                (p + "self_attn.q_proj.weight", [HIDDEN, HIDDEN]),
                (p + "self_attn.k_proj.weight", [HIDDEN, HIDDEN]),
                (p + "self_attn.v_proj.weight", [HIDDEN, HIDDEN]),
                (p + "self_attn.o_proj.weight", [HIDDEN, HIDDEN]),
                (p + "post_attention_layernorm.weight", [HIDDEN]),
                (p + "mlp.gate_proj.weight", [INTER, HIDDEN]),
                (p + "mlp.up_proj.weight", [INTER, HIDDEN]),
                (p + "mlp.down_proj.weight", [HIDDEN, INTER])]
    out += [("model.norm.weight", [HIDDEN]), ("lm_head.weight", [VOCAB, HIDDEN])]
    return out


def numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def build(root: Path) -> tuple[int, int]:
    """Write the sparse sharded folder; returns (parameters, apparent bytes)."""
    shards: list[list[tuple[str, list[int]]]] = [[]]
    size = 0
    for name, shape in tensors():
        nbytes = numel(shape) * 2
        if size + nbytes > SHARD_BYTES and shards[-1]:
            shards.append([])
            size = 0
        shards[-1].append((name, shape))
        size += nbytes
    weight_map: dict[str, str] = {}
    total = 0
    for i, group in enumerate(shards, start=1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        header: dict[str, object] = {"__metadata__": {"format": "pt"}}
        off = 0
        for name, shape in group:
            nbytes = numel(shape) * 2
            header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [off, off + nbytes]}
            weight_map[name] = fname
            off += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with (root / fname).open("wb") as fh:
            fh.write(struct.pack("<Q", len(raw)) + raw)
            os.truncate(fh.fileno(), 8 + len(raw) + off)  # a hole: no data written
        total += off
    (root / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (root / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS, "vocab_size": VOCAB, "max_position_embeddings": 4096,
        "torch_dtype": "bfloat16", "tie_word_embeddings": False}, indent=2))
    (root / "README.md").write_text("---\nlicense: llama2\nbase_model: meta-llama/Llama-2-13b-hf\n---\n# big\n")
    return sum(numel(s) for _n, s in tensors()), total


PEER = """
import sys, glob
from safetensors import safe_open
n = 0
for f in sorted(glob.glob(sys.argv[1] + '/*.safetensors')):
    with safe_open(f, framework='numpy') as st:
        for k in st.keys():
            p = 1
            for d in st.get_slice(k).get_shape():
                p *= d
            n += p
print(n)
"""


def timed(cmd: list[str], runs: int) -> tuple[float, str]:
    times, out = [], ""
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - t0)
        out = proc.stdout
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="assay-bench-") as tmp:
        root = Path(tmp) / "llama-13b-like"
        root.mkdir()
        params, apparent = build(root)
        on_disk = sum(p.stat().st_blocks * 512 for p in root.iterdir())
        print(f"folder: {apparent / 1e9:.1f} GB apparent in {len(list(root.glob('*.safetensors')))} shards, "
              f"{on_disk / 1e6:.1f} MB on disk, {params:,} parameters")
        startup, _ = timed([py, "-c", "pass"], args.runs)
        assay_t, out = timed([py, "-m", "assay", "inspect", "--json", str(root)], args.runs)
        peer_t, peer_out = timed([py, "-c", PEER, str(root)], args.runs)
        doc = json.loads(out)
        assert doc["parameters"] == params == int(peer_out), (doc["parameters"], params, peer_out)
        print(f"runs per command: {args.runs} (median wall time, each a fresh process)")
        print(f"  python -c pass                         {startup * 1000:8.1f} ms")
        print(f"  assay inspect --json                   {assay_t * 1000:8.1f} ms   "
              f"({(assay_t - startup) * 1000:.1f} ms after Python starts)")
        print(f"  safetensors safe_open headers (peer)   {peer_t * 1000:8.1f} ms   "
              f"({(peer_t - startup) * 1000:.1f} ms after Python starts)")
        print(f"ratio assay / peer: {assay_t / peer_t:.2f}x total, "
              f"{(assay_t - startup) / max(peer_t - startup, 1e-9):.2f}x after start-up")
        print(f"assay reports {doc['parameters']:,} parameters, dtypes {doc['dtypes']}, tier {doc['tier']}")


if __name__ == "__main__":
    main()
