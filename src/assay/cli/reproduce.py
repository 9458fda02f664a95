"""``assay reproduce``: re-run a recorded vet and check every metric against the recorded value.

    assay reproduce attestation.json                         # exit 0 reproduced, 1 not, 2 could not run
    assay reproduce vet.json --model ./my-finetune --tolerance 1e-3
    assay reproduce attestation.json --publish http://hub:8000   # sign the reproduction with your key
"""

from __future__ import annotations

from pathlib import Path

import click

from assay.cli.common import EXIT_FAIL, EXIT_PASS, console, emit_json, err_console, json_option, progress
from assay.cli.hub import publish_options, resolve_credentials
from assay.errors import UsageError


@click.command("reproduce")
@click.argument("document", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model", default=None, metavar="PATH", help="A copy of the model (checked against the recorded "
                                                             "digests). Default: the recorded path, then the local "
                                                             "Hugging Face cache.")
@click.option("--base-model", "base", default=None, metavar="PATH", help="A copy of the base (checked likewise).")
@click.option("--tolerance", default=1e-4, show_default=True, type=float,
              help="Largest absolute difference allowed between a recorded and a reproduced metric (and delta).")
@click.option("--publish", "publish_url", default=None, metavar="URL",
              help="Sign the reproduction and publish it to the hub at URL (needs a signed attestation as input).")
@publish_options
@json_option
def command(document: Path, model: str | None, base: str | None, tolerance: float, publish_url: str | None,
            token: str | None, key: str | None, as_json: bool) -> int:
    """Re-run the evaluation recorded in DOCUMENT (a vet result or a signed attestation) and check every metric.

    The model and base are found by digest, the task data is checked against its recorded digest, and the
    evaluation runs under the recorded policy with an empty result cache. With --publish the result is signed
    and published as a reproduction; an entry reproduced by a second, independent key shows as reproduced.

    Exit codes: 0 every metric reproduced, 1 some did not, 2 could not run (inputs missing or changed).
    """
    from assay.hub.client import attest_vet, load_json, post_attestation
    from assay.hub.reproduce import read_input, reproduce, reproduction_document

    if tolerance < 0:
        raise UsageError("--tolerance must be 0 or more")
    doc = load_json(document)
    _, statement, digest = read_input(doc)
    if publish_url:
        if statement is None:
            raise UsageError("only a signed attestation can be reproduced on a hub (its digest is what the "
                             "reproduction refers to)", hint="fetch it from GET /api/v1/models/ID/attestations")
        tok, key_pem = resolve_credentials(token, key)
    with progress(enabled=not as_json) as prog:
        r = reproduce(doc, model=model, base=base, tolerance=tolerance, progress=prog)
    out = reproduction_document(r)
    if publish_url:
        name = statement["predicate"]["model"]["name"] if statement else None
        env = attest_vet(r.vet, private_key_pem=key_pem, model=r.model, base=r.base, name=name, kind="reproduction",
                         reproduces={"attestation": digest, "ok": r.ok, "tolerance": r.tolerance,
                                     "checks": out["checks"]})
        out["published"] = post_attestation(publish_url, env, token=tok)
    if as_json:
        emit_json(out)
    else:
        for c in out["checks"]:
            mark = "ok " if c["ok"] else "NO "
            console().print(f"{mark} {c['task']} · {c['metric']}: recorded {c['recorded']}, reproduced "
                            f"{c['reproduced']} (delta {c['recorded_delta']} -> {c['reproduced_delta']})",
                            soft_wrap=True)
        for n in out["notes"]:
            err_console().print(f"note: {n}")
        console().print(("REPRODUCED" if r.ok else "NOT REPRODUCED") + f" within ±{tolerance:g}")
        if publish_url:
            err_console().print(f"published the reproduction to {publish_url}")
    return EXIT_PASS if r.ok else EXIT_FAIL
