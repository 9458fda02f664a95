"""``assay policy``: write the commented default policy, or show the policy in force.

    assay policy init                  # writes ./assay-policy.yaml
    assay policy show --policy p.yaml  # the effective policy, defaults filled in
"""

from __future__ import annotations

from pathlib import Path

import click

from assay.cli.common import console, emit_json, json_option


@click.group("policy")
def command() -> None:
    """Create and inspect the policy file that `assay vet` applies.

    \b
    Examples:
      assay policy init                      # ./assay-policy.yaml with every default, commented
      assay policy init ci/policy.yaml
      assay policy show --policy ci/policy.yaml
    """


@command.command("init")
@click.argument("path", default="assay-policy.yaml", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(path: str, force: bool) -> int:
    """Write the default policy, every key commented, to PATH (default: assay-policy.yaml).

    \b
    Example:
      assay policy init && $EDITOR assay-policy.yaml && assay vet MODEL --policy assay-policy.yaml
    """
    from assay.errors import UsageError
    from assay.policy import DEFAULT_POLICY_YAML
    from assay.report.base import write_atomic

    target = Path(path)
    if target.exists() and not force:
        raise UsageError(f"{target} already exists", hint="pass --force to overwrite it")
    write_atomic(target, DEFAULT_POLICY_YAML)
    console().print(f"wrote {target}")
    return 0


@command.command("show")
@click.option("--policy", "policy_path", default=None, metavar="FILE", type=click.Path(dir_okay=False),
              help="Policy file to validate and show (default: the built-in policy).")
@json_option
def show(policy_path: str | None, as_json: bool) -> int:
    """Validate a policy and show it with every default filled in.

    \b
    Example:
      assay policy show --policy assay-policy.yaml --json
    """
    import yaml

    from assay.policy import default_policy, load_policy, policy_document

    policy = load_policy(Path(policy_path)) if policy_path else default_policy()
    doc = {"schema": "assay.policy/1", **policy_document(policy)}
    if as_json:
        emit_json(doc)
    else:
        console().print(f"# policy: {policy.source}")
        console().print(yaml.safe_dump({k: v for k, v in doc.items() if k not in ("schema", "source")},
                                       sort_keys=False).rstrip(), markup=False)
    return 0
