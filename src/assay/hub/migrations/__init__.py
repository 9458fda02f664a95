"""Alembic migrations of the hub database (run by :func:`assay.hub.db.upgrade`)."""
