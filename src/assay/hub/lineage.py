"""Lineage across the hub: stored per-tensor fingerprints, the measured parent, the family tree of a base.

Each vet compares a candidate's weights with its base (``assay lineage``); the hub records the base's weights
root and the measured relation (finetune, lora, identical, quantized, unrelated...) with every model. On top of
that, every published model's fingerprint is compared with those already in the hub: its *measured parent* is the
closest related one, whatever its card or its vet named. The family tree of a base is every model whose measured
parent it is (or, lacking one, whose vet compared it against that base), recursively, each with its verdict.
A model vetted without a base and whose card names none is taken as a root (a base): it gets no measured parent.

A *fingerprint* (:func:`fingerprint`) keeps, for up to 64 weight matrices spread over the model, the tensor's
digest and 64 values at positions fixed by the tensor's name and shape. Two fingerprints are compared tensor by
tensor (:func:`compare_fingerprints`): equal digests mean identical tensors; otherwise the cosine of the sampled
values tells a derived tensor (close to 1) from an unrelated one (close to 0). So the hub finds a model's
*measured parent* among the models it holds without keeping anyone's weights.

    >>> tree = family_tree(hub, "SmolLM2-135M-Instruct")
    >>> [(c["name"], c["relation"], c["verdict"]) for c in tree["children"]]
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import numpy as np
from sqlalchemy import select

from assay.hub.db import Alias, Model
from assay.hub.errors import HubError

MAX_DEPTH = 8
FINGERPRINT_SCHEMA = "assay.fingerprint/1"
_TENSORS = 64
_SAMPLES = 64
#: Mean sampled cosine above which two models are called related (fine-tunes sit near 1, strangers near 0).
RELATED_COSINE = 0.5
#: Candidates whose relative change is within this factor of the closest one count as "about as close".
SIBLING_SLACK = 1.5


def fingerprint(ref: Any) -> dict[str, Any] | None:
    """A compact fingerprint of a model's weights (None when no tensor is readable without unpickling)."""
    from assay.errors import AssayError
    from assay.model.inventory import tensor_index
    from assay.provenance.manifest import tensor_digest

    try:
        index = tensor_index(ref, allow_pickle=False)
    except AssayError:
        return None
    mats = sorted(n for n, t in index.items() if len(t.shape) == 2 and int(np.prod(t.shape)) >= _SAMPLES)
    if not mats:
        return None
    step = max(1, len(mats) / _TENSORS)
    chosen = [mats[int(i * step)] for i in range(min(_TENSORS, len(mats)))]
    tensors: dict[str, Any] = {}
    try:
        for name in chosen:
            t = index[name]
            shape = tuple(int(x) for x in t.shape)
            arr = np.asarray(t.load(), dtype=np.float32).reshape(-1)
            seed = int.from_bytes(hashlib.sha256(f"{name}|{shape}".encode()).digest()[:8], "little")
            pos = np.random.default_rng(seed).choice(arr.size, size=_SAMPLES, replace=False)
            digest = tensor_digest(name, t.dtype, shape, t.raw(), algorithm="sha256").hex()[:32]
            tensors[name] = {"shape": list(shape), "digest": digest,
                             "sample": base64.b64encode(arr[np.sort(pos)].astype("<f4").tobytes()).decode()}
    except (AssayError, OSError, ValueError) as exc:
        return {"schema": FINGERPRINT_SCHEMA, "tensors": {}, "note": f"tensors not readable: {exc}"}
    return {"schema": FINGERPRINT_SCHEMA, "tensors": tensors}


def _sample(entry: dict[str, Any]) -> np.ndarray | None:
    try:
        a = np.frombuffer(base64.b64decode(entry["sample"]), dtype="<f4")
    except (KeyError, TypeError, ValueError):
        return None
    return a if a.size == _SAMPLES and np.all(np.isfinite(a)) else None


def _entries(fp: Any) -> dict[str, dict[str, Any]]:
    """The well-formed tensor entries of a fingerprint (anything else, from whatever source, is ignored)."""
    tensors = fp.get("tensors") if isinstance(fp, dict) else None
    if not isinstance(tensors, dict):
        return {}
    return {str(k): v for k, v in tensors.items() if isinstance(v, dict) and isinstance(v.get("shape"), list)}


def compare_fingerprints(cand: dict[str, Any], base: dict[str, Any]) -> dict[str, Any] | None:
    """How ``cand`` relates to ``base``: shared tensors, identical ones, mean sampled cosine, relative change.

    None when they share no tensor of the same name and shape (different architectures).
    """
    ct, bt = _entries(cand), _entries(base)
    shared = [n for n in ct if n in bt and ct[n].get("shape") == bt[n].get("shape")]
    if not shared:
        return None
    identical = sum(1 for n in shared if ct[n].get("digest") == bt[n].get("digest"))
    cos, rel = [], []
    for n in shared:
        if ct[n].get("digest") == bt[n].get("digest"):
            cos.append(1.0)
            rel.append(0.0)
            continue
        a, b = _sample(ct[n]), _sample(bt[n])
        if a is None or b is None:
            continue
        na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
        if na == 0 or nb == 0:
            continue
        cos.append(float(a @ b) / (na * nb))
        rel.append(float(np.linalg.norm(a - b)) / nb)
    if not cos:
        return None
    mean_cos = sum(cos) / len(cos)
    relation = ("identical" if identical == len(shared) else "derived" if mean_cos >= RELATED_COSINE
                else "unrelated")
    return {"shared": len(shared), "identical": identical, "cosine": mean_cos,
            "rel_change": sum(rel) / len(rel), "relation": relation}


def measured_parent(s: Any, model: Model, fp: dict[str, Any], *,
                    limit: int = 500) -> tuple[Model, dict[str, Any]] | None:
    """The hub model whose stored fingerprint is closest to ``fp`` (related ones only), with the comparison.

    Candidates are the models of the same architecture (newest ``limit``) that were not themselves measured
    against ``model`` (its children) nor against ``model``'s own declared base (its siblings). An identical copy
    wins; otherwise, among the related candidates about as close as the closest (within :data:`SIBLING_SLACK`),
    the declared base, then the one nearest its family's root, then the closest.
    """
    from assay.hub.db import Fingerprint

    q = select(Model, Fingerprint).join(Fingerprint, Fingerprint.model_id == Model.id).where(
        Model.id != model.id, (Model.base_weights_root.is_(None)) | (Model.base_weights_root != model.weights_root))
    if model.architecture:
        q = q.where(Model.architecture == model.architecture)
    if model.base_weights_root:  # vetted against the same base: siblings, not parents
        q = q.where((Model.base_weights_root.is_(None)) | (Model.base_weights_root != model.base_weights_root))
    related: list[tuple[Model, dict[str, Any]]] = []
    for other, ofp in s.execute(q.order_by(Model.id.desc()).limit(limit)).all():
        c = compare_fingerprints(fp, ofp.data)
        if c is not None and c["relation"] != "unrelated":
            related.append((other, c))
    if not related:
        return None
    identical = [r for r in related if r[1]["relation"] == "identical"]
    if identical:
        return min(identical, key=lambda r: r[0].id)
    # A sibling (another fine-tune of the same base) can look as close as the parent when the sibling's own change
    # is small; among the candidates about as close as the closest, prefer the declared base, then the one
    # nearest the root of its family, then the closest.
    best_rel = min(r[1]["rel_change"] for r in related)
    close = [r for r in related if r[1]["rel_change"] <= best_rel * SIBLING_SLACK + 1e-12]

    def depth(m: Model) -> int:
        d, cur = 0, m
        while cur.measured_parent_id is not None and d < MAX_DEPTH:
            cur = s.get(Model, cur.measured_parent_id)
            d += 1
        return d

    return min(close, key=lambda r: (r[0].weights_root != model.base_weights_root, depth(r[0]), r[1]["rel_change"]))


def family_tree(hub: Any, ident: str, *, max_nodes: int = 2000) -> dict[str, Any]:
    """The base ``ident`` (weights root or name) and its descendants in the hub, as nested dicts."""
    with hub.session() as s:
        root_model = hub._find(s, ident)
        if root_model is not None:
            root, name = root_model.weights_root, _name(s, root_model)
        else:  # a base that was never published itself, known only as the base of others
            row = s.execute(select(Model.base_weights_root, Model.base_name).where(
                (Model.base_name == ident) | (Model.base_weights_root == ident)).limit(1)).first()
            if row is None:
                raise HubError(f"no model or base {ident!r} on this hub", status=404)
            root, name = row[0], row[1] or row[0][:16]
        seen = {root}
        count = 0

        def kids(of: str) -> list[tuple[Model, str | None]]:
            """Children of ``of``: models whose measured parent it is, and models vetted against it that have no
            measured parent (with the relation to show)."""
            parent = s.scalar(select(Model).where(Model.weights_root == of))
            conds = Model.base_weights_root == of
            if parent is not None:
                conds = (Model.measured_parent_id == parent.id) | (conds & Model.measured_parent_id.is_(None))
            out = []
            for m in s.scalars(select(Model).where(conds).order_by(Model.id)):
                if m.relation == "unrelated" and m.measured_parent_id is None:
                    continue  # claims this base, but its weights say otherwise: listed apart
                if parent is not None and m.measured_parent_id == parent.id:
                    ev = m.parent_evidence or {}
                    rel = m.relation if m.base_weights_root == of else f"{ev.get('relation', 'derived')} (measured)"
                else:
                    rel = m.relation
                out.append((m, rel))
            return out

        def children(of: str, depth: int) -> list[dict[str, Any]]:
            nonlocal count
            if depth >= MAX_DEPTH or count >= max_nodes:
                return []
            out = []
            for m, rel in kids(of):
                if m.weights_root in seen or count >= max_nodes:
                    continue
                seen.add(m.weights_root)
                count += 1
                brief = hub._brief(s, m)
                brief["relation"] = rel
                brief["claimed_base"] = m.base_name if m.base_weights_root != of else None
                brief["name"] = brief["aliases"][0] if brief["aliases"] else m.weights_root[:16]
                brief["children"] = children(m.weights_root, depth + 1)
                out.append(brief)
            return out

        tree = {"id": root, "name": name, "in_hub": root_model is not None,
                "verdict": hub._brief(s, root_model)["verdict"] if root_model else None,
                "children": children(root, 0),
                "claimants": [{**hub._brief(s, m), "name": _name(s, m)} for m in s.scalars(
                    select(Model).where(Model.base_weights_root == root, Model.relation == "unrelated",
                                        Model.measured_parent_id.is_(None)).order_by(Model.id).limit(200))]}
        tree["size"] = count
        return tree


def _name(s: Any, m: Model) -> str:
    names = s.scalars(select(Alias.name).where(Alias.model_id == m.id).order_by(Alias.id)).all()
    return names[0] if names else m.weights_root[:16]
