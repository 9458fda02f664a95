"""``assay bench``: measured speed and memory of a model on this machine (and of its base, in the same run), or
measured speed of a model behind a running OpenAI-compatible server (``--backend openai``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from assay.cli.common import (EXIT_PASS, console, download_option, emit_json, json_option, progress,
                              revision_option)
from assay.errors import UsageError
from assay.formatting import human_bytes


def _sizes(text: tuple[str, ...]) -> tuple[int, ...]:
    out: list[int] = []
    for chunk in text:
        for part in chunk.split(","):
            try:
                out.append(int(part))
            except ValueError as exc:
                raise UsageError(f"--batch-size wants integers (e.g. 1,4,8), got {part!r}") from exc
    return tuple(out) or (1,)


@click.command("bench")
@click.argument("model")
@click.option("--base", default=None, metavar="BASE", help="Measure this base model too, in the same run; show ratios.")
@click.option("--backend", type=click.Choice(["hf", "openai"]), default="hf", show_default=True,
              help="Where the model runs (hf: transformers here, CPU or CUDA, each model in a fresh process; "
                   "openai: a running OpenAI-compatible server at --base-url, MODEL is the served name).")
@click.option("--base-url", default=None, metavar="URL",
              help="openai: the server, e.g. http://127.0.0.1:8000/v1.")
@click.option("--api-key-env", default=None, metavar="VAR",
              help="openai: environment variable holding the API key (default OPENAI_API_KEY; never a flag).")
@click.option("--tokenizer", "tokenizer_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              metavar="DIR", help="openai: a local folder with the served model's tokenizer.json, to check the "
                                  "server's token counts against (default: the served name, if it is a local "
                                  "folder).")
@click.option("--prompt-tokens", type=int, default=128, show_default=True, help="Prompt length in tokens.")
@click.option("--output-tokens", type=int, default=64, show_default=True, help="Tokens generated per request.")
@click.option("--batch-size", "batch_sizes", multiple=True, default=("1",), show_default=True,
              help="Batch size(s) to measure throughput at: repeat or comma-separate (1,4,8).")
@click.option("--repeats", type=int, default=5, show_default=True, help="Measured requests per batch size.")
@click.option("--warmup", type=int, default=1, show_default=True, help="Discarded warm-up requests per batch size.")
@click.option("--threads", type=int, default=None, help="hf: torch threads (default: torch's choice).")
@click.option("--dtype", type=click.Choice(["float32", "bfloat16", "float16"]), default=None,
              help="hf: weight dtype in memory (default float32).")
@click.option("--fit-only", is_flag=True,
              help="Only estimate memory at 16/8/4 bits and the devices it fits, from headers (no loading).")
@click.option("--context", type=int, default=None,
              help="Context length the key/value cache is sized for (default: the model's maximum).")
@revision_option
@download_option
@json_option
def command(model: str, base: str | None, backend: str, base_url: str | None, api_key_env: str | None,
            tokenizer_dir: Path | None, prompt_tokens: int, output_tokens: int, batch_sizes: tuple[str, ...],
            repeats: int, warmup: int,
            threads: int | None, dtype: str | None, fit_only: bool, context: int | None, revision: str | None,
            download: bool, as_json: bool) -> int:
    """Measure speed and memory on this machine, or the speed of a running server.

    Load time, time to first token, prefill and decode tokens per second, p50/p95 latency over repeated
    requests, throughput at each batch size, peak memory (process RSS; CUDA peak on a GPU), and which
    common GPUs the model fits at 16/8/4 bits. Warm-up runs are excluded. With --base, both are measured in
    one run and the candidate/base ratios are shown. The model is loaded only after it scanned safe.

    With --backend openai, MODEL is a model served at --base-url (vLLM, llama.cpp server, TGI, Ollama; `-`: the
    server's only model) and --base another name on the same server. Streamed completions give time to first
    token and decode speed; a batch size of N is N concurrent requests. Nothing is scanned or loaded here, so
    load time and memory are the server's and are not measured.

    \b
    Examples:
      assay bench ./my-finetune --prompt-tokens 256 --output-tokens 64 --batch-size 1,4
      assay bench ./my-finetune --base ./base-model --json > bench.json
      assay bench ./model.gguf --fit-only --context 8192 --batch-size 8
      assay bench my-lora --base base-model --backend openai --base-url http://127.0.0.1:8000/v1 --batch-size 1,8
      assay cost --bench bench.json --gpu-price-per-hour 1.2 --tokens-in 800 --tokens-out 200 ...

    Exit codes: 0 measured, 1 the model scanned unsafe (it is not loaded), 2 bad input or server unreachable.
    """
    from assay.deploy.bench import bench_document, run_bench
    from assay.model.ref import resolve

    if backend == "openai":
        return _remote(model, base=base, base_url=base_url, api_key_env=api_key_env, tokenizer=tokenizer_dir,
                       prompt_tokens=prompt_tokens,
                       output_tokens=output_tokens, batch_sizes=_sizes(batch_sizes), repeats=repeats, warmup=warmup,
                       ignored={"--threads": threads is not None, "--dtype": dtype is not None, "--fit-only": fit_only,
                                "--context": context is not None, "--revision": revision is not None,
                                "--download": download},
                       as_json=as_json)
    if base_url or api_key_env or tokenizer_dir:
        raise UsageError("--base-url, --api-key-env and --tokenizer are for --backend openai (a running server)")
    dtype = dtype or "float32"
    if context is not None and context < 0:
        raise UsageError(f"--context must be 0 or more, got {context}")
    ref = resolve(model, revision=revision, download=download)
    if fit_only:
        return _fit_only(ref, context=context, batch=max(_sizes(batch_sizes)), as_json=as_json)
    base_ref = resolve(base, download=download) if base else None
    with progress() as p:
        report = run_bench(ref, backend=backend, prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                           batch_sizes=_sizes(batch_sizes), repeats=repeats, warmup=warmup, threads=threads,
                           dtype=dtype, base=base_ref, progress=p)
    if context is not None:
        from dataclasses import replace

        from assay.deploy.hardware import hardware_fit

        if report.fit is not None:
            report = replace(report, fit=hardware_fit(report.fit.shape, context=context, batch=report.fit.batch))
    if as_json:
        emit_json(bench_document(report))
    else:
        render(report)
    return EXIT_PASS


def _remote(model: str, *, base: str | None, base_url: str | None, api_key_env: str | None,
            tokenizer: Path | None, prompt_tokens: int,
            output_tokens: int, batch_sizes: tuple[int, ...], repeats: int, warmup: int, ignored: dict[str, bool],
            as_json: bool) -> int:
    from assay.deploy.bench import bench_document, run_remote_bench

    if not base_url:
        raise UsageError("--backend openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    given = [name for name, on in ignored.items() if on]
    if given:
        raise UsageError(f"{', '.join(given)} cannot apply to --backend openai: the server owns the model")
    with progress() as p:
        report = run_remote_bench(model, base_url=base_url, api_key_env=api_key_env, base=base, tokenizer=tokenizer,
                                  prompt_tokens=prompt_tokens, output_tokens=output_tokens, batch_sizes=batch_sizes,
                                  repeats=repeats, warmup=warmup, progress=p)
    if as_json:
        emit_json(bench_document(report))
    else:
        render(report)
    return EXIT_PASS


def _fit_only(ref: Any, *, context: int | None, batch: int, as_json: bool) -> int:
    from assay.deploy.bench import fit_document
    from assay.deploy.hardware import hardware_fit, shape_from_inventory
    from assay.model.inventory import open_model

    fit = hardware_fit(shape_from_inventory(open_model(ref)), context=context, batch=batch)
    if as_json:
        emit_json({"schema": "assay.bench/1", "model": ref.spec, "fit_only": True, "candidate": None,
                   "base": None, "fit": fit_document(fit)})
    else:
        console().print(f"[bold]{ref.spec}[/bold]: {fit.shape.parameters:,} parameters (from headers, not loaded)")
        _render_fit(fit)
    return EXIT_PASS


_not_measured = "remote: not measured"


def _mib(n: int | None) -> str:
    return "-" if n is None else human_bytes(n)


def _devices(names: list[str], total: int) -> str:
    if not names:
        return "[red]none of the listed devices[/red]"
    short = [n.replace("NVIDIA ", "").replace(" (unified)", "") for n in names]
    prefix = f"all {total} listed: " if len(names) == total else ""
    return prefix + ", ".join(short)


def render(report: Any) -> None:
    """Print a bench report."""
    from rich.table import Table

    out = console()
    s = report.settings
    remote = report.hardware is None
    if remote:
        out.print(f"[bold]Server:[/bold] {report.base_url} (remote: its hardware and memory are not measured; "
                  "nothing was scanned or loaded on this machine)")
        cand = report.candidate
        length = "" if cand.prompt_length == "exact" else f" ({cand.prompt_length})"
        out.print(f"[bold]Requests:[/bold] {cand.prompt_tokens or '~' + str(s.prompt_tokens)} prompt tokens"
                  f"{length}, {s.output_tokens} output tokens (counted by {cand.tokens_counted_by}), "
                  f"{s.repeats} measured after {s.warmup} warm-up; batch size N = N concurrent requests")
    else:
        out.print(f"[bold]Hardware:[/bold] {report.hardware.description}")
        out.print(f"[bold]Requests:[/bold] {s.prompt_tokens} prompt tokens, {s.output_tokens} output tokens, "
                  f"{s.repeats} measured after {s.warmup} warm-up, dtype {s.dtype}")
    models = [("candidate", report.candidate)] + ([("base", report.base)] if report.base is not None else [])
    t = Table(title="Speed and memory (smallest batch size)", title_justify="left")
    t.add_column("")
    for label, m in models:
        t.add_column(f"{label}\n{m.model}", justify="right")
    if report.ratios:
        t.add_column("ratio", justify="right")
    rows: list[tuple[str, str, Callable[[Any], str]]] = [
            ("parameters", "parameters", lambda v: f"{v:,}"), ("load (s)", "load_s", lambda v: f"{v:.2f}"),
            ("time to first token (s)", "ttft_s", lambda v: f"{v:.4f}"),
            ("prefill tokens/s", "prefill_tokens_per_s", lambda v: f"{v:,.1f}"),
            ("decode tokens/s", "decode_tokens_per_s", lambda v: f"{v:,.1f}"),
            ("latency p50 (s)", "latency_p50_s", lambda v: f"{v:.3f}"),
            ("latency p95 (s)", "latency_p95_s", lambda v: f"{v:.3f}"),
            ("memory (RSS growth)", "model_rss_bytes", _mib), ("peak RSS", "peak_rss_bytes", _mib)]
    if remote:
        rows = [r for r in rows if r[1] not in ("parameters", "load_s")]
        rows[1] = ("prefill tokens/s (estimate)", *rows[1][1:])
    for name, attr, fmt in rows:
        cells = [_not_measured if getattr(m, attr) is None else fmt(getattr(m, attr)) for _, m in models]
        if report.ratios:
            r = report.ratios.get(attr)
            cells.append("-" if r is None else f"{r:.2f}x")
        t.add_row(name, *cells)
    out.print(t)
    b = Table(title="Throughput by batch size", title_justify="left")
    for col in ("model", "batch", "decode tok/s", "prefill tok/s", "output tok/s", "requests/s", "p50 (s)", "p95 (s)"):
        b.add_column(col, justify="right" if col != "model" else "left")
    for label, m in models:
        for row in m.batches:
            tps = "-" if row.output_tokens_per_s is None else f"{row.output_tokens_per_s:,.1f}"
            b.add_row(label, str(row.batch_size), f"{row.decode_tokens_per_s:,.1f}", f"{row.prefill_tokens_per_s:,.1f}",
                      tps, f"{row.requests_per_s:.2f}", f"{row.latency_p50_s:.3f}", f"{row.latency_p95_s:.3f}")
    out.print(b)
    if report.fit is not None:
        _render_fit(report.fit)
    seen: set[str] = set()
    for note in (*report.candidate.notes, *(report.base.notes if report.base else ()), *report.notes):
        if note not in seen:
            seen.add(note)
            out.print(f"[dim]note: {note}[/dim]")


def _render_fit(fit: Any) -> None:
    from rich.table import Table

    out = console()
    f = Table(title=f"Memory needed (context {fit.context:,}, batch {fit.batch}) and where it fits",
              title_justify="left")
    f.add_column("bits", justify="right")
    f.add_column("weights", justify="right")
    f.add_column("KV cache", justify="right")
    f.add_column("overhead", justify="right")
    f.add_column("total", justify="right")
    f.add_column("fits")
    for e in fit.estimates:
        row = [x for x in fit.fits if x.bits == e.bits]
        f.add_row(str(e.bits), _mib(e.weights_bytes), _mib(e.kv_cache_bytes), _mib(e.overhead_bytes),
                  _mib(e.total_bytes),
                  _devices([x.device.name for x in row if x.fits], len(row)))
    out.print(f)
    for note in fit.notes:
        out.print(f"[dim]note: {note}[/dim]")
