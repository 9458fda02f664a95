"""Sign and verify models in the OpenSSF model signing format (v1.0), offline, with a key pair.

A signature (``model.sig`` by default, inside the model folder) is a Sigstore bundle (media type
``application/vnd.dev.sigstore.bundle.v0.3+json``) whose DSSE envelope wraps an in-toto statement with predicate
type ``https://model_signing/signature/v1.0``: one resource descriptor (name, algorithm, digest) per file, the
``serialization`` parameters, and a subject digest (SHA-256 over the resource digests in path order). The
``model-signing`` tool verifies assay's ECDSA signatures and assay verifies its own. assay adds two clearly named
predicate fields that ``model-signing`` ignores: ``assay.weights_root`` (so a re-sharded copy can be matched to
what was signed) and ``assay.card`` (the model card's metadata at signing time).

    >>> priv, pub = generate_keypair(kind="ecdsa-p256")
    >>> sig = sign_model(resolve("./my-model"), private_key_pem=priv)
    >>> r = verify_model(resolve("./my-model"), public_key_pem=pub)
    >>> r.valid, r.message

``sign`` and ``verify`` agree on what is left out: ``sign`` records it in the signature's ``ignore_paths`` (git
metadata and the signature file, as the reference tool does), and ``verify`` leaves out exactly what the
signature records, so a folder with ``.git/`` that assay signed verifies without flags; the files it did not
check are listed. A file that transformers would import as code is checked even under an ignored path.
``trust_ignore_paths=True`` also leaves out git metadata when a signature does not record it (the reference
tool's default).

Symbolic links follow the signature's ``allow_symlinks``: a signed file that is now a link fails unless the
signature allows links, and a link that leaves the model folder is never read (it fails). For a Hugging Face cache
snapshot, links into its own repository's ``blobs/`` are how the cache stores files: they are read as the files.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from assay import __version__
from assay.errors import ModelError, ProvenanceError
from assay.model.ref import ModelRef, link_roots
from assay.progress import NULL_PROGRESS, Progress
from assay.provenance.manifest import (card_metadata, hash_file, hash_files, rel_name,
                                       weights_root)

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
SCHEMA = "assay.verify/1"
#: Paths the reference tool leaves out of a signature (besides the signature file itself).
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
KEY_KINDS = ("ecdsa-p256", "ed25519")


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of checking a model against a signature."""

    valid: bool
    """True only when the signature verifies with the given key and every file matches it."""
    signature_ok: bool
    """The signature over the statement verifies with the given public key."""
    extra: tuple[str, ...]
    """Files present in the model but not in the signature (including files in ignored folders such as .git/)."""
    missing: tuple[str, ...]
    """Files in the signature that are not in the model."""
    modified: tuple[tuple[str, str, str], ...]
    """``(path, signed digest, actual digest)`` in hex for every file whose content changed."""
    message: str
    """One or more sentences for the user; never empty."""
    signed_weights_root: str | None
    """The ``assay.weights_root`` recorded in the signature, if any."""
    card: dict[str, Any] | None
    """The ``assay.card`` metadata recorded in the signature, if any."""
    algorithm: str | None = None
    """The digest algorithm of the signed resources (``sha256`` for the reference tool's default)."""
    signer_key: str | None = None
    """SHA-256 of the signer's public key PEM, as recorded in the bundle (the reference tool's key hint)."""
    weights_root_match: bool | None = None
    """When files differ: whether the local weights still have the signed weights root (a re-sharded copy)."""
    checked: int = 0
    """Number of signed files (or shards) compared."""
    ignored_paths: tuple[str, ...] = ()
    """The ``ignore_paths`` the signature declares."""
    ignored_files: tuple[str, ...] = ()
    """Local files left out of the check because they lie under an ignored path (not vouched for)."""


# --------------------------------------------------------------------------------------------------- keys


def generate_keypair(*, kind: str = "ecdsa-p256") -> tuple[bytes, bytes]:
    """A new key pair as (PEM PKCS#8 private key, PEM SubjectPublicKeyInfo public key).

    ``ecdsa-p256`` is what the OpenSSF tool accepts; ``ed25519`` is an assay extension the tool cannot verify.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if kind == "ecdsa-p256":
        key: Any = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ProvenanceError(f"unknown key kind {kind!r} (choose one of: {', '.join(KEY_KINDS)})")
    priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    return priv, encode_public_pem(key.public_key())


def encode_public_pem(public_key: Any) -> bytes:
    """A public key as SubjectPublicKeyInfo PEM (what `assay keygen` writes to the ``.pub`` file)."""
    from cryptography.hazmat.primitives import serialization

    return bytes(public_key.public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo))


def load_private_key(pem: bytes) -> Any:
    """An unencrypted PEM private key, ECDSA (P-256/384/521) or Ed25519; anything else is one ProvenanceError line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError as exc:
        raise ProvenanceError("the private key is encrypted; assay needs an unencrypted PEM key") from exc
    except ValueError as exc:
        raise ProvenanceError("not a PEM private key (expected the output of `assay keygen`)") from exc
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name in ("secp256r1", "secp384r1", "secp521r1"):
        return key
    raise ProvenanceError(f"unsupported private key type {type(key).__name__}: use ECDSA P-256 (or Ed25519)")


def load_public_key(pem: bytes) -> Any:
    """A PEM public key, ECDSA (P-256/384/521) or Ed25519; anything else is one ProvenanceError line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        if b"PRIVATE KEY" in pem:
            raise ProvenanceError("this is a private key; verify needs the public key (.pub)") from exc
        raise ProvenanceError("not a PEM public key (expected the .pub file written by `assay keygen`)") from exc
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name in ("secp256r1", "secp384r1", "secp521r1"):
        return key
    raise ProvenanceError(f"unsupported public key type {type(key).__name__}: use ECDSA P-256 (or Ed25519)")


def key_hint(public_pem: bytes) -> str:
    """SHA-256 hex of the public key PEM: the key identifier the reference tool puts into bundles."""
    return hashlib.sha256(public_pem).hexdigest()


def _ec_hash(public_key: Any) -> Any:
    from cryptography.hazmat.primitives import hashes

    size = public_key.curve.key_size
    return hashes.SHA256() if size == 256 else hashes.SHA384() if size == 384 else hashes.SHA512()


def pae(payload: bytes, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """DSSE pre-authentication encoding: what is actually signed."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def sign_bytes(key: Any, data: bytes) -> bytes:
    """The signature of ``data`` (Ed25519, or ECDSA with the curve's own hash size)."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    if isinstance(key, ed25519.Ed25519PrivateKey):
        return bytes(key.sign(data))
    return bytes(key.sign(data, ec.ECDSA(_ec_hash(key.public_key()))))


def verify_bytes(key: Any, signature: bytes, data: bytes) -> bool:
    """True when ``signature`` is ``key``'s signature of ``data``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(_ec_hash(key)))
    except InvalidSignature:
        return False
    return True


# ------------------------------------------------------------------------------------------------ signing


def default_signature_path(ref: ModelRef) -> Path:
    """``model.sig`` inside the model folder; ``<file>.sig`` next to a single-file model."""
    if ref.single_file:
        return ref.root / (ref.files[0].name + ".sig")
    return ref.root / "model.sig"


def _inside(ref: ModelRef, path: Path) -> str | None:
    """The model-relative name of ``path`` if it lies inside the model folder."""
    try:
        rel = path.resolve().relative_to(ref.root)
    except ValueError:
        return None
    return rel.as_posix()


def _is_under(name: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    return any(name == p or name.startswith(p.rstrip("/") + "/") for p in prefixes)


def _path_key(name: str) -> tuple[str, ...]:
    """Sort key matching the reference tool (``PurePosixPath`` order: by path components)."""
    return PurePosixPath(name).parts


def _link_kind(ref: ModelRef, path: Path) -> str | None:
    """How ``path`` reaches its bytes: None (no link on the way), ``inside`` (a link that stays in the folder),
    ``blob`` (a Hugging Face cache snapshot's link into its own ``blobs/``) or ``outside``."""
    real = Path(os.path.realpath(path))
    if real == path:
        return None
    roots = link_roots(ref)
    for i, root in enumerate(roots):
        if real == root or root in real.parents:
            return "inside" if i == 0 else "blob"
    return "outside"


def _subject_digest(resources: list[dict[str, str]]) -> str:
    h = hashlib.sha256()
    for r in resources:
        h.update(bytes.fromhex(r["digest"]))
    return h.hexdigest()


def sign_model(ref: ModelRef, *, private_key_pem: bytes, signature_path: Path | None = None,
               algorithm: str = "sha256", progress: Progress = NULL_PROGRESS) -> Path:
    """Sign every file of ``ref`` and write the bundle; returns the signature path.

    Left out, as the reference tool does: the signature file itself and git metadata (``.git/``,
    ``.gitattributes``, ``.github/``, ``.gitignore``); they are listed in the signature's ``ignore_paths``.
    """
    if algorithm not in ("sha256", "blake3"):
        raise ProvenanceError(f"signatures use sha256 (the OpenSSF default) or blake3, not {algorithm!r}")
    key = load_private_key(private_key_pem)
    sig_path = Path(signature_path) if signature_path is not None else default_signature_path(ref)
    sig_name = None if ref.single_file else _inside(ref, sig_path)
    ignore = sorted({*GIT_PATHS, *([sig_name] if sig_name else [])})
    pairs = [(rel_name(ref, rel), ref.path(rel)) for rel in ref.files]
    if not ref.single_file:
        pairs = [(n, p) for n, p in pairs if not _is_under(n, ignore)]
    kinds = {n: _link_kind(ref, p) for n, p in pairs}
    outside = sorted(n for n, k in kinds.items() if k == "outside")
    if outside:
        shown = ref.files[0].name if outside[0] == "." else outside[0]
        raise ProvenanceError(f"cannot sign: {shown} is a symbolic link out of the model folder, to "
                              f"{os.path.realpath(dict(pairs)[outside[0]])}",
                              hint="copy the file into the folder (or sign the target itself)")
    files, unreadable = hash_files(ref, pairs, algorithm=algorithm, progress=progress, task="hashing for signature")
    if unreadable:
        name, why = unreadable[0]
        raise ProvenanceError(f"cannot sign: {name} is unreadable ({why})")
    if not files:
        raise ProvenanceError(f"cannot sign {ref.spec}: it has no files besides ignored ones")
    files.sort(key=lambda f: _path_key(f.path))
    resources = [{"name": f.path, "algorithm": algorithm, "digest": f.digest} for f in files]
    symlinks = any(k is not None for k in kinds.values())
    serialization: dict[str, Any] = {"method": "files", "hash_type": algorithm, "allow_symlinks": symlinks}
    if not ref.single_file:
        serialization["ignore_paths"] = ignore
    root = weights_root(ref, algorithm=algorithm)
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": ref.files[0].name if ref.single_file else ref.root.name,
                     "digest": {"sha256": _subject_digest(resources)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": serialization,
            "resources": resources,
            "assay.weights_root": None if root is None else {"algorithm": algorithm, "digest": root},
            "assay.card": card_metadata(ref),
            "assay.version": __version__,
        },
    }
    payload = json.dumps(statement, indent=2, ensure_ascii=False).encode("utf-8")
    signature = sign_bytes(key, pae(payload))
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint(encode_public_pem(key.public_key()))},
                                 "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    try:
        sig_path.write_text(json.dumps(bundle, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ProvenanceError(f"cannot write signature {sig_path}: {exc.strerror or exc}") from exc
    return sig_path


# ----------------------------------------------------------------------------------------------- verifying


class _Bad(Exception):
    """The signature file is malformed or does not verify (message for the user)."""


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise _Bad(f"the signature bundle's {what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Bad(f"the signature bundle's {what} is not valid base64") from exc


def _open_bundle(raw: bytes, public_key: Any, public_pem: bytes) -> tuple[dict[str, Any], str | None]:
    """Check the bundle and its signature; return the in-toto statement and the signer key hint."""
    try:
        bundle = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Bad("the signature file is not a JSON Sigstore bundle (corrupted or replaced)") from exc
    if not isinstance(bundle, dict):
        raise _Bad("the signature file is not a Sigstore bundle")
    if bundle.get("mediaType") != BUNDLE_MEDIA_TYPE:
        raise _Bad(f"unexpected bundle media type {bundle.get('mediaType')!r} (expected {BUNDLE_MEDIA_TYPE})")
    material = bundle.get("verificationMaterial") or {}
    hint = ((material.get("publicKey") or {}).get("hint")) if isinstance(material, dict) else None
    envelope = bundle.get("dsseEnvelope")
    if not isinstance(envelope, dict):
        if isinstance(bundle.get("messageSignature"), dict) or (isinstance(material, dict) and
                                                                 material.get("certificate")):
            raise _Bad("this bundle is a Sigstore keyless/certificate signature; assay verifies key signatures")
        raise _Bad("the signature bundle has no DSSE envelope")
    payload = _b64(envelope.get("payload"), "payload")
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or not sigs or not isinstance(sigs[0], dict):
        raise _Bad("the signature bundle holds no signature")
    signature = _b64(sigs[0].get("sig"), "signature")
    payload_type = envelope.get("payloadType")
    if payload_type != PAYLOAD_TYPE:
        raise _Bad(f"unexpected DSSE payload type {payload_type!r} (expected {PAYLOAD_TYPE})")
    mine = key_hint(public_pem)
    if not verify_bytes(public_key, signature, pae(payload)):
        if hint and hint != mine:
            raise _Bad(f"the model was signed with a different key (signer key sha256:{hint[:16]}..., "
                       f"your key sha256:{mine[:16]}...)")
        raise _Bad("the signature does not verify with this public key: the signed statement or the signature "
                   "was modified after signing, or it was made with another key")
    try:
        statement = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Bad("the signed payload is not JSON") from exc
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise _Bad("the signed payload is not an in-toto v1 statement")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise _Bad(f"unsupported predicate type {statement.get('predicateType')!r} (expected {PREDICATE_TYPE})")
    return statement, hint if isinstance(hint, str) else None


def _resources(statement: dict[str, Any]) -> tuple[list[dict[str, str]], dict[str, Any]]:
    predicate = statement.get("predicate")
    if not isinstance(predicate, dict):
        raise _Bad("the signed statement has no predicate")
    ser = predicate.get("serialization")
    res = predicate.get("resources")
    if not isinstance(ser, dict) or not isinstance(res, list):
        raise _Bad("the signed predicate lacks 'serialization' or 'resources'")
    out: list[dict[str, str]] = []
    for r in res:
        if not (isinstance(r, dict) and isinstance(r.get("name"), str) and isinstance(r.get("digest"), str)
                and isinstance(r.get("algorithm"), str)):
            raise _Bad("a resource descriptor in the signature is malformed")
        try:
            bytes.fromhex(r["digest"])
        except ValueError as exc:
            raise _Bad(f"the digest of {r['name']} in the signature is not hex") from exc
        out.append(r)
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise _Bad("the signed statement must have exactly one subject")
    expected = (subjects[0].get("digest") or {}).get("sha256")
    if expected != _subject_digest(out):
        raise _Bad("the signed statement is inconsistent: its subject digest does not match its resources")
    return out, ser


def verify_model(ref: ModelRef, *, public_key_pem: bytes, signature_path: Path | None = None,
                 trust_ignore_paths: bool = False, progress: Progress = NULL_PROGRESS) -> VerifyResult:
    """Check ``ref`` against its signature with ``public_key_pem``.

    Raises :class:`ProvenanceError` (exit 2) for a bad key or an absent signature file; everything that points
    at tampering (bad bundle, bad signature, wrong key, changed files) is a result with ``valid=False``.
    """
    public_key = load_public_key(public_key_pem)
    sig_path = Path(signature_path) if signature_path is not None else default_signature_path(ref)
    try:
        raw = sig_path.read_bytes()
    except FileNotFoundError as exc:
        raise ProvenanceError(f"no signature at {sig_path}", hint="sign with `assay sign` or pass --signature") from exc
    except OSError as exc:
        raise ProvenanceError(f"cannot read signature {sig_path}: {exc.strerror or exc}") from exc

    def refused(why: str) -> VerifyResult:
        return VerifyResult(valid=False, signature_ok=False, extra=(), missing=(), modified=(),
                            message=f"signature rejected: {why}", signed_weights_root=None, card=None)

    try:
        statement, hint = _open_bundle(raw, public_key, public_key_pem)
        resources, ser = _resources(statement)
    except _Bad as exc:
        return refused(str(exc))
    predicate = statement["predicate"]
    wr = predicate.get("assay.weights_root")
    signed_root = wr.get("digest") if isinstance(wr, dict) and isinstance(wr.get("digest"), str) else None
    card = predicate.get("assay.card") if isinstance(predicate.get("assay.card"), dict) else None
    method = ser.get("method")
    hash_type = ser.get("hash_type")
    if method not in ("files", "shards") or hash_type not in ("sha256", "blake3", "blake2b"):
        return refused(f"unsupported serialization {method!r} with {hash_type!r}")
    ignore_raw = ser.get("ignore_paths") or []
    ignored = tuple(sorted({str(p).rstrip("/") for p in ignore_raw if isinstance(p, str)}))
    allow_symlinks = ser.get("allow_symlinks") is True

    sig_name = None if ref.single_file else _inside(ref, sig_path)
    local: dict[str, Path] = {}
    for rel in ref.files:
        name = rel_name(ref, rel)
        if name != sig_name:
            local[name] = ref.path(rel)
    skip = (*ignored, *(GIT_PATHS if trust_ignore_paths else ()))
    ignored_files: list[str] = []
    if skip and not ref.single_file:
        from assay.scan.code import loader_python_files

        code = loader_python_files(ref.root, [r.as_posix() for r in ref.files])  # checked wherever they are
        ignored_files = sorted((n for n in local if _is_under(n, skip) and n not in code), key=_path_key)
        local = {n: p for n, p in local.items() if n not in set(ignored_files)}
    links = {n: _link_kind(ref, p) for n, p in local.items()}
    bad_links: dict[str, str] = {}
    for n, kind in links.items():
        if kind == "outside":
            bad_links[n] = "a symbolic link out of the model folder (not read)"
        elif kind == "inside" and not allow_symlinks:
            bad_links[n] = "a symbolic link, and the signature does not allow symbolic links (allow_symlinks: false)"
    linked = {n: local[n] for n in bad_links}
    local = {n: p for n, p in local.items() if n not in bad_links}

    if method == "files":
        signed = {r["name"]: r["digest"].lower() for r in resources}
        algo = {r["algorithm"] for r in resources} | {hash_type}
        if len(algo) != 1:
            return refused(f"mixed digest algorithms in the signature: {sorted(algo)}")
        names = sorted(set(signed) & set(local), key=_path_key)
        actual, unreadable = hash_files(ref, [(n, local[n]) for n in names], algorithm=hash_type,
                                        progress=progress, task="verifying")
        got = {f.path: f.digest for f in actual}
        modified = [(n, signed[n], got[n]) for n in names if n in got and got[n] != signed[n]]
        modified += [(n, signed[n], f"unreadable: {why}") for n, why in unreadable]
        signed_names = set(signed)
    else:
        try:
            modified, _missing, _extra = _verify_shards(resources, ser, local, hash_type, progress)
        except _Bad as exc:
            return refused(str(exc))
        signed_names = {r["name"].rsplit(":", 2)[0] for r in resources}
    modified += [(n, _signed_digest(resources, n), f"is {why}") for n, why in bad_links.items() if n in signed_names]
    present = set(local) | set(linked)
    missing = sorted(signed_names - present, key=_path_key)
    extra = sorted(present - signed_names, key=_path_key)
    modified.sort(key=lambda m: _path_key(m[0]))

    matched: bool | None = None
    if (modified or missing or extra) and signed_root and "outside" not in links.values():
        try:
            matched = weights_root(ref, algorithm=wr.get("algorithm", hash_type)) == signed_root
        except (ProvenanceError, ModelError):
            matched = None
    valid = not (modified or missing or extra)
    shown = [(ref.files[0].name if p == "." and ref.single_file else p, x, y) for p, x, y in modified]
    msg = _message(valid, len(resources), extra=extra, missing=missing, modified=shown, ignored=ignored,
                   matched=matched, ignored_files=ignored_files)
    return VerifyResult(valid=valid, signature_ok=True, extra=tuple(extra), missing=tuple(missing),
                        modified=tuple(modified), message=msg, signed_weights_root=signed_root, card=card,
                        algorithm=hash_type, signer_key=hint, weights_root_match=matched, checked=len(resources),
                        ignored_paths=ignored, ignored_files=tuple(ignored_files))


def _signed_digest(resources: list[dict[str, str]], name: str) -> str:
    for r in resources:
        if r["name"] == name or r["name"].rsplit(":", 2)[0] == name:
            return r["digest"].lower()
    return "(not signed)"


def _verify_shards(resources: list[dict[str, str]], ser: dict[str, Any], local: dict[str, Path], hash_type: str,
                   progress: Progress) -> tuple[list[tuple[str, str, str]], list[str], list[str]]:
    """The reference tool's "shards" serialization: each resource is ``path:start:end`` of a file."""
    shard_size = ser.get("shard_size")
    # protobuf Struct (used by the reference tool) stores every number as a double: 1000000000.0
    if isinstance(shard_size, float) and shard_size.is_integer():
        shard_size = int(shard_size)
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size <= 0:
        raise _Bad("the shard serialization has no valid shard_size")
    signed: dict[tuple[str, int, int], str] = {}
    for r in resources:
        head, _, end_text = r["name"].rpartition(":")
        shard_path, _, start_text = head.rpartition(":")
        try:
            signed[(shard_path, int(start_text), int(end_text))] = r["digest"].lower()
        except ValueError as exc:
            raise _Bad(f"malformed shard name {r['name']!r} in the signature") from exc
    expected_shards: dict[tuple[str, int, int], Path] = {}
    for local_name, local_path in local.items():
        try:
            size = local_path.stat().st_size
        except OSError:
            continue
        for offset in range(0, size, shard_size):
            expected_shards[(local_name, offset, min(size, offset + shard_size))] = local_path
    signed_files = {k[0] for k in signed}
    local_files = set(local)
    missing = sorted(signed_files - local_files, key=_path_key)
    extra = sorted(local_files - signed_files, key=_path_key)
    modified: list[tuple[str, str, str]] = []
    total = len(signed)
    progress.start("verifying", total=float(total))
    for key, digest in sorted(signed.items()):
        name, start, end = key
        if name not in local:
            continue
        label = f"{name}:{start}:{end}"
        if key not in expected_shards:
            modified.append((label, digest, "size changed"))
            continue
        try:
            actual = hash_file(local[name], algorithm=hash_type, start=start, end=end)
        except OSError as exc:
            actual = f"unreadable: {exc.strerror or exc}"
        if actual != digest:
            modified.append((label, digest, actual))
        progress.advance("verifying")
    progress.finish("verifying")
    flagged = {m[0].rsplit(":", 2)[0] for m in modified}
    for key in sorted(expected_shards):
        if key[0] in signed_files and key not in signed and key[0] not in flagged:
            modified.append((f"{key[0]}:{key[1]}:{key[2]}", "(not signed)", "size changed"))
            flagged.add(key[0])
    return modified, missing, extra


def _message(valid: bool, n: int, *, extra: list[str], missing: list[str], modified: list[tuple[str, str, str]],
             ignored: tuple[str, ...], matched: bool | None, ignored_files: list[str]) -> str:
    if valid:
        note = ""
        if ignored_files:
            note = (f" ({len(ignored_files)} file(s) under the signature's ignore_paths "
                    f"{', '.join(ignored) or ', '.join(GIT_PATHS)} were not checked)")
        return f"verified: the signature is valid and all {n} signed files match{note}"
    parts = []
    if modified:
        parts.append(f"{len(modified)} modified: " + "; ".join(f"{p} (signed {a}, found {b})" for p, a, b in modified))
    if missing:
        parts.append(f"{len(missing)} missing: " + ", ".join(missing))
    if extra:
        hidden = [e for e in extra if _is_under(e, GIT_PATHS) and not _is_under(e, ignored)]
        text = f"{len(extra)} extra (not signed): " + ", ".join(extra)
        if hidden:
            text += (f" [{len(hidden)} in git metadata the signature does not record as ignored; "
                     "--trust-ignore-paths leaves git metadata out, as the reference tool does]")
        parts.append(text)
    msg = "the signature is valid but the model differs from what was signed: " + "; ".join(parts)
    if matched is True:
        msg += (". The tensors are still the signed ones (the weights root matches): the weights were re-sharded "
                "or re-saved, or only files around them changed")
    elif matched is False:
        msg += ". The tensors differ from the signed ones (the weights root differs)"
    return msg


def verify_document(r: VerifyResult) -> dict[str, Any]:
    """The ``assay.verify/1`` JSON document."""
    return {
        "schema": SCHEMA,
        "valid": r.valid,
        "signature_ok": r.signature_ok,
        "message": r.message,
        "algorithm": r.algorithm,
        "signer_key": r.signer_key,
        "checked": r.checked,
        "extra": list(r.extra),
        "missing": list(r.missing),
        "modified": [{"path": p, "signed": a, "actual": b} for p, a, b in r.modified],
        "ignored_paths": list(r.ignored_paths),
        "ignored_files": list(r.ignored_files),
        "signed_weights_root": r.signed_weights_root,
        "weights_root_match": r.weights_root_match,
        "card": r.card,
    }
