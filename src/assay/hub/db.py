"""The hub's tables (SQLAlchemy 2) and how a database is opened and migrated.

Models are content-addressed: a row of :class:`Model` is one set of weights (its weights root); names are rows of
:class:`Alias`; each file list seen for it is a :class:`ManifestRow`. Every signed vet result is an
:class:`Attestation` with its :class:`MetricRow` rows. Keys, tokens (hashes only) and the audit log complete it.

    >>> engine = open_database("sqlite:///hub.db")     # creates or upgrades the schema (Alembic)
    >>> with Session(engine) as s: s.scalars(select(Model)).all()

The schema is owned by the Alembic migrations in ``assay/hub/migrations``; :func:`open_database` runs them, so a
hub started on an older database is upgraded before it serves.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text,
                        UniqueConstraint, create_engine, event)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from assay.hub.errors import HubError

__all__ = ["HubError"]  # re-exported: callers that already import the tables find it here


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Model(Base):
    """One set of weights, identified by its weights root."""

    __tablename__ = "models"
    __table_args__ = (Index("ix_models_family", "base_weights_root", "base_name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    weights_root: Mapped[str] = mapped_column(String(128), unique=True)
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)
    architecture: Mapped[str | None] = mapped_column(String(200))
    parameters: Mapped[int | None] = mapped_column(BigInteger)
    licence: Mapped[str | None] = mapped_column(String(200), index=True)
    size_tier: Mapped[str | None] = mapped_column(String(20))
    base_weights_root: Mapped[str | None] = mapped_column(String(128))
    """The base the latest vet compared against (by weights root), if known."""
    base_name: Mapped[str | None] = mapped_column(String(200))
    relation: Mapped[str | None] = mapped_column(String(40))
    """Lineage relation to that base as measured by the vet (finetune, identical, lora, ...)."""
    measured_parent_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    """The hub model whose stored fingerprint is closest (the measured parent), if any."""
    parent_evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    """The fingerprint comparison with the measured parent (shared, identical, cosine, rel_change, relation)."""
    latest_attestation_id: Mapped[int | None] = mapped_column(Integer, index=True)
    aliases: Mapped[list[Alias]] = relationship(back_populates="model", order_by="Alias.id")


class Alias(Base):
    """A name a model was published under (identical weights under two names: one model, two aliases)."""

    __tablename__ = "aliases"
    __table_args__ = (UniqueConstraint("name", "model_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)
    model: Mapped[Model] = relationship(back_populates="aliases")


class ManifestRow(Base):
    """A file list (manifest) of a model; the same weights may be stored in several layouts."""

    __tablename__ = "manifests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    algorithm: Mapped[str] = mapped_column(String(20))
    files: Mapped[list[Any]] = mapped_column(JSON)
    total_bytes: Mapped[int | None] = mapped_column(BigInteger)


class Key(Base):
    """A public key this hub trusts for attestations."""

    __tablename__ = "keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    key_id: Mapped[str] = mapped_column(String(64), unique=True)
    public_pem: Mapped[str] = mapped_column(Text)
    added_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Token(Base):
    """A bearer token for writes; only its SHA-256 is stored."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Attestation(Base):
    """One signed vet result (or reproduction) about one model."""

    __tablename__ = "attestations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id"))
    key_id: Mapped[int] = mapped_column(ForeignKey("keys.id"))
    token_id: Mapped[int | None] = mapped_column(ForeignKey("tokens.id"))
    kind: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    verdict: Mapped[str | None] = mapped_column(String(20), index=True)
    base_weights_root: Mapped[str | None] = mapped_column(String(128))
    base_name: Mapped[str | None] = mapped_column(String(200))
    reproduces_id: Mapped[int | None] = mapped_column(ForeignKey("attestations.id"), index=True)
    reproduced_ok: Mapped[bool | None] = mapped_column(Boolean)
    cost_per_task: Mapped[float | None] = mapped_column(Float)
    """Self-hosted cost per task from the vet's cost stage (kept here so the leaderboard need not read the vet)."""
    published_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)
    envelope: Mapped[dict[str, Any]] = mapped_column(JSON)
    predicate: Mapped[dict[str, Any]] = mapped_column(JSON)
    key: Mapped[Key] = relationship()
    model: Mapped[Model] = relationship(foreign_keys=[model_id])
    metrics: Mapped[list[MetricRow]] = relationship(back_populates="attestation", order_by="MetricRow.id")


class MetricRow(Base):
    """One measured metric of one attestation (denormalised with the model for fast leaderboards)."""

    __tablename__ = "metrics"
    # The leaderboard reads only this index for its ranking (covering: no table look-up per row).
    __table_args__ = (Index("ix_metrics_board", "task", "metric", "latest", "delta", "value", "ci_low", "model_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    attestation_id: Mapped[int] = mapped_column(ForeignKey("attestations.id"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    task: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(100))
    base_value: Mapped[float | None] = mapped_column(Float)
    value: Mapped[float | None] = mapped_column(Float)
    delta: Mapped[float | None] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int | None] = mapped_column(Integer)
    higher_is_better: Mapped[bool | None] = mapped_column(Boolean)
    latest: Mapped[bool] = mapped_column(Boolean, default=False)
    """Part of the model's latest vet (the one the leaderboard ranks)."""
    attestation: Mapped[Attestation] = relationship(back_populates="metrics")


class Claim(Base):
    """A score a model card claims (imported from its ``model-index``): shown apart, never as verified."""

    __tablename__ = "claims"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), index=True)
    task: Mapped[str] = mapped_column(String(200))
    dataset: Mapped[str | None] = mapped_column(String(200))
    metric: Mapped[str] = mapped_column(String(100))
    value: Mapped[float | None] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(200))
    imported_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now)


class Fingerprint(Base):
    """A compact per-tensor fingerprint of a model, so lineage can be measured without keeping the weights."""

    __tablename__ = "fingerprints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), unique=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class AuditEntry(Base):
    """Who did what: every publish (accepted or refused), token and key change."""

    __tablename__ = "audit"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=now, index=True)
    action: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str | None] = mapped_column(String(100))
    key_name: Mapped[str | None] = mapped_column(String(100))
    model_id: Mapped[int | None] = mapped_column(Integer)
    attestation_digest: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(Text)


# -------------------------------------------------------------------------------------------- the database


def default_url() -> str:
    """``sqlite:///`` + a file under the user data dir (``ASSAY_HUB_DB`` overrides)."""
    env = os.environ.get("ASSAY_HUB_DB")
    if env:
        return env
    from platformdirs import user_data_dir

    return "sqlite:///" + (Path(user_data_dir("assay")) / "hub.db").as_posix()


def open_database(url: str | None = None, *, migrate: bool = True) -> Engine:
    """An engine on ``url`` (default: :func:`default_url`), with the schema created or upgraded."""
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

    url = url or default_url()
    if not (url.startswith("sqlite") or url.startswith("postgresql")):
        raise HubError(f"unsupported database URL {url.split(':', 1)[0]!r}: use sqlite:///PATH or "
                       f"postgresql+psycopg://USER@HOST/DB")
    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise HubError(f"cannot create the database folder for {path}: {exc.strerror or exc}") from exc
        if path in ("", ":memory:"):
            from sqlalchemy.pool import StaticPool

            kwargs.update(poolclass=StaticPool)
        kwargs["connect_args"] = {"check_same_thread": False}
    elif url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise HubError(f"bad database URL: {exc}") from exc
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()
    if migrate:
        try:
            upgrade(engine)
        except OperationalError as exc:
            raise HubError(f"cannot open the hub database: {str(exc.orig).strip().splitlines()[0]}") from exc
    return engine


def upgrade(engine: Engine) -> None:
    """Run the Alembic migrations shipped with assay up to the newest revision."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
