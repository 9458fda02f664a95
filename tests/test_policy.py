"""The policy file: documented defaults, validation that names the key, the CLI that writes and shows it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from assay.cli.main import main
from assay.errors import PolicyError
from assay.policy import (DEFAULT_POLICY_YAML, DEFAULT_TASKS, Policy, default_policy, load_policy, parse_policy,
                          policy_document, policy_from_document)


def _without_source(p: Policy) -> dict:
    doc = policy_document(p)
    doc.pop("source")
    return doc


def test_commented_default_file_states_exactly_the_defaults() -> None:
    assert _without_source(parse_policy(yaml.safe_load(DEFAULT_POLICY_YAML))) == _without_source(default_policy())


def test_documented_defaults() -> None:
    p = default_policy()
    assert p.scan.fail_on == "medium" and p.scan.allow_globals == () and p.scan.allow_remote_code is False
    assert p.signature.required is False and p.signature.trusted_keys == ()
    assert p.lineage.require_descends is True and p.lineage.reject_identical is True
    assert p.evaluation.tasks == DEFAULT_TASKS
    assert p.evaluation.margin("builtin:knowledge", "acc") == 0.02
    assert p.evaluation.must_improve == ()
    assert p.licence.allow == () and p.licence.deny == () and p.licence.monthly_active_users is None


def test_empty_file_means_defaults(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("")
    assert _without_source(load_policy(f)) == _without_source(default_policy())


def test_partial_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("scan:\n  fail_on: high\nevaluation:\n  must_improve: [my-task]\n  limit: 25\n")
    p = load_policy(f)
    assert p.scan.fail_on == "high" and p.evaluation.must_improve == ("my-task",) and p.evaluation.limit == 25
    assert p.lineage == default_policy().lineage and p.evaluation.tasks == DEFAULT_TASKS


@pytest.mark.parametrize("text, key", [
    ("scann: {}\n", "scann"),
    ("scan:\n  fail_onn: high\n", "scan.fail_onn"),
    ("lineage:\n  reject_identical: 'no way'\n", "lineage.reject_identical"),
    ("scan:\n  fail_on: severe\n", "scan.fail_on"),
    ("evaluation:\n  limit: -3\n", "evaluation.limit"),
    ("evaluation:\n  tasks: 7\n", "evaluation.tasks"),
    ("evaluation:\n  margins: {acc: lots}\n", "evaluation.margins.acc"),
    ("evaluation:\n  task_margins: {t1: {acc: -1}}\n", "evaluation.task_margins.t1.acc"),
    ("licence:\n  monthly_active_users: many\n", "licence.monthly_active_users"),
    ("signature: [1, 2]\n", "signature"),
    ("licence:\n  deny: [kind:evil]\n", "licence.deny"),
])
def test_invalid_policy_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(PolicyError) as err:
        load_policy(f)
    assert key in err.value.message and str(f) in err.value.message
    assert err.value.exit_code == 2


def test_invalid_policy_from_the_cli_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("lineage:\n  requires_descends: true\n")
    assert main(["policy", "show", "--policy", str(f)]) == 2
    err = capsys.readouterr().err
    assert "lineage.requires_descends" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_not_yaml(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("scan:\n  fail_on: [high\n")
    with pytest.raises(PolicyError, match="not valid YAML"):
        load_policy(f)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no such policy file"):
        load_policy(tmp_path / "nope.yaml")


def test_margins_task_override_and_variants() -> None:
    p = parse_policy({"evaluation": {"margins": {"acc": 0.03, "exact_match": 0.05},
                                     "task_margins": {"t": {"acc": 0.01}}}})
    assert p.evaluation.margin("t", "acc") == 0.01
    assert p.evaluation.margin("other", "acc") == 0.03
    assert p.evaluation.margin("other", "exact_match,strict") == 0.05
    assert p.evaluation.margin("other", "exact_match_flexible") == 0.05
    assert p.evaluation.margin("other", "word_perplexity") is None  # not judged


def test_trusted_keys_are_relative_to_the_policy_file(tmp_path: Path) -> None:
    (tmp_path / "ci").mkdir()
    f = tmp_path / "ci" / "p.yaml"
    f.write_text("signature:\n  required: true\n  trusted_keys: [keys/pub.pem]\n")
    assert load_policy(f).signature.trusted_keys == (str((tmp_path / "ci" / "keys" / "pub.pem").resolve()),)


def test_document_round_trip() -> None:
    p = parse_policy({"scan": {"fail_on": "low", "allow_globals": ["a.B"]}, "licence": {"deny": ["cc-by-nc-4.0"]}})
    assert _without_source(policy_from_document(policy_document(p))) == _without_source(p)


def test_policy_init_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "assay-policy.yaml"
    assert main(["policy", "init", str(target)]) == 0
    assert target.read_text() == DEFAULT_POLICY_YAML
    capsys.readouterr()
    assert main(["policy", "show", "--policy", str(target), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "assay.policy/1"
    doc.pop("schema")
    doc.pop("source")
    assert doc == _without_source(default_policy())
    # a second init does not clobber the edited file
    target.write_text("scan: {fail_on: high}\n")
    assert main(["policy", "init", str(target)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert target.read_text() == "scan: {fail_on: high}\n"
    assert main(["policy", "show", "--policy", str(target)]) == 0
    assert "fail_on: high" in capsys.readouterr().out
