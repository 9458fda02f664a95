"""A CycloneDX 1.6 ML-BOM of the vetted model: one ``machine-learning-model`` component with its model card.

The component carries what assay measured, not what the card claims: ``modelCard.quantitativeAnalysis.
performanceMetrics`` lists every evaluated metric of the candidate (with its bootstrap interval when the base was
compared, and the delta against the base as its own metric), the bench's speed and memory (slice ``bench``, with
each ratio to the base) and the cost per task and break-even (slice ``cost``); ``pedigree.ancestors`` names the
base with the lineage relation, and ``properties`` carry the verdict, scan result, weights root, card
transparency score and the memory estimates at 16/8/4 bits under the ``assay:`` namespace.

    bom = json.loads(CycloneDxRenderer().render(doc))
    bom["components"][0]["type"]        # 'machine-learning-model'
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from typing import Any

from assay.report.base import Renderer, comparison_rows


def _s(x: Any) -> str:
    return f"{x:.6g}" if isinstance(x, float) else str(x)


def _candidate_metrics(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Measured metrics of the candidate alone (from the evaluation stage), for runs without a base."""
    out: list[dict[str, Any]] = []
    cand = (doc.get("evaluation") or {}).get("tasks") or {}
    if not isinstance(cand, Mapping):
        return out
    for task, t in cand.items():
        if not isinstance(t, Mapping):
            continue
        for metric, value in (t.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append({"type": metric, "value": _s(value), "slice": task})
    return out


#: Bench figures in the BOM: (field, metric name).
_BENCH_METRICS = (("decode_tokens_per_s", "decode tokens per second"),
                  ("prefill_tokens_per_s", "prefill tokens per second"), ("ttft_s", "time to first token (s)"),
                  ("latency_p50_s", "latency p50 (s)"), ("latency_p95_s", "latency p95 (s)"),
                  ("load_s", "load time (s)"), ("model_rss_bytes", "memory, RSS growth (bytes)"),
                  ("peak_rss_bytes", "peak RSS (bytes)"))
_COST_METRICS = (("self_per_task", "self-hosted cost per task"), ("api_per_task", "API cost per task"),
                 ("break_even_tasks", "break-even tasks"), ("monthly_self", "self-hosted cost per month"),
                 ("monthly_api", "API cost per month"))


def _deploy_metrics(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Measured speed, memory and cost as performance metrics."""
    out: list[dict[str, Any]] = []
    bench = _mapping(doc.get("bench"))
    cand = _mapping(bench.get("candidate"))
    ratios = _mapping(bench.get("ratios"))
    hw = _mapping(bench.get("hardware")).get("description")
    where = f"bench on {hw}" if hw else "bench"
    for key, name in _BENCH_METRICS:
        v = cand.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append({"type": name, "value": _s(v), "slice": where})
        r = ratios.get(key)
        if isinstance(r, (int, float)) and not isinstance(r, bool):
            out.append({"type": f"{name} ratio vs base", "value": _s(r), "slice": where})
    cost = _mapping(doc.get("cost"))
    for key, name in _COST_METRICS:
        v = cost.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append({"type": name, "value": _s(v), "slice": "cost"})
    return out


class CycloneDxRenderer(Renderer):
    """CycloneDX 1.6 JSON ML-BOM."""

    name = "cyclonedx"
    default_filename = "bom.cdx.json"

    def render(self, doc: Mapping[str, Any]) -> str:
        return json.dumps(self.bom(doc), indent=2, ensure_ascii=False) + "\n"

    def bom(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """The BOM as a dict."""
        cand = doc.get("candidate") or {}
        env = doc.get("environment") or {}
        inv = doc.get("inventory") or {}
        lineage = doc.get("lineage") or {}
        ref = f"model:{cand.get('name', 'candidate')}"
        metrics: list[dict[str, Any]] = []
        rows = comparison_rows(doc)
        for r in rows:
            if isinstance(r["candidate"], (int, float)):
                m: dict[str, Any] = {"type": r["metric"], "value": _s(r["candidate"]), "slice": r["task"]}
                metrics.append(m)
            if isinstance(r["delta"], (int, float)):
                d: dict[str, Any] = {"type": f"{r['metric']} delta vs base", "value": _s(r["delta"]),
                                     "slice": r["task"]}
                if r["ci"] and all(isinstance(v, (int, float)) for v in r["ci"]):
                    d["confidenceInterval"] = {"lowerBound": _s(r["ci"][0]), "upperBound": _s(r["ci"][1])}
                metrics.append(d)
        if not rows:
            metrics = _candidate_metrics(doc)
        metrics += _deploy_metrics(doc)
        params: dict[str, Any] = {"task": "text-generation"}
        arch = inv.get("architecture")
        if isinstance(arch, Mapping):
            arch = arch.get("name") or arch.get("model_type")
        if arch:
            params["modelArchitecture"] = str(arch)
        card = inv.get("card") or {}
        datasets = card.get("datasets") if isinstance(card, Mapping) else None
        if isinstance(datasets, str):
            datasets = [datasets]
        if isinstance(datasets, list) and datasets:
            params["datasets"] = [{"type": "dataset", "name": str(d)} for d in datasets[:50]]
        component: dict[str, Any] = {
            "type": "machine-learning-model",
            "bom-ref": ref,
            "name": str(cand.get("name", "candidate")),
            "modelCard": {"modelParameters": params,
                          "quantitativeAnalysis": {"performanceMetrics": metrics}},
        }
        if cand.get("revision"):
            component["version"] = str(cand["revision"])
        licence = ((doc.get("licence") or {}).get("licence") or (card.get("license") if isinstance(card, Mapping)
                                                                 else None))
        if isinstance(licence, str) and licence:
            component["licenses"] = [{"license": {"name": licence}}]
        base = doc.get("base")
        if base:
            component["pedigree"] = {"ancestors": [{"type": "machine-learning-model", "bom-ref": f"base:{base['name']}",
                                                    "name": str(base["name"])}],
                                     "notes": f"lineage relation to the base: {lineage.get('relation', 'not checked')}"}
        props = [("assay:verdict", doc.get("verdict")), ("assay:scan.verdict", (doc.get("scan") or {}).get("verdict")),
                 ("assay:lineage.relation", lineage.get("relation")),
                 ("assay:weights_root", lineage.get("candidate_weights_root") or inv.get("weights_root"))]
        card_doc = _mapping(doc.get("card"))
        props.append(("assay:card.transparency_score", card_doc.get("transparency_score")))
        hw_doc = _mapping(doc.get("hardware"))
        for e in hw_doc.get("estimates") or []:
            if isinstance(e, Mapping) and e.get("bits") is not None:
                props.append((f"assay:memory_estimate.{e['bits']}bit_bytes", e.get("total_bytes")))
        props += [(f"assay:reason.{i}", f"{r.get('rule')}: {r.get('message')}")
                  for i, r in enumerate(doc.get("reasons") or [])]
        component["properties"] = [{"name": k, "value": str(v)} for k, v in props if v is not None]
        return {
            "bomFormat": "CycloneDX",
            "specVersion": "1.6",
            "serialNumber": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, json.dumps([cand, doc.get('started_at')]))}",
            "version": 1,
            "metadata": {
                "timestamp": doc.get("started_at"),
                "tools": {"components": [{"type": "application", "name": "assay",
                                          "version": str(env.get("assay", "unknown"))}]},
                "component": {"type": "machine-learning-model", "bom-ref": f"{ref}#subject",
                              "name": str(cand.get("name", "candidate"))},
            },
            "components": [component],
        }


def _mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping (a stage document), else an empty one (the stage did not run)."""
    return value if isinstance(value, Mapping) else {}
