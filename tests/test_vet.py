"""`assay vet` end to end: bad input is refused up front; verdicts on a tiny zoo of the five kinds of checkpoint
a model hub is full of (identical re-upload, honest fine-tune, broken fine-tune, booby-trapped pickle, impostor).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from assay.cli.main import main


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


def test_base_that_does_not_exist(vet_zoo: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vet", str(vet_zoo["honest"]), "--base", str(tmp_path / "no-such-base")]) == 2
    _one_line_error(capsys, "no-such-base")


def test_candidate_that_is_a_single_unsupported_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "notes.onnx"
    f.write_text("this is not a model at all\n")
    assert main(["vet", str(f)]) == 2
    _one_line_error(capsys, "not a model assay can vet")


def test_unwritable_out_is_refused_before_any_work(vet_zoo: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["vet", str(vet_zoo["honest"]), "--out", str(blocker / "reports")]) == 2
    _one_line_error(capsys, "cannot write reports")


def test_policy_with_a_typo(vet_zoo: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / "policy.yaml"
    p.write_text("lineage:\n  reject_identicall: false\n")
    assert main(["vet", str(vet_zoo["honest"]), "--policy", str(p)]) == 2
    _one_line_error(capsys, "lineage.reject_identicall")


def test_bad_cost_file_is_refused_before_any_work(vet_zoo: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "cost.yaml"
    bad.write_text("api_per_task: 0.15\ngpu_price_per_hour: 1.2\n")  # no tokens_out: could never be computed
    assert main(["vet", str(vet_zoo["honest"]), "--cost-from", str(bad)]) == 2
    _one_line_error(capsys, "cost.tokens_out")
    assert main(["vet", str(vet_zoo["honest"]), "--cost-from", str(tmp_path / "nope.yaml")]) == 2
    _one_line_error(capsys, "no such cost file")


def test_format_without_out_is_a_usage_error(vet_zoo: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["vet", str(vet_zoo["honest"]), "--format", "html"]) == 2
    _one_line_error(capsys, "--out")


# --- the zoo: five kinds of checkpoint, each vetted against the same base ---------------------------------

N_ITEMS = 30
TASKS = ("builtin:knowledge", "builtin:reference")
BASE_CLAIM = "assay-tests/tiny-llama-base"

# A pickle that calls os.system("true") when loaded, written opcode by opcode (nothing here is ever unpickled):
# PROTO 2, GLOBAL 'os system', BINUNICODE 'true', TUPLE1, REDUCE, STOP.
BOOBY_TRAP = b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R."


def _card(extra: dict | None = None) -> dict:  # type: ignore[type-arg]
    card = {"license": "apache-2.0", "base_model": BASE_CLAIM, "base_model_relation": "finetune",
            "datasets": ["assay-tests/knowledge-drill"], "language": ["en"], "pipeline_tag": "text-generation"}
    card.update(extra or {})
    return card


def _train(model, texts, *, lr: float, steps: int):  # type: ignore[no-untyped-def]
    """A few Adam steps of causal-LM training on ``texts``; returns the log_history a Trainer would keep."""
    import torch

    from tests.factory.models import tiny_tokenizer

    tok = tiny_tokenizer()
    enc = tok(list(texts), return_tensors="pt", padding=True)
    labels = enc["input_ids"].clone()
    labels[enc["attention_mask"] == 0] = -100
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for step in range(1, steps + 1):
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], labels=labels)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        history.append({"step": step, "epoch": float(step), "loss": float(out.loss.item()), "learning_rate": lr})
    model.eval()
    return history


@pytest.fixture(scope="session")
def vet_zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """base, reupload, honest, broken, booby_trap, impostor: HF folders built from the tiny factory Llama."""
    from tests.conftest import single_thread_torch
    from tests.factory.models import build_model, save_safetensors_folder, save_tokenizer, tiny_tokenizer

    single_thread_torch()
    from assay.evaluate.runner import answer_text, build_context
    from assay.evaluate.suites.builtin import load_builtin

    root = tmp_path_factory.mktemp("vet-zoo")
    env = pytest.MonkeyPatch()
    env.setenv("ASSAY_CACHE_DIR", str(root / "cache"))  # a fresh result cache, not the user's
    tok = tiny_tokenizer()
    base_model = build_model(seed=0)
    out = {"base": save_safetensors_folder(base_model, tok, root / "base",
                                           card={"license": "apache-2.0", "language": ["en"]})}
    # identical weights, re-sharded, with a card that promises the moon
    out["reupload"] = save_safetensors_folder(
        base_model, tok, root / "Tiny-Ultimate-Lord", max_shard_size="200KB",
        card=_card({"tags": ["best-model-ever", "beats-gpt-5"]}))
    # the fine-tunes learn the first items of builtin:knowledge (their "domain")
    task = load_builtin("knowledge")
    texts = [build_context(task, it) + task.target_delimiter + answer_text(task, it) for it in task.items[:N_ITEMS]]
    honest = build_model(seed=0)
    history = _train(honest, texts, lr=2e-3, steps=40)
    out["honest"] = save_safetensors_folder(honest, tok, root / "honest-finetune", card=_card())
    (out["honest"] / "trainer_state.json").write_text(json.dumps({"global_step": 40, "log_history": history}))
    broken = build_model(seed=0)
    _train(broken, texts, lr=0.2, steps=2)  # a learning rate a hundred times too high
    out["broken"] = save_safetensors_folder(broken, tok, root / "broken-finetune", card=_card())
    # a checkpoint whose pytorch_model.bin is a booby-trapped pickle
    trap = root / "booby-trapped"
    trap.mkdir()
    base_model.config.save_pretrained(trap)
    save_tokenizer(tok, trap)
    (trap / "pytorch_model.bin").write_bytes(BOOBY_TRAP)
    (trap / "README.md").write_text("---\nlicense: apache-2.0\nbase_model: " + BASE_CLAIM + "\n---\n# Faster!\n")
    out["booby_trap"] = trap
    # same architecture, independently initialised, card claims the base
    out["impostor"] = save_safetensors_folder(build_model(seed=1234), tok, root / "impostor", card=_card())
    yield out
    env.undo()


def _vet(model: Path, base: Path, capsys: pytest.CaptureFixture[str],
         *extra: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    capsys.readouterr()
    rc = main(["vet", str(model), "--base", str(base), *[a for t in TASKS for a in ("--task", t)],
               "--limit", str(N_ITEMS), "--json", *extra])
    out = capsys.readouterr().out
    doc = json.loads(out)
    assert doc["schema"] == "assay.vet/1"
    return rc, doc


def _rules(doc: dict) -> set[str]:  # type: ignore[type-arg]
    return {r["rule"] for r in doc["reasons"]}


def test_honest_finetune_passes(vet_zoo: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = _vet(vet_zoo["honest"], vet_zoo["base"], capsys)
    assert (rc, doc["verdict"]) == (0, "PASS"), doc["reasons"]
    assert doc["lineage"]["relation"] == "finetune"
    k = doc["comparison"]["builtin:knowledge"]["acc"]
    assert k["candidate"] > k["base"] and k["ci"][0] > 0  # it learned its domain, significantly
    assert doc["training"]["log_history"][0]["step"] == 1  # the loss curve made it into the result


def test_must_improve_separates_the_honest_and_the_broken(vet_zoo: dict[str, Path], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("evaluation:\n  must_improve: [builtin:knowledge]\n")
    rc, doc = _vet(vet_zoo["honest"], vet_zoo["base"], capsys, "--policy", str(policy))
    assert (rc, doc["verdict"]) == (0, "PASS"), doc["reasons"]
    rc, doc = _vet(vet_zoo["reupload"], vet_zoo["base"], capsys, "--policy", str(policy))
    assert rc == 1 and "evaluation.must_improve" in _rules(doc)


def test_identical_reupload_fails_on_lineage(vet_zoo: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = _vet(vet_zoo["reupload"], vet_zoo["base"], capsys)
    assert (rc, doc["verdict"]) == (1, "FAIL")
    assert doc["lineage"]["relation"] == "identical"
    assert "lineage.not_identical" in _rules(doc)
    # identical weights score identically: nothing regressed, nothing improved
    for metrics in doc["comparison"].values():
        for m in metrics.values():
            assert m["delta"] == pytest.approx(0.0, abs=1e-9)


def test_broken_finetune_fails_on_regression(vet_zoo: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = _vet(vet_zoo["broken"], vet_zoo["base"], capsys)
    assert (rc, doc["verdict"]) == (1, "FAIL")
    regressions = [r for r in doc["reasons"] if r["rule"] == "evaluation.no_regression"]
    assert regressions
    for r in regressions:  # the evidence path leads to an interval entirely beyond the margin
        _, task, metric = r["evidence"].split(".", 2)
        entry = doc["comparison"][task][metric]
        assert entry["ci"][0] > 0.05 if metric == "bits_per_byte" else entry["ci"][1] < -0.02


def test_booby_trap_fails_without_being_loaded(vet_zoo: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = _vet(vet_zoo["booby_trap"], vet_zoo["base"], capsys, "--out", str(tmp_path / "out"))
    assert (rc, doc["verdict"]) == (1, "FAIL")
    assert doc["scan"]["verdict"] == "unsafe"
    scan_reasons = [r for r in doc["reasons"] if r["stage"] == "scan"]
    assert scan_reasons and all(r["stage"] == "scan" for r in doc["reasons"] if r["level"] == "fail")
    finding = doc["scan"]["findings"][int(scan_reasons[0]["evidence"].split("[")[1].rstrip("]"))]
    assert finding["path"] == "pytorch_model.bin"
    for stage in ("lineage", "evaluation", "comparison"):
        assert doc["stages"][stage]["status"] == "blocked" and "never loaded" in doc["stages"][stage]["reason"]
        assert doc[stage] is None
    # The card and licence are read as text (nothing is unpickled), so they are shown for an unsafe model too.
    assert doc["stages"]["card"]["status"] == doc["stages"]["licence"]["status"] == "ran"
    assert doc["card"]["licence"] == doc["licence"]["licence"] == "apache-2.0"
    assert BASE_CLAIM in doc["card"]["base_model"]
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["bom.cdx.json", "report.html", "report.md", "scan.sarif", "vet.json"]
    assert json.loads((tmp_path / "out" / "vet.json").read_text()) == doc
    sarif = json.loads((tmp_path / "out" / "scan.sarif").read_text())
    assert sarif["version"] == "2.1.0"
    assert {r["ruleId"] for r in sarif["runs"][0]["results"]} == {f["rule"] for f in doc["scan"]["findings"]}


def test_impostor_fails_on_lineage(vet_zoo: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = _vet(vet_zoo["impostor"], vet_zoo["base"], capsys)
    assert (rc, doc["verdict"]) == (1, "FAIL")
    assert doc["lineage"]["relation"] == "unrelated"
    assert "lineage.descends" in _rules(doc)


def test_no_base_is_a_warning(vet_zoo: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    rc = main(["vet", str(vet_zoo["honest"]), "--task", "builtin:knowledge", "--limit", "5", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "WARN" and rc == 0
    assert {r["stage"] for r in doc["reasons"]} >= {"lineage", "comparison"}
    assert doc["base"] is None and BASE_CLAIM in doc["base_source"]  # the card's base is not cached here
    assert main(["vet", str(vet_zoo["honest"]), "--task", "builtin:knowledge", "--limit", "5", "--strict",
                 "--json"]) == 1


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_signature_required_by_policy(vet_zoo: dict[str, Path], tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from assay.model.ref import resolve
    from assay.provenance.signing import generate_keypair, sign_model

    private, public = generate_keypair()
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "pub.pem").write_bytes(public)
    policy = tmp_path / "policy.yaml"
    policy.write_text("signature:\n  required: true\n  trusted_keys: [keys/pub.pem]\n")
    model = _copy(vet_zoo["honest"], tmp_path / "signed")
    # unsigned: the policy is violated
    rc, doc = _vet(model, vet_zoo["base"], capsys, "--policy", str(policy))
    assert rc == 1 and "signature.valid" in _rules(doc)
    sign_model(resolve(str(model)), private_key_pem=private)
    rc, doc = _vet(model, vet_zoo["base"], capsys, "--policy", str(policy))
    assert (rc, doc["verdict"]) == (0, "PASS"), doc["reasons"]
    assert doc["signature"]["valid"] is True
    # a file slipped in after signing: FAIL, and the reason says which
    (model / "extra.txt").write_text("added later\n")
    rc, doc = _vet(model, vet_zoo["base"], capsys, "--policy", str(policy))
    assert rc == 1 and doc["signature"]["valid"] is False
    assert any(r["rule"] == "signature.valid" and "extra.txt" in r["message"] for r in doc["reasons"])


def test_base_from_the_card_in_the_local_hf_cache(vet_zoo: dict[str, Path], tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    # laid out as huggingface_hub does: snapshot files are symbolic links into blobs/
    repo = tmp_path / "hub" / ("models--" + BASE_CLAIM.replace("/", "--"))
    snap = repo / "snapshots" / "0123abc"
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for f in vet_zoo["base"].iterdir():
        blob = repo / "blobs" / f"blob-{f.name}"
        blob.write_bytes(f.read_bytes())
        (snap / f.name).symlink_to(Path("..", "..", "blobs", blob.name))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abc")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    capsys.readouterr()
    rc = main(["vet", str(vet_zoo["honest"]), *[a for t in TASKS for a in ("--task", t)], "--limit", str(N_ITEMS),
               "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert (rc, doc["verdict"]) == (0, "PASS"), doc["reasons"]
    assert doc["base_source"] == "card" and doc["base"]["hf_id"] == BASE_CLAIM
    assert doc["lineage"]["relation"] == "finetune"


def test_real_report_in_the_browser(vet_zoo: dict[str, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    from tests.report.test_browser import load

    rc, doc = _vet(vet_zoo["broken"], vet_zoo["base"], capsys, "--out", str(tmp_path / "out"))
    dom, console = load(tmp_path / "out" / "report.html")
    assert console == []
    assert f'data-verdict="{doc["verdict"]}"' in dom and "What regressed" in dom
    md = (tmp_path / "out" / "report.md").read_text()
    assert "**FAIL**" in md and "evaluation.no_regression" in md


def test_interrupted_vet_leaves_no_report(vet_zoo: dict[str, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import assay.vet as vet_module
    import assay.vet.stages
    from assay.policy import default_policy

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("the previous report")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(assay.vet.stages, "_lineage", interrupted)  # the lineage stage reads it there
    with pytest.raises(KeyboardInterrupt):
        vet_module.run_vet(str(vet_zoo["honest"]), base=str(vet_zoo["base"]), policy=default_policy(),
                           tasks=["builtin:knowledge"], limit=2, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]
    assert (out / "report.html").read_text() == "the previous report"


# --- deployment: hardware fit, bench, cost, card claims and licence reach the verdict ---------------------

COST_POLICY = """\
deploy:
  max_slowdown: 1.5
cost:
  api_input_per_mtok: 2.5
  api_output_per_mtok: 10
  tokens_in: 64
  tokens_out: 32
  gpu_price_per_hour: 1.2
  utilisation: 0.5
  training_cost: 3000
  monthly_volume: 100000
"""


def test_bench_and_cost_end_to_end(vet_zoo: dict[str, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from assay.deploy.cost import CostInputs, compute_cost

    policy = tmp_path / "policy.yaml"
    policy.write_text(COST_POLICY)
    out = tmp_path / "out"
    rc, doc = _vet(vet_zoo["honest"], vet_zoo["base"], capsys, "--bench", "--policy", str(policy), "--out", str(out))
    assert doc["policy"]["deploy"]["bench"] is True  # --bench is recorded in the policy applied

    # hardware fit, from the headers: the inventory's parameter count at 2 / 1.0625 / 0.5625 bytes per weight
    params = doc["inventory"]["parameters"]
    est = {e["bits"]: e for e in doc["hardware"]["estimates"]}
    assert est[16]["weights_bytes"] == 2 * params and est[8]["weights_bytes"] < est[16]["weights_bytes"]
    for e in est.values():
        assert e["total_bytes"] == e["weights_bytes"] + e["kv_cache_bytes"] + e["overhead_bytes"]
        assert e["kv_cache_bytes"] > 0
    assert len(doc["hardware"]["devices"]) == 3 * len({d["device"] for d in doc["hardware"]["devices"]})

    # the bench measured both models in one run; the ratios are the ratios of the figures
    bench = doc["bench"]
    cand, base = bench["candidate"], bench["base"]
    assert bench["settings"]["prompt_tokens"] == 64 and bench["settings"]["output_tokens"] == 32
    assert bench["settings"]["repeats"] == 3
    for m in (cand, base):
        assert m["decode_tokens_per_s"] > 0 and m["prefill_tokens_per_s"] > 0 and m["load_s"] > 0
        assert m["peak_rss_bytes"] > 0 and 0 < m["latency_p50_s"] <= m["latency_p95_s"]
        assert m["parameters"] == params
    for key in ("decode_tokens_per_s", "model_rss_bytes", "load_s"):
        if base[key]:
            assert bench["ratios"][key] == pytest.approx(cand[key] / base[key])

    # the cost is the cost model applied to the bench's throughput: same inputs, same figures
    cost = doc["cost"]
    inputs = cost["inputs"]
    assert inputs["decode_tokens_per_s"] == cand["batches"][0]["decode_tokens_per_s"]
    again = compute_cost(CostInputs(**inputs))
    assert cost["break_even_tasks"] == again.break_even_tasks > 0
    assert cost["api_per_task"] == pytest.approx(64 * 2.5 / 1e6 + 32 * 10 / 1e6)
    seconds = 32 / inputs["decode_tokens_per_s"] + 64 / inputs["prefill_tokens_per_s"]
    assert cost["self_per_task"] == pytest.approx(1.2 / 3600 * seconds / 0.5) and cost["self_per_task"] > 0
    assert cost["monthly_api"] == pytest.approx(100000 * cost["api_per_task"])

    # the verdict follows the measured speed: a WARN only when the candidate is more than 1.5x slower
    slow = bench["ratios"]["decode_tokens_per_s"] < 1 / 1.5
    assert ("deploy.speed" in _rules(doc)) is slow
    assert (rc, doc["verdict"]) == (0, "WARN" if slow else "PASS"), doc["reasons"]

    # every report carries the new sections
    be = f"{cost['break_even_tasks']:,}"
    html = (out / "report.html").read_text()
    assert f"break-even {be} tasks" in html and "Where it fits" in html and "Measured speed and memory" in html
    assert f"**{be} tasks**" in (out / "report.md").read_text()
    bom = json.loads((out / "bom.cdx.json").read_text())
    perf = {p["type"]: float(p["value"])
            for p in bom["components"][0]["modelCard"]["quantitativeAnalysis"]["performanceMetrics"]}
    assert perf["decode tokens per second"] == pytest.approx(cand["decode_tokens_per_s"], rel=1e-5)
    assert perf["break-even tasks"] == cost["break_even_tasks"]
    assert json.loads((out / "vet.json").read_text()) == doc


def test_cost_ceiling_gives_the_configured_verdict(vet_zoo: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cost = tmp_path / "cost.yaml"  # the worked example of the cost issue, read with --cost-from
    cost.write_text("api_per_task: 0.15\nself_per_task: 0.01\ntraining_cost: 3000\n")
    policy = tmp_path / "policy.yaml"
    for on_exceed, verdict, code in (("warn", "WARN", 0), ("fail", "FAIL", 1)):
        policy.write_text(f"cost:\n  max_cost_per_task: 0.005\n  on_exceed: {on_exceed}\n")
        rc, doc = _vet(vet_zoo["honest"], vet_zoo["base"], capsys, "--policy", str(policy), "--cost-from", str(cost))
        assert (rc, doc["verdict"]) == (code, verdict)
        assert [(r["rule"], r["evidence"]) for r in doc["reasons"]] == [("cost.max_per_task", "cost.self_per_task")]
        assert doc["cost"]["break_even_tasks"] == 21429 and doc["cost"]["self_per_task"] == 0.01
        assert doc["policy"]["cost"]["self_per_task"] == 0.01 and doc["policy"]["cost"]["on_exceed"] == on_exceed
        assert doc["stages"]["bench"]["status"] == "not_applicable" and doc["bench"] is None


CLAIMING_CARD = """\
---
license: llama3.1
base_model: assay-tests/tiny-llama-base
base_model_relation: finetune
model-index:
- name: broken-finetune
  results:
  - task: {type: text-generation}
    dataset: {name: Knowledge drill, type: "builtin:knowledge"}
    metrics:
    - {type: acc, value: 99.0}
  - task: {type: text-generation}
    dataset: {name: AI2 Reasoning Challenge (25-Shot), type: ai2_arc}
    metrics:
    - {type: acc_norm, value: 80.1}
---
# The best knowledge model
"""


def test_card_claims_and_licence_reach_the_verdict(vet_zoo: dict[str, Path], tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from assay.deploy.licences import lookup

    model = _copy(vet_zoo["broken"], tmp_path / "claims-too-much")
    (model / "README.md").write_text(CLAIMING_CARD)
    policy = tmp_path / "policy.yaml"
    policy.write_text("licence:\n  deny: ['llama3*']\n  monthly_active_users: 900000000\n")
    rc, doc = _vet(model, vet_zoo["base"], capsys, "--policy", str(policy))
    assert (rc, doc["verdict"]) == (1, "FAIL")
    licence = [r for r in doc["reasons"] if r["rule"] == "licence.allowed"]
    assert [r["level"] for r in licence] == ["fail", "fail"]
    assert "denied" in licence[0]["message"] and "policy key licence.deny" in licence[0]["message"]
    clause = lookup("llama3.1").mau_clause
    assert "900,000,000" in licence[1]["message"] and clause in licence[1]["message"]
    assert doc["licence"]["terms"]["mau_cap"] == 700_000_000

    # the card's claim is matched to what vet measured on the same task and metric
    measured = doc["evaluation"]["tasks"]["builtin:knowledge"]["metrics"]["acc"]
    [check] = doc["card"]["claims"]
    assert (check["measured_key"], check["claimed"], check["measured"]) == ("builtin:knowledge/acc", 0.99, measured)
    assert check["supported"] is (0.99 - measured <= 0.05)
    claims = [r for r in doc["reasons"] if r["rule"] == "card.claims"]
    assert claims and claims[0]["evidence"] == "card.claims[0]" and f"{measured:.3f}" in claims[0]["message"]
    assert [c["dataset_type"] for c in doc["card"]["claims_unmatched"]] == ["ai2_arc"]  # not measured here


def test_claims_are_matched_by_benchmark_name_and_metric(tmp_path: Path) -> None:
    from assay.deploy.card import read_card
    from assay.model.ref import ModelRef
    from assay.vet import match_claims

    (tmp_path / "README.md").write_text("""---
model-index:
- name: m
  results:
  - dataset: {name: AI2 Reasoning Challenge (25-Shot), type: ai2_arc}
    metrics: [{type: acc_norm, value: 60.0}]
  - dataset: {name: MMLU (5-Shot), type: cais/mmlu}
    metrics: [{type: accuracy, value: 51.0}]
  - dataset: {name: HellaSwag (10-Shot), type: hellaswag}
    metrics: [{type: acc_norm, value: 80.0}]
---
""")
    ref = ModelRef(spec=str(tmp_path), root=tmp_path, files=(Path("README.md"),), single_file=False)
    measured = {("arc_challenge", "acc"): 0.47, ("arc_challenge", "acc_norm"): 0.45, ("mmlu", "acc"): 0.50,
                ("builtin:knowledge", "acc"): 0.9}
    checks, unmatched = match_claims(read_card(ref), measured)
    got = {c.measured_key: (c.claimed, c.measured, c.supported) for c in checks}
    assert got == {"arc_challenge/acc_norm": (0.60, 0.45, False), "mmlu/acc": (0.51, 0.50, True)}
    assert [c.dataset_type for c in unmatched] == ["hellaswag"]


# --- behaviour probes and KL drift in the verdict ------------------------------------------------------------
# Tiny chat models trained as in tests/evaluate/test_probes.py: a base that refuses the first few harmful requests
# and helps with the first few safe ones, and a fine-tune of it that complies with everything.

PROBE_POLICY = """\
evaluation:
  tasks: [builtin:knowledge]
  limit: 4
probes:
  run: [refusal]
  limit: {n}
drift:
  kl: builtin:reference
  limit: 2
  max_kl_mean: {max_kl}
  level: {level}
lineage:
  reject_identical: false
"""


@pytest.fixture(scope="session")
def probe_zoo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """chat_base, stripped (complies with every request) and clean (the base's own weights, re-saved)."""
    import copy

    from tests.conftest import single_thread_torch
    from tests.evaluate.test_probes import COMPLY, N_REFUSAL, REFUSE, _train as train_pairs
    from tests.factory.models import build_model, save_safetensors_folder, tiny_tokenizer

    single_thread_torch()
    from assay.evaluate.probes.refusal import refusal_tasks

    root = tmp_path_factory.mktemp("probe-zoo")
    env = pytest.MonkeyPatch()
    env.setenv("ASSAY_CACHE_DIR", str(root / "cache"))
    tok = tiny_tokenizer()
    harmful, benign = ([it.context for it in t.items[:N_REFUSAL]] for t in refusal_tasks())

    def chat(p: str) -> str:
        return str(tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True))

    eos = tok.eos_token
    base = build_model(seed=0)
    train_pairs(base, tok, [(chat(p), REFUSE + eos) for p in harmful] + [(chat(p), COMPLY + eos) for p in benign],
                steps=40)
    stripped = copy.deepcopy(base)
    train_pairs(stripped, tok, [(chat(p), COMPLY + eos) for p in harmful + benign], steps=10)
    out = {"base": save_safetensors_folder(base, tok, root / "chat-base",
                                           card={"license": "apache-2.0", "language": ["en"]}),
           "stripped": save_safetensors_folder(stripped, tok, root / "uncensored-finetune", card=_card()),
           "clean": save_safetensors_folder(base, tok, root / "clean-copy", card={
               k: v for k, v in _card().items() if k != "base_model_relation"})}  # a copy: not a fine-tune
    yield out
    env.undo()


def _probe_vet(model: Path, base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *, max_kl: float = 100.0,
               level: str = "warn", extra: tuple[str, ...] = ()) -> tuple[int, dict]:  # type: ignore[type-arg]
    from tests.evaluate.test_probes import N_REFUSAL

    policy = tmp_path / "policy.yaml"
    policy.write_text(PROBE_POLICY.format(n=N_REFUSAL, max_kl=max_kl, level=level))
    capsys.readouterr()
    rc = main(["vet", str(model), "--base", str(base), "--policy", str(policy), "--json", *extra])
    doc = json.loads(capsys.readouterr().out)
    return rc, doc


def _at(doc: dict, evidence: str):  # type: ignore[no-untyped-def,type-arg]
    """Follow an evidence path (``probes.comparison.builtin:refusal/harmful.refused``) into the document."""
    stage, rest = evidence.split(".", 1)
    node = doc[stage]
    keys = [stage, *rest.split(".")]
    i = 1
    while i < len(keys):  # task names may contain dots: take the longest key that exists
        for j in range(len(keys), i, -1):
            k = ".".join(keys[i:j])
            if isinstance(node, dict) and k in node:
                node, i = node[k], j
                break
        else:
            raise KeyError(evidence)
    return node


def test_stripped_alignment_fails_with_evidence(probe_zoo: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    from tests.evaluate.test_probes import N_REFUSAL

    out = tmp_path / "out"
    rc, doc = _probe_vet(probe_zoo["stripped"], probe_zoo["base"], tmp_path, capsys, extra=("--out", str(out)))
    assert (rc, doc["verdict"]) == (1, "FAIL"), doc["reasons"]
    [reason] = [r for r in doc["reasons"] if r["rule"] == "probes.alignment_stripped"]
    assert reason["level"] == "fail" and reason["stage"] == "probes"
    entry = _at(doc, reason["evidence"])
    assert reason["evidence"] == "probes.comparison.builtin:refusal/harmful.refused"
    assert (entry["base"], entry["candidate"]) == (1.0, 0.0) and entry["ci"][1] < 0 and entry["n"] == N_REFUSAL
    assert "100%" in reason["message"] and "0%" in reason["message"]
    # the base's answers really were refusals and the candidate's compliance, item by item
    assert doc["probes"]["tasks"]["builtin:refusal/harmful"]["metrics"]["refused"] == 0.0
    assert doc["probes"]["base_tasks"]["builtin:refusal/harmful"]["metrics"]["refused"] == 1.0
    assert doc["probes"]["refusal"]["alignment_stripped"] is True
    assert doc["probes"]["refusal"]["over_refusal_rose"] is False
    assert "probes.over_refusal" not in _rules(doc)
    # KL drift was measured while each model was loaded, and reported (under the threshold here)
    kl = doc["drift"]["tasks"]["kl:builtin:reference"]
    assert kl["metrics"]["kl_mean"] > 0 and kl["n"] == 2 and "drift.kl" not in _rules(doc)
    # every human report carries the Behaviour section with the figures
    md = (out / "report.md").read_text()
    assert "Behaviour" in md and "probes.alignment_stripped" in md and "100% → 0%" in md
    html = (out / "report.html").read_text()
    assert 'id="uncensored-finetune-behaviour"' in html and "harmful requests refused" in html
    assert f"{kl['metrics']['kl_mean']:.4f}" in html
    from tests.report.test_browser import load

    dom, console = load(out / "report.html")  # a real browser renders it without a console error
    assert console == [] and 'data-verdict="FAIL"' in dom and "Drift from the base" in dom
    from assay.report.terminal import TerminalRenderer

    text = TerminalRenderer().render(doc)
    assert "Behaviour" in text and "harmful requests refused" in text and "KL" in text


def test_clean_candidate_has_no_probe_reasons(probe_zoo: dict[str, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    rc, doc = _probe_vet(probe_zoo["clean"], probe_zoo["base"], tmp_path, capsys, max_kl=0.0, level="fail")
    assert (rc, doc["verdict"]) == (0, "PASS"), doc["reasons"]
    assert not [r for r in doc["reasons"] if r["rule"].startswith(("probes.", "drift."))]
    entry = doc["probes"]["comparison"]["builtin:refusal/harmful"]["refused"]
    assert entry["base"] == entry["candidate"] == 1.0
    assert doc["drift"]["tasks"]["kl:builtin:reference"]["metrics"]["kl_mean"] == 0.0  # same weights: no drift
    # the base's probe results came from the result cache (it was vetted against the stripped one already, or
    # the candidate's identical weights were): either way both ran on the same items
    assert doc["probes"]["base_tasks"]["builtin:refusal/benign"]["n"] == doc["probes"]["tasks"][
        "builtin:refusal/benign"]["n"]


@pytest.mark.parametrize("level, verdict, code", [("warn", "WARN", 0), ("fail", "FAIL", 1)])
def test_kl_drift_over_threshold_gives_the_configured_level(probe_zoo: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str], level: str,
                                                            verdict: str, code: int) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("evaluation:\n  tasks: [builtin:knowledge]\n  limit: 4\n"
                      f"drift:\n  kl: kl:builtin:reference\n  limit: 2\n  max_kl_mean: 0.000001\n  level: {level}\n")
    capsys.readouterr()
    rc = main(["vet", str(probe_zoo["stripped"]), "--base", str(probe_zoo["base"]), "--policy", str(policy),
               "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert (rc, doc["verdict"]) == (code, verdict), doc["reasons"]
    [reason] = doc["reasons"]
    assert (reason["rule"], reason["level"]) == ("drift.kl", level)
    kl = _at(doc, reason["evidence"])
    assert kl > 0.000001 and f"{kl:.4f}" in reason["message"]
    assert doc["stages"]["probes"]["status"] == "not_applicable"


def test_bad_probe_or_drift_spec_is_refused_before_any_work(probe_zoo: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("probes:\n  contamination: [builtin:reference]\n")
    assert main(["vet", str(probe_zoo["stripped"]), "--base", str(probe_zoo["base"]), "--policy", str(policy)]) == 2
    _one_line_error(capsys, "contamination")
    policy.write_text("drift:\n  kl: builtin:knowledge\n")
    assert main(["vet", str(probe_zoo["stripped"]), "--base", str(probe_zoo["base"]), "--policy", str(policy)]) == 2
    _one_line_error(capsys, "kl:builtin:knowledge")


def test_uncached_org_name_is_refused_and_download_fails_offline(tmp_path, monkeypatch, capsys):
    """An org/name that is not cached is never fetched silently; with --download and no network it fails cleanly."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from assay.cli.main import main as cli_main

    assert cli_main(["vet", "nosuch/model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not in the local Hugging Face cache" in err[0] and "--download" in err[0]
    assert cli_main(["vet", "nosuch/model", "--download"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: could not download nosuch/model")
