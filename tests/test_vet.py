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
    assert scan_reasons and all(r["stage"] == "scan" for r in doc["reasons"])
    finding = doc["scan"]["findings"][int(scan_reasons[0]["evidence"].split("[")[1].rstrip("]"))]
    assert finding["path"] == "pytorch_model.bin"
    for stage in ("lineage", "evaluation", "comparison", "card", "licence"):
        assert doc["stages"][stage]["status"] == "blocked" and "never loaded" in doc["stages"][stage]["reason"]
        assert doc[stage] is None
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
    from assay.policy import default_policy

    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("the previous report")

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(vet_module, "_lineage", interrupted)
    with pytest.raises(KeyboardInterrupt):
        vet_module.run_vet(str(vet_zoo["honest"]), base=str(vet_zoo["base"]), policy=default_policy(),
                           tasks=["builtin:knowledge"], limit=2, out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["report.html"]
    assert (out / "report.html").read_text() == "the previous report"
