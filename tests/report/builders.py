"""Stage documents and vet results built from chosen numbers, for testing the verdict and the reports.

Only the shape of each stage document is fixed here (as the stages publish it); every expectation in the tests
is derived from the numbers passed in, never hard-coded.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from assay.model.ref import ModelRef
from assay.policy import Policy, default_policy
from assay.verdict import StageOutcome, Stages, decide
from assay.vet import STAGES, VetResult, environment


def scan_doc(verdict: str = "safe", findings: Sequence[Mapping[str, Any]] = (),
             files: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    return {"schema": "assay.scan/1", "verdict": verdict, "findings": [dict(f) for f in findings],
            "files": [dict(f) for f in files] if files is not None else
            [{"path": "model.safetensors", "format": "safetensors", "status": "ok"}]}


def finding(severity: str, rule: str = "PICKLE-GLOBAL", path: str = "pytorch_model.bin",
            message: str = "calls posix.system") -> dict[str, Any]:
    return {"rule": rule, "severity": severity, "path": path, "location": "data.pkl@12", "message": message}


def lineage_doc(relation: str, *, consistent: bool | None = True, base_model: str | None = "org/base",
                layers: int = 4, change: float = 0.01) -> dict[str, Any]:
    return {"schema": "assay.lineage/1", "relation": relation,
            "claim": {"base_model": base_model, "consistent": consistent},
            "layers": [{"layer": f"model.layers.{i}", "rel_change": change * (1 + i / 10), "cosine": 0.99}
                       for i in range(layers)]}


def metric(base: float, cand: float, half_width: float, *, p: float | None = None,
           lost: Sequence[str] = ()) -> dict[str, Any]:
    d = cand - base
    return {"base": base, "candidate": cand, "delta": d, "ci": [d - half_width, d + half_width],
            "p": p, "p_holm": p, "gained": [], "lost": list(lost)}


def outcomes(**docs: Any) -> dict[str, StageOutcome]:
    """Stage outcomes: a dict value is a document (ran); a string is a skip reason."""
    out: dict[str, StageOutcome] = {}
    for name, v in docs.items():
        if isinstance(v, StageOutcome):
            out[name] = v
        elif isinstance(v, str):
            out[name] = StageOutcome.skipped(name, v)
        else:
            out[name] = StageOutcome.ran(name, v)
    return out


def make_result(stages: Stages, *, policy: Policy | None = None, tmp: Path = Path("/nonexistent"),
                name: str = "cand", base: str | None = "base",
                training: Mapping[str, Any] | None = None) -> VetResult:
    policy = policy or default_policy()
    cand = ModelRef(spec=str(tmp / name), root=tmp / name, files=(Path("model.safetensors"),), single_file=False)
    base_ref = None if base is None else ModelRef(spec=str(tmp / base), root=tmp / base,
                                                  files=(Path("model.safetensors"),), single_file=False)
    ordered = tuple(stages[n] for n in STAGES if n in stages)
    return VetResult(candidate=cand, base=base_ref, base_source="--base" if base else "none: no base given",
                     policy=policy, stages=ordered, verdict=decide(stages, policy), training=training,
                     environment=environment(), started_at="2026-01-01T00:00:00+00:00", seconds=1.5)


def loss_history(steps: int = 30, seed: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    rows = [{"step": s, "loss": 3.0 * 0.95 ** s + rng.random() * 0.05} for s in range(1, steps + 1)]
    rows += [{"step": s, "eval_loss": 3.1 * 0.95 ** s} for s in range(5, steps + 1, 5)]
    return {"path": "trainer_state.json", "log_history": rows}


def hardware_doc(parameters: int = 135_000_000, *, context: int = 2048) -> dict[str, Any]:
    """The hardware-fit stage document of a Llama-shaped model, from the real estimate."""
    from assay.deploy.bench import fit_document
    from assay.deploy.hardware import hardware_fit, shape_from_config

    shape = shape_from_config({"num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                               "hidden_size": 576, "max_position_embeddings": 8192}, parameters=parameters)
    return {"schema": "assay.fit/1", "source": "headers", **fit_document(hardware_fit(shape, context=context))}


def bench_doc(cand_decode: float, base_decode: float | None, *, rss: int = 300 * 2**20) -> dict[str, Any]:
    """An ``assay.bench/1`` document with chosen decode speeds (other figures derived from them)."""

    def model(name: str, decode: float) -> dict[str, Any]:
        return {"model": name, "backend": "hf", "device": "cpu", "dtype": "float32", "parameters": 135_000_000,
                "scan_s": 0.1, "load_s": 1.5, "rss_before_load_bytes": 2**28, "peak_rss_bytes": 2**28 + rss,
                "model_rss_bytes": rss, "cuda_peak_bytes": None, "ttft_s": 64 / (decode * 10),
                "prefill_tokens_per_s": decode * 10, "decode_tokens_per_s": decode, "latency_p50_s": 32 / decode,
                "latency_p95_s": 33 / decode, "batches": [{"batch_size": 1, "repeats": 3, "ttft_s": 64 / (decode * 10),
                                                          "prefill_tokens_per_s": decode * 10,
                                                          "decode_tokens_per_s": decode,
                                                          "latency_p50_s": 32 / decode, "latency_p95_s": 33 / decode,
                                                          "requests_per_s": decode / 32,
                                                          "latencies_s": [32 / decode] * 3}],
                "notes": []}

    cand = model("cand", cand_decode)
    base = model("base", base_decode) if base_decode else None
    ratios = {} if base is None else {k: cand[k] / base[k] for k in (
        "load_s", "ttft_s", "prefill_tokens_per_s", "decode_tokens_per_s", "latency_p50_s", "latency_p95_s",
        "model_rss_bytes", "parameters")}
    return {"schema": "assay.bench/1",
            "settings": {"prompt_tokens": 64, "output_tokens": 32, "batch_sizes": [1], "repeats": 3, "warmup": 1,
                         "threads": None, "dtype": "float32"},
            "hardware": {"description": "Test CPU, 2 cores, 8.0 GiB RAM, torch 2 (cpu, 1 thread)"},
            "candidate": cand, "base": base, "ratios": ratios, "fit": None, "notes": []}


def cost_doc(bench: Mapping[str, Any], **prices: Any) -> dict[str, Any]:
    """The cost stage document from a bench document and prices, through the real cost model."""
    from assay.deploy.cost import CostInputs, compute_cost, cost_document, inputs_from_bench

    return cost_document(compute_cost(CostInputs(**inputs_from_bench(dict(bench)), **prices)))
