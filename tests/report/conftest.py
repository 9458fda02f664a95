"""Vet documents of every shape the reports must handle, built from chosen stage numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from assay.verdict import StageOutcome
from assay.vet import vet_document
from tests.report.builders import (bench_doc, cost_doc, finding, hardware_doc, lineage_doc, loss_history, make_result,
                                   metric, outcomes, scan_doc)

HOSTILE = '<script>alert("x")</script>&<img src=x onerror=alert(1)>`|*'

_LATER = ("base_scan", "signature", "lineage", "evaluation", "comparison", "card", "licence", "bench", "cost")

#: Deployment figures of the "honest" result: the candidate decodes at 180 tokens/s, its base at 200.
BENCH = bench_doc(180.0, 200.0)
COST_PRICES = {"api_per_task": 0.002, "hardware_per_hour": 1.2, "utilisation": 0.5, "tokens_in": 64,
               "tokens_out": 32, "training_cost": 300.0, "monthly_tasks": 50_000}


def _card_doc() -> dict[str, Any]:
    """A card with a licence in assay's table, something missing, and one claim measurements do not support."""
    from assay.deploy.licences import lookup
    from assay.cli.common import to_jsonable

    claim = {"task": "text-generation", "dataset": "Knowledge drill", "dataset_type": "builtin:knowledge",
             "metric": "acc", "value": 95.0}
    return {"schema": "assay.card/1", "licence": "llama3.1", "licence_terms": to_jsonable(lookup("llama3.1")),
            "transparency_score": 70, "missing": ["hyper-parameters", "loss curve", "limitations"],
            "base_model": ["org/base"], "findings": [],
            "claims": [{"claim": claim, "measured_key": "builtin:knowledge/acc", "claimed": 0.95, "measured": 0.62,
                        "delta": 0.33, "supported": False}]}


def _docs(tmp: Path) -> dict[str, dict[str, Any]]:
    ok_eval = {"schema": "assay.eval/1", "settings": {"limit": None},
               "tasks": {"builtin:knowledge": {"n": 40, "metrics": {"acc": 0.35, "acc_norm": 0.36}},
                         "builtin:reference": {"n": 12, "metrics": {"bits_per_byte": 2.9}}}}
    regress = outcomes(
        inventory={"architecture": "LlamaForCausalLM", "parameters": 135_000_000, "card": {"datasets": ["d1"]}},
        scan=scan_doc(), base_scan=scan_doc(), signature=StageOutcome.not_applicable("signature", "no model.sig"),
        lineage=lineage_doc("finetune", layers=30, change=0.2), evaluation=ok_eval,
        comparison={"builtin:knowledge": {"acc": metric(0.61, 0.35, 0.04, p=1e-6, lost=[f"k{i}" for i in range(9)]),
                                          "acc_norm": metric(0.60, 0.36, 0.04, p=1e-6)},
                    "builtin:reference": {"bits_per_byte": metric(1.10, 2.9, 0.1, p=1e-4),
                                          "word_perplexity": metric(30.0, 900.0, 50.0)}},
        card={"findings": [], "licence": "apache-2.0"}, licence={"licence": "apache-2.0", "violations": []})
    honest = dict(regress)
    honest.update(outcomes(lineage=lineage_doc("finetune", layers=30, change=0.01), comparison={
        "builtin:knowledge": {"acc": metric(0.61, 0.62, 0.02, p=0.4)},
        "domain": {"acc": metric(0.30, 0.70, 0.1, p=1e-5)},
        "builtin:reference": {"bits_per_byte": metric(1.10, 1.12, 0.01)}}))
    deployed = dict(honest)
    from assay.deploy.licences import lookup
    from assay.cli.common import to_jsonable

    deployed.update(outcomes(hardware=hardware_doc(), bench=BENCH, cost=cost_doc(BENCH, **COST_PRICES),
                             card=_card_doc(),
                             licence={"schema": "assay.licence/1", "licence": "llama3.1",
                                      "terms": to_jsonable(lookup("llama3.1")), "violations": []}))
    unsafe = {"inventory": StageOutcome.ran("inventory", {"architecture": None}),
              "scan": StageOutcome.ran("scan", scan_doc("unsafe", [finding("critical", message=HOSTILE),
                                                                  finding("low", rule="ODD")])),
              **{n: StageOutcome.blocked(n, "the candidate scanned unsafe, so it is never loaded")
                 for n in _LATER}}
    nobase = dict(honest)
    nobase.update(outcomes(lineage="no base model to compare with (no --base given)",
                           comparison="no base model to compare with (no --base given)"))
    nobase["base_scan"] = StageOutcome.not_applicable("base_scan", "no base")
    return {
        "regression": vet_document(make_result(regress, tmp=tmp, name="broken-finetune")),
        "honest": vet_document(make_result(honest, tmp=tmp, name="honest-finetune", training=loss_history())),
        "unsafe": vet_document(make_result(unsafe, tmp=tmp, name=HOSTILE)),
        "nobase": vet_document(make_result(nobase, tmp=tmp, name="orphan", base=None)),
        "deployed": vet_document(make_result(deployed, tmp=tmp, name="deployed-finetune")),
    }


@pytest.fixture(scope="session")
def vet_docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return _docs(tmp_path_factory.mktemp("models"))
