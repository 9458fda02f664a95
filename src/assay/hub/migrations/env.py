"""Alembic environment for the hub: run on the connection :func:`assay.hub.db.upgrade` hands over."""

from __future__ import annotations

from alembic import context

from assay.hub.db import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - migrations only run through assay.hub.db.upgrade
    raise RuntimeError("run the hub's migrations through assay.hub.db.upgrade(engine)")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
