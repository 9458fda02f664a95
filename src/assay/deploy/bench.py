"""Measure a model's speed and memory on this machine: load time, time to first token, prefill and decode
throughput, latency percentiles over repeated requests, throughput at several batch sizes, peak memory.

Each request is a synthetic prompt of exactly ``prompt_tokens`` tokens followed by ``output_tokens`` greedy
decode steps with the key/value cache, run directly on the model (no sampling, no stop strings, so every run
does the same work). Per run: time to first token = the prefill forward pass plus choosing the first token;
prefill tokens/s = ``batch * prompt_tokens / ttft``; decode tokens/s = ``batch * (output_tokens - 1) /
decode time``; latency = the whole request. ``warmup`` runs per batch size are discarded; figures are medians
over ``repeats`` runs, p50/p95 latency by linear interpolation. Peak memory is the process RSS, sampled every
20 ms from before loading to the end in process, or the kernel's exact peak (``ru_maxrss``) of the fresh process
each model is measured in (and the CUDA allocator's peak on a GPU).

The model is loaded by the ``hf`` evaluation backend, which loads only after the checkpoint scanned safe.

:func:`run_remote_bench` measures a model behind a running OpenAI-compatible server (vLLM, llama.cpp server, TGI,
Ollama) instead: nothing is scanned or loaded here, the server owns the model. Each request is a streamed
``/v1/completions`` call (server-sent events); time to first token runs from sending the request (the connection
is opened before the clock starts) to the first chunk with text; decode tokens/s = tokens after the first /
time from first to last chunk, the tokens counted by the server's ``usage`` when it reports it, else one per
chunk; prefill tokens/s is an estimate, prompt tokens / time to first token (network and queueing included).
A batch size of N is N concurrent requests; its decode and prefill rates divide the tokens by the time during
which at least one request was in that phase. Memory and hardware are the server's and are not measured.

    >>> r = run_bench(resolve("./my-finetune"), base=resolve("./base"), batch_sizes=(1, 4))
    >>> r.candidate.decode_tokens_per_s, r.ratios["decode_tokens_per_s"]
    >>> r = run_remote_bench("my-finetune", base_url="http://127.0.0.1:8000/v1", base="base-model")
"""

from __future__ import annotations

import gc
import inspect
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from assay.errors import BackendError, DeployError
from assay.evaluate.backends.openai import error_detail
from assay.model.ref import ModelRef
from assay.progress import NULL_PROGRESS, Progress

#: A neutral English passage; its tokens are repeated to build prompts of the requested length.
_PROMPT_TEXT = (
    "The committee met on Tuesday to review the quarterly figures. Sales rose in the northern region, while "
    "costs in logistics fell after the new routing system was introduced. Several members asked for a clearer "
    "breakdown of the marketing budget, and the chair agreed to circulate a revised table before the next meeting. "
)
_SAMPLE_INTERVAL_S = 0.02


@dataclass(frozen=True)
class BatchResult:
    """Measurements at one batch size (medians over the repeats)."""

    batch_size: int
    """Concurrent sequences per request."""
    repeats: int
    """Measured runs (warm-up excluded)."""
    ttft_s: float
    """Time to first token, seconds."""
    prefill_tokens_per_s: float
    """Prompt tokens processed per second, all sequences together."""
    decode_tokens_per_s: float
    """Output tokens generated per second after the first, all sequences together."""
    latency_p50_s: float
    """Median whole-request latency, seconds."""
    latency_p95_s: float
    """95th-percentile whole-request latency, seconds."""
    requests_per_s: float
    """Completed sequences per second at the median latency (openai: requests / wall time of a run, median)."""
    latencies_s: tuple[float, ...]
    """Every measured latency, in run order (openai: one per request, ``batch_size`` per run)."""
    output_tokens_per_s: float | None = None
    """End-to-end throughput: generated tokens / wall time of a run, prefill included (median over runs)."""


@dataclass(frozen=True)
class Hardware:
    """The machine the bench ran on."""

    description: str
    """One line: CPU or GPU, cores, RAM, torch and threads."""
    cpu: str
    """CPU model (``/proc/cpuinfo``, else ``platform.processor()``)."""
    logical_cores: int | None
    """Logical CPUs in the machine."""
    usable_cores: int | None
    """CPUs this process may run on (affinity)."""
    physical_cores: int | None
    """Physical cores (psutil), when known."""
    ram_bytes: int | None
    """Total RAM."""
    gpu: str | None
    """CUDA device name, when one is used."""
    gpu_memory_bytes: int | None
    """CUDA device memory."""
    torch_version: str
    """torch version."""
    transformers_version: str
    """transformers version."""
    torch_threads: int
    """Threads torch used for the bench."""
    python: str
    """Python version."""
    os: str
    """Operating system."""


@dataclass(frozen=True)
class ModelBench:
    """Everything measured for one model."""

    model: str
    """The model reference as given."""
    backend: str
    """The backend that ran it."""
    device: str
    """``cpu``, ``cuda:N``, or ``remote`` (openai)."""
    dtype: str | None
    """Weight dtype in memory (None: remote, not known)."""
    parameters: int | None
    """Parameters of the loaded model (None: remote, not known)."""
    scan_s: float | None
    """Time the safety scan before loading took (None when not timed apart, or remote)."""
    load_s: float | None
    """Time to load after the scan, library imports excluded (None: remote, the server loaded it)."""
    rss_before_load_bytes: int | None
    """Process RSS before loading (None: remote, not measured)."""
    peak_rss_bytes: int | None
    """Highest process RSS while loading and running (the kernel's peak when measured in its own process;
    None: remote, not measured)."""
    model_rss_bytes: int | None
    """``peak_rss_bytes - rss_before_load_bytes``: memory this model cost the process (None: remote)."""
    cuda_peak_bytes: int | None
    """CUDA allocator peak (None on CPU)."""
    ttft_s: float
    """Time to first token at the smallest batch size."""
    prefill_tokens_per_s: float
    """Prefill throughput at the smallest batch size."""
    decode_tokens_per_s: float
    """Decode throughput at the smallest batch size."""
    latency_p50_s: float
    """Median latency at the smallest batch size."""
    latency_p95_s: float
    """95th-percentile latency at the smallest batch size."""
    batches: tuple[BatchResult, ...]
    """One result per batch size."""
    notes: tuple[str, ...] = ()
    """Caveats (e.g. a GGUF file dequantised to 32-bit floats)."""
    prompt_tokens: int | None = None
    """Prompt tokens actually sent, as counted by the model's tokenizer (None: only approximately known)."""
    prompt_length: str = "exact"
    """How the prompt length is known: ``exact`` (local tokenizer), ``server /tokenize``, ``server usage``
    (counted by the server's completions) or ``approximate`` (neither: about 1.3 tokens per English word)."""
    tokens_counted_by: str = "model"
    """Who counted the generated tokens: ``model`` (local decode steps), ``usage`` (the server's usage
    report) or ``stream chunks`` (one token per streamed chunk: a server that packs several into one undercounts)."""


@dataclass(frozen=True)
class BenchSettings:
    """What was asked for."""

    prompt_tokens: int
    """Prompt length in tokens."""
    output_tokens: int
    """Generated tokens per sequence."""
    batch_sizes: tuple[int, ...]
    """Batch sizes measured."""
    repeats: int
    """Measured runs per batch size."""
    warmup: int
    """Discarded runs per batch size."""
    threads: int | None
    """torch threads requested (None: torch's default)."""
    dtype: str | None
    """Requested dtype (None: remote, the server's choice)."""


@dataclass(frozen=True)
class BenchReport:
    """The bench of a candidate (and its base, measured in the same run)."""

    settings: BenchSettings
    """What was asked for."""
    hardware: Hardware | None
    """Where it ran (None: on a remote server, which does not describe its hardware)."""
    candidate: ModelBench
    """The candidate's figures."""
    base: ModelBench | None
    """The base's figures, when a base was given."""
    ratios: dict[str, float]
    """Candidate / base for each headline figure (>1: the candidate's figure is larger)."""
    fit: Any | None = None
    """:class:`assay.deploy.hardware.FitReport` for the candidate (memory at 16/8/4 bits, devices it fits)."""
    notes: tuple[str, ...] = field(default_factory=tuple)
    """Caveats for the whole run."""
    backend: str = "hf"
    """``hf`` (measured on this machine) or ``openai`` (a running OpenAI-compatible server)."""
    base_url: str | None = None
    """The server's URL (openai)."""


class _RssSampler:
    """Samples the process RSS in a background thread; ``peak`` is the highest value seen.

    With ``enabled=False`` no thread runs (it would compete for the GIL with the model) and ``peak`` is only the
    RSS at entry and exit; the isolated worker uses the kernel's exact ``ru_maxrss`` instead.
    """

    def __init__(self, *, enabled: bool = True) -> None:
        self.peak = self.now()
        self._enabled = enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except ImportError:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(_SAMPLE_INTERVAL_S):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> _RssSampler:
        if self._enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._enabled:
            self._thread.join()
        self.peak = max(self.peak, self.now())


def describe_hardware(*, device: str = "cpu") -> Hardware:
    """Describe this machine (CPU model, cores, RAM, GPU, library versions)."""
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    physical = ram = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
        ram = int(psutil.virtual_memory().total)
    except ImportError:
        try:
            ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            ram = None
    gpu = gpu_mem = None
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        gpu, gpu_mem = props.name, int(props.total_memory)
    threads = torch.get_num_threads()
    parts = [gpu or cpu, f"{usable} cores" if usable else None,
             f"{ram / 2**30:.1f} GiB RAM" if ram else None,
             f"torch {torch.__version__} ({device}, {threads} thread{'s' if threads != 1 else ''})"]
    return Hardware(description=", ".join(p for p in parts if p), cpu=cpu, logical_cores=os.cpu_count(),
                    usable_cores=usable, physical_cores=physical, ram_bytes=ram, gpu=gpu, gpu_memory_bytes=gpu_mem,
                    torch_version=str(torch.__version__), transformers_version=transformers.__version__,
                    torch_threads=threads, python=platform.python_version(), os=platform.platform())


def _load(ref: ModelRef, *, backend: str, dtype: str,
          threads: int | None) -> tuple[Any, float | None, float, str | None]:
    """``(loaded, scan seconds, load seconds, note)``: a backend with ``.model`` and ``.tokenizer``.

    The model is scanned first (:func:`assay.scan.scan_model`) and loaded by the hf backend only if it scanned
    safe; the scan is timed apart from the load. If this installation has no scanner, only checkpoints whose
    files cannot run code (safetensors or GGUF weights, no remote code) are loaded.
    """
    if backend != "hf":
        raise DeployError(f"run_bench loads the model with the hf backend (got {backend!r}); measure a running "
                          "server with run_remote_bench (`assay bench NAME --backend openai --base-url URL`)")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise BackendError("bench needs torch and transformers: pip install 'assay[eval]'") from exc
    try:
        from assay.evaluate.backends.hf import HFBackend, load_after_scan
        from assay.scan import scan_model
    except ImportError as exc:
        if not (exc.name or "").startswith("assay"):
            raise
        t0 = time.perf_counter()
        inert: Any = _load_inert(ref, dtype=dtype)
        return (inert, None, time.perf_counter() - t0,
                "no scanner in this installation: only safetensors/GGUF checkpoints without remote code are loaded")
    if not ref.single_file and (ref.root / "adapter_config.json").is_file():
        t0 = time.perf_counter()
        loaded = load_after_scan(ref, dtype=dtype, threads=threads)
        return loaded, None, time.perf_counter() - t0, "adapter: load time includes scanning adapter and base"
    t0 = time.perf_counter()
    report = scan_model(ref)
    t1 = time.perf_counter()
    loaded = HFBackend.from_ref(ref, scanned=report, dtype=dtype, threads=threads)
    return loaded, t1 - t0, time.perf_counter() - t1, None


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any


def _load_inert(ref: ModelRef, *, dtype: str) -> _Loaded:
    """Load a checkpoint whose files cannot run code (safetensors or GGUF weights, no remote code).

    Used only when the hf backend (which scans first) is not installed; anything pickle-based is refused.
    """
    import json

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assay.model.formats import WEIGHT_FORMATS, Format, detect

    weights = {rel: detect(ref.path(rel)) for rel in ref.files}
    weights = {rel: fmt for rel, fmt in weights.items() if fmt in WEIGHT_FORMATS}
    unsafe = sorted(rel.as_posix() for rel, fmt in weights.items() if fmt not in (Format.SAFETENSORS, Format.GGUF))
    if unsafe or not weights:
        raise DeployError(f"{ref.spec}: without the hf backend (which scans first), bench loads only safetensors or "
                          f"GGUF weights; found {', '.join(unsafe) or 'no weights'}")
    cfg_path = ref.root / "config.json"
    if not ref.single_file and cfg_path.is_file() and "auto_map" in json.loads(cfg_path.read_text(encoding="utf-8")):
        raise DeployError(f"{ref.spec}: the config asks for remote code (auto_map), which assay never runs")
    torch_dtype = getattr(torch, dtype, None)
    if not isinstance(torch_dtype, torch.dtype):
        raise DeployError(f"unknown dtype {dtype!r} (float32, bfloat16 or float16)")
    gguf = [rel for rel, fmt in weights.items() if fmt is Format.GGUF]
    kwargs: dict[str, Any] = {"trust_remote_code": False}
    if gguf:
        kwargs["gguf_file"] = gguf[0].as_posix()
    else:
        kwargs["use_safetensors"] = True
    try:
        tok = AutoTokenizer.from_pretrained(str(ref.root), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(str(ref.root), dtype=torch_dtype, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DeployError(f"{ref.spec}: transformers could not load it: {first}") from exc
    return _Loaded(model, tok)


def _prompt_ids(tokenizer: Any, n: int) -> list[int]:
    ids = list(tokenizer(_PROMPT_TEXT, add_special_tokens=False)["input_ids"])
    if not ids:
        raise DeployError("the tokenizer produced no tokens for the bench prompt")
    while len(ids) < n:
        ids = ids + ids
    return ids[:n]


def _percentile(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


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


def _import_libraries(ref: ModelRef) -> None:
    """Import torch, transformers and the architecture's modelling module before anything is timed.

    The first model loaded in a process would otherwise pay for these imports (seconds, and ~150 MiB of RSS)
    and look slower and larger than a base measured after it. The modules are transformers' own library code,
    named from ``config.json``'s ``model_type``; nothing from the checkpoint is imported.
    """
    import importlib
    import json
    import re

    import torch  # noqa: F401
    import transformers

    _ = transformers.AutoModelForCausalLM, transformers.AutoTokenizer
    cfg = ref.root / "config.json"
    try:
        model_type = json.loads(cfg.read_text(encoding="utf-8")).get("model_type") if cfg.is_file() else "llama"
    except (OSError, ValueError, AttributeError):
        model_type = None
    if isinstance(model_type, str) and re.fullmatch(r"[a-z0-9_]+", model_type):
        try:
            importlib.import_module(f"transformers.models.{model_type}.modeling_{model_type}")
        except ImportError:
            pass


def _measure(ref: ModelRef, *, backend: str, dtype: str, settings: BenchSettings, progress: Progress,
             label: str, sample_rss: bool = True) -> tuple[ModelBench, Any]:
    import torch

    _import_libraries(ref)
    gc.collect()
    with _RssSampler(enabled=sample_rss) as sampler:
        rss0 = sampler.peak
        loaded, scan_s, load_s, load_note = _load(ref, backend=backend, dtype=dtype, threads=settings.threads)
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
                p50 = _percentile(lat, 0.5)
                results.append(BatchResult(
                    batch_size=b, repeats=len(runs), ttft_s=ttft,
                    prefill_tokens_per_s=b * settings.prompt_tokens / ttft,
                    decode_tokens_per_s=(b * (settings.output_tokens - 1) / decode) if settings.output_tokens > 1
                    and decode > 0 else 0.0,
                    latency_p50_s=p50, latency_p95_s=_percentile(lat, 0.95), requests_per_s=b / p50,
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
    from assay.errors import AssayError

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


#: Headline figures compared between candidate and base.
RATIO_FIELDS = ("load_s", "ttft_s", "prefill_tokens_per_s", "decode_tokens_per_s", "latency_p50_s",
                "latency_p95_s", "model_rss_bytes", "parameters")


def _check_context(ref: ModelRef, needed: int) -> None:
    """Refuse early (before any process starts) when config.json's context is too short for the request."""
    import json

    cfg_path = ref.root / "config.json"
    if ref.single_file or not cfg_path.is_file():
        return
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # the loader reports an unreadable config
    if isinstance(cfg, dict) and isinstance(cfg.get("text_config"), dict):
        cfg = {**cfg["text_config"], **cfg}
    ctx = cfg.get("max_position_embeddings") if isinstance(cfg, dict) else None
    if isinstance(ctx, int) and not isinstance(ctx, bool) and needed > ctx:
        raise DeployError(f"{ref.spec}: prompt + output tokens ({needed}) exceed the model's context of {ctx}")


def _check_request_shape(*, prompt_tokens: int, output_tokens: int, repeats: int, warmup: int,
                         batch_sizes: Sequence[int]) -> None:
    """Refuse request settings no bench can measure (one line each, exit 2)."""
    if prompt_tokens < 1 or output_tokens < 1:
        raise DeployError("--prompt-tokens and --output-tokens must be at least 1")
    if repeats < 1 or warmup < 0:
        raise DeployError("--repeats must be at least 1 and --warmup at least 0")
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise DeployError("batch sizes must be at least 1")


def run_bench(ref: ModelRef, *, backend: str = "hf", prompt_tokens: int = 128, output_tokens: int = 64,
              batch_sizes: Sequence[int] = (1,), repeats: int = 5, warmup: int = 1, threads: int | None = None,
              dtype: str = "float32", base: ModelRef | None = None, isolate: bool = True,
              progress: Progress = NULL_PROGRESS) -> BenchReport:
    """Measure ``ref`` (and ``base`` in the same run) and return the :class:`BenchReport`.

    With ``isolate`` (the default) each model is measured in a fresh Python process, so load time and memory
    are each model's own; without it, everything runs in this process (a second model then reuses memory the
    first one freed, and its RSS growth is understated).
    """
    _check_request_shape(prompt_tokens=prompt_tokens, output_tokens=output_tokens, repeats=repeats, warmup=warmup,
                         batch_sizes=batch_sizes)
    if threads is not None and threads < 1:
        raise DeployError("--threads must be at least 1")
    settings = BenchSettings(prompt_tokens=prompt_tokens, output_tokens=output_tokens,
                             batch_sizes=tuple(sorted(set(batch_sizes))), repeats=repeats, warmup=warmup,
                             threads=threads, dtype=dtype)
    for r in (ref, base):
        if r is not None:
            _check_context(r, prompt_tokens + output_tokens)
    refs = [("candidate", ref)] + ([("base", base)] if base is not None else [])
    measured = _measure_all(refs, backend=backend, dtype=dtype, settings=settings, progress=progress, isolate=isolate)
    cand, config = measured[0]
    base_bench = measured[1][0] if base is not None else None
    ratios: dict[str, float] = {}
    if base_bench is not None:
        for name in RATIO_FIELDS:
            a, b = getattr(cand, name), getattr(base_bench, name)
            if a is not None and b:
                ratios[name] = a / b
    from assay.deploy.hardware import hardware_fit, shape_from_config

    if cand.parameters is None:
        raise DeployError(f"{ref.spec}: the model's parameters could not be counted, so no memory fit is estimated")
    fit = hardware_fit(shape_from_config(config, parameters=cand.parameters), batch=max(settings.batch_sizes))
    notes: tuple[str, ...] = ()
    if base is not None:
        notes = ("candidate and base were measured one after the other, each in a fresh process",) if isolate else (
            "candidate and base were measured one after the other in one process: the base's memory growth is "
            "understated",)
    return BenchReport(settings=settings, hardware=describe_hardware(device=cand.device), candidate=cand,
                       base=base_bench, ratios=ratios, fit=fit, notes=notes)


def fit_document(fit: Any) -> dict[str, Any]:
    """JSON form of a :class:`~assay.deploy.hardware.FitReport` (devices listed by name)."""
    return {
        "shape": asdict(fit.shape), "context": fit.context, "batch": fit.batch,
        "estimates": [asdict(e) for e in fit.estimates],
        "devices": [{"device": f.device.name, "bits": f.bits, "fits": f.fits, "headroom_bytes": f.headroom_bytes,
                     "decode_tokens_per_s_bound": f.decode_tokens_per_s_bound} for f in fit.fits],
        "notes": list(fit.notes),
    }


def bench_document(r: BenchReport) -> dict[str, Any]:
    """The ``assay.bench/1`` JSON document."""
    return {
        "schema": "assay.bench/1",
        "backend": r.backend,
        "base_url": r.base_url,
        "settings": asdict(r.settings),
        "hardware": asdict(r.hardware) if r.hardware is not None else None,
        "candidate": asdict(r.candidate),
        "base": asdict(r.base) if r.base is not None else None,
        "ratios": dict(r.ratios),
        "fit": fit_document(r.fit) if r.fit is not None else None,
        "notes": list(r.notes),
    }


# ------------------------------------------------------------------------------------------ remote (openai)
#: Tokens per English word assumed when the server can count neither with ``/tokenize`` nor with ``usage``.
_TOKENS_PER_WORD = 1.3
#: Most concurrent requests one batch size may open.
MAX_REMOTE_BATCH = 256


@dataclass(frozen=True)
class _Stream:
    """One streamed request: absolute ``perf_counter`` times and what the server counted."""

    start: float
    first: float
    last: float
    end: float
    chunks: int
    completion_tokens: int | None
    prompt_tokens: int | None
    finish_reason: str | None


class _Server:
    """Streams completions from an OpenAI-compatible server (standard library HTTP, one connection per request).

    The connection is opened before the clock starts, so time to first token measures the server, not the
    TCP or TLS handshake. Request extras (``ignore_eos``, ``stream_options``) are dropped if the server refuses
    them with HTTP 400.
    """

    def __init__(self, *, base_url: str, api_key: str | None, timeout: float) -> None:
        from urllib.parse import urlsplit

        self.base_url = base_url
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")  # ends with /v1
        self._root = self._prefix[: -len("/v1")] if self._prefix.endswith("/v1") else self._prefix
        self._api_key = api_key
        self._timeout = timeout
        self.extras: dict[str, Any] = {"ignore_eos": True, "stream_options": {"include_usage": True}}

    def _connect(self) -> Any:
        import http.client

        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self._timeout)
        try:
            conn.connect()
        except OSError as exc:
            raise DeployError(f"cannot reach the server at {self.base_url} ({_reason(exc)})") from None
        return conn

    def _headers(self, accept: str) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": accept}
        if self._api_key:
            h["Authorization"] = f"Bearer {self._api_key}"
        return h

    def post_json(self, path: str, payload: dict[str, Any], *, root: bool = False) -> tuple[int, Any]:
        """``(status, decoded body or None)`` of a plain JSON POST (``root``: outside ``/v1``, as ``/tokenize``)."""
        import http.client
        import json

        conn = self._connect()
        try:
            conn.request("POST", (self._root if root else self._prefix) + path, body=json.dumps(payload).encode(),
                         headers=self._headers("application/json"))
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise DeployError(f"{self.base_url}{path}: the connection failed ({_reason(exc)})") from None
        finally:
            conn.close()
        try:
            return resp.status, json.loads(body)
        except ValueError:
            return resp.status, None

    def stream(self, model: str, prompt: str, max_tokens: int, *, require_text: bool = True) -> _Stream:
        """One streamed greedy completion, timed (``require_text=False``: a stream with no text is accepted)."""
        import http.client
        import json

        payload = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
                   **self.extras}
        body = json.dumps(payload).encode()
        conn = self._connect()
        try:
            start = time.perf_counter()
            conn.request("POST", self._prefix + "/completions", body=body, headers=self._headers("text/event-stream"))
            resp = conn.getresponse()
            if resp.status != 200:
                detail = error_detail(resp.read())
                # Stricter servers refuse the non-standard extras: 400 (llama.cpp, TGI) or 422 (FastAPI-based).
                if resp.status in (400, 422) and self.extras:
                    self.extras = {}
                    conn.close()
                    return self.stream(model, prompt, max_tokens, require_text=require_text)
                hint = " (check --api-key-env)" if resp.status in (401, 403) else ""
                raise DeployError(f"{self.base_url}/completions: HTTP {resp.status}"
                                  f"{': ' + detail if detail else ''}{hint}")
            ctype = (resp.getheader("Content-Type") or "").lower()
            if "text/event-stream" not in ctype:
                resp.read()
                raise DeployError(
                    f"the server at {self.base_url} answered a stream=true completion with one {ctype or 'untyped'} "
                    "document instead of server-sent events: it does not stream, so time to first token and decode "
                    "speed cannot be measured (vLLM, llama.cpp server, TGI and Ollama stream)")
            first = last = None
            chunks = 0
            usage: dict[str, Any] = {}
            finish = None
            for data in _sse_data(resp):
                if data == "[DONE]":
                    break
                try:
                    doc = json.loads(data)
                except ValueError:
                    raise DeployError(f"the server at {self.base_url} streamed an event that is not JSON: "
                                      f"{data[:80]!r}") from None
                if not isinstance(doc, dict):
                    continue
                if isinstance(doc.get("usage"), dict):
                    usage = doc["usage"]
                choices = doc.get("choices") or []
                choice = choices[0] if choices and isinstance(choices[0], dict) else None
                if choice is None:
                    continue
                finish = choice.get("finish_reason") or finish
                if choice.get("text"):
                    now = time.perf_counter()
                    first = now if first is None else first
                    last = now
                    chunks += 1
            end = time.perf_counter()
        except (OSError, http.client.HTTPException) as exc:
            raise DeployError(f"{self.base_url}/completions: the stream broke off ({_reason(exc)})") from None
        finally:
            conn.close()
        if (first is None or last is None) and not require_text:
            first = last = end
        if first is None or last is None:
            raise DeployError(f"the server at {self.base_url} streamed no text for a {max_tokens}-token completion")
        ct, pt = usage.get("completion_tokens"), usage.get("prompt_tokens")
        return _Stream(start=start, first=first, last=last, end=end, chunks=chunks,
                       completion_tokens=ct if isinstance(ct, int) and not isinstance(ct, bool) and ct > 0 else None,
                       prompt_tokens=pt if isinstance(pt, int) and not isinstance(pt, bool) and pt > 0 else None,
                       finish_reason=finish)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _sse_data(resp: Any) -> Any:
    """The ``data`` of each server-sent event (lines of one event joined by newlines), as they arrive."""
    lines: list[str] = []
    for raw in resp:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)


def _words(n: int) -> str:
    words = _PROMPT_TEXT.split()
    return " ".join(words[i % len(words)] for i in range(max(1, n)))


def _remote_prompt(server: _Server, model: str, n: int) -> tuple[str, int | None, str, int | None]:
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


def _measure_remote(server: _Server, model: str, *, settings: BenchSettings, progress: Progress,
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
            runs: list[list[_Stream]] = []
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
                latency_p50_s=_percentile(lat, 0.5), latency_p95_s=_percentile(lat, 0.95),
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
    _check_request_shape(prompt_tokens=prompt_tokens, output_tokens=output_tokens, repeats=repeats, warmup=warmup,
                         batch_sizes=batch_sizes)
    if max(batch_sizes) > MAX_REMOTE_BATCH:
        raise DeployError(f"batch sizes above {MAX_REMOTE_BATCH} concurrent requests are not measured")
    from assay.evaluate.backends.openai import open_backend

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
    server = _Server(base_url=client.base_url, api_key=client.api_key, timeout=timeout)
    names = [("candidate", client.model_name)] + ([("base", base)] if base else [])
    measured = [_measure_remote(server, name, settings=settings, progress=progress, label=label)
                for label, name in names]
    cand = measured[0]
    base_bench = measured[1] if base else None
    ratios: dict[str, float] = {}
    if base_bench is not None:
        for name in RATIO_FIELDS:
            a, b = getattr(cand, name), getattr(base_bench, name)
            if a is not None and b:
                ratios[name] = a / b
    notes = ["remote server: its hardware and memory are not measured; no memory fit is estimated (run `assay "
             "bench CHECKPOINT --fit-only` on the files it serves)"]
    if base_bench is not None:
        notes.append("candidate and base were measured one after the other on the same server")
    if not caps.streaming:
        notes.append("the server does not stream (stream: true): time to first token is the whole answer's time")
    if not caps.token_counts:
        notes.append("the server reports no token counts (usage): token figures are estimated")
    notes.extend(caps.warnings)
    return BenchReport(settings=settings, hardware=None, candidate=cand, base=base_bench, ratios=ratios, fit=None,
                       notes=tuple(notes), backend="openai", base_url=server.base_url)
