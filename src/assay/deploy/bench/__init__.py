"""Measure a model's speed and memory: load time, time to first token, prefill and decode throughput, latency
percentiles over repeated requests, throughput at several batch sizes, peak memory (``assay bench``).

There are two measurements and the pieces they share:

- :mod:`.local` measures a model in this machine's memory (``run_bench``): each model in a fresh process, greedy
  decode steps timed on the model itself, process RSS and the CUDA peak. :mod:`.loading` gets the model there
  (after a safe scan, with the libraries imported before any clock starts); :mod:`.machine` describes the
  machine and samples the process's memory.
- :mod:`.remote` measures a model behind a running OpenAI-compatible server (``run_remote_bench``): streamed
  completions, concurrent requests for a batch size; nothing is scanned or loaded here. :mod:`.server` is its
  timed streaming HTTP client.
- :mod:`.results` holds the settings and the frozen result dataclasses both return (``BenchReport``,
  ``ModelBench``, ``BatchResult``, ``Hardware``), with the percentiles and candidate/base ratios they share;
  :mod:`.document` writes a report as the ``assay.bench/1`` JSON document (``bench_document``, ``fit_document``).

    >>> r = run_bench(resolve("./my-finetune"), base=resolve("./base"), batch_sizes=(1, 4))
    >>> r.candidate.decode_tokens_per_s, r.ratios["decode_tokens_per_s"]
    >>> r = run_remote_bench("my-finetune", base_url="http://127.0.0.1:8000/v1", base="base-model")
    >>> bench_document(r)["schema"]
    'assay.bench/1'
"""

from __future__ import annotations

from assay.deploy.bench.document import bench_document, fit_document
from assay.deploy.bench.local import run_bench
from assay.deploy.bench.machine import describe_hardware
from assay.deploy.bench.remote import MAX_REMOTE_BATCH, run_remote_bench
from assay.deploy.bench.results import (RATIO_FIELDS, BatchResult, BenchReport, BenchSettings, Hardware,
                                        ModelBench)

__all__ = ["MAX_REMOTE_BATCH", "RATIO_FIELDS", "BatchResult", "BenchReport", "BenchSettings", "Hardware",
           "ModelBench", "bench_document", "describe_hardware", "fit_document", "run_bench", "run_remote_bench"]
