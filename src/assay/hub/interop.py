"""Hugging Face interop: export measured scores as ``.eval_results/*.yaml`` and card ``model-index``; import a
card's ``model-index`` as *claimed* scores (shown apart from measured ones, never as verified).

    >>> files = eval_results(hub.model("org/my-finetune"))        # {"builtin_knowledge_acc.yaml": [...]}
    >>> index = model_index(hub.model("org/my-finetune"))         # the card's model-index list
    >>> import_model_index(hub, "org/my-finetune", Path("README.md"))

The card's ``model-index`` is parsed with ``huggingface_hub``'s own reader (``model_index_to_eval_results``) and
written with its writer, so what assay exports is what the Hub itself reads. A card is read with
``yaml.safe_load`` only.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy import delete

from assay.hub.db import Claim
from assay.hub.errors import HubError

_FRONT_MATTER = re.compile(r"\A\ufeff?---\s*\r?\n(.*?)\r?\n---\s*(?:\r?\n|\Z)", re.S)


def _latest(doc: dict[str, Any]) -> dict[str, Any] | None:
    vets = [h for h in doc.get("history") or [] if h.get("kind") == "vet"]
    return vets[-1] if vets else None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "task"


def eval_results(doc: dict[str, Any], *, hub_url: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """``{file name: entries}`` for ``.eval_results/``: one file per task and metric of the latest signed vet."""
    latest = _latest(doc)
    if latest is None:
        raise HubError("this model has no signed vet to export", status=404)
    date = str(latest["published_at"])[:10]
    out: dict[str, list[dict[str, Any]]] = {}
    for r in latest["metrics"]:
        if r.get("value") is None:
            continue
        note = f"assay vet, attestation sha256:{latest['digest']}, signed by {latest['key']}"
        if r.get("delta") is not None:
            note += f"; delta vs base {r['delta']:+.4f}"
            if r.get("ci"):
                note += f" (95% interval {r['ci'][0]:+.4f} to {r['ci'][1]:+.4f})"
        if r.get("n"):
            note += f"; n={r['n']}"
        entry = {"dataset": {"id": r["task"], "task_id": r["metric"]}, "value": r["value"], "date": date,
                 "source": {"name": "assay hub", **({"url": f"{hub_url.rstrip('/')}/models/{doc['id']}"}
                                                    if hub_url else {})},
                 "notes": note}
        out[f"{_slug(r['task'])}_{_slug(r['metric'])}.yaml"] = [entry]
    return out


def model_index(doc: dict[str, Any], *, hub_url: str | None = None) -> list[dict[str, Any]]:
    """The card ``model-index`` for the latest signed vet (written by huggingface_hub)."""
    from huggingface_hub.repocard_data import EvalResult, eval_results_to_model_index

    latest = _latest(doc)
    if latest is None:
        raise HubError("this model has no signed vet to export", status=404)
    results = [EvalResult(task_type="text-generation", dataset_type=r["task"], dataset_name=r["task"],
                          metric_type=r["metric"], metric_value=r["value"], metric_name=r["metric"],
                          source_name=f"assay hub (attestation {latest['digest'][:16]})" if hub_url else None,
                          source_url=f"{hub_url.rstrip('/')}/models/{doc['id']}" if hub_url else None)
               for r in latest["metrics"] if r.get("value") is not None]
    name = doc["aliases"][0] if doc.get("aliases") else doc["id"]
    index: list[dict[str, Any]] = eval_results_to_model_index(name, results)
    return index


def read_model_index(card: Path) -> list[dict[str, Any]]:
    """The ``model-index`` list of a model card (README.md front matter), read with ``yaml.safe_load``."""
    import yaml

    try:
        text = card.read_text(encoding="utf-8", errors="replace")[: 4 * 1024 * 1024]
    except OSError as exc:
        raise HubError(f"cannot read {card}: {exc.strerror or exc}") from exc
    m = _FRONT_MATTER.match(text)
    if not m:
        raise HubError(f"{card} has no YAML front matter, so no model-index")
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        raise HubError(f"the front matter of {card} is not valid YAML: {exc}") from exc
    index = meta.get("model-index") if isinstance(meta, dict) else None
    if not isinstance(index, list) or not index:
        raise HubError(f"{card} has no model-index in its front matter")
    return index


def import_model_index(hub: Any, ident: str, card: Path) -> int:
    """Store ``card``'s model-index as claimed scores of model ``ident`` (replacing earlier claims from it)."""
    from huggingface_hub.repocard_data import model_index_to_eval_results

    index = read_model_index(card)
    try:
        _, results = model_index_to_eval_results(index)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise HubError(f"the model-index of {card} is malformed: {exc}") from exc
    source = f"model card {card.name}"
    with hub.transaction() as s:
        model = hub._find(s, ident)
        if model is None:
            raise HubError(f"no model {ident!r} on this hub", status=404)
        s.execute(delete(Claim).where(Claim.model_id == model.id, Claim.source == source))
        n = 0
        for r in results:
            value = r.metric_value
            num = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
            s.add(Claim(model_id=model.id, task=str(r.dataset_type)[:200], dataset=str(r.dataset_name)[:200],
                        metric=str(r.metric_type)[:100], value=num, source=source))
            n += 1
    return n
