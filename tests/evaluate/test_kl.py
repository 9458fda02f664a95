"""KL drift: zero for a model against itself, positive for a different model, not compared across tokenizers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from assay.errors import BackendError, EvalError
from assay.evaluate.kl import (BaseDistributions, HFDistributions, distribution_source, hf_next_token_logprobs,
                               kl_document, kl_drift, load_kl_task, summarise)
from assay.evaluate.suites import load_suite
from assay.evaluate.tasks import Item, Task, TaskKind


@pytest.fixture(scope="module")
def models() -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    from tests.factory.models import build_model, tiny_tokenizer

    return {"base": build_model(seed=0), "same": build_model(seed=0), "other": build_model(seed=1),
            "tok": tiny_tokenizer()}


def _small_task(n_docs: int = 4) -> Task:
    full = load_kl_task("builtin:reference")
    return Task(name=full.name, version=full.version, kind=TaskKind.KL,
                items=tuple(Item(id=it.id, text=it.text[:300]) for it in full.items[:n_docs]))


def _opener(model: Any, tok: Any, closed: list[str], name: str) -> Any:
    def open_() -> Any:
        from assay.evaluate.backends.hf import HFBackend

        backend = HFBackend.from_model(model, tok, model_id=name, threads=1)
        original = backend.close

        def close() -> None:
            closed.append(name)
            original()

        backend.close = close  # type: ignore[method-assign]
        return backend

    return open_


def test_kl_of_a_model_with_itself_is_zero(models: dict[str, Any], tmp_path: Path) -> None:
    closed: list[str] = []
    task = _small_task()
    res = kl_drift(task, base=_opener(models["base"], models["tok"], closed, "base"),
                   candidate=_opener(models["same"], models["tok"], closed, "cand"), workdir=tmp_path)
    assert res.mean == 0.0 and res.p95 == 0.0 and res.ci == (0.0, 0.0)
    assert res.top1_agreement == 1.0
    assert res.n_documents == 4 and res.n_tokens > 100
    assert closed == ["base", "cand"]  # one model at a time: the base is closed before the candidate opens


def test_kl_of_a_different_model_is_positive_with_an_interval(models: dict[str, Any]) -> None:
    closed: list[str] = []
    task = _small_task()
    res = kl_drift(task, base=_opener(models["base"], models["tok"], closed, "base"),
                   candidate=_opener(models["other"], models["tok"], closed, "cand"))
    assert res.mean > 0.001
    assert res.ci[0] <= res.mean <= res.ci[1]
    assert res.p95 >= np.median(res.per_document) * 0.5
    assert res.reverse_mean > 0 and res.direction == "KL(candidate || base)"
    assert set(res.metrics()) == {"kl_mean", "kl_p95", "kl_reverse_mean", "top1_agreement"}


def test_kl_matches_a_direct_computation(models: dict[str, Any], tmp_path: Path) -> None:
    import torch

    tok = models["tok"]
    text = "The quick brown fox jumps over the lazy dog."
    task = Task(name="kl:x", version="1", kind=TaskKind.KL, items=(Item(id="a", text=text),))
    res = kl_drift(task, base=lambda: HFDistributions(models["base"], tok),
                   candidate=lambda: HFDistributions(models["other"], tok), workdir=tmp_path)
    ids = [tok.bos_token_id] + tok(text, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        p = torch.log_softmax(models["other"](input_ids=torch.tensor([ids])).logits[0, :-1], -1)
        q = torch.log_softmax(models["base"](input_ids=torch.tensor([ids])).logits[0, :-1], -1)
    direct = (p.exp() * (p - q)).sum(-1)
    assert res.n_tokens == len(ids) - 1
    assert abs(res.mean - float(direct.mean())) < 2e-3  # float16 storage
    assert abs(res.p95 - float(np.percentile(direct.numpy(), 95))) < 5e-3


def test_long_documents_are_windowed_over_every_token(models: dict[str, Any]) -> None:
    tok = models["tok"]
    text = " ".join(it.text for it in load_suite("builtin:reference").items[:2])
    d = hf_next_token_logprobs(models["base"], tok, text, max_length=64)
    n = len(tok(text, add_special_tokens=False)["input_ids"])
    assert d.logprobs.shape[0] == n > 64
    assert np.allclose(np.exp(d.logprobs).sum(-1), 1.0, atol=1e-4)
    full = hf_next_token_logprobs(models["base"], tok, text[:150])
    short = hf_next_token_logprobs(models["base"], tok, text[:150], max_length=64)
    k = min(40, len(short.token_ids))
    assert np.allclose(full.logprobs[:k], short.logprobs[:k], atol=1e-4)  # the first window is the same text


def test_different_tokenizers_are_not_compared(models: dict[str, Any]) -> None:
    from transformers import PreTrainedTokenizerFast

    from tests.factory.models import build_model, tiny_tokenizer

    # Same vocabulary size, different merges: a tokenizer trained on other text.
    from tokenizers import Tokenizer, models as tmodels, pre_tokenizers, trainers, decoders

    raw = Tokenizer(tmodels.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    raw.train_from_iterator(["zebra quartz jukebox " * 20, "lorem ipsum dolor " * 20],
                            trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                                initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                show_progress=False))
    other_tok = PreTrainedTokenizerFast(tokenizer_object=raw, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    other_model = build_model(seed=2, vocab_size=len(other_tok))
    res = kl_drift(_small_task(1), base=lambda: HFDistributions(models["base"], tiny_tokenizer()),
                   candidate=lambda: HFDistributions(other_model, other_tok))
    assert res.comparable is False and "tokenizer" in res.note and "bits per byte" in res.note
    assert np.isnan(res.mean) and res.n_tokens == 0
    doc = kl_document(res)
    assert doc["comparable"] is False and doc["note"] == res.note


def test_backends_without_distributions_are_refused() -> None:
    class Remote:
        class info:  # noqa: N801 - mimics BackendInfo
            backend = "openai"

    with pytest.raises(BackendError, match="openai backend cannot give"):
        distribution_source(Remote())


def test_kl_task_from_a_text_file(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("First document,\nstill first.\n\n\nSecond document.\n", encoding="utf-8")
    task = load_kl_task(str(f))
    assert task.kind is TaskKind.KL and [i.text for i in task.items] == ["First document, still first.",
                                                                        "Second document."]
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(EvalError, match="no documents"):
        load_kl_task(str(tmp_path / "empty.txt"))
    with pytest.raises(EvalError, match="no such text file"):
        load_kl_task(str(tmp_path / "missing.txt"))
    assert load_suite(f"kl:{f}").items == task.items


def test_bootstrap_interval_is_seeded_and_covers_the_mean() -> None:
    rng = np.random.default_rng(0)
    fwd = [rng.exponential(0.1 * (k + 1), size=50) for k in range(8)]
    a = summarise(fwd, fwd, [np.ones(50, bool)] * 8, fingerprint="x", seed=3)
    b = summarise(fwd, fwd, [np.ones(50, bool)] * 8, fingerprint="x", seed=3)
    assert a == b
    assert a.ci[0] < a.mean < a.ci[1]
    assert a.mean == pytest.approx(float(np.concatenate(fwd).mean()))
    assert a.p95 == pytest.approx(float(np.percentile(np.concatenate(fwd), 95)))


def test_store_is_float16_on_disk(models: dict[str, Any], tmp_path: Path) -> None:
    task = _small_task(2)
    store = BaseDistributions.collect(HFDistributions(models["base"], models["tok"]), list(task.items),
                                      directory=tmp_path)
    size = (tmp_path / "base-logprobs.f16").stat().st_size
    assert size == store.offsets[-1] * store.vocab * 2


def test_session_records_the_base_then_compares_the_candidate(models: dict[str, Any]) -> None:
    from assay.evaluate.kl import KLSession, kl_document

    task = _small_task(3)
    with KLSession([task], limit=2, seed=1) as kl:
        with pytest.raises(EvalError, match="need --base"):
            kl.compare(HFDistributions(models["other"], models["tok"]))
        kl.record_base(HFDistributions(models["base"], models["tok"]))
        res = kl.compare(HFDistributions(models["other"], models["tok"]))[task.name]
    assert res.n_documents == 2 and res.mean > 0
    doc = kl_document(res)
    assert doc["metrics"]["kl_mean"] == res.mean and doc["ci"]["kl_mean"] == list(res.ci)
    with pytest.raises(EvalError, match="not a KL task"):
        KLSession([load_suite("builtin:knowledge")])


def test_tokenizer_fingerprint_survives_save_and_reload(models: dict[str, Any], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    from assay.evaluate.kl import tokenizer_fingerprint
    from tests.factory.models import save_tokenizer

    tok = models["tok"]
    reloaded = AutoTokenizer.from_pretrained(save_tokenizer(tok, tmp_path / "tok"), trust_remote_code=False)
    assert tokenizer_fingerprint(reloaded) == tokenizer_fingerprint(tok)
    tok2 = AutoTokenizer.from_pretrained(tmp_path / "tok", trust_remote_code=False)
    tok2.add_tokens(["<extra>"])
    assert tokenizer_fingerprint(tok2) != tokenizer_fingerprint(tok)
