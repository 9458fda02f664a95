"""Reproduce a rating: re-run a recorded vet from its inputs and check every metric against the recorded value.

    >>> r = reproduce(load_json(Path("attestation.json")), model=None, tolerance=1e-4)
    >>> r.ok, [(c.task, c.metric, c.recorded, c.reproduced) for c in r.checks]

The inputs are found by digest, never by trust in a name: the model is the copy (``--model``, the recorded path,
the recorded Hugging Face id in the local cache, or any cached snapshot of the same size) whose file manifest or
weights root matches the attestation; the base likewise; each task's data must hash to the recorded digest. The
evaluation runs with a fresh, empty result cache (a cached number would not be a reproduction), under the
recorded policy, tasks and item limit. A metric is reproduced when ``|reproduced - recorded| <= tolerance`` for
its value and its delta against the base.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from assay.errors import AssayError, ModelError
from assay.hub.attestation import field, manifest_digest, subjects_of, task_digests
from assay.hub.errors import HubError
from assay.progress import NULL_PROGRESS, Progress

SCHEMA = "assay.reproduce/1"
DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Check:
    """One recorded metric, measured again."""

    task: str
    metric: str
    recorded: float | None
    """The value in the vet result being reproduced."""
    reproduced: float | None
    """The value measured now (None when the re-run did not produce this metric)."""
    recorded_delta: float | None
    reproduced_delta: float | None
    ok: bool
    """Both value and delta within the tolerance."""


@dataclass(frozen=True)
class Reproduction:
    """The outcome of re-running a recorded vet."""

    ok: bool
    """Every recorded metric reproduced within the tolerance (and the inputs matched their digests)."""
    tolerance: float
    checks: tuple[Check, ...]
    model: str
    """Path of the model copy that matched the recorded digests."""
    base: str | None
    attestation: str | None
    """SHA-256 of the reproduced attestation's payload (None when a bare vet result was given)."""
    vet: dict[str, Any]
    """The new vet document."""
    notes: tuple[str, ...] = ()


def read_input(doc: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
    """(vet document, statement or None, attestation digest or None) from a vet result or a DSSE envelope."""
    import hashlib

    if "payloadType" in doc:
        try:
            payload = base64.b64decode(str(doc.get("payload")), validate=True)
            statement = json.loads(payload)
            vet = statement["predicate"]["vet"]
        except (ValueError, KeyError, TypeError) as exc:
            raise HubError(f"not a readable assay attestation: {exc}") from exc
        if not isinstance(vet, dict) or vet.get("schema") != "assay.vet/1":
            raise HubError("the attestation does not carry an assay.vet/1 result")
        return vet, statement, hashlib.sha256(payload).hexdigest()
    if doc.get("schema") != "assay.vet/1":
        raise HubError(f"not an assay.vet/1 result nor a signed attestation (schema: {doc.get('schema')!r})")
    return dict(doc), None, None


def _candidates(explicit: str | None, recorded: Mapping[str, Any] | None, total_bytes: int | None) -> Iterator[str]:
    """Where a copy of a model might be: the explicit path, the recorded path, its HF id in the cache, then
    cached snapshots of the same total size."""
    seen: set[str] = set()

    def once(p: str | None) -> Iterator[str]:
        if p and p not in seen:
            seen.add(p)
            yield p

    yield from once(explicit)
    rec = recorded or {}
    yield from once(rec.get("root"))
    if rec.get("hf_id"):
        yield from once(str(rec["hf_id"]))
    if total_bytes:
        try:
            from huggingface_hub import scan_cache_dir

            info = scan_cache_dir()
        except Exception:  # noqa: BLE001 - no cache, unreadable cache: nothing more to try
            return
        for repo in info.repos:
            for rev in repo.revisions:
                if rev.size_on_disk == total_bytes or abs(rev.size_on_disk - total_bytes) < 4096:
                    yield from once(str(rev.snapshot_path))


def find_model(*, explicit: str | None, recorded: Mapping[str, Any] | None, weights_root: str | None,
               manifest: str | None, total_bytes: int | None, role: str) -> tuple[Any, str | None]:
    """The first copy whose manifest digest (or, failing that, weights root) matches; raises HubError if none."""
    from assay.model.ref import resolve
    from assay.provenance.manifest import hash_model

    tried = []
    for spec in _candidates(explicit, recorded, total_bytes):
        try:
            ref = resolve(spec)
        except ModelError:
            tried.append(f"{spec} (not found)")
            continue
        if weights_root is None and manifest is None:
            return ref, None
        m = hash_model(ref, algorithm="blake3")
        if manifest and manifest_digest(subjects_of(m)) == manifest:
            return ref, None
        if weights_root and m.weights_root == weights_root:
            return ref, (f"the {role} at {spec} has the recorded weights but other files (re-sharded or re-saved)"
                         if manifest else None)
        if spec == explicit:
            raise HubError(f"{spec} is not the {role} that was vetted: its weights differ from the recorded digests",
                           hint="give a copy of the vetted model, or omit the path to search for one")
        tried.append(f"{spec} (other weights)")
    raise HubError(f"no copy of the {role} with the recorded digests was found"
                   + (f"; tried: {', '.join(tried)}" if tried else ""),
                   hint=f"pass --{'model' if role == 'model' else 'base-model'} PATH to a copy of it")


@contextmanager
def _fresh_cache() -> Iterator[None]:
    old = os.environ.get("ASSAY_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="assay-reproduce-") as d:
        os.environ["ASSAY_CACHE_DIR"] = d
        try:
            yield
        finally:
            if old is None:
                os.environ.pop("ASSAY_CACHE_DIR", None)
            else:
                os.environ["ASSAY_CACHE_DIR"] = old


def _close(a: float | None, b: float | None, tol: float) -> bool:
    if a is None and b is None:
        return True
    if a is None or b is None:
        return False
    return abs(a - b) <= tol


def reproduce(doc: Mapping[str, Any], *, model: str | None = None, base: str | None = None,
              tolerance: float = DEFAULT_TOLERANCE, progress: Progress = NULL_PROGRESS) -> Reproduction:
    """Re-run the vet recorded in ``doc`` (a vet result or a signed attestation) and compare every metric."""
    from assay.hub.attestation import metrics_of
    from assay.policy import policy_from_document
    from assay.vet import run_vet, vet_document

    if not tolerance >= 0:
        raise HubError("the tolerance must be 0 or more")
    vet, statement, digest = read_input(doc)
    pred = (statement or {}).get("predicate") or {}
    pm = pred.get("model") or {}
    notes: list[str] = []
    cand_ref, note = find_model(explicit=model, recorded=vet.get("candidate"), weights_root=pm.get("weights_root"),
                                manifest=pm.get("manifest_digest"), total_bytes=pm.get("total_bytes"), role="model")
    if note:
        notes.append(note)
    if statement is None:
        notes.append(f"a bare vet result records no model digests: the model at {cand_ref.spec} was not checked "
                     f"against what was vetted (reproduce a signed attestation to check it)")
    base_ref = None
    pb = pred.get("base") or {}
    if vet.get("base") or base:
        base_ref, note = find_model(explicit=base, recorded=vet.get("base"), weights_root=pb.get("weights_root"),
                                    manifest=None, total_bytes=None, role="base")
        if note:
            notes.append(note)
    settings = field(field(vet, "evaluation"), "settings")
    specs = [str(t) for t in settings.get("tasks") or []]
    recorded_tasks = pred.get("tasks") or {}
    if specs and recorded_tasks:
        now = task_digests(specs)
        for name, rec in recorded_tasks.items():
            if not isinstance(rec, Mapping) or not rec.get("digest"):
                notes.append(f"task {name}: no recorded data digest, so its data could not be checked")
                continue
            got = (now.get(name) or {}).get("digest")
            if got != rec["digest"]:
                raise HubError(f"the data of task {name} is not what was evaluated (digest {str(got)[:16]}… now, "
                               f"{str(rec['digest'])[:16]}… recorded); the rating cannot be reproduced with it")
    elif specs:
        notes.append("a bare vet result records no task data digests: the task data was not checked")
    try:
        policy = policy_from_document(vet.get("policy") or {})
    except AssayError as exc:
        raise HubError(f"the recorded policy cannot be read back: {exc.message}") from exc
    limit = settings.get("limit") if isinstance(settings.get("limit"), int) else None
    with _fresh_cache():
        result = run_vet(str(cand_ref.root if not cand_ref.single_file else cand_ref.spec),
                         base=str(base_ref.root) if base_ref is not None else None, policy=policy,
                         tasks=specs or None, limit=limit, progress=progress)
    new = vet_document(result)
    recorded = {(r["task"], r["metric"]): r for r in metrics_of(vet)}
    measured = {(r["task"], r["metric"]): r for r in metrics_of(new)}
    checks = []
    for key, r in recorded.items():
        m = measured.get(key)
        checks.append(Check(task=key[0], metric=key[1], recorded=r["value"], reproduced=m["value"] if m else None,
                            recorded_delta=r["delta"], reproduced_delta=m["delta"] if m else None,
                            ok=m is not None and _close(r["value"], m["value"], tolerance)
                            and _close(r["delta"], m["delta"], tolerance)))
    if not checks:
        notes.append("the recorded vet has no metrics to reproduce")
    ok = bool(checks) and all(c.ok for c in checks)
    return Reproduction(ok=ok, tolerance=tolerance, checks=tuple(checks), model=str(cand_ref.spec),
                        base=str(base_ref.spec) if base_ref else None, attestation=digest, vet=new, notes=tuple(notes))


def reproduction_document(r: Reproduction) -> dict[str, Any]:
    """The ``assay.reproduce/1`` document."""
    return {"schema": SCHEMA, "ok": r.ok, "tolerance": r.tolerance, "attestation": r.attestation,
            "model": r.model, "base": r.base, "notes": list(r.notes),
            "checks": [{"task": c.task, "metric": c.metric, "recorded": c.recorded, "reproduced": c.reproduced,
                        "recorded_delta": c.recorded_delta, "reproduced_delta": c.reproduced_delta, "ok": c.ok}
                       for c in r.checks]}


def reproduction_checks(r: Reproduction) -> Sequence[dict[str, Any]]:
    checks: list[dict[str, Any]] = reproduction_document(r)["checks"]
    return checks
