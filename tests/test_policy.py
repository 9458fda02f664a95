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
    ("deploy:\n  bench: yes please\n", "deploy.bench"),
    ("deploy:\n  max_slowdown: 0.5\n", "deploy.max_slowdown"),
    ("deploy:\n  output_tokens: 1\n", "deploy.output_tokens"),
    ("deploy:\n  benchh: true\n", "deploy.benchh"),
    ("cost:\n  on_exceed: explode\n", "cost.on_exceed"),
    ("cost:\n  utilisation: 0\n", "cost.utilisation"),
    ("cost:\n  utilisation: 1.5\n", "cost.utilisation"),
    ("cost:\n  api_per_task: -0.1\n", "cost.api_per_task"),
    ("cost:\n  monthly_volume: 1.5\n", "cost.monthly_volume"),
    ("cost:\n  gpu_price_per_hour: 1.2\n", "cost.tokens_out"),
    ("cost:\n  api_output_per_mtok: 10\n", "cost.tokens_out"),
    ("probes:\n  run: [refusall]\n", "probes.run"),
    ("probes:\n  run: [contamination]\n", "probes.contamination"),
    ("probes:\n  runn: [refusal]\n", "probes.runn"),
    ("probes:\n  alpha: 2\n", "probes.alpha"),
    ("probes:\n  degeneration_level: explode\n", "probes.degeneration_level"),
    ("probes:\n  limit: 0\n", "probes.limit"),
    ("drift:\n  kl: 3\n", "drift.kl"),
    ("drift:\n  level: panic\n", "drift.level"),
    ("drift:\n  max_kl_mean: 0.5\n", "drift.kl"),
    ("drift:\n  max_kl_mean: -1\n  kl: builtin:reference\n", "drift.max_kl_mean"),
    ("driftt:\n  kl: off\n", "driftt"),
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


def test_deploy_and_cost_defaults_and_overrides(tmp_path: Path) -> None:
    p = default_policy()
    assert p.deploy.bench is False and p.deploy.max_slowdown == 1.5 and p.deploy.isolate is True
    assert (p.deploy.prompt_tokens, p.deploy.output_tokens, p.deploy.repeats, p.deploy.batch) == (64, 32, 3, 1)
    assert not p.cost.configured() and p.cost.max_cost_per_task is None and p.cost.on_exceed == "fail"
    f = tmp_path / "p.yaml"
    f.write_text("deploy: {bench: true, max_slowdown: null}\ncost: {api_per_task: 0.15, self_per_task: 0.01, "
                 "training_cost: 3000, max_cost_per_task: 0.02, on_exceed: warn}\n")
    q = load_policy(f)
    assert q.deploy.bench is True and q.deploy.max_slowdown is None
    assert q.cost.configured()
    assert (q.cost.api_per_task, q.cost.self_per_task, q.cost.training_cost) == (0.15, 0.01, 3000)
    assert (q.cost.max_cost_per_task, q.cost.on_exceed) == (0.02, "warn")
    assert _without_source(policy_from_document(policy_document(q))) == _without_source(q)


def test_cost_file_as_a_section_or_a_policy(tmp_path: Path) -> None:
    from assay.policy import load_cost_file

    keep = parse_policy({"cost": {"max_cost_per_task": 0.005, "on_exceed": "warn"}}).cost
    section = tmp_path / "cost.yaml"
    section.write_text("api_per_task: 0.15\nself_per_task: 0.01\ntraining_cost: 3000\n")
    c = load_cost_file(section, keep=keep)
    assert (c.api_per_task, c.self_per_task, c.training_cost) == (0.15, 0.01, 3000)
    assert (c.max_cost_per_task, c.on_exceed) == (0.005, "warn")  # the policy's ceiling is kept
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text("scan: {fail_on: high}\ncost: {api_per_task: 0.2, self_per_task: 0.05}\n")
    assert load_cost_file(policy_file).api_per_task == 0.2


def test_cost_document_as_cost_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from assay.policy import load_cost_file

    assert main(["cost", "--api-per-task", "0.15", "--throughput", "50", "--gpu-price-per-hour", "1.2",
                 "--tokens-out", "200", "--training-cost", "3000", "--monthly-tasks", "1000", "--json"]) == 0
    f = tmp_path / "cost.json"
    f.write_text(capsys.readouterr().out)
    c = load_cost_file(f)
    assert (c.api_per_task, c.gpu_price_per_hour, c.tokens_out, c.training_cost, c.monthly_volume) == (
        0.15, 1.2, 200, 3000, 1000)
    assert c.self_per_task is None  # the throughput measured for that document is not carried over


@pytest.mark.parametrize("text, needle", [("api_per_task: 0.1\nbogus: 1\n", "bogus"),
                                          ("[1, 2]\n", "mapping"),
                                          ("utilisation: 2\n", "cost.utilisation")])
def test_bad_cost_file(tmp_path: Path, text: str, needle: str) -> None:
    from assay.policy import load_cost_file

    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(PolicyError) as err:
        load_cost_file(f)
    assert needle in err.value.message and str(f) in err.value.message
    with pytest.raises(PolicyError, match="no such cost file"):
        load_cost_file(tmp_path / "missing.yaml")


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


def test_probes_and_drift_sections(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("probes:\n  run: [refusal, stability]\n  contamination: [builtin:knowledge]\n  limit: 8\n"
                 "drift:\n  kl: builtin:reference\n  max_kl_mean: 0.2\n  level: fail\n")
    p = load_policy(f)
    assert p.probes.specs() == ("builtin:refusal", "builtin:stability", "contamination:builtin:knowledge")
    assert p.probes.limit == 8 and p.probes.degeneration_level == "fail"
    assert (p.drift.kl, p.drift.max_kl_mean, p.drift.level) == ("kl:builtin:reference", 0.2, "fail")
    assert policy_from_document(json.loads(json.dumps(policy_document(p)))) == p.__class__(
        **{**p.__dict__, "source": str(f)})
    f.write_text("drift:\n  kl: off\n")  # YAML reads off as false
    assert load_policy(f).drift.kl is None
