"""lm-evaluation-harness's own task YAMLs, run by assay and by lm-evaluation-harness on the same local data.

For each task (MMLU anatomy, ARC-Easy/Challenge, HellaSwag, Winogrande, TruthfulQA MC1/MC2, GSM8K and GSM8K-CoT,
PIQA, BoolQ, LAMBADA, wikitext, plus two YAMLs written for assay that exercise acc_mutual_info, f1, a templated
description, gen_prefix and a filter pipeline), both tools run the *unchanged* YAML from
``tests/data/lmeval/tasks/`` (vendored from lm-eval 0.4.13) over the local files in ``tests/data/lmeval/data/``:

- assay: ``load_tasks(yaml, data={split: file}, allow_task_code=True, num_fewshot=N)`` and its ``hf`` backend;
- lm-eval: ``simple_evaluate`` with its ``hf`` model (``HFLM``) on a wrapper YAML that ``include`` s the same file
  and sets ``dataset_path: json`` with ``data_files`` (lm-eval cannot download here either).

It prints per task and metric: assay's value, lm-eval's, the largest per-request log-likelihood difference and
whether every prediction (argmax choice, generated text) is identical. Exit 1 if any metric differs by more than
1e-4 or any prediction differs.

    OMP_NUM_THREADS=1 python benchmarks/lmeval_parity.py            # the real SmolLM2-135M-Instruct
    OMP_NUM_THREADS=1 python benchmarks/lmeval_parity.py --tiny     # a tiny random Llama (fast)

lm-evaluation-harness must be importable (``pip install lm-eval==0.4.13``); it is not a dependency of assay.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TASKS = ROOT / "tests" / "data" / "lmeval" / "tasks"
DATA = ROOT / "tests" / "data" / "lmeval" / "data"

#: (lm-eval YAML under tests/data/lmeval/tasks, data folder, {split: file stem}, --num-fewshot)
CASES: list[tuple[str, str, dict[str, str], int | None]] = [
    ("mmlu/default/mmlu_anatomy.yaml", "mmlu_anatomy", {"test": "test", "dev": "dev"}, 5),
    ("arc/arc_easy.yaml", "arc_easy", {"test": "test", "train": "train", "validation": "train"}, 3),
    ("arc/arc_challenge.yaml", "arc_challenge", {"test": "test", "train": "train", "validation": "train"}, None),
    ("hellaswag/hellaswag.yaml", "hellaswag", {"validation": "validation", "train": "train"}, 2),
    ("winogrande/default.yaml", "winogrande", {"validation": "validation", "train": "train"}, 2),
    ("truthfulqa/truthfulqa_mc1.yaml", "truthfulqa", {"validation": "validation"}, None),
    ("truthfulqa/truthfulqa_mc2.yaml", "truthfulqa", {"validation": "validation"}, None),
    ("gsm8k/gsm8k.yaml", "gsm8k", {"test": "test", "train": "train"}, 2),
    ("gsm8k/gsm8k-cot.yaml", "gsm8k", {"test": "test"}, None),
    ("piqa/piqa.yaml", "piqa", {"validation": "validation", "train": "train"}, 1),
    ("super_glue/boolq/default.yaml", "boolq", {"validation": "validation", "train": "train"}, None),
    ("lambada/lambada_openai.yaml", "lambada", {"test": "test"}, None),
    ("wikitext/wikitext.yaml", "wikitext", {"test": "test", "validation": "validation", "train": "train"}, None),
    ("assay_extra/boolq_metrics.yaml", "boolq", {"validation": "validation", "train": "train"}, None),
    ("assay_extra/arc_gen.yaml", "arc_easy", {"test": "test", "train": "train", "validation": "train"}, 2),
]


def tiny_model(folder: Path) -> Path:
    """A tiny random Llama with a real byte-level BPE tokenizer, from the test factory."""
    sys.path.insert(0, str(ROOT / "tests"))
    from factory.models import build_model, save_safetensors_folder, tiny_tokenizer

    return save_safetensors_folder(build_model(seed=0), tiny_tokenizer(), folder)


def wrapper_yaml(folder: Path, yaml_rel: str, data_dir: str, splits: dict[str, str]) -> str:
    """A YAML that includes the vendored task unchanged and points it at the local files; returns its task name."""
    import yaml as pyyaml

    from assay.evaluate.lmeval import read_yaml

    name = "parity_" + str(read_yaml(TASKS / yaml_rel)["task"]).replace("-", "_")
    cfg = {"include": str(TASKS / yaml_rel), "task": name, "dataset_path": "json", "dataset_name": None,
           "dataset_kwargs": {"data_files": {s: str(DATA / data_dir / f"{f}.jsonl") for s, f in splits.items()}}}
    (folder / f"{name}.yaml").write_text(pyyaml.safe_dump(cfg), encoding="utf-8")
    return name


def run_lmeval(lm: Any, tm: Any, name: str, num_fewshot: int | None) -> dict[str, Any]:
    import lm_eval

    res = lm_eval.simple_evaluate(model=lm, tasks=[name], num_fewshot=num_fewshot, task_manager=tm,
                                  log_samples=True, bootstrap_iters=0, fewshot_random_seed=1234)
    metrics = {k: v for k, v in res["results"][name].items() if "," in k and "_stderr" not in k}
    per_doc: dict[int, dict[str, Any]] = {}
    for s in res["samples"][name]:
        d = per_doc.setdefault(int(s["doc_id"]), {})
        resps = s["resps"]
        first = resps[0][0] if resps and resps[0] else None
        if isinstance(first, str):
            d["text"] = first
        elif isinstance(first, list | tuple):
            d["lls"] = [float(r[0][0]) for r in resps]
        else:
            d["lls"] = [float(r[0]) for r in resps]
        d["prompt"] = s["arguments"][0][0] if s.get("arguments") else None
    return {"metrics": metrics, "docs": per_doc}


def run_assay(backend: Any, yaml_rel: str, data_dir: str, splits: dict[str, str],
              num_fewshot: int | None) -> dict[str, Any]:
    from assay.evaluate.runner import evaluate_model
    from assay.evaluate.loading import load_tasks

    data = {s: [DATA / data_dir / f"{f}.jsonl"] for s, f in splits.items()}
    [task] = load_tasks(str(TASKS / yaml_rel), num_fewshot=num_fewshot, data=data, allow_task_code=True)
    result = evaluate_model(backend, [task], cache=None)[task.name]
    docs = {}
    for r in result.per_item:
        doc = int(r.id.split("/")[1])
        if r.loglikelihoods:
            docs[doc] = {"lls": list(r.loglikelihoods)}
        elif isinstance(r.prediction, str):
            docs[doc] = {"text": r.prediction}
        else:
            docs[doc] = {"lls": [float(r.metrics["logprob"])]}
    return {"task": task, "metrics": dict(result.metrics), "docs": docs}


def metric_pairs(task: Any, assay_metrics: dict[str, float], lm_metrics: dict[str, float]) -> list[tuple]:
    """(metric, assay value, lm-eval value) for every metric assay reports."""
    from assay.evaluate.tasks import TaskKind

    pairs = []
    if task.kind == TaskKind.GENERATE:
        lm_keys = [k for k in lm_metrics if k.startswith("exact_match,")]
        for (name, value), key in zip(assay_metrics.items(), lm_keys, strict=False):
            pairs.append((f"{name} ({key})", value, lm_metrics[key]))
        return pairs
    for name, value in assay_metrics.items():
        pairs.append((name, value, lm_metrics.get(f"{name},none", float("nan"))))
    return pairs


def compare_docs(a: dict[int, dict[str, Any]], b: dict[int, dict[str, Any]]) -> tuple[float, bool, int]:
    """Largest |ΔLL| over every request, whether every prediction is identical, and the number of items."""
    worst, same = 0.0, set(a) == set(b)
    for doc in a:
        x, y = a[doc], b.get(doc, {})
        if "text" in x:
            same &= x["text"] == y.get("text")
            continue
        la, lb = x["lls"], y.get("lls", [])
        if len(la) > len(lb):
            return float("nan"), False, len(a)
        lb = lb[:len(la)]  # lm-eval lists acc_mutual_info's unconditional requests after the choices
        worst = max(worst, max(abs(p - q) for p, q in zip(la, lb, strict=True)))
        if len(la) > 1:
            same &= max(range(len(la)), key=la.__getitem__) == max(range(len(lb)), key=lb.__getitem__)
    return worst, same, len(a)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="a safetensors folder (default: SmolLM2-135M)")
    parser.add_argument("--tiny", action="store_true", help="use a tiny random Llama from the test factory")
    parser.add_argument("--only", default="", help="comma-separated substrings of the YAML paths to run")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="assay-parity-"))
    if args.tiny:
        model = tiny_model(tmp / "tiny")
    elif args.model is not None:
        model = args.model
    else:
        from assay.demo import real_base

        model = real_base()
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from assay.evaluate.backends.hf import load_after_scan
    from assay.model.ref import resolve

    cases = [c for c in CASES if not args.only or any(s in c[0] for s in args.only.split(","))]
    wrappers = tmp / "tasks"
    wrappers.mkdir()
    names = [wrapper_yaml(wrappers, *c[:3]) for c in cases]
    tm = TaskManager(include_path=str(wrappers))
    lm = HFLM(pretrained=str(model), dtype="float32", device="cpu", batch_size=1)
    backend = load_after_scan(resolve(str(model)), dtype="float32", threads=args.threads)
    print(f"model: {model}   lm-eval {__import__('lm_eval').__version__}")
    header = ("| task | shots | n | metric | assay | lm-eval | max \\|ΔLL\\| | same predictions | s assay / lm-eval |")
    print(header)
    print("|" + "---|" * 9)
    failed = False
    for (yaml_rel, data_dir, splits, shots), name in zip(cases, names, strict=True):
        t0 = time.perf_counter()
        ours = run_assay(backend, yaml_rel, data_dir, splits, shots)
        t1 = time.perf_counter()
        theirs = run_lmeval(lm, tm, name, shots)
        t2 = time.perf_counter()
        worst, same, n = compare_docs(ours["docs"], theirs["docs"])
        failed |= not same
        for metric, a, b in metric_pairs(ours["task"], ours["metrics"], theirs["metrics"]):
            close = (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-4 * max(1.0, abs(b))
            failed |= not close
            print(f"| {yaml_rel} | {ours['task'].num_fewshot} | {n} | {metric} | {a:.4f} | {b:.4f} | "
                  f"{worst:.1e} | {'yes' if same else 'NO'} | {t1 - t0:.1f} / {t2 - t1:.1f} |"
                  + ("" if close else "  <-- differs"))
        sys.stdout.flush()
    backend.close()
    print(json.dumps({"parity": not failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
