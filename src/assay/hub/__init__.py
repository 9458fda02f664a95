"""The assay hub: a model registry whose every rating is a signed, reproducible evaluation.

Where things live:

- :mod:`assay.hub.attestation` -- the in-toto statement built from a vet result and the model's manifest, its
  DSSE envelope, and the checks the hub runs on every publish (signature, trusted key, schema, subjects).
- :mod:`assay.hub.db` -- the tables (SQLAlchemy 2), how a database URL is opened, and the Alembic migrations
  (``assay/hub/migrations``) run on first use. SQLite by default, PostgreSQL for a team.
- :mod:`assay.hub.store` -- :class:`~assay.hub.store.Hub`: publish (one transaction), keys, tokens, look-ups,
  leaderboard, audit log. The web app and the CLI both call it.
- :mod:`assay.hub.lineage` -- the family tree of a base across the hub.
- :mod:`assay.hub.app` -- the FastAPI app: JSON API under ``/api/v1`` and server-rendered pages.
- :mod:`assay.hub.client` -- what a publisher runs: hash the model, sign the statement, POST it.
- :mod:`assay.hub.reproduce` -- re-run a recorded evaluation and check every metric within a tolerance.
- :mod:`assay.hub.interop` -- Hugging Face ``.eval_results`` and card ``model-index`` export and import.

Install with ``pip install 'assay[hub]'``; run with ``assay hub serve``.
"""
