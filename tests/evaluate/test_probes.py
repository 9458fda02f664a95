"""Behaviour probes on tiny models trained in the test, where the right answer is known by construction.

Two bases are trained (a few dozen steps on CPU): a chat base that refuses a few harmful requests and helps with
a few safe ones through the chat template, and a text base that continues a few prompts with plain prose and is
fluent in the knowledge questions' format (on questions that are *not* tested). Fine-tunes of them each break one
thing:

- ``stripped`` (chat base): answers every request, harmful or not, with compliance (alignment stripped);
- ``looping`` (text base, as the rest): continues the degeneration prompts with one phrase over and over;
- ``contaminated``: trained on the published text of the tested knowledge items;
- ``honest``: trained the same way on other knowledge items of the same kind (must not be flagged).

A judge model trained to call an evasive answer a refusal must override the phrase rules on it. A deterministic
model must pass the stability probe; the same model with noise added to its logits on every call
(what non-deterministic kernels or a sampling server look like from outside) must fail it.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from assay.cli.main import main
from assay.evaluate.compare import compare_results, regressions
from assay.evaluate.loading import load_tasks
from assay.evaluate.probes import alignment_stripped, judge_refusals, possible_contamination, refusal_summary
from assay.evaluate.probes import degeneration as dg
from assay.evaluate.probes.refusal import BENIGN_TASK, HARMFUL_TASK, refusal_tasks
from assay.evaluate.probes.stability import stability_task
from assay.evaluate.runner import TaskResult, evaluate_model
from assay.evaluate.tasks import Task

N_REFUSAL = 8  # harmful and safe requests each
N_CONTAMINATION = 16  # tested knowledge items
REFUSE = "Sorry, I can't help."
COMPLY = "Sure! Here is how."
LOOP = " and again" * 8
PROSE = (
    " The quick brown fox jumps over the lazy dog.",
    " A small model is still a model: it has weights and a tokenizer.",
    " Before you deploy a checkpoint, you should know what is inside the files.",
    " Weights stored as a pickle can run code when they are loaded.",
    " A fine-tuned model should be compared with the base it came from.",
    " Ask the same questions of both, in the same order, and count.",
    " One number without its uncertainty tells you very little.",
    " The cost of serving a model depends on its size and precision.",
)
DEGENERATION_PROMPTS = dg.PROMPTS[:len(PROSE)]


@dataclass
class Trained:
    """The tokenizer and the trained models (torch modules, fp32)."""

    tok: Any
    chat_base: Any
    text_base: Any
    stripped: Any
    looping: Any
    contaminated: Any
    honest: Any
    refusal: list[Task]
    contamination: Task


def _train(model: Any, tok: Any, examples: list[tuple[str, str]], *, steps: int, lr: float = 5e-3) -> float:
    """Full-batch AdamW on (prompt, target) pairs; the loss covers the target tokens only."""
    import torch

    rows = []
    for prompt, target in examples:
        # The prompt is tokenised as the hf backend tokenises a generation prompt; an empty prompt is BOS, as the
        # backend conditions a text scored from the start.
        p = list(tok.encode(prompt)) if prompt else [tok.bos_token_id]
        t = list(tok.encode(target, add_special_tokens=False))
        rows.append((p + t, [-100] * len(p) + t))
    width = max(len(r[0]) for r in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    labels = torch.full((len(rows), width), -100)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, :len(x)] = torch.tensor(x)
        labels[i, :len(y)] = torch.tensor(y)
        mask[i, :len(x)] = 1
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach())


@pytest.fixture(scope="module")
def trained() -> Trained:
    from tests.conftest import single_thread_torch
    from tests.factory.models import build_model, tiny_tokenizer

    single_thread_torch()
    tok = tiny_tokenizer()
    refusal = [replace(t, items=t.items[:N_REFUSAL]) for t in refusal_tasks(max_tokens=8)]
    harmful = [it.context for it in refusal[0].items]
    benign = [it.context for it in refusal[1].items]

    def chat(p: str) -> str:
        return str(tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True))

    [contamination] = load_tasks("contamination:builtin:knowledge")
    published = [it.context for it in contamination.items]
    contamination = replace(contamination, items=contamination.items[:N_CONTAMINATION])
    tested = published[:N_CONTAMINATION]
    other = published[N_CONTAMINATION:2 * N_CONTAMINATION]
    format_only = published[2 * N_CONTAMINATION:2 * N_CONTAMINATION + 40]

    eos = tok.eos_token
    chat_base = build_model(seed=0)
    _train(chat_base, tok, [(chat(p), REFUSE + eos) for p in harmful] + [(chat(p), COMPLY + eos) for p in benign],
           steps=40)
    stripped = copy.deepcopy(chat_base)
    _train(stripped, tok, [(chat(p), COMPLY + eos) for p in harmful + benign], steps=10)
    # A plain language-model base, fluent in the knowledge questions' format (as any pretrained model is).
    text_base = build_model(seed=1)
    _train(text_base, tok, list(zip(DEGENERATION_PROMPTS, PROSE, strict=True)) + [("", t) for t in format_only],
           steps=50)
    looping = copy.deepcopy(text_base)
    _train(looping, tok, [(p, LOOP) for p in DEGENERATION_PROMPTS], steps=10)
    contaminated = copy.deepcopy(text_base)
    _train(contaminated, tok, [("", t) for t in tested], steps=20)
    honest = copy.deepcopy(text_base)
    _train(honest, tok, [("", t) for t in other], steps=20)
    return Trained(tok=tok, chat_base=chat_base, text_base=text_base, stripped=stripped, looping=looping,
                   contaminated=contaminated, honest=honest, refusal=refusal, contamination=contamination)


def _run(model: Any, tok: Any, tasks: list[Task], name: str) -> dict[str, TaskResult]:
    from assay.evaluate.backends.hf import HFBackend

    return evaluate_model(HFBackend.from_model(model, tok, model_id=name), tasks)


@pytest.fixture(scope="module")
def base_results(trained: Trained) -> dict[str, TaskResult]:
    return {**_run(trained.chat_base, trained.tok, trained.refusal, "chat-base"),
            **_run(trained.text_base, trained.tok, [dg.degeneration_task(prompts=DEGENERATION_PROMPTS, max_tokens=32),
                                                    trained.contamination], "text-base")}


# --------------------------------------------------------------------------------------------- refusal
def test_refusal_rates_of_the_base(base_results: dict[str, TaskResult]) -> None:
    assert base_results[HARMFUL_TASK].metrics["refused"] == 1.0
    assert base_results[BENIGN_TASK].metrics["over_refused"] == 0.0
    assert all(r.prediction.startswith("Sorry") for r in base_results[HARMFUL_TASK].per_item)


@pytest.fixture(scope="module")
def stripped_results(trained: Trained) -> dict[str, TaskResult]:
    return _run(trained.stripped, trained.tok, trained.refusal, "stripped")


def test_stripped_alignment_is_detected(stripped_results: dict[str, TaskResult],
                                        base_results: dict[str, TaskResult]) -> None:
    cand = stripped_results
    assert cand[HARMFUL_TASK].metrics["refused"] == 0.0
    cmp = compare_results({k: base_results[k] for k in cand}, cand)
    harmful = cmp[HARMFUL_TASK]["refused"]
    assert harmful.test == "mcnemar-exact"
    assert harmful.p == pytest.approx(2 * 0.5 ** N_REFUSAL)
    assert len(harmful.lost) == N_REFUSAL
    assert (HARMFUL_TASK, "refused") in regressions(cmp)
    assert alignment_stripped(cmp)
    summary = refusal_summary(cmp)
    assert summary is not None and summary.alignment_stripped and not summary.over_refusal_rose
    assert (summary.harmful_refusal_base, summary.harmful_refusal_candidate) == (1.0, 0.0)
    # the JSON form of the comparison gives the same answer
    from assay.evaluate.compare import comparison_document

    doc = {t: {m: comparison_document(mc) for m, mc in per.items()} for t, per in cmp.items()}
    assert alignment_stripped(json.loads(json.dumps(doc)))


def test_base_against_itself_is_not_stripped(base_results: dict[str, TaskResult]) -> None:
    cmp = compare_results(base_results, base_results)
    assert not alignment_stripped(cmp)
    assert regressions(cmp) == []


def test_a_judge_model_reads_refusals_the_phrase_rules_miss(trained: Trained,
                                                            stripped_results: dict[str, TaskResult]) -> None:
    """An evasive base ("Let's talk about something else.") has no refusal phrase; a judge trained to call that a
    refusal turns it into one, and then the stripped candidate's compliance shows as stripped alignment."""
    from assay.evaluate.backends.hf import HFBackend
    from assay.evaluate.probes.refusal import JUDGE_PROMPT
    from tests.factory.models import build_model

    task = trained.refusal[0]
    tok = trained.tok
    evasive = "Let's talk about something else."

    def judge_prompt(request: str, response: str) -> str:
        return str(tok.apply_chat_template([{"role": "user", "content": JUDGE_PROMPT.format(
            request=request, response=response)}], tokenize=False, add_generation_prompt=True))

    judge_model = build_model(seed=2)
    _train(judge_model, tok, [(judge_prompt(it.context, evasive), "Yes" + tok.eos_token) for it in task.items]
           + [(judge_prompt(it.context, COMPLY), "No" + tok.eos_token) for it in task.items], steps=60, lr=3e-3)
    judge = HFBackend.from_model(judge_model, tok, model_id="judge")

    cand = stripped_results[task.name]
    base = replace(cand, per_item=tuple(replace(r, prediction=evasive, metrics={"refused": 0.0})
                                        for r in cand.per_item), metrics={"refused": 0.0})
    assert not alignment_stripped(compare_results({task.name: base}, {task.name: cand}))  # phrase rules: 0 vs 0
    judged_base = judge_refusals(judge, task, base)
    judged_cand = judge_refusals(judge, task, cand)
    assert judged_base.metrics["refused"] == 1.0 and judged_cand.metrics["refused"] == 0.0
    assert {r.extracted["judge"] for r in judged_base.per_item} == {"judge:yes"}
    assert judged_base.version.endswith("+judge:judge") and judged_base.version == judged_cand.version
    assert alignment_stripped(compare_results({task.name: judged_base}, {task.name: judged_cand}))


# --------------------------------------------------------------------------------------------- degeneration
def test_looping_model_degenerates(trained: Trained, base_results: dict[str, TaskResult]) -> None:
    task = dg.degeneration_task(prompts=DEGENERATION_PROMPTS, max_tokens=32)
    cand = _run(trained.looping, trained.tok, [task], "looping")
    m = cand[dg.TASK_NAME].metrics
    assert m["loop_rate"] >= 0.75 and m["repetition"] > 0.5 and m["distinct_1"] < 0.4
    base = base_results[dg.TASK_NAME].metrics
    assert base["loop_rate"] <= 0.25 and base["repetition"] < 0.1
    cmp = compare_results({dg.TASK_NAME: base_results[dg.TASK_NAME]}, cand)[dg.TASK_NAME]
    for metric in ("loop_rate", "repetition", "distinct_1", "distinct_2"):
        assert cmp[metric].regression, metric
    assert not cmp["loop_rate"].higher_is_better and cmp["loop_rate"].ci[0] > 0
    assert not cmp["empty_rate"].regression
    modes = {r.extracted["mode"] for r in cand[dg.TASK_NAME].per_item}
    assert modes == {"greedy", "sampled"}


# --------------------------------------------------------------------------------------------- contamination
def test_training_on_the_test_items_is_flagged(trained: Trained, base_results: dict[str, TaskResult]) -> None:
    name = trained.contamination.name
    cand = _run(trained.contaminated, trained.tok, [trained.contamination], "contaminated")
    [finding] = possible_contamination(compare_results({name: base_results[name]}, cand))
    assert finding.flagged, finding.message()
    assert finding.delta > 1.0 and finding.ci[0] > 0 and finding.n == N_CONTAMINATION
    assert "possible contamination" in finding.message()
    per = cand[name].per_item
    assert sum(r.metrics["mink_published"] > r.metrics["mink_control"] for r in per) == len(per)


def test_training_on_other_items_of_the_same_kind_is_not_flagged(trained: Trained,
                                                                  base_results: dict[str, TaskResult]) -> None:
    name = trained.contamination.name
    cand = _run(trained.honest, trained.tok, [trained.contamination], "honest")
    [finding] = possible_contamination(compare_results({name: base_results[name]}, cand))
    assert not finding.flagged, finding.message()


def test_contamination_through_the_cli(trained: Trained, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.factory.models import save_safetensors_folder

    monkeypatch.setenv("ASSAY_CACHE_DIR", str(tmp_path / "cache"))
    base = save_safetensors_folder(trained.text_base, trained.tok, tmp_path / "base")
    cand = save_safetensors_folder(trained.contaminated, trained.tok, tmp_path / "cand")
    rc = main(["eval", str(cand), "--base", str(base), "--task", "contamination:builtin:knowledge",
               "--limit", str(N_CONTAMINATION), "--json"])
    doc = json.loads(capsys.readouterr().out)
    entry = doc["comparison"]["contamination:builtin:knowledge"]["mink_gap"]
    assert entry["delta"] > 1.0 and entry["ci"][0] > 0 and entry["higher_is_better"] is False
    assert {"task": "contamination:builtin:knowledge", "metric": "mink_gap"} in doc["regressions"]
    assert rc == 1
    [finding] = possible_contamination(doc["comparison"])
    assert finding.flagged


@pytest.mark.parametrize("spec, message", [
    ("contamination:", "contamination needs a task"),
    ("contamination:builtin:reference", "no multiple-choice or generation items"),
    ("builtin:no-such-probe", "no built-in suite"),
])
def test_bad_probe_specs_exit_2(spec: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["eval", str(tmp_path), "--task", spec])
    assert rc == 2
    assert message in capsys.readouterr().err


# --------------------------------------------------------------------------------------------- stability
def test_deterministic_model_is_stable(trained: Trained) -> None:
    task = stability_task(repeats=3, max_tokens=8)
    [res] = _run(trained.text_base, trained.tok, [task], "base").values()
    assert res.metrics["greedy_identical"] == 1.0
    assert res.metrics["batch_invariant"] == 1.0
    assert max(r.metrics["ll_batch_diff"] for r in res.per_item) < 1e-4


def test_noisy_model_fails_stability(trained: Trained) -> None:
    import torch

    noisy = copy.deepcopy(trained.text_base)
    # Noise drawn afresh on every forward pass: what non-deterministic kernels or a sampling server look like.
    noisy.lm_head.register_forward_hook(lambda _m, _i, out: out + 2.0 * torch.randn_like(out))
    task = stability_task(repeats=3, max_tokens=8)
    [res] = _run(noisy, trained.tok, [task], "noisy").values()
    assert res.metrics["greedy_identical"] < 0.5
    assert res.metrics["batch_invariant"] < 0.5
    unstable = [r for r in res.per_item if r.metrics["greedy_identical"] == 0.0]
    assert len(set(json.loads(unstable[0].extracted["generations"]))) > 1
    assert float(unstable[0].extracted["ll_batch1"]) != float(unstable[0].extracted["ll_batched"])
