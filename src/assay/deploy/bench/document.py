"""The ``assay.bench/1`` JSON document of a :class:`~.results.BenchReport` (schema:
``src/assay/schemas/bench.schema.json``), and the JSON form of a memory fit that ``assay bench --fit-only`` and
``assay vet`` also write.

    >>> doc = bench_document(run_bench(ref))
    >>> doc["schema"], doc["candidate"]["decode_tokens_per_s"]
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from assay.deploy.bench.results import BenchReport


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

