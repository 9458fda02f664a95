"""``assay schema``: print the published JSON Schema of a document kind, or list the kinds.

    assay schema            # the kinds
    assay schema vet        # the schema of vet.json (assay.vet/1)
"""

from __future__ import annotations

import json

import click

from assay.cli.common import EXIT_PASS


@click.command("schema")
@click.argument("kind", required=False)
def command(kind: str | None) -> int:
    """Print the JSON Schema (draft 2020-12) of a document KIND, or list the kinds.

    The output is the schema itself (JSON); without KIND, one kind a line. Every JSON document assay writes
    names its kind in "schema" (assay.vet/1, assay.scan/1, ...); KIND is `vet`, `assay.vet/1` or any kind
    listed without an argument. Fields are added in later versions, never renamed or removed, so a schema
    accepts properties it does not list.

    \b
    Examples:
      assay schema
      assay schema vet > vet.schema.json
      check-jsonschema --schemafile vet.schema.json out/vet.json   (any draft 2020-12 validator)
    """
    from assay.schemas import kinds, load_schema

    if kind is None:
        click.echo("\n".join(f"assay.{k}/1" for k in kinds()))
    else:
        click.echo(json.dumps(load_schema(kind), indent=2, ensure_ascii=False))
    return EXIT_PASS
