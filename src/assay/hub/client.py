"""What a publisher runs: hash the model a vet result is about, sign the statement, send it to a hub.

    >>> env = attest_vet(vet_doc, private_key_pem=priv)             # hashes vet_doc["candidate"]["root"]
    >>> reply = post_attestation("http://127.0.0.1:8000", env, token=os.environ["ASSAY_HUB_TOKEN"])
    >>> reply["model"], reply["attestation"]

The model is hashed again at publish time, so the signature binds the vet result to the bytes on disk now; the
base's weights root is computed too when the base is at hand (it places the model in its family on the hub).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from assay.errors import AssayError, ModelError
from assay.hub.attestation import build_statement, field, sign_statement
from assay.hub.errors import HubError


def _resolve(path: str | Path | None, role: str, hint: str) -> Any:
    from assay.model.ref import resolve

    if not path:
        raise HubError(f"the vet result does not say where the {role} is", hint=hint)
    try:
        return resolve(str(path))
    except ModelError as exc:
        raise HubError(f"the {role} of this vet result is not at {path}: {exc.message}", hint=hint) from exc


def attest_vet(vet: Mapping[str, Any], *, private_key_pem: bytes, model: str | Path | None = None,
               base: str | Path | None = None, name: str | None = None, kind: str = "vet",
               reproduces: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A signed DSSE envelope for ``vet`` (an ``assay.vet/1`` document).

    ``model`` / ``base`` override the paths recorded in the vet result; ``name`` the alias (default: the
    candidate's ``hf_id`` or folder name). A base that is not at hand is recorded by name only.
    """
    from assay.provenance.manifest import hash_model, weights_root

    cand = field(vet, "candidate")
    ref = _resolve(model or cand.get("root"), "model", "pass --model PATH")
    manifest = hash_model(ref)
    base_doc = vet.get("base") if isinstance(vet.get("base"), Mapping) else None
    base_root = None
    base_name = None
    if base_doc or base:
        base_name = (base_doc or {}).get("hf_id") or (base_doc or {}).get("name") or (str(base) if base else None)
        try:
            base_ref = _resolve(base or (base_doc or {}).get("root"), "base", "pass --base-model PATH")
            base_root = weights_root(base_ref)
        except HubError:
            base_root = None
    alias = name or cand.get("hf_id") or cand.get("name") or ref.name
    statement = build_statement(vet, manifest, name=str(alias), base_name=base_name, base_weights_root=base_root,
                                kind=kind, reproduces=reproduces)
    from assay.hub.lineage import fingerprint

    statement["predicate"]["fingerprint"] = fingerprint(ref)
    try:
        return sign_statement(statement, private_key_pem=private_key_pem)
    except ValueError as exc:  # NaN or infinity somewhere in the vet document
        raise HubError(f"the vet result cannot be signed as canonical JSON: {exc}") from exc


def post_attestation(url: str, envelope: Mapping[str, Any], *, token: str, timeout: float = 60.0) -> dict[str, Any]:
    """POST ``envelope`` to ``URL/api/v1/attestations``; returns the hub's JSON answer or raises HubError."""
    try:
        import httpx
    except ImportError as exc:
        raise HubError("publishing needs httpx, part of the [hub] extra", hint="pip install 'assay[hub]'") from exc

    endpoint = url.rstrip("/") + "/api/v1/attestations"
    try:
        r = httpx.post(endpoint, content=json.dumps(envelope), timeout=timeout,
                       headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    except httpx.HTTPError as exc:
        raise HubError(f"cannot reach the hub at {url}: {exc}") from exc
    try:
        body = r.json()
    except ValueError:
        body = {"error": r.text[:300]}
    if r.status_code >= 400:
        err = body.get("error") if isinstance(body, dict) else None
        raise HubError(f"the hub refused the attestation ({r.status_code}): {err or 'no reason given'}",
                       hint=body.get("hint") if isinstance(body, dict) else None)
    return dict(body)


def load_json(path: Path) -> dict[str, Any]:
    """A JSON file as a dict, or a one-line AssayError."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise HubError(f"no such file: {path}") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise HubError(f"{path} is not a readable JSON file: {exc}") from exc
    if not isinstance(doc, dict):
        raise HubError(f"{path} is not a JSON object")
    return doc


def read_key(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise AssayError(f"cannot read key file {path}: {exc.strerror or exc}") from exc
