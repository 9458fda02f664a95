"""``assay eval``: score a model on tasks and, with ``--base``, compare it with its base item by item.

    assay eval ./ft --task tasks/capitals.yaml --base ./base --json
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import click

from assay.cli.common import (EXIT_FAIL, EXIT_PASS, check_device, console, download_option, emit_json, err_console,
                              json_option, progress, revision_option)
from assay.errors import EvalError, UsageError
from assay.formatting import num


@click.command("eval")
@click.argument("model")
@click.option("--task", "tasks", multiple=True, required=True, metavar="TASK",
              help="A task YAML file (assay's or lm-evaluation-harness's) or a suite such as builtin:knowledge. "
                   "Repeat for several.")
@click.option("--base", default=None, metavar="BASE", help="The base model: run on the same items and compare.")
@click.option("--num-fewshot", type=int, default=None, metavar="N",
              help="Few-shot examples per item for every task (as lm-evaluation-harness: a task file that says "
                   "num_fewshot: 0 keeps 0; its own sampler draws them).")
@click.option("--data", "data", multiple=True, metavar="[TASK:]SPLIT=FILE",
              help="Local data for an lm-evaluation-harness task YAML whose dataset is on the hub (assay never "
                   "downloads): e.g. --data test=arc_easy_test.jsonl. Repeat per split; prefix TASK: to aim at "
                   "one task.")
@click.option("--allow-task-code", is_flag=True,
              help="Run a task file's own Python helpers (lm-evaluation-harness `!function`: process_docs, "
                   "doc_to_text, process_results...). Without it such a task is refused.")
@click.option("--limit", type=int, default=None, metavar="N", help="Evaluate only the first N items of each task.")
@click.option("--backend", type=click.Choice(["hf", "openai"]), default="hf", show_default=True,
              help="hf: transformers in this process; openai: an OpenAI-compatible server.")
@click.option("--base-url", default=None, metavar="URL", help="openai backend: the server's URL.")
@click.option("--api-key-env", default=None, metavar="VAR",
              help="openai backend: environment variable holding the API key.")
@click.option("--tokenizer", "tokenizer_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="openai backend: a local folder with the served model's tokenizer.json, to check "
                                  "that the server counts tokens the same way (default: the served name, if it is a "
                                  "local folder).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default="float32",
              show_default=True, help="hf backend: weight and compute precision.")
@click.option("--device", default="cpu", show_default=True, help="hf backend: cpu, cuda or cuda:N.")
@click.option("--threads", type=int, default=None, metavar="N",
              help="hf backend: torch threads (default: the usable cores not already busy, at most 8; on 2 "
                   "cores, 2 only when the machine is idle, as 1 measured 2-4x faster than 2 under shared load).")
@click.option("--batch-size", type=int, default=None, metavar="N", help="hf backend: most rows per batch.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the result cache.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the bootstrap and permutation tests.")
@click.option("--log-items", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="Write one JSON line per item: choice log-likelihoods, prediction, per-item metrics.")
@revision_option
@download_option
@json_option
def command(model: str, tasks: tuple[str, ...], base: str | None, num_fewshot: int | None, data: tuple[str, ...],
            allow_task_code: bool, limit: int | None,
            backend: str, base_url: str | None, api_key_env: str | None, tokenizer_dir: Path | None, dtype: str,
            device: str,
            threads: int | None, batch_size: int | None, no_cache: bool, seed: int, log_items: Path | None,
            revision: str | None, download: bool, as_json: bool) -> int:
    """Score MODEL on tasks; with --base, compare it with its base on the same items.

    MODEL and BASE are folders, weights files or org/name[@revision] in the local Hugging Face cache
    (--revision applies to MODEL).

    Multiple choice is scored by log-likelihood exactly as lm-evaluation-harness scores it (acc, acc_norm,
    acc_bytes), generation by exact match after answer extraction (GSM8K strict and flexible), perplexity by
    rolling windows (token/word perplexity, bits per byte). Each item's context is computed once for all its
    choices and a shared few-shot prefix once for all items. Per-item results are cached (SQLite in the user
    cache folder, or ASSAY_CACHE_DIR), so a base is evaluated once and an interrupted run resumes.

    With --base, each metric gets the delta, a seeded 95% paired bootstrap interval, an exact McNemar p-value
    (accuracy) or a paired permutation p-value, Holm's correction across tasks, the minimum detectable effect,
    and the items gained and lost. The model is scanned first and loaded only if it is safe.

    With --backend openai the server is probed before the first item (prompt log-probabilities, token counts,
    streaming, served models); a task it cannot score is refused at once, naming what is missing
    (docs/servers.md has a table of servers).

    \b
    Examples:
      assay eval ./my-finetune --task tasks/capitals.yaml
      assay eval ./my-finetune --base ./base --task arc_local.yaml --num-fewshot 5 --json
      assay eval ./my-finetune --base ./base --task builtin:knowledge --log-items items.jsonl

    \b
    A task YAML (assay's format):
      name: capitals
      data: capitals.jsonl          # JSONL, JSON, CSV or Parquet
      prompt: "Q: {{question}}\\nA:"
      choices: options              # a field with a list
      label: answer                 # index or text of the right choice
      num_fewshot: 0
    lm-evaluation-harness task YAMLs run unchanged, with lm-evaluation-harness's semantics (docs/lm-eval-tasks.md):
    over local files (dataset_path: json with data_files), or a hub dataset_path pointed at local copies with
    --data SPLIT=FILE; their `!function` helpers run only with --allow-task-code.

    Exit codes: 0 done (no regression), 1 a regression against --base (an interval entirely on the worse
    side of zero) or an unsafe model, 2 bad input.
    """
    if limit is not None and limit <= 0:
        raise UsageError("--limit must be a positive number")
    if num_fewshot is not None and num_fewshot < 0:
        raise UsageError("--num-fewshot must be 0 or more")
    if threads is not None and threads <= 0:
        raise UsageError("--threads must be a positive number")
    if batch_size is not None and batch_size <= 0:
        raise UsageError("--batch-size must be a positive number")
    if backend == "hf" and (base_url or api_key_env or tokenizer_dir):
        raise UsageError("--base-url, --api-key-env and --tokenizer apply to --backend openai")
    if backend == "openai" and not base_url:
        raise UsageError("--backend openai needs --base-url")
    if backend == "hf":
        check_device(device)
    from assay.evaluate.cache import ResultCache
    from assay.evaluate.compare import eval_document, regressions
    from assay.evaluate.loading import load_tasks
    from assay.evaluate.pair import compare_models
    from assay.evaluate.runner import item_log_record, validate_task
    from assay.evaluate.tasks import Task, TaskKind

    task_list: list[Task] = []
    data_files = _data_option(data)
    if len(tasks) > 1 and any(":" not in k for k in data_files):
        raise UsageError("with several --task, name the task each --data is for: --data TASK:SPLIT=FILE")
    for spec in tasks:
        task_list.extend(load_tasks(spec, num_fewshot=num_fewshot, data=data_files, allow_task_code=allow_task_code))
    for t in task_list:
        for note in t.notes:
            err_console().print(f"note: {t.name}: {note}", highlight=False, markup=False, soft_wrap=True)
    names = [t.name for t in task_list]
    if len(set(names)) != len(names):
        raise UsageError(f"a task is given twice: {', '.join(sorted({n for n in names if names.count(n) > 1}))}")
    for t in task_list:
        validate_task(t)
    kl_tasks = [t for t in task_list if t.kind == TaskKind.KL]
    task_list = [t for t in task_list if t.kind != TaskKind.KL]
    if kl_tasks and base is None:
        raise UsageError(f"{kl_tasks[0].name} measures drift from the base: give --base")
    cache = None if no_cache else ResultCache()
    opts = {"backend": backend, "dtype": dtype, "device": device, "threads": threads, "batch_size": batch_size,
            "base_url": base_url, "api_key_env": api_key_env, "tokenizer": tokenizer_dir}
    model_ref: Any = model
    base_ref: Any = base
    if backend == "hf":  # resolve both before any work, so a mistyped MODEL is not found only after the base ran
        from assay.model.ref import resolve

        model_ref = resolve(model, revision=revision, download=download)
        base_ref = resolve(base, download=download) if base is not None else None
    elif revision is not None or download:
        raise UsageError("--revision and --download apply to --backend hf (the server names its own model)")
    log_fh = None
    if log_items is not None:
        try:
            log_fh = log_items.open("w", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write --log-items {log_items}: {exc.strerror}") from exc
    try:
        with progress() as prog:
            run = compare_models(model_ref, base_ref, open_backend=lambda _role, spec: _open_backend(spec, opts, prog),
                                 tasks=task_list, kl=kl_tasks, limit=limit, kl_limit=limit, seed=seed, cache=cache,
                                 progress=prog)
        results = run.candidate.results or {}
        base_results = run.base.results if run.base is not None else None
        comparison = run.comparison
        if log_fh is not None:
            for role, res in (("candidate", results), ("base", base_results or {})):
                for name, r in res.items():
                    for item in r.per_item:
                        log_fh.write(json.dumps({"model": role, **item_log_record(name, item)},
                                                ensure_ascii=False) + "\n")
    finally:
        if log_fh is not None:
            log_fh.close()
        if cache is not None:
            cache.close()
    model_info = dataclasses.asdict(run.candidate.info) if run.candidate.info is not None else {}
    base_info = dataclasses.asdict(run.base.info) if run.base is not None and run.base.info is not None else {}
    servers = {role: r.server for role, r in (("base", run.base), ("candidate", run.candidate))
               if r is not None and r.server is not None}
    doc = eval_document(model=model, results=results, base=base, base_results=base_results, comparison=comparison,
                        model_info=model_info, base_info=base_info,
                        settings={"limit": limit, "num_fewshot": num_fewshot, "seed": seed, "backend": backend,
                                  "dtype": dtype, "device": device})
    if run.kl:
        from assay.evaluate.kl import kl_document

        for name, drift in run.kl.items():
            doc["tasks"][name] = kl_document(drift)
    if servers:
        doc["server"] = servers
        for role, caps in servers.items():
            for warning in caps["warnings"]:
                err_console().print(f"[yellow]warning ({role}):[/yellow] {warning}")
    regressed = regressions(comparison or {})
    if as_json:
        emit_json(doc)
    else:
        _print_human(doc)
    return EXIT_FAIL if regressed else EXIT_PASS


def _data_option(values: tuple[str, ...]) -> dict[str, list[Path]]:
    """``--data [TASK:]SPLIT=FILE`` values, by ``[TASK:]SPLIT`` (a split given twice gets both files, in order)."""
    out: dict[str, list[Path]] = {}
    for value in values:
        key, sep, file = value.partition("=")
        if not sep or not key or not file:
            raise UsageError(f"--data {value!r}: expected [TASK:]SPLIT=FILE, e.g. --data test=arc_easy_test.jsonl")
        path = Path(file).expanduser()
        if not path.is_file():
            raise UsageError(f"--data {value}: file not found: {file}")
        out.setdefault(key, []).append(path)
    return out


def _open_backend(spec: Any, opts: dict[str, Any], prog: Any) -> Any:
    """A backend for ``spec``: a server's model name (openai) or a resolved :class:`ModelRef` (hf)."""
    if opts["backend"] == "openai":
        try:
            from assay.evaluate.backends.openai import open_backend
        except ImportError as exc:
            raise EvalError("the openai backend is not available in this installation") from exc
        if not opts["base_url"]:
            raise UsageError("--backend openai needs --base-url")
        return open_backend(spec, base_url=opts["base_url"], api_key_env=opts["api_key_env"],
                            tokenizer=opts["tokenizer"])
    from assay.evaluate.backends.hf import load_after_scan

    return load_after_scan(spec, dtype=opts["dtype"], device=opts["device"], threads=opts["threads"],
                           batch_size=opts["batch_size"], progress=prog)


def _fmt(x: Any, digits: int = 4) -> str:
    return num(x, f".{digits}f", missing="-") if isinstance(x, float) or x is None else str(x)


def _print_human(doc: dict[str, Any]) -> None:
    from rich.table import Table

    out = console()
    if not doc["base"]:
        table = Table(title=f"assay eval {doc['model']}")
        for col in ("task", "n", "metric", "value", "stderr"):
            table.add_column(col)
        for name, t in doc["tasks"].items():
            for m, v in t["metrics"].items():
                table.add_row(name, str(t["n"]), m, _fmt(v), _fmt(t.get("stderr", {}).get(m)))
        out.print(table)
        return
    table = Table(title=f"{doc['model']} against {doc['base']}")
    for col in ("task", "metric", "n", "base", "cand", "delta [95% CI]", "p (Holm)", "MDE", "+/-", "change"):
        table.add_column(col, overflow="fold")
    notes = set()
    for name, per in doc["comparison"].items():
        for m, c in per.items():
            style = "red" if c["regression"] else None
            table.add_row(name, m, str(c["n"]), _fmt(c["base"], 3), _fmt(c["candidate"], 3),
                          f"{_fmt(c['delta'], 3)} [{_fmt(c['ci'][0], 3)}, {_fmt(c['ci'][1], 3)}]",
                          f"{_fmt(c['p'], 3)} ({_fmt(c['p_holm'], 3)})", _fmt(c["mde"], 3),
                          f"+{len(c['gained'])}/-{len(c['lost'])}", c.get("change", ""), style=style)
            if c.get("note"):
                notes.add(f"{m}: {c['note']}")
    out.print(table)
    for note in sorted(notes):
        out.print(note, style="dim", markup=False)
    drift = {n: t for n, t in doc["tasks"].items() if t.get("kind") == "kl"}
    if drift:
        kl_table = Table(title="drift from the base (KL, nats per token)")
        for col in ("task", "metric", "value"):
            kl_table.add_column(col)
        for name, t in drift.items():
            for m, v in t["metrics"].items():
                kl_table.add_row(name, m, _fmt(v))
        out.print(kl_table)
        for name, t in drift.items():
            if t.get("note"):
                out.print(f"{name}: {t['note']}", style="dim", markup=False)
    if doc["regressions"]:
        err_console().print("[red]regression:[/red] " + ", ".join(f"{r['task']}/{r['metric']}"
                                                                   for r in doc["regressions"]))
