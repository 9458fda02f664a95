"""The remote measurement: a model behind a running OpenAI-compatible server (vLLM, llama.cpp server, TGI,
Ollama). Nothing is scanned or loaded here, the server owns the model.

Each request is a streamed ``/v1/completions`` call (server-sent events, :mod:`.server`); time to first token
runs from sending the request (the connection is opened before the clock starts) to the first chunk with text;
decode tokens/s = tokens after the first / time from first to last chunk, the tokens counted by the server's
``usage`` when it reports it, else one per chunk; prefill tokens/s is an estimate, prompt tokens / time to first
token (network and queueing included). A batch size of N is N concurrent requests; its decode and prefill rates
divide the tokens by the time during which at least one request was in that phase. Memory and hardware are the
server's and are not measured.

    >>> r = run_remote_bench("my-finetune", base_url="http://127.0.0.1:8000/v1", base="base-model")
    >>> r.candidate.ttft_s, r.candidate.tokens_counted_by
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from assay.deploy.bench.results import (PROMPT_TEXT, BatchResult, BenchReport, BenchSettings, ModelBench,
                                        check_request_shape, percentile, ratios)
from assay.deploy.bench.server import Server, Stream
from assay.errors import BackendError, DeployError
from assay.evaluate.backends.openai import open_backend
from assay.progress import NULL_PROGRESS, Progress

#: Tokens per English word assumed when the server can count neither with ``/tokenize`` nor with ``usage``.
_TOKENS_PER_WORD = 1.3
#: Most concurrent requests one batch size may open.
MAX_REMOTE_BATCH = 256


def _words(n: int) -> str:
    words = PROMPT_TEXT.split()
    return " ".join(words[i % len(words)] for i in range(max(1, n)))


def _remote_prompt(server: Server, model: str, n: int) -> tuple[str, int | None, str, int | None]:
    """``(prompt, its tokens, how known, server context)``: a prompt of about ``n`` tokens.

    Counted by the server's ``/tokenize`` (vLLM, llama.cpp) when it offers it, else by the ``usage`` of a
    one-token completion; the longest prefix (in characters) of ``n`` words that is not over ``n`` tokens is
    found by bisection. With neither, ``n / 1.3`` words and the count is unknown.
    """
    context: int | None = None

    def by_tokenize(text: str) -> int | None:
        nonlocal context
        # vLLM reads "prompt", llama.cpp's server "content", TGI "inputs" (and answers with a list of tokens).
        status, doc = server.post_json("/tokenize", {"model": model, "prompt": text, "content": text,
                                                     "inputs": text}, root=True)
        if status == 200 and isinstance(doc, list):
            return len(doc)
        if status != 200 or not isinstance(doc, dict):
            return None
        ml = doc.get("max_model_len")
        context = ml if isinstance(ml, int) and ml > 0 else context
        if isinstance(doc.get("count"), int):
            return int(doc["count"])
        return len(doc["tokens"]) if isinstance(doc.get("tokens"), list) else None

    def by_usage(text: str) -> int | None:
        status, doc = server.post_json("/completions", {"model": model, "prompt": text, "max_tokens": 1,
                                                        "temperature": 0.0})
        if status != 200 or not isinstance(doc, dict) or not isinstance(doc.get("usage"), dict):
            return None
        pt = doc["usage"].get("prompt_tokens")
        return pt if isinstance(pt, int) and pt > 0 else None

    guess = max(1, round(n / _TOKENS_PER_WORD))
    for how, count in (("server /tokenize", by_tokenize), ("server usage", by_usage)):
        if count(_words(guess)) is None:
            continue
        full = _words(n)  # every word is at least one token: n words reach n tokens
        lo, hi = 1, len(full)
        best: tuple[str, int] | None = None
        while lo <= hi:
            mid = (lo + hi) // 2
            c = count(full[:mid])
            if c is None:
                break
            if c <= n:
                best, lo = (full[:mid], c), mid + 1
                if c == n and full[mid - 1] != " ":
                    break
            else:
                hi = mid - 1
        if best is None:
            best = (full[:1], count(full[:1]) or 1)
        return best[0], best[1], how, context
    return _words(guess), None, "approximate", None


def _union(intervals: Sequence[tuple[float, float]]) -> float:
    """Total time covered by at least one interval."""
    spans = sorted(intervals)
    if not spans:
        return 0.0
    total = 0.0
    cur_lo, cur_hi = spans[0]
    for lo, hi in spans[1:]:
        if lo > cur_hi:
            total += cur_hi - cur_lo
            cur_lo, cur_hi = lo, hi
        else:
            cur_hi = max(cur_hi, hi)
    return total + (cur_hi - cur_lo)


def _measure_remote(server: Server, model: str, *, settings: BenchSettings, progress: Progress,
                    label: str) -> ModelBench:
    from concurrent.futures import ThreadPoolExecutor

    task = f"bench {label} ({model})"
    progress.start(task, total=None)
    try:
        server.stream(model, "Hello", 2, require_text=False)  # can it stream, and which request extras does it accept
        prompt, n_prompt, how, context = _remote_prompt(server, model, settings.prompt_tokens)
    finally:
        progress.finish(task)
    needed = (n_prompt or settings.prompt_tokens) + settings.output_tokens
    if context is not None and needed > context:
        raise DeployError(f"{model}: prompt + output tokens ({needed}) exceed the server's context of {context}")
    results: list[BatchResult] = []
    counted_by: set[str] = set()
    short = 0
    progress.start(task, total=len(settings.batch_sizes) * (settings.warmup + settings.repeats))
    try:
        for b in settings.batch_sizes:
            runs: list[list[Stream]] = []
            with ThreadPoolExecutor(max_workers=b, thread_name_prefix="assay-bench") as pool:
                for i in range(settings.warmup + settings.repeats):
                    futures = [pool.submit(server.stream, model, prompt, settings.output_tokens) for _ in range(b)]
                    streams = [f.result() for f in futures]
                    if i >= settings.warmup:
                        runs.append(streams)
                    progress.advance(task)
            prefill, decode, rps, out_tps, ttfts, lat = [], [], [], [], [], []
            for streams in runs:
                tokens = []
                for st in streams:
                    if st.completion_tokens is not None:
                        tokens.append(st.completion_tokens)
                        counted_by.add("usage")
                    else:
                        tokens.append(st.chunks)
                        counted_by.add("stream chunks")
                    short += tokens[-1] < settings.output_tokens
                    ttfts.append(st.first - st.start)
                    lat.append(st.end - st.start)
                p_tokens = sum(st.prompt_tokens or n_prompt or settings.prompt_tokens for st in streams)
                prefill_time = _union([(st.start, st.first) for st in streams])
                decode_time = _union([(st.first, st.last) for st in streams])
                wall = max(st.end for st in streams) - min(st.start for st in streams)
                prefill.append(p_tokens / prefill_time if prefill_time > 0 else 0.0)
                decode.append(sum(t - 1 for t in tokens) / decode_time if decode_time > 0 else 0.0)
                rps.append(b / wall)
                out_tps.append(sum(tokens) / wall)
            results.append(BatchResult(
                batch_size=b, repeats=len(runs), ttft_s=statistics.median(ttfts),
                prefill_tokens_per_s=statistics.median(prefill), decode_tokens_per_s=statistics.median(decode),
                latency_p50_s=percentile(lat, 0.5), latency_p95_s=percentile(lat, 0.95),
                requests_per_s=statistics.median(rps), latencies_s=tuple(lat),
                output_tokens_per_s=statistics.median(out_tps)))
    finally:
        progress.finish(task)
    notes = ["nothing was scanned or loaded on this machine: the server owns the model (vet the checkpoint it "
             "serves with `assay scan`); load time, parameters and memory are the server's: remote, not measured",
             "prefill tokens/s is an estimate: prompt tokens / time to first token, network and queueing included"]
    if how == "approximate":
        notes.append(f"prompt length approximate: about {settings.prompt_tokens} tokens at {_TOKENS_PER_WORD} tokens "
                     "per English word (the server counts tokens neither with /tokenize nor in usage)")
    elif n_prompt != settings.prompt_tokens:
        notes.append(f"the prompt has {n_prompt} tokens ({how}): the nearest length the server's tokenizer "
                     f"allows under {settings.prompt_tokens}")
    by = "usage" if counted_by == {"usage"} else "stream chunks"
    if by == "stream chunks":
        notes.append("generated tokens counted as stream chunks (the server reports no usage): a server that "
                     "sends several tokens per chunk is undercounted")
    if short:
        notes.append(f"{short} request(s) ended before {settings.output_tokens} tokens (the server stopped at the "
                     "end-of-sequence token; it ignores ignore_eos): rates use the tokens actually generated")
    first = results[0]
    return ModelBench(model=model, backend="openai", device="remote", dtype=None, parameters=None, scan_s=None,
                      load_s=None, rss_before_load_bytes=None, peak_rss_bytes=None, model_rss_bytes=None,
                      cuda_peak_bytes=None, ttft_s=first.ttft_s, prefill_tokens_per_s=first.prefill_tokens_per_s,
                      decode_tokens_per_s=first.decode_tokens_per_s, latency_p50_s=first.latency_p50_s,
                      latency_p95_s=first.latency_p95_s, batches=tuple(results), notes=tuple(notes),
                      prompt_tokens=n_prompt, prompt_length=how, tokens_counted_by=by)


def run_remote_bench(model: str | None, *, base_url: str, api_key_env: str | None = None, base: str | None = None,
                     prompt_tokens: int = 128, output_tokens: int = 64, batch_sizes: Sequence[int] = (1,),
                     repeats: int = 5, warmup: int = 1, timeout: float = 120.0, tokenizer: Path | None = None,
                     progress: Progress = NULL_PROGRESS) -> BenchReport:
    """Measure ``model`` (and ``base``) served by the OpenAI-compatible server at ``base_url``.

    ``model`` is the served name (None or ``-``: the server's only model); ``base`` another name on the same
    server (e.g. the base of a LoRA adapter vLLM serves by name). The API key is read from the environment
    variable ``api_key_env`` (default ``OPENAI_API_KEY``). Nothing is loaded locally; memory, load time and
    parameters are None in the result. The server is probed first (see
    :class:`~assay.evaluate.backends.openai.ServerCapabilities`): a server that cannot generate is refused, one
    that cannot stream or count tokens is noted, and with a local ``tokenizer`` (or a served name that is a local
    folder) a server that counts tokens differently is warned about in the notes.
    """
    check_request_shape(prompt_tokens=prompt_tokens, output_tokens=output_tokens, repeats=repeats, warmup=warmup,
                        batch_sizes=batch_sizes)
    if max(batch_sizes) > MAX_REMOTE_BATCH:
        raise DeployError(f"batch sizes above {MAX_REMOTE_BATCH} concurrent requests are not measured")
    settings = BenchSettings(prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                             batch_sizes=tuple(sorted(set(batch_sizes))), repeats=repeats, warmup=warmup,
                             threads=None, dtype=None)
    try:
        client = open_backend(model, base_url=base_url, api_key_env=api_key_env, timeout=timeout, max_retries=1,
                              tokenizer=tokenizer)
        client.preflight({"generate"})
        caps = client.capabilities
    except BackendError as exc:
        raise DeployError(exc.message, hint=exc.hint) from None
    server = Server(base_url=client.base_url, api_key=client.api_key, timeout=timeout)
    names = [("candidate", client.model_name)] + ([("base", base)] if base else [])
    measured = [_measure_remote(server, name, settings=settings, progress=progress, label=label)
                for label, name in names]
    cand = measured[0]
    base_bench = measured[1] if base else None
    notes = ["remote server: its hardware and memory are not measured; no memory fit is estimated (run `assay "
             "bench CHECKPOINT --fit-only` on the files it serves)"]
    if base_bench is not None:
        notes.append("candidate and base were measured one after the other on the same server")
    if not caps.streaming:
        notes.append("the server does not stream (stream: true): time to first token is the whole answer's time")
    if not caps.token_counts:
        notes.append("the server reports no token counts (usage): token figures are estimated")
    notes.extend(caps.warnings)
    return BenchReport(settings=settings, hardware=None, candidate=cand, base=base_bench,
                       ratios=ratios(cand, base_bench), fit=None,
                       notes=tuple(notes), backend="openai", base_url=server.base_url)
