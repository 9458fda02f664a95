"""The local measurement: a model loaded in this machine's memory, timed request by request.

Each request is a synthetic prompt of exactly ``prompt_tokens`` tokens followed by ``output_tokens`` greedy
decode steps with the key/value cache, run directly on the model (no sampling, no stop strings, so every run
does the same work). Per run: time to first token = the prefill forward pass plus choosing the first token;
prefill tokens/s = ``batch * prompt_tokens / ttft``; decode tokens/s = ``batch * (output_tokens - 1) /
decode time``; latency = the whole request. ``warmup`` runs per batch size are discarded; figures are medians
over ``repeats`` runs, p50/p95 latency by linear interpolation. Peak memory is the process RSS, sampled every
20 ms from before loading to the end in process, or the kernel's exact peak (``ru_maxrss``) of the fresh process
each model is measured in (and the CUDA allocator's peak on a GPU).

The model is loaded by the ``hf`` evaluation backend, which loads only after the checkpoint scanned safe
(:mod:`.loading`).

    >>> r = run_bench(resolve("./my-finetune"), base=resolve("./base"), batch_sizes=(1, 4))
    >>> r.candidate.decode_tokens_per_s, r.ratios["decode_tokens_per_s"]
"""

from __future__ import annotations

import gc
import inspect
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from assay.deploy.bench.loading import check_context, import_libraries, load
from assay.deploy.bench.machine import RssSampler, describe_hardware
from assay.deploy.bench.results import (PROMPT_TEXT, BatchResult, BenchReport, BenchSettings, ModelBench,
                                        check_request_shape, percentile, ratios)
from assay.deploy.hardware import hardware_fit, shape_from_config
from assay.errors import AssayError, DeployError
from assay.model.ref import ModelRef
from assay.progress import NULL_PROGRESS, Progress


def _prompt_ids(tokenizer: Any, n: int) -> list[int]:
    ids = list(tokenizer(PROMPT_TEXT, add_special_tokens=False)["input_ids"])
    if not ids:
        raise DeployError("the tokenizer produced no tokens for the bench prompt")
    while len(ids) < n:
        ids = ids + ids
    return ids[:n]


def _one_request(model: Any, ids: list[int], batch: int, output_tokens: int, device: str) -> tuple[float, float, float]:
    """``(ttft, decode_seconds, latency)`` of one greedy request."""
    import torch

    x = torch.tensor([ids] * batch, dtype=torch.long, device=device)
    mask = torch.ones_like(x)
    sync: Callable[[], None] = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    t0 = time.perf_counter()
    out = model(input_ids=x, attention_mask=mask, use_cache=True)
    nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
    sync()
    t1 = time.perf_counter()
    # transformers 5 names the key/value cache `cache` (`past_key_values` before, now deprecated).
    cache_kw = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    for _ in range(output_tokens - 1):
        mask = torch.cat([mask, torch.ones_like(nxt)], dim=1)
        past = out.cache if cache_kw == "cache" else out.past_key_values
        out = model(input_ids=nxt, attention_mask=mask, use_cache=True, **{cache_kw: past})
        nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
    sync()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, t2 - t0


def _measure(ref: ModelRef, *, backend: str, dtype: str, settings: BenchSettings, progress: Progress,
             label: str, sample_rss: bool = True) -> tuple[ModelBench, Any]:
    import torch

    import_libraries(ref)
    gc.collect()
    with RssSampler(enabled=sample_rss) as sampler:
        rss0 = sampler.peak
        loaded, scan_s, load_s, load_note = load(ref, backend=backend, dtype=dtype, threads=settings.threads)
        if settings.threads:
            torch.set_num_threads(settings.threads)
        model, tok = loaded.model, loaded.tokenizer
        model.eval()
        param = next(model.parameters())
        device = str(param.device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(param.device)
        max_pos = getattr(model.config, "max_position_embeddings", None)
        if isinstance(max_pos, int) and settings.prompt_tokens + settings.output_tokens > max_pos:
            raise DeployError(f"{ref.spec}: prompt + output tokens ({settings.prompt_tokens + settings.output_tokens}) "
                              f"exceed the model's context of {max_pos}")
        ids = _prompt_ids(tok, settings.prompt_tokens)
        results: list[BatchResult] = []
        task = f"bench {label}"
        progress.start(task, total=len(settings.batch_sizes) * (settings.warmup + settings.repeats))
        with torch.inference_mode():
            for b in settings.batch_sizes:
                runs = []
                for i in range(settings.warmup + settings.repeats):
                    r = _one_request(model, ids, b, settings.output_tokens, device)
                    if i >= settings.warmup:
                        runs.append(r)
                    progress.advance(task)
                ttft = statistics.median(r[0] for r in runs)
                decode = statistics.median(r[1] for r in runs)
                lat = [r[2] for r in runs]
                p50 = percentile(lat, 0.5)
                results.append(BatchResult(
                    batch_size=b, repeats=len(runs), ttft_s=ttft,
                    prefill_tokens_per_s=b * settings.prompt_tokens / ttft,
                    decode_tokens_per_s=(b * (settings.output_tokens - 1) / decode) if settings.output_tokens > 1
                    and decode > 0 else 0.0,
                    latency_p50_s=p50, latency_p95_s=percentile(lat, 0.95), requests_per_s=b / p50,
                    latencies_s=tuple(lat), output_tokens_per_s=b * settings.output_tokens / p50))
        progress.finish(task)
        cuda_peak = int(torch.cuda.max_memory_allocated(param.device)) if device.startswith("cuda") else None
        n_params = sum(p.numel() for p in model.parameters())
        config = model.config.to_dict()
        dtype_name = str(param.dtype).replace("torch.", "")
        notes: list[str] = [load_note] if load_note else []
        gguf = any(ref.path(f).suffix.lower() == ".gguf" for f in ref.files)
        if gguf and dtype_name in ("float32", "bfloat16", "float16"):
            notes.append(f"GGUF weights were dequantised to {dtype_name} by transformers: llama.cpp would run the "
                         "quantised weights faster and smaller")
        close = getattr(loaded, "close", None)
        if callable(close):
            close()
        del model, loaded, tok
        gc.collect()
    first = results[0]
    bench = ModelBench(model=ref.spec, backend=backend, device=device, dtype=dtype_name, parameters=int(n_params),
                       scan_s=scan_s, load_s=load_s, rss_before_load_bytes=rss0, peak_rss_bytes=sampler.peak,
                       model_rss_bytes=max(0, sampler.peak - rss0), cuda_peak_bytes=cuda_peak, ttft_s=first.ttft_s,
                       prefill_tokens_per_s=first.prefill_tokens_per_s, decode_tokens_per_s=first.decode_tokens_per_s,
                       latency_p50_s=first.latency_p50_s, latency_p95_s=first.latency_p95_s, batches=tuple(results),
                       notes=tuple(notes), prompt_tokens=settings.prompt_tokens)
    return bench, config


def _worker(ref: ModelRef, backend: str, dtype: str, settings: BenchSettings, label: str) -> dict[str, Any]:
    """Entry point of the measuring subprocess: the result as plain data, or the error to re-raise."""
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # this process is ours alone: keep the caller's stderr clean
    except ImportError:
        pass
    try:
        bench, config = _measure(ref, backend=backend, dtype=dtype, settings=settings, progress=NULL_PROGRESS,
                                 label=label, sample_rss=False)
    except AssayError as exc:
        return {"error": {"message": exc.message, "hint": exc.hint, "exit_code": exc.exit_code}}
    import resource

    # ru_maxrss is the exact process peak (KiB on Linux), which the sampler can only approach.
    peak = max(bench.peak_rss_bytes or 0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    data = asdict(bench)
    data["peak_rss_bytes"] = peak
    before = bench.rss_before_load_bytes
    data["model_rss_bytes"] = max(0, peak - before) if before is not None else None
    return {"bench": data, "config": config}


def _warm_up() -> None:
    """Pool initializer: import the heavy libraries before any measurement starts."""
    import torch  # noqa: F401
    import transformers

    _ = transformers.AutoModelForCausalLM, transformers.AutoTokenizer


def _ready() -> bool:
    return True


def _from_worker(out: dict[str, Any]) -> tuple[ModelBench, Any]:
    if "error" in out:
        err = DeployError(out["error"]["message"], hint=out["error"]["hint"])
        err.exit_code = int(out["error"]["exit_code"])
        raise err
    data = out["bench"]
    data["batches"] = tuple(BatchResult(**{**b, "latencies_s": tuple(b["latencies_s"])}) for b in data["batches"])
    data["notes"] = tuple(data["notes"])
    return ModelBench(**data), out["config"]


def _measure_all(refs: Sequence[tuple[str, ModelRef]], *, backend: str, dtype: str, settings: BenchSettings,
                 progress: Progress, isolate: bool) -> list[tuple[ModelBench, Any]]:
    """Measure each ``(label, ref)`` one after the other.

    With ``isolate``, each model runs in its own fresh process, so neither model's load time nor memory counts
    the other's. The processes import torch and transformers side by side first (nothing is being measured
    then), and the measurements run strictly one at a time.
    """
    if not isolate:
        return [_measure(ref, backend=backend, dtype=dtype, settings=settings, progress=progress, label=label)
                for label, ref in refs]
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    pools = [ctx.Pool(1, initializer=_warm_up) for _ in refs]
    try:
        progress.start("bench: starting worker processes", total=None)
        for pending in [p.apply_async(_ready) for p in pools]:
            pending.get()
        progress.finish("bench: starting worker processes")
        results = []
        for pool, (label, ref) in zip(pools, refs, strict=True):
            task = f"bench {label}"
            progress.start(task, total=None)
            try:
                results.append(_from_worker(pool.apply(_worker, (ref, backend, dtype, settings, label))))
            finally:
                progress.finish(task)
                pool.close()
        return results
    finally:
        for pool in pools:
            pool.terminate()
            pool.join()


def run_bench(ref: ModelRef, *, backend: str = "hf", prompt_tokens: int = 128, output_tokens: int = 64,
              batch_sizes: Sequence[int] = (1,), repeats: int = 5, warmup: int = 1, threads: int | None = None,
              dtype: str = "float32", base: ModelRef | None = None, isolate: bool = True,
              progress: Progress = NULL_PROGRESS) -> BenchReport:
    """Measure ``ref`` (and ``base`` in the same run) and return the :class:`BenchReport`.

    With ``isolate`` (the default) each model is measured in a fresh Python process, so load time and memory
    are each model's own; without it, everything runs in this process (a second model then reuses memory the
    first one freed, and its RSS growth is understated).
    """
    check_request_shape(prompt_tokens=prompt_tokens, output_tokens=output_tokens, repeats=repeats, warmup=warmup,
                        batch_sizes=batch_sizes)
    if threads is not None and threads < 1:
        raise DeployError("--threads must be at least 1")
    settings = BenchSettings(prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                             batch_sizes=tuple(sorted(set(batch_sizes))), repeats=repeats, warmup=warmup,
                             threads=threads, dtype=dtype)
    for r in (ref, base):
        if r is not None:
            check_context(r, prompt_tokens + output_tokens)
    refs = [("candidate", ref)] + ([("base", base)] if base is not None else [])
    measured = _measure_all(refs, backend=backend, dtype=dtype, settings=settings, progress=progress, isolate=isolate)
    cand, config = measured[0]
    base_bench = measured[1][0] if base is not None else None
    if cand.parameters is None:
        raise DeployError(f"{ref.spec}: the model's parameters could not be counted, so no memory fit is estimated")
    fit = hardware_fit(shape_from_config(config, parameters=cand.parameters), batch=max(settings.batch_sizes))
    notes: tuple[str, ...] = ()
    if base is not None:
        notes = ("candidate and base were measured one after the other, each in a fresh process",) if isolate else (
            "candidate and base were measured one after the other in one process: the base's memory growth is "
            "understated",)
    return BenchReport(settings=settings, hardware=describe_hardware(device=cand.device), candidate=cand,
                       base=base_bench, ratios=ratios(cand, base_bench), fit=fit, notes=notes)

