"""What a bench asks for and what it measured: the settings, one frozen dataclass per result (a batch size, a
model, the machine, the whole report), and the arithmetic both measurements share (percentiles of latencies,
candidate/base ratios, the checks of a request's shape).

    >>> s = BenchSettings(prompt_tokens=128, output_tokens=64, batch_sizes=(1, 4), repeats=5, warmup=1,
    ...                   threads=None, dtype="float32")
    >>> percentile([0.2, 0.1, 0.4], 0.5)
    0.2
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from assay.errors import DeployError

#: A neutral English passage; its tokens are repeated to build prompts of the requested length.
PROMPT_TEXT = (
    "The committee met on Tuesday to review the quarterly figures. Sales rose in the northern region, while "
    "costs in logistics fell after the new routing system was introduced. Several members asked for a clearer "
    "breakdown of the marketing budget, and the chair agreed to circulate a revised table before the next meeting. "
)


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


#: Headline figures compared between candidate and base.
RATIO_FIELDS = ("load_s", "ttft_s", "prefill_tokens_per_s", "decode_tokens_per_s", "latency_p50_s",
                "latency_p95_s", "model_rss_bytes", "parameters")


def ratios(candidate: ModelBench, base: ModelBench | None) -> dict[str, float]:
    """Candidate / base for each of :data:`RATIO_FIELDS` both know (a base figure of 0 gives no ratio)."""
    out: dict[str, float] = {}
    if base is not None:
        for name in RATIO_FIELDS:
            a, b = getattr(candidate, name), getattr(base, name)
            if a is not None and b:
                out[name] = a / b
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by linear interpolation between the two nearest ranks."""
    s = sorted(values)
    if len(s) == 1:
        return s[0]
    pos = (len(s) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def check_request_shape(*, prompt_tokens: int, output_tokens: int, repeats: int, warmup: int,
                        batch_sizes: Sequence[int]) -> None:
    """Refuse request settings no bench can measure (one line each, exit 2)."""
    if prompt_tokens < 1 or output_tokens < 1:
        raise DeployError("--prompt-tokens and --output-tokens must be at least 1")
    if repeats < 1 or warmup < 0:
        raise DeployError("--repeats must be at least 1 and --warmup at least 0")
    if not batch_sizes or any(b < 1 for b in batch_sizes):
        raise DeployError("batch sizes must be at least 1")

