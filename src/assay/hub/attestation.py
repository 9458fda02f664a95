"""Attestations: a vet result bound to a model's exact bytes, signed by whoever vouches for it.

An attestation is an in-toto Statement v1 whose subjects are the model's files and digests (the manifest
``assay sign`` uses) and whose predicate is the vet result: verdict, reasons, every metric with its interval, the
digests of the task data, the policy and its digest, settings, assay version and environment. The statement is
wrapped in a DSSE envelope signed with the publisher's key (ECDSA P-256 or Ed25519, the kinds ``assay keygen``
makes).

    >>> manifest = hash_model(resolve("./my-finetune"))
    >>> statement = build_statement(vet_doc, manifest, name="org/my-finetune")
    >>> envelope = sign_statement(statement, private_key_pem=priv)
    >>> opened = open_envelope(envelope, trusted={"ci": pub})      # raises AttestationError when refused
    >>> opened.key_name, opened.statement["predicate"]["verdict"]

:func:`open_envelope` is what the hub runs on every publish; every refusal is an :class:`AttestationError` whose
``status`` is the HTTP status the hub answers with and whose message names the offending field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from assay import __version__
from assay.errors import AssayError
from assay.provenance.manifest import Manifest
from assay.provenance.signing import PAYLOAD_TYPE, STATEMENT_TYPE, pae

PREDICATE_TYPE = "https://assay.dev/attestation/vet/v1"
SCHEMA = "assay.attestation/1"
KINDS = ("vet", "reproduction")
_HEX = set("0123456789abcdef")


class AttestationError(AssayError):
    """An attestation is malformed, unsigned, signed by an unknown key, or does not match the model it names.

    ``status`` is the HTTP status the hub refuses it with (400 malformed, 403 untrusted key, 409 mismatch).
    """

    def __init__(self, message: str, *, status: int = 400, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status = status


@dataclass(frozen=True)
class Opened:
    """An envelope whose signature verified with a trusted key."""

    statement: dict[str, Any]
    """The in-toto statement (validated: subjects, predicate type, predicate fields)."""
    key_name: str
    """The trusted key's name on this hub."""
    key_id: str
    """SHA-256 of the signing key's public PEM."""
    digest: str
    """SHA-256 hex of the signed payload bytes: the attestation's identity."""


# ----------------------------------------------------------------------------------------------- digests


def canonical(doc: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no spaces, UTF-8) used for every digest here."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def manifest_digest(subjects: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 over the subjects (name and every digest), in name order: the manifest's identity."""
    rows = sorted([str(s["name"]), sorted((str(k), str(v)) for k, v in s["digest"].items())] for s in subjects)
    return hashlib.sha256(canonical(rows)).hexdigest()


def task_digest(task: Any) -> str:
    """SHA-256 over a task's name, version and every item's content digest: the identity of its data."""
    return hashlib.sha256(canonical([task.name, task.version, [it.digest() for it in task.items]])).hexdigest()


def task_digests(specs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``{task name: {version, source, items, digest}}`` for task specs; a spec that cannot be loaded gets
    ``digest: null`` and the reason (the attestation then says the data is not pinned, rather than guessing)."""
    from assay.evaluate.loading import load_tasks

    out: dict[str, dict[str, Any]] = {}
    for spec in specs:
        try:
            tasks = load_tasks(spec)
        except AssayError as exc:
            out[spec] = {"version": None, "source": None, "items": None, "digest": None, "note": exc.message}
            continue
        for t in tasks:
            out[t.name] = {"spec": spec, "version": t.version, "source": t.source, "items": len(t.items),
                           "digest": task_digest(t)}
    return out


# ------------------------------------------------------------------------------------------- the statement


def subjects_of(manifest: Manifest) -> list[dict[str, Any]]:
    """In-toto subjects from a manifest: one per file, with its digest under the manifest's algorithm."""
    return [{"name": f.path, "digest": {manifest.algorithm: f.digest}} for f in manifest.files]


def metrics_of(vet: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every measured metric of a vet document: paired deltas against the base with their intervals, or, with no
    base, the candidate's own scores (delta and interval null)."""
    rows: list[dict[str, Any]] = []
    comparison = vet.get("comparison")
    if isinstance(comparison, Mapping) and comparison:
        for task, per in comparison.items():
            if not isinstance(per, Mapping):
                continue
            for metric, m in per.items():
                if not isinstance(m, Mapping):
                    continue
                ci = m.get("ci") if isinstance(m.get("ci"), Sequence) and len(m.get("ci") or ()) == 2 else None
                rows.append({"task": str(task), "metric": str(metric), "base": _num(m.get("base")),
                             "value": _num(m.get("candidate")), "delta": _num(m.get("delta")),
                             "ci": [_num(ci[0]), _num(ci[1])] if ci else None, "n": m.get("n"),
                             "higher_is_better": m.get("higher_is_better")})
        return rows
    evaluation = vet.get("evaluation")
    if isinstance(evaluation, Mapping) and isinstance(evaluation.get("tasks"), Mapping):
        for task, t in evaluation["tasks"].items():
            for metric, value in (t.get("metrics") or {}).items() if isinstance(t, Mapping) else ():
                rows.append({"task": str(task), "metric": str(metric), "base": None, "value": _num(value),
                             "delta": None, "ci": None, "n": t.get("n"), "higher_is_better": None})
    return rows


def field(doc: Any, key: str) -> dict[str, Any]:
    """``doc[key]`` when it is an object, else an empty dict (documents from elsewhere may lack a section)."""
    value = doc.get(key) if isinstance(doc, Mapping) else None
    return dict(value) if isinstance(value, Mapping) else {}


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def build_statement(vet: Mapping[str, Any], manifest: Manifest, *, name: str,
                    base_name: str | None = None, base_weights_root: str | None = None,
                    kind: str = "vet", reproduces: Mapping[str, Any] | None = None,
                    tasks: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The in-toto statement for ``vet`` (an ``assay.vet/1`` document) about the model hashed in ``manifest``.

    ``tasks`` are the task data digests (:func:`task_digests`); computed from the vet's settings when omitted.
    """
    if vet.get("schema") != "assay.vet/1":
        raise AttestationError(f"not an assay.vet/1 document (schema: {vet.get('schema')!r})")
    subjects = subjects_of(manifest)
    settings = field(field(vet, "evaluation"), "settings")
    if tasks is None:
        specs = settings.get("tasks") or []
        tasks = task_digests([str(s) for s in specs]) if specs else {}
    policy = vet.get("policy") or {}
    predicate = {
        "schema": SCHEMA,
        "kind": kind,
        "model": {"name": name, "weights_root": manifest.weights_root, "weights_note": manifest.weights_note,
                  "manifest_digest": manifest_digest(subjects),
                  "algorithm": manifest.algorithm, "total_bytes": sum(f.size for f in manifest.files)},
        "base": {"name": base_name, "weights_root": base_weights_root} if base_name or base_weights_root else None,
        "verdict": vet.get("verdict"),
        "reasons": list(vet.get("reasons") or []),
        "metrics": metrics_of(vet),
        "tasks": dict(tasks),
        "policy": policy,
        "policy_digest": hashlib.sha256(canonical(policy)).hexdigest(),
        "settings": settings,
        "assay_version": __version__,
        "vet_assay_version": (vet.get("environment") or {}).get("assay"),
        "environment": vet.get("environment"),
        "reproduces": dict(reproduces) if reproduces else None,
        "vet": dict(vet),
    }
    return {"_type": STATEMENT_TYPE, "subject": subjects, "predicateType": PREDICATE_TYPE, "predicate": predicate}


# ------------------------------------------------------------------------------------------------ DSSE


def sign_statement(statement: Mapping[str, Any], *, private_key_pem: bytes) -> dict[str, Any]:
    """A DSSE envelope over ``statement``, signed with the private key (PAE over the canonical JSON payload)."""
    from assay.provenance.signing import load_private_key, encode_public_pem, sign_bytes, key_hint

    key = load_private_key(private_key_pem)
    payload = canonical(statement)
    sig = sign_bytes(key, pae(payload, PAYLOAD_TYPE))
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": key_hint(encode_public_pem(key.public_key())),
                            "sig": base64.b64encode(sig).decode()}]}


def public_key_id(public_pem: bytes) -> str:
    """The key id of a public key (SHA-256 of its PEM); raises AttestationError if it is not a usable key."""
    from assay.errors import ProvenanceError
    from assay.provenance.signing import load_public_key, encode_public_pem, key_hint

    try:
        return key_hint(encode_public_pem(load_public_key(public_pem)))
    except ProvenanceError as exc:
        raise AttestationError(exc.message) from exc


def open_envelope(envelope: Any, *, trusted: Mapping[str, bytes]) -> Opened:
    """Verify a DSSE envelope against the hub's trusted keys (``name -> public PEM``) and validate its statement.

    Raises :class:`AttestationError`: 400 malformed or unsigned, 403 signed by no trusted key.
    """
    from assay.provenance.signing import load_public_key, encode_public_pem, verify_bytes, key_hint

    if not isinstance(envelope, Mapping):
        raise AttestationError("the attestation must be a DSSE envelope (a JSON object with payloadType, payload "
                               "and signatures)")
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        raise AttestationError(f"payloadType must be {PAYLOAD_TYPE!r} (got {envelope.get('payloadType')!r})")
    payload = _b64(envelope.get("payload"), "payload")
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise AttestationError("the envelope is unsigned (no signatures)", status=400)
    keys = {name: load_public_key(pem) for name, pem in trusted.items()}
    ids = {name: key_hint(encode_public_pem(k)) for name, k in keys.items()}
    signed = pae(payload, PAYLOAD_TYPE)
    hit: tuple[str, str] | None = None
    for s in sigs:
        if not isinstance(s, Mapping):
            raise AttestationError("signatures[] entries must be objects with keyid and sig")
        sig = _b64(s.get("sig"), "signatures[].sig")
        keyid = s.get("keyid")
        candidates = [n for n in keys if ids[n] == keyid] or list(keys)
        for name in candidates:
            if verify_bytes(keys[name], sig, signed):
                hit = (name, ids[name])
                break
        if hit:
            break
    if hit is None:
        known = any(ids[n] == s.get("keyid") for n in ids for s in sigs if isinstance(s, Mapping))
        if known:
            raise AttestationError("the signature does not verify with the key it names: the attestation was "
                                   "modified after signing", status=400)
        raise AttestationError("the attestation is not signed by a key this hub trusts",
                               hint="an admin adds the publisher's public key with `assay hub keys add NAME KEY.pub`",
                               status=403)
    try:
        statement = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise AttestationError(f"the payload is not JSON: {exc}") from exc
    validate_statement(statement)
    return Opened(statement=statement, key_name=hit[0], key_id=hit[1], digest=hashlib.sha256(payload).hexdigest())


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise AttestationError(f"{what} must be a non-empty base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AttestationError(f"{what} is not valid base64") from exc


def _require(cond: bool, field: str, what: str) -> None:
    if not cond:
        raise AttestationError(f"statement field {field}: {what}")


def _is_hex(v: Any, n: int | None = None) -> bool:
    return isinstance(v, str) and bool(v) and set(v) <= _HEX and (n is None or len(v) == n)


def model_id(model: Mapping[str, Any]) -> str:
    """The hub's id of the model a predicate names: its weights root, or ``files:<manifest digest>`` for a model
    whose tensors cannot be read without unpickling (identified by its exact files only)."""
    return str(model["weights_root"]) if model.get("weights_root") else f"files:{model['manifest_digest']}"


def validate_statement(st: Any) -> None:
    """Check the statement's shape field by field; raises AttestationError naming the first bad field."""
    _require(isinstance(st, dict), "(root)", "must be a JSON object")
    _require(st.get("_type") == STATEMENT_TYPE, "_type", f"must be {STATEMENT_TYPE!r}")
    _require(st.get("predicateType") == PREDICATE_TYPE, "predicateType", f"must be {PREDICATE_TYPE!r}")
    subjects = st.get("subject")
    _require(isinstance(subjects, list) and len(subjects) > 0, "subject", "must be a non-empty list of files")
    names = set()
    for i, s in enumerate(subjects):
        _require(isinstance(s, dict) and isinstance(s.get("name"), str) and s["name"] != "",
                 f"subject[{i}].name", "must be a non-empty string")
        _require(len(s["name"]) <= 1024, f"subject[{i}].name", "is longer than 1024 characters")
        d = s.get("digest")
        _require(isinstance(d, dict) and len(d) > 0 and all(isinstance(k, str) and _is_hex(v) for k, v in d.items()),
                 f"subject[{i}].digest", "must map an algorithm to a lower-case hex digest")
        _require(s["name"] not in names, f"subject[{i}].name", f"{s['name']!r} appears twice")
        names.add(s["name"])
    p = st.get("predicate")
    _require(isinstance(p, dict), "predicate", "must be an object")
    _require(p.get("schema") == SCHEMA, "predicate.schema", f"must be {SCHEMA!r} (got {p.get('schema')!r})")
    _require(p.get("kind") in KINDS, "predicate.kind", f"must be one of {', '.join(KINDS)}")
    m = p.get("model")
    _require(isinstance(m, dict), "predicate.model", "must be an object")
    _require(isinstance(m.get("name"), str) and 0 < len(m["name"]) <= 200 and m["name"].isprintable(),
             "predicate.model.name", "must be a printable name of 1 to 200 characters")
    _require(m.get("weights_root") is None or _is_hex(m.get("weights_root")), "predicate.model.weights_root",
             "must be a lower-case hex digest (or null when no tensor is readable without unpickling)")
    _require(_is_hex(m.get("manifest_digest"), 64), "predicate.model.manifest_digest",
             "must be a SHA-256 hex digest")
    _require(m["manifest_digest"] == manifest_digest(subjects), "predicate.model.manifest_digest",
             "does not match the subjects (the file list was changed)")
    b = p.get("base")
    _require(b is None or (isinstance(b, dict) and (b.get("weights_root") is None or _is_hex(b["weights_root"]))
                           and (b.get("name") is None or isinstance(b["name"], str) and len(b["name"]) <= 200)),
             "predicate.base", "must be null or {name, weights_root (hex or null)}")
    _require(p.get("verdict") is None or isinstance(p["verdict"], str) and 0 < len(p["verdict"]) <= 20,
             "predicate.verdict", "must be a verdict word (PASS, WARN, FAIL, NONE) or null")
    fp = p.get("fingerprint")
    _require(fp is None or isinstance(fp, dict) and isinstance(fp.get("tensors", {}), dict), "predicate.fingerprint",
             "must be null or an assay.fingerprint/1 object")
    _require(isinstance(p.get("reasons"), list), "predicate.reasons", "must be a list")
    metrics = p.get("metrics")
    _require(isinstance(metrics, list), "predicate.metrics", "must be a list")
    for i, row in enumerate(metrics):
        _require(isinstance(row, dict) and isinstance(row.get("task"), str) and isinstance(row.get("metric"), str)
                 and 0 < len(row["task"]) <= 200 and 0 < len(row["metric"]) <= 100,
                 f"predicate.metrics[{i}]", "needs task and metric names (strings up to 200/100 characters)")
        for k in ("base", "value", "delta"):
            _require(row.get(k) is None or _finite(row[k]), f"predicate.metrics[{i}].{k}", "must be a number or null")
        ci = row.get("ci")
        _require(ci is None or (isinstance(ci, list) and len(ci) == 2 and all(c is None or _finite(c) for c in ci)),
                 f"predicate.metrics[{i}].ci", "must be [low, high] or null")
    _require(isinstance(p.get("tasks"), dict), "predicate.tasks", "must be an object (task -> data digest)")
    _require(_is_hex(p.get("policy_digest"), 64), "predicate.policy_digest", "must be a SHA-256 hex digest")
    _require(p["policy_digest"] == hashlib.sha256(canonical(p.get("policy") or {})).hexdigest(),
             "predicate.policy_digest", "does not match predicate.policy")
    _require(isinstance(p.get("vet"), dict) and p["vet"].get("schema") == "assay.vet/1", "predicate.vet",
             "must be the assay.vet/1 document")
    if p["kind"] == "reproduction":
        r = p.get("reproduces")
        _require(isinstance(r, dict) and _is_hex(r.get("attestation"), 64) and isinstance(r.get("ok"), bool),
                 "predicate.reproduces", "a reproduction names the attestation digest it reproduces and ok")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
