"""The hub's operations on its database: publish, look up, rank. The web app and the CLI both call these.

    >>> hub = Hub.open("sqlite:///hub.db")
    >>> hub.add_key("ci", Path("ci.pem.pub").read_bytes())
    >>> token = hub.create_token("ci")                       # shown once; only its hash is stored
    >>> hub.publish(envelope, token=token)                   # one transaction; raises HubError when refused
    >>> hub.leaderboard(task="builtin:knowledge", base="SmolLM2-135M-Instruct")

Every write happens in one transaction: a publish that is refused or fails half-way leaves no model, alias,
manifest, attestation or metric behind (only the audit log records the refusal).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Select, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from assay.hub.attestation import AttestationError, field, model_id, open_envelope, public_key_id
from assay.hub.db import (Alias, Attestation, AuditEntry, Claim, Fingerprint, HubError, Key, ManifestRow, MetricRow,
                          Model, Token, now, open_database)

#: Size tiers by parameter count (upper bound exclusive), for the leaderboard filter.
TIERS: tuple[tuple[str, float], ...] = (("<1B", 1e9), ("1-3B", 3.5e9), ("3-9B", 9.5e9), ("9-16B", 16.5e9),
                                        ("16-40B", 40.5e9), ("40-80B", 80.5e9), (">80B", float("inf")))
SORTS = ("delta", "value", "low", "name", "verdict", "published")
PAGE_MAX = 200


def size_tier(parameters: int | None) -> str | None:
    """The size tier of a parameter count (None when unknown)."""
    if not parameters:
        return None
    return next(name for name, bound in TIERS if parameters < bound)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Published:
    """What a publish created."""

    model_id: str
    """The model's weights root."""
    attestation: str
    """The attestation digest."""
    created_model: bool
    """True when these weights were new to the hub."""
    aliases: tuple[str, ...]
    """Every name the model is known by, after this publish."""
    key: str
    """The trusted key that signed it."""
    reproduces: str | None = None
    """For a reproduction: the digest of the attestation it reproduces."""


class _NoToken(Exception):
    """No valid bearer token came with a write."""


class Hub:
    """A hub database. Thread-safe: every method opens its own session."""

    #: Seconds the leaderboard's filter choices (tasks, families, licences) are reused; a publish through this
    #: process clears them at once, another server process's publish shows within this time.
    FACET_TTL = 10.0

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._facets: dict[str, tuple[float, Any]] = {}

    def _facet(self, name: str, compute: Any) -> Any:
        import time

        hit = self._facets.get(name)
        if hit is not None and time.monotonic() - hit[0] < self.FACET_TTL:
            return hit[1]
        value = compute()
        self._facets[name] = (time.monotonic(), value)
        return value

    @classmethod
    def open(cls, url: str | None = None) -> Hub:
        """Open (and create or upgrade) the hub database at ``url`` (default: the user data dir's SQLite file)."""
        return cls(open_database(url))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as s:
            yield s

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back entirely on any error."""
        with Session(self.engine, expire_on_commit=False) as s, s.begin():
            yield s

    # ----------------------------------------------------------------------------------- keys and tokens

    def add_key(self, name: str, public_pem: bytes) -> str:
        """Trust a public key for attestations under ``name``; returns its key id."""
        _check_name(name, "key name")
        kid = public_key_id(public_pem)
        with self.transaction() as s:
            if s.scalar(select(Key).where(Key.name == name)) is not None:
                raise HubError(f"a key named {name!r} already exists", status=409)
            existing = s.scalar(select(Key).where(Key.key_id == kid))
            if existing is not None:
                raise HubError(f"this key is already trusted as {existing.name!r}", status=409)
            s.add(Key(name=name, key_id=kid, public_pem=public_pem.decode("ascii")))
            s.add(AuditEntry(action="key.add", actor=None, key_name=name, outcome="ok", detail=f"sha256:{kid}"))
        return kid

    def remove_key(self, name: str) -> None:
        """Stop trusting a key (its past attestations stay, marked as signed by a revoked key)."""
        with self.transaction() as s:
            key = s.scalar(select(Key).where(Key.name == name, Key.revoked_at.is_(None)))
            if key is None:
                raise HubError(f"no trusted key named {name!r}", status=404)
            key.revoked_at = now()
            s.add(AuditEntry(action="key.remove", key_name=name, outcome="ok"))

    def keys(self) -> list[dict[str, Any]]:
        with self.session() as s:
            return [{"name": k.name, "key_id": k.key_id, "added_at": k.added_at.isoformat(),
                     "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None}
                    for k in s.scalars(select(Key).order_by(Key.id))]

    def create_token(self, name: str) -> str:
        """A new bearer token for writes (printed once; the hub keeps only its SHA-256)."""
        _check_name(name, "token name")
        token = "assay_" + secrets.token_urlsafe(32)
        with self.transaction() as s:
            if s.scalar(select(Token).where(Token.name == name)) is not None:
                raise HubError(f"a token named {name!r} already exists (revoke it first)", status=409)
            s.add(Token(name=name, token_hash=hash_token(token)))
            s.add(AuditEntry(action="token.create", actor=name, outcome="ok"))
        return token

    def revoke_token(self, name: str) -> None:
        """Revoke a token: it can no longer write. Its name is freed for a new token."""
        with self.transaction() as s:
            tok = s.scalar(select(Token).where(Token.name == name))
            if tok is None or tok.revoked_at is not None:
                raise HubError(f"no active token named {name!r}", status=404)
            tok.revoked_at = now()
            tok.name = f"{name} (revoked {tok.id})"
            s.add(AuditEntry(action="token.revoke", actor=name, outcome="ok"))

    def token_name(self, token: str | None) -> str | None:
        """The name of an active token, or None when it is missing, unknown or revoked."""
        if not token:
            return None
        with self.session() as s:
            tok = s.scalar(select(Token).where(Token.token_hash == hash_token(token), Token.revoked_at.is_(None)))
            return tok.name if tok else None

    # -------------------------------------------------------------------------------------------- publish

    def publish(self, envelope: Any, *, token: str | None, remote: str | None = None) -> Published:
        """Verify and store an attestation, in one transaction. Raises HubError (with an HTTP status) when refused."""
        actor: str | None = None
        try:
            with self.transaction() as s:  # one round of reads and writes; nothing is kept if anything fails
                tok = s.scalar(select(Token).where(Token.token_hash == hash_token(token or ""),
                                                   Token.revoked_at.is_(None))) if token else None
                if tok is None:
                    raise _NoToken()
                actor = tok.name
                keys = {k.name: k for k in s.scalars(select(Key).where(Key.revoked_at.is_(None)))}
                opened = open_envelope(envelope, trusted={n: k.public_pem.encode("ascii") for n, k in keys.items()})
                result = self._store(s, opened, envelope, keys[opened.key_name], tok)
                s.add(AuditEntry(action="publish", actor=actor, key_name=opened.key_name,
                                 model_id=None, attestation_digest=opened.digest, outcome="ok",
                                 detail=f"{result.aliases[0]} {result.model_id[:16]} from {remote or 'local'}"))
            self._facets.clear()
            return result
        except _NoToken as exc:
            self._audit("publish", None, None, None, "refused", "missing, unknown or revoked token")
            raise HubError("writes need a valid bearer token", status=401,
                           hint="create one with `assay hub token create NAME` on the hub") from exc
        except AttestationError as exc:
            self._audit("publish", actor, None, None, "refused", exc.diagnostics())
            raise HubError(exc.message, status=exc.status, hint=exc.hint) from exc
        except HubError as exc:
            self._audit("publish", actor, None, None, "refused", exc.diagnostics())
            raise
        except IntegrityError as exc:  # a concurrent publish of the same thing
            self._audit("publish", actor, None, None, "refused", "conflict")
            raise HubError("conflicting concurrent publish; try again", status=409) from exc

    def _audit(self, action: str, actor: str | None, key: str | None, digest: str | None, outcome: str,
               detail: str) -> None:
        with self.transaction() as s:
            s.add(AuditEntry(action=action, actor=actor, key_name=key, attestation_digest=digest, outcome=outcome,
                             detail=detail[:2000]))

    def _store(self, s: Session, opened: Any, envelope: Mapping[str, Any], key: Key, token: Token) -> Published:
        st = opened.statement
        p = st["predicate"]
        m = p["model"]
        # One round trip for the three look-ups (a PostgreSQL hub pays per round trip).
        seen_att, seen_manifest, seen_model = s.execute(select(
            select(Attestation.id).where(Attestation.digest == opened.digest).scalar_subquery(),
            select(ManifestRow.id).where(ManifestRow.digest == m["manifest_digest"]).scalar_subquery(),
            select(Model.id).where(Model.weights_root == model_id(m)).scalar_subquery())).one()
        if seen_att is not None:
            raise HubError("this attestation is already published", status=409)
        manifest = s.get(ManifestRow, seen_manifest) if seen_manifest is not None else None
        model = s.get(Model, seen_model) if seen_model is not None else None
        if manifest is not None and (model is None or manifest.model_id != model.id):
            raise HubError("the subjects do not match the model entry: these files are registered under different "
                           "weights (another weights root)", status=409)
        vet = p["vet"]
        inv = field(vet, "inventory")
        lic = _licence(vet)
        lineage = field(vet, "lineage")
        base = p.get("base") or {}
        created = model is None
        if model is None:
            model = Model(weights_root=model_id(m))
            s.add(model)
        if p["kind"] == "vet":
            params = inv.get("parameters") if isinstance(inv.get("parameters"), int) else None
            model.architecture = _short(inv.get("architecture"), 200) or model.architecture
            model.parameters = params or model.parameters
            model.size_tier = size_tier(model.parameters)
            model.licence = _short(lic, 200) or model.licence
            model.base_weights_root = base.get("weights_root")
            model.base_name = _short(base.get("name"), 200)
            model.relation = _short(lineage.get("relation"), 40)
        s.flush()
        if manifest is None:
            manifest = ManifestRow(digest=m["manifest_digest"], model_id=model.id, algorithm=_short(m.get("algorithm"),
                                   20) or "?", files=st["subject"],
                                   total_bytes=m.get("total_bytes") if isinstance(m.get("total_bytes"), int) else None)
            s.add(manifest)
        names = set() if created else {a.name for a in s.scalars(select(Alias).where(Alias.model_id == model.id))}
        if m["name"] not in names:
            s.add(Alias(name=m["name"], model_id=model.id))
            names.add(m["name"])
        s.flush()  # the manifest's id, for the attestation
        reproduces = None
        if p["kind"] == "reproduction":
            r = p["reproduces"]
            orig = s.scalar(select(Attestation).where(Attestation.digest == r["attestation"]))
            if orig is None:
                raise HubError(f"the reproduced attestation {r['attestation'][:16]}… is not on this hub", status=404)
            if orig.model_id != model.id:
                raise HubError("the reproduction is about other weights than the attestation it reproduces",
                               status=409)
            reproduces = orig
        att = Attestation(digest=opened.digest, model_id=model.id, manifest_id=manifest.id, key_id=key.id,
                          token_id=token.id, kind=p["kind"], name=m["name"],
                          verdict=_short(p.get("verdict"), 20), base_weights_root=base.get("weights_root"),
                          base_name=_short(base.get("name"), 200),
                          reproduces_id=reproduces.id if reproduces else None,
                          reproduced_ok=bool(p["reproduces"]["ok"]) if reproduces else None,
                          cost_per_task=_cost(vet),
                          envelope=dict(envelope), predicate=p)
        s.add(att)
        s.flush()
        rows = metric_rows(p["metrics"], attestation_id=att.id, model_id=model.id, latest=p["kind"] == "vet")
        if p["kind"] == "vet" and not created:
            s.execute(update(MetricRow).where(MetricRow.model_id == model.id, MetricRow.latest.is_(True))
                      .values(latest=False))
        if rows:
            s.execute(insert(MetricRow), rows)
        if p["kind"] == "vet":
            model.latest_attestation_id = att.id
        fp = p.get("fingerprint") if isinstance(p.get("fingerprint"), dict) else None
        if fp is not None and s.scalar(select(Fingerprint.id).where(Fingerprint.model_id == model.id)) is None:
            s.add(Fingerprint(model_id=model.id, data=fp))
            s.flush()
            card = field(inv, "card")
            claims_a_base = bool(base.get("weights_root") or base.get("name") or card.get("base_model"))
            if p["kind"] == "vet" and model.measured_parent_id is None and claims_a_base:
                from assay.hub.lineage import measured_parent

                found = measured_parent(s, model, fp)
                if found is not None:
                    model.measured_parent_id, model.parent_evidence = found[0].id, found[1]
        return Published(model_id=model.weights_root, attestation=opened.digest, created_model=created,
                         aliases=tuple(sorted(names)), key=opened.key_name,
                         reproduces=reproduces.digest if reproduces else None)

    # ------------------------------------------------------------------------------------------------ reads

    def _find(self, s: Session, ident: str) -> Model | None:
        """A model by weights root (or a unique prefix of at least 12 hex digits) or by alias (newest wins)."""
        ident = ident.strip()
        model = s.scalar(select(Model).where(Model.weights_root == ident))
        if model is None:
            model = s.scalar(select(Model).join(Alias).where(Alias.name == ident).order_by(Alias.id.desc()).limit(1))
        if model is None and len(ident) >= 12 and set(ident) <= set("0123456789abcdef"):
            hits = s.scalars(select(Model).where(Model.weights_root.startswith(ident, autoescape=True))
                             .limit(2)).all()
            model = hits[0] if len(hits) == 1 else None
        return model

    def model(self, ident: str) -> dict[str, Any]:
        """Everything the hub knows about one model. Raises HubError 404 if unknown."""
        with self.session() as s:
            model = self._find(s, ident)
            if model is None:
                raise HubError(f"no model {ident!r} on this hub (give a weights root or a name)", status=404)
            return self._model_doc(s, model, full=True)

    def attestations(self, ident: str) -> list[dict[str, Any]]:
        with self.session() as s:
            model = self._find(s, ident)
            if model is None:
                raise HubError(f"no model {ident!r} on this hub", status=404)
            atts = s.scalars(select(Attestation).options(selectinload(Attestation.key))
                             .where(Attestation.model_id == model.id).order_by(Attestation.id)).all()
            return [{"digest": a.digest, "kind": a.kind, "name": a.name, "verdict": a.verdict, "key": a.key.name,
                     "published_at": a.published_at.isoformat(), "envelope": a.envelope} for a in atts]

    def _status(self, s: Session, model: Model) -> dict[str, Any]:
        """Who vouched for the latest vet, and whether a second independent key reproduced it."""
        if model.latest_attestation_id is None:
            return {"vouched_by": [], "reproduced": False, "reproduced_by": [], "failed_reproductions": []}
        latest = s.get(Attestation, model.latest_attestation_id)
        assert latest is not None
        reps = s.scalars(select(Attestation).options(selectinload(Attestation.key))
                         .where(Attestation.reproduces_id == latest.id)).all()
        vouch = s.get(Key, latest.key_id)
        indep = [r.key.name for r in reps if r.reproduced_ok and r.key_id != latest.key_id and r.key.revoked_at is None]
        return {"vouched_by": [vouch.name] if vouch else [],
                "vouch_key_revoked": bool(vouch and vouch.revoked_at),
                "reproduced": bool(indep), "reproduced_by": sorted(set(indep)),
                "failed_reproductions": sorted({r.key.name for r in reps if not r.reproduced_ok})}

    def _model_doc(self, s: Session, model: Model, *, full: bool) -> dict[str, Any]:
        latest = s.get(Attestation, model.latest_attestation_id) if model.latest_attestation_id else None
        doc: dict[str, Any] = {
            "schema": "assay.hub-model/1",
            "id": model.weights_root,
            "aliases": [a.name for a in s.scalars(select(Alias).where(Alias.model_id == model.id).order_by(Alias.id))],
            "architecture": model.architecture, "parameters": model.parameters, "size_tier": model.size_tier,
            "licence": model.licence, "verdict": latest.verdict if latest else None,
            "base": {"name": model.base_name, "weights_root": model.base_weights_root,
                     "in_hub": bool(model.base_weights_root and s.scalar(
                         select(Model.id).where(Model.weights_root == model.base_weights_root)))},
            "relation": model.relation,
            "first_seen": model.first_seen.isoformat(),
            **self._status(s, model),
        }
        if full:
            mans = s.scalars(select(ManifestRow).where(ManifestRow.model_id == model.id).order_by(ManifestRow.id)).all()
            doc["manifests"] = [{"digest": x.digest, "algorithm": x.algorithm, "files": x.files,
                                 "total_bytes": x.total_bytes} for x in mans]
            atts = s.scalars(select(Attestation).options(selectinload(Attestation.key), selectinload(
                Attestation.metrics)).where(Attestation.model_id == model.id).order_by(Attestation.id)).all()
            digests = {a.id: a.digest for a in atts}
            doc["history"] = [{"digest": a.digest, "kind": a.kind, "name": a.name, "verdict": a.verdict,
                               "key": a.key.name, "published_at": a.published_at.isoformat(),
                               "reproduces": digests.get(a.reproduces_id) if a.reproduces_id else None,
                               "reproduced_ok": a.reproduced_ok,
                               "metrics": [_metric_doc(r) for r in a.metrics]} for a in atts]
            doc["vet"] = latest.predicate.get("vet") if latest else None
            doc["tasks"] = latest.predicate.get("tasks") if latest else None
            doc["policy_digest"] = latest.predicate.get("policy_digest") if latest else None
            doc["claims"] = [{"task": c.task, "dataset": c.dataset, "metric": c.metric, "value": c.value,
                              "source": c.source} for c in s.scalars(select(Claim).where(Claim.model_id == model.id))]
            parent = s.get(Model, model.measured_parent_id) if model.measured_parent_id else None
            doc["measured_parent"] = parent.weights_root if parent else None
            doc["measured_parent_name"] = (s.scalar(select(Alias.name).where(Alias.model_id == parent.id)
                                                    .order_by(Alias.id).limit(1)) if parent else None)
            doc["parent_evidence"] = model.parent_evidence
            doc["children"] = [self._brief(s, c) for c in s.scalars(
                select(Model).where((Model.measured_parent_id == model.id) | (
                    (Model.base_weights_root == model.weights_root) & Model.measured_parent_id.is_(None))
                ).where(Model.id != model.id).order_by(Model.id).limit(500))]
        return doc

    def _brief(self, s: Session, m: Model) -> dict[str, Any]:
        latest = s.get(Attestation, m.latest_attestation_id) if m.latest_attestation_id else None
        names = s.scalars(select(Alias.name).where(Alias.model_id == m.id).order_by(Alias.id)).all()
        return {"id": m.weights_root, "aliases": list(names), "verdict": latest.verdict if latest else None,
                "relation": m.relation, "licence": m.licence, "size_tier": m.size_tier}

    def models(self, *, q: str | None = None, limit: int = 50, offset: int = 0) -> dict[str, Any]:
        """Models, newest first; ``q`` matches a name (substring, any case), a weights root or a manifest digest
        (hex prefix)."""
        limit, offset = _page(limit, offset)
        with self.session() as s:
            stmt: Select[Any] = select(Model.id)
            if q:
                q = q.strip()[:200]
                like = f"%{_escape_like(q.lower())}%"
                ids = set(s.scalars(select(Alias.model_id).where(func.lower(Alias.name).like(like, escape="\\"))))
                hexq = q.lower()
                if len(hexq) >= 4 and set(hexq) <= set("0123456789abcdef"):  # a digest prefix: index range scans
                    ids |= set(s.scalars(select(Model.id).where(Model.weights_root >= hexq,
                                                                Model.weights_root < hexq + "g")))
                    ids |= set(s.scalars(select(ManifestRow.model_id).where(ManifestRow.digest >= hexq,
                                                                           ManifestRow.digest < hexq + "g")))
                ordered = sorted(ids, reverse=True)
                total, page = len(ordered), ordered[offset:offset + limit]
            else:
                total = s.scalar(select(func.count()).select_from(Model)) or 0
                page = list(s.scalars(stmt.order_by(Model.id.desc()).limit(limit).offset(offset)))
            return {"schema": "assay.hub-models/1", "total": total, "limit": limit, "offset": offset,
                    "models": self._briefs(s, page)}

    def _briefs(self, s: Session, ids: Sequence[int]) -> list[dict[str, Any]]:
        """Summaries of the models ``ids`` (in that order) in a fixed number of queries."""
        if not ids:
            return []
        models = {m.id: m for m in s.scalars(select(Model).where(Model.id.in_(ids)))}
        names: dict[int, list[str]] = {}
        for mid, name in s.execute(select(Alias.model_id, Alias.name).where(Alias.model_id.in_(ids))
                                   .order_by(Alias.id)):
            names.setdefault(mid, []).append(name)
        latest_ids = [m.latest_attestation_id for m in models.values() if m.latest_attestation_id]
        latest = {a_id: (verd, kid) for a_id, verd, kid in s.execute(
            select(Attestation.id, Attestation.verdict, Attestation.key_id).where(Attestation.id.in_(latest_ids)))}
        keys = {k.id: k for k in s.scalars(select(Key))}
        reps: dict[int, set[str]] = {}
        for rep_of, kid, ok in s.execute(select(Attestation.reproduces_id, Attestation.key_id,
                                                Attestation.reproduced_ok)
                                         .where(Attestation.reproduces_id.in_(latest_ids))):
            k = keys.get(kid)
            if ok and k is not None and rep_of is not None and k.revoked_at is None and kid != latest[rep_of][1]:
                reps.setdefault(rep_of, set()).add(k.name)
        roots = {m.base_weights_root for m in models.values() if m.base_weights_root}
        in_hub = set(s.scalars(select(Model.weights_root).where(Model.weights_root.in_(roots)))) if roots else set()
        out = []
        for mid in ids:
            m = models[mid]
            verd, vouch = latest.get(m.latest_attestation_id or -1, (None, None))
            out.append({"schema": "assay.hub-model/1", "id": m.weights_root, "aliases": names.get(mid, []),
                        "architecture": m.architecture, "parameters": m.parameters, "size_tier": m.size_tier,
                        "licence": m.licence, "verdict": verd,
                        "base": {"name": m.base_name, "weights_root": m.base_weights_root,
                                 "in_hub": m.base_weights_root in in_hub},
                        "relation": m.relation, "first_seen": m.first_seen.isoformat(),
                        "vouched_by": [keys[vouch].name] if vouch is not None and vouch in keys else [],
                        "reproduced": bool(reps.get(m.latest_attestation_id or -1)),
                        "reproduced_by": sorted(reps.get(m.latest_attestation_id or -1, ()))})
        return out

    def tasks(self) -> list[str]:
        """Every task with a measured metric (cached for :attr:`FACET_TTL`)."""
        def compute() -> list[str]:
            with self.session() as s:
                return list(s.scalars(select(MetricRow.task).distinct().order_by(MetricRow.task)))

        return list(self._facet("tasks", compute))

    def bases(self) -> list[dict[str, Any]]:
        """Every base family: the weights roots models were compared against, with a name and a count (cached for
        :attr:`FACET_TTL`)."""
        return list(self._facet("bases", self._bases))

    def _bases(self) -> list[dict[str, Any]]:
        with self.session() as s:
            rows = s.execute(select(Model.base_weights_root, func.max(Model.base_name), func.count())
                             .where(Model.base_weights_root.is_not(None)).group_by(Model.base_weights_root)
                             .order_by(func.count().desc()).limit(500)).all()
            roots = [r[0] for r in rows]
            hub_names: dict[str, str] = {}
            for hub_root, alias in s.execute(select(Model.weights_root, Alias.name)
                                             .join(Alias, Alias.model_id == Model.id)
                                             .where(Model.weights_root.in_(roots)).order_by(Alias.id)):
                hub_names.setdefault(hub_root, alias)
            out: list[dict[str, Any]] = []
            for base_root, base_name, n in rows:
                if base_root is None:
                    continue
                out.append({"weights_root": base_root, "name": hub_names.get(base_root) or base_name or base_root[:16],
                            "models": n, "in_hub": base_root in hub_names})
            return out

    def leaderboard(self, *, task: str | None = None, metric: str | None = None, base: str | None = None,
                    verdict: str | None = None, licence: str | None = None, tier: str | None = None,
                    sort: str = "delta", descending: bool = True, limit: int = 50,
                    offset: int = 0) -> dict[str, Any]:
        """Latest vet of each model on one task and metric: delta against the base with its interval.

        ``base`` is a base's weights root or name (its family); ``task`` defaults to the most common task and
        ``metric`` to that task's most common metric. Rows with no delta sort last.
        """
        if sort not in SORTS:
            raise HubError(f"unknown sort {sort!r} (choose one of: {', '.join(SORTS)})", status=422)
        limit, offset = _page(limit, offset)
        with self.session() as s:
            base_root = None
            if base:
                bm = self._find(s, base)
                base_root = bm.weights_root if bm else s.scalar(
                    select(Model.base_weights_root).where(or_(Model.base_weights_root == base,
                                                              Model.base_name == base)).limit(1))
                if base_root is None:
                    raise HubError(f"no base family {base!r} on this hub", status=404)
            if task is None:
                task = s.scalar(select(MetricRow.task).group_by(MetricRow.task).order_by(func.count().desc(),
                                                                                        MetricRow.task).limit(1))
            if metric is None and task is not None:
                metric = s.scalar(select(MetricRow.metric).where(MetricRow.task == task).group_by(MetricRow.metric)
                                  .order_by(func.count().desc(), MetricRow.metric).limit(1))
            conds: list[Any] = [MetricRow.task == task, MetricRow.metric == metric, MetricRow.latest.is_(True)]
            joined = []  # filters on the model or the attestation need those tables in the ranking query
            if base_root:
                joined.append(Model.base_weights_root == base_root)
            if licence:
                joined.append(Model.licence == licence)
            if tier:
                joined.append(Model.size_tier == tier)
            if verdict:
                joined.append(Attestation.verdict == verdict.upper())
            col: Any = {"delta": MetricRow.delta, "value": MetricRow.value, "low": MetricRow.ci_low,
                        "name": Attestation.name, "verdict": Attestation.verdict,
                        "published": Attestation.published_at}[sort]
            rank: Any = select(MetricRow.id).where(*conds)
            if joined or sort in ("name", "verdict", "published"):
                rank = (rank.join(Model, Model.id == MetricRow.model_id)
                        .join(Attestation, Attestation.id == MetricRow.attestation_id).where(*joined))
            total = s.scalar(select(func.count()).select_from(rank.subquery())) or 0
            order = [col.is_(None), col.desc() if descending else col.asc(), MetricRow.model_id]
            page_ids = list(s.scalars(rank.order_by(*order).limit(limit).offset(offset)))
            # Named columns only: the attestation's envelope and predicate (the whole vet) stay in the database.
            cols = (Model.id, Model.weights_root, Model.licence, Model.size_tier, Model.relation, Model.base_name,
                    Attestation.id, Attestation.name, Attestation.verdict, Attestation.key_id,
                    Attestation.cost_per_task, Attestation.published_at, MetricRow.task, MetricRow.metric,
                    MetricRow.base_value, MetricRow.value, MetricRow.delta, MetricRow.ci_low, MetricRow.ci_high,
                    MetricRow.n, MetricRow.higher_is_better, MetricRow.id)
            fetched = {r[-1]: r[:-1] for r in s.execute(
                select(*cols).join(Model, Model.id == MetricRow.model_id)
                .join(Attestation, Attestation.id == MetricRow.attestation_id).where(MetricRow.id.in_(page_ids)))}
            rows = [fetched[i] for i in page_ids if i in fetched]
            keys = {k.id: k for k in s.scalars(select(Key))}
            reps: dict[int, set[str]] = {}
            if rows:
                for rep_of, kid, ok in s.execute(select(Attestation.reproduces_id, Attestation.key_id,
                                                        Attestation.reproduced_ok)
                                                 .where(Attestation.reproduces_id.in_([r[6] for r in rows]))):
                    k = keys.get(kid)
                    orig_key = next(r[9] for r in rows if r[6] == rep_of)
                    if ok and k is not None and rep_of is not None and kid != orig_key and k.revoked_at is None:
                        reps.setdefault(rep_of, set()).add(k.name)
            out = []
            for row in rows:
                (_mid, root, lic, tier_, rel, base_name, aid, name, verd, vouch, cost, published, task_, metric_,
                 bval, val, delta, lo, hi, n, hib) = cast(Any, row)
                out.append({"id": root, "name": name, "verdict": verd, "licence": lic, "size_tier": tier_,
                            "relation": rel, "base": base_name, "task": task_, "metric": metric_, "base_value": bval,
                            "value": val, "delta": delta, "ci": [lo, hi] if lo is not None else None, "n": n,
                            "higher_is_better": hib, "cost_per_task": cost, "reproduced": aid in reps,
                            "reproduced_by": sorted(reps.get(aid, ())),
                            "vouched_by": [keys[vouch].name] if vouch in keys else [],
                            "published_at": published.isoformat()})
            return {"schema": "assay.hub-leaderboard/1", "task": task, "metric": metric, "base": base,
                    "base_weights_root": base_root, "total": total, "limit": limit, "offset": offset,
                    "sort": sort, "descending": descending, "rows": out}

    def licences(self) -> list[str]:
        """Every licence of a model on the hub (cached for :attr:`FACET_TTL`)."""
        def compute() -> list[str]:
            with self.session() as s:
                return [x for x in s.scalars(select(Model.licence).distinct().order_by(Model.licence)) if x]

        return list(self._facet("licences", compute))

    def audit(self, limit: int = 100) -> list[dict[str, Any]]:
        with self.session() as s:
            return [{"at": e.at.isoformat(), "action": e.action, "actor": e.actor, "key": e.key_name,
                     "attestation": e.attestation_digest, "outcome": e.outcome, "detail": e.detail}
                    for e in s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit))]

    def counts(self) -> dict[str, int]:
        """Rows per table (tests check that a refused publish wrote nothing)."""
        from assay.hub import db

        with self.session() as s:
            return {t.__tablename__: s.scalar(select(func.count()).select_from(t)) or 0
                    for t in (db.Model, db.Alias, db.ManifestRow, db.Attestation, db.MetricRow, db.Claim,
                              db.Fingerprint)}


def metric_rows(metrics: Sequence[Mapping[str, Any]], *, attestation_id: int, model_id: int,
                latest: bool) -> list[dict[str, Any]]:
    """The ``metrics`` table rows of a validated predicate's metrics."""
    out = []
    for row in metrics:
        ci = row.get("ci") or [None, None]
        hib = row.get("higher_is_better")
        out.append({"attestation_id": attestation_id, "model_id": model_id, "task": row["task"],
                    "metric": row["metric"], "base_value": row.get("base"), "value": row.get("value"),
                    "delta": row.get("delta"), "ci_low": ci[0], "ci_high": ci[1],
                    "n": row.get("n") if isinstance(row.get("n"), int) and not isinstance(row.get("n"), bool)
                    else None, "higher_is_better": hib if isinstance(hib, bool) else None, "latest": latest})
    return out


def _metric_doc(r: MetricRow) -> dict[str, Any]:
    return {"task": r.task, "metric": r.metric, "base": r.base_value, "value": r.value, "delta": r.delta,
            "ci": [r.ci_low, r.ci_high] if r.ci_low is not None else None, "n": r.n,
            "higher_is_better": r.higher_is_better}


def _cost(vet: Mapping[str, Any]) -> float | None:
    cost = vet.get("cost")
    v = cost.get("self_per_task") if isinstance(cost, Mapping) else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v else None


def _licence(vet: Mapping[str, Any]) -> str | None:
    for stage in ("licence", "card"):
        d = vet.get(stage)
        lic = d.get("licence") if isinstance(d, Mapping) else None
        if isinstance(lic, str):
            return lic
    return None


def _short(v: Any, n: int) -> str | None:
    return v[:n] if isinstance(v, str) and v else None


def _check_name(name: str, what: str) -> None:
    if not name or len(name) > 100 or not name.isprintable():
        raise HubError(f"{what} must be 1 to 100 printable characters", status=422)


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _page(limit: int, offset: int) -> tuple[int, int]:
    if limit < 1 or limit > PAGE_MAX:
        raise HubError(f"limit must be between 1 and {PAGE_MAX}", status=422)
    if offset < 0:
        raise HubError("offset must be 0 or more", status=422)
    return limit, offset


def model_names(models: Sequence[Mapping[str, Any]]) -> list[str]:
    return [m["aliases"][0] if m.get("aliases") else m["id"][:16] for m in models]
