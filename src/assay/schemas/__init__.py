"""Published JSON Schemas (draft 2020-12) of every document assay writes: ``assay.<kind>/1``.

A document names its kind in ``"schema"``; its schema is ``<kind>.schema.json`` beside this file, with the
``$id`` ``urn:assay:<kind>:1`` (a vet document refers to the documents it embeds by those ids). Fields are
added, never renamed or removed, so a schema accepts properties it does not list. ``assay schema KIND`` prints
one; the test suite validates every document a command prints against its schema.

    from assay.schemas import load_schema, validate
    validate({"schema": "assay.keygen/1", ...})      # raises SchemaError naming the field
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from assay.errors import AssayError


class SchemaError(AssayError):
    """A document does not match its published schema, or names no known kind."""


def kinds() -> list[str]:
    """Every document kind with a published schema, sorted (``scan``, ``vet``, ...)."""
    return sorted(p.name.removesuffix(".schema.json") for p in resources.files(__name__).iterdir()
                  if p.name.endswith(".schema.json"))


@cache
def _load(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(resources.files(__name__).joinpath(f"{kind}.schema.json")
                                        .read_text(encoding="utf-8"))
    return schema


def load_schema(kind: str) -> dict[str, Any]:
    """The schema of ``kind`` (``vet`` or ``assay.vet/1``); :class:`SchemaError` if there is none."""
    name = kind.removeprefix("assay.").removesuffix("/1")
    if name not in kinds():
        raise SchemaError(f"no schema for {kind!r}; kinds: {', '.join(kinds())}")
    return dict(_load(name))


def validate(doc: Any) -> None:
    """Check ``doc`` against the schema its ``"schema"`` field names (needs the ``jsonschema`` package, which
    the test extra installs); :class:`SchemaError` names the first field that does not match."""
    import jsonschema

    if not isinstance(doc, dict) or not isinstance(doc.get("schema"), str):
        raise SchemaError("the document has no \"schema\" field naming its kind")
    load_schema(doc["schema"])  # an unknown kind is refused by name
    error = jsonschema.exceptions.best_match(_validator(doc["schema"].removeprefix("assay.").removesuffix("/1"))
                                             .iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        raise SchemaError(f"{doc['schema']} document does not match its schema at {where}: {error.message}")


@cache
def _validator(kind: str) -> Any:
    import jsonschema
    from referencing import Registry, Resource

    registry: Registry[Any] = Registry().with_resources(
        (f"urn:assay:{k}:1", Resource.from_contents(_load(k))) for k in kinds())
    return jsonschema.Draft202012Validator(_load(kind), registry=registry)
