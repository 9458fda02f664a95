"""``assay vet``: every stage, one verdict under a policy, reports on disk.

    assay vet ./my-finetune --base ./base --out vet-out       # exit 0 PASS/WARN, 1 FAIL, 2 no verdict
"""

from __future__ import annotations

from pathlib import Path

import click

from assay.cli.common import (console, download_option, emit_json, err_console, json_option, progress,
                              revision_option)
from assay.errors import UsageError

_WRITE_FORMATS = ("json", "html", "md", "sarif", "cyclonedx")


@click.command("vet")
@click.argument("candidate")
@click.option("--base", default=None, metavar="BASE",
              help="The base model to compare with (folder, file or cached org/name). Default: the card's "
                   "base_model, if it is in the local Hugging Face cache.")
@click.option("--policy", "policy_path", default=None, metavar="FILE", type=click.Path(dir_okay=False),
              help="Policy YAML (see `assay policy init`). Default: the built-in policy.")
@click.option("--task", "tasks", multiple=True, metavar="TASK",
              help="Evaluation task (repeatable); replaces the policy's evaluation.tasks.")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Evaluate only the first N items of each task (overrides evaluation.limit).")
@click.option("--out", "out_dir", default=None, metavar="DIR", type=click.Path(file_okay=False),
              help="Write reports into DIR (vet.json, report.html, report.md, scan.sarif, bom.cdx.json).")
@click.option("--format", "formats", multiple=True, type=click.Choice(_WRITE_FORMATS),
              help="Report formats written with --out (repeatable; default: all).")
@click.option("--bench/--no-bench", "bench", default=None,
              help="Measure speed and memory of candidate and base after they scanned safe (slow; overrides the "
                   "policy's deploy.bench). Gives the cost its throughput.")
@click.option("--cost-from", "cost_from", default=None, metavar="FILE", type=click.Path(dir_okay=False),
              help="Cost inputs (YAML/JSON with the policy's cost keys, a policy file, or an `assay cost --json` "
                   "document); replaces the policy's cost section.")
@click.option("--strict", is_flag=True, help="Exit 1 on WARN too (default: WARN exits 0).")
@click.option("--publish", "publish_url", default=None, metavar="URL",
              help="Sign the result and publish it to the assay hub at URL (token and key: $ASSAY_HUB_TOKEN and "
                   "$ASSAY_SIGNING_KEY).")
@revision_option
@download_option
@json_option
def command(candidate: str, base: str | None, policy_path: str | None, tasks: tuple[str, ...], limit: int | None,
            out_dir: str | None, formats: tuple[str, ...], bench: bool | None, cost_from: str | None, strict: bool,
            revision: str | None, download: bool, as_json: bool, publish_url: str | None = None) -> int:
    """Vet CANDIDATE: scan, signature, lineage, evaluation against the base, card and licence, hardware fit,
    optionally speed, memory and cost; one verdict.

    An unsafe or not-verified candidate is never loaded: it FAILs and the later stages are skipped. A stage
    that cannot run (no base, say) is a reason in the verdict, never silently skipped. The hardware fit
    (memory at 16/8/4 bits, the devices it fits) is always estimated from the headers; --bench measures
    speed and memory on this machine, and with a cost section (or --cost-from) the cost per task and the
    break-even volume of the training cost are computed from the measured throughput.

    The policy's probes section adds behaviour probes (refusal, degeneration, stability, contamination) and
    its drift section the KL drift from the base; both run while each model is loaded for the evaluation
    and are judged against the base (alignment stripped FAILs). They are off by default.

    \b
    Examples:
      assay vet ./my-finetune --base HuggingFaceTB/SmolLM2-135M-Instruct
      assay vet ./my-finetune --base ./base --policy policy.yaml --out vet-out
      assay vet ./my-finetune --base ./base --task builtin:knowledge --limit 50 --json > vet.json
      assay vet ./my-finetune --base ./base --bench --cost-from cost.yaml --out vet-out
      assay vet ./my-finetune --base ./base --policy probes.yaml   # probes: {run: [refusal]}

    \b
    Exit codes: 0 PASS (and WARN unless --strict), 1 FAIL, 2 no verdict (bad input, a stage that failed).
    """
    from assay.policy import default_policy, load_cost_file, load_policy
    from assay.report.terminal import TerminalRenderer
    from assay.vet import run_vet, vet_document

    if formats and not out_dir:
        raise UsageError("--format chooses the files written with --out; give --out DIR too")
    if publish_url:  # refuse missing credentials before the long work
        from assay.cli.hub import resolve_credentials

        hub_token, hub_key = resolve_credentials(None, None)
    policy = load_policy(Path(policy_path)) if policy_path else default_policy()
    cost = load_cost_file(Path(cost_from), keep=policy.cost) if cost_from else None
    with progress(enabled=True) as prog:
        result = run_vet(candidate, base=base, policy=policy, tasks=list(tasks) or None, limit=limit,
                         out_dir=Path(out_dir) if out_dir else None, revision=revision, download=download,
                         formats=formats or _WRITE_FORMATS, progress=prog, bench=bench, cost=cost)
    doc = vet_document(result)
    if as_json:
        emit_json(doc)
    else:
        TerminalRenderer().print(doc, console())
        if out_dir:
            err_console().print(f"reports written to {out_dir}")
    if publish_url:
        from assay.cli.hub import publish_vet

        reply = publish_vet(doc, url=publish_url, token=hub_token, key_pem=hub_key)
        err_console().print(f"published to {publish_url.rstrip('/')}{reply.get('url', '')}")
    return result.exit_code(strict=strict)
