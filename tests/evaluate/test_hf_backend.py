"""The hf backend scores exactly what a plain full forward per request scores, and loads every model format."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from assay.errors import EvalError
from assay.evaluate.backends.base import GenerationRequest, LoglikelihoodRequest
from assay.evaluate.backends.hf import HFBackend, UnsafeModelError, load_after_scan, model_identity
from assay.model.ref import resolve
from tests.factory.hostile import torch_zip
from tests.factory.models import build_model, tiny_tokenizer

PREFIX = ("The quick brown fox jumps over the lazy dog. A small model is still a model: it has weights.\n\n"
          "Question: Which format runs code when loaded?\nAnswer: a pickle\n\n")
QUESTIONS = ["Question: What should a careful team do first?\nAnswer:",
             "Question: What changes when the files change?\nAnswer:",
             "Question: What does a model card say?\nAnswer: ",  # trailing space moves into the continuation
             "Question: Which model is cheaper?\nAnswer:"]
CHOICES = [" scan them", " the hashes", " where it came from and what it may be used for", "x", " a",
           " one that fits on one small card"]


def naive_loglikelihood(model, tok, context: str, continuation: str, max_length: int) -> tuple[float, bool]:
    """An independent reference: lm-evaluation-harness's rules, one full forward, full-vocabulary softmax."""
    if context == "":
        ctx = [tok.bos_token_id]
        cont = tok.encode(continuation, add_special_tokens=False)
    else:
        stripped = context.rstrip()
        moved = context[len(stripped):]
        whole = tok.encode(stripped + moved + continuation)
        ctx = tok.encode(stripped)
        cont = whole[len(ctx):]
    inp = (ctx + cont)[-(max_length + 1):][:-1]
    with torch.no_grad():
        logits = model(torch.tensor([inp])).logits[0]
    logp = torch.log_softmax(logits, -1)
    n = len(cont)
    rows = logp[len(inp) - n:]
    target = torch.tensor(cont)
    ll = rows.gather(1, target[:, None]).sum().item()
    greedy = bool((rows.argmax(-1) == target).all())
    return ll, greedy


@pytest.fixture(scope="module")
def model_and_tok():
    return build_model(seed=0), tiny_tokenizer()


def _requests() -> list[LoglikelihoodRequest]:
    reqs = [LoglikelihoodRequest(PREFIX + q, c) for q in QUESTIONS for c in CHOICES]
    reqs += [LoglikelihoodRequest(q, c) for q in QUESTIONS[:2] for c in CHOICES[:3]]  # no shared prefix
    reqs.append(LoglikelihoodRequest("", " hello there"))  # empty context: BOS conditions it
    return reqs


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_packed_scoring_equals_a_plain_forward_per_request(model_and_tok, batch_size: int) -> None:
    model, tok = model_and_tok
    backend = HFBackend.from_model(model, tok, model_id="tiny", batch_size=batch_size, threads=1)
    reqs = _requests()
    got = backend.loglikelihood(reqs)
    for req, res in zip(reqs, got, strict=True):
        ll, greedy = naive_loglikelihood(model, tok, req.context, req.continuation, backend.max_length)
        assert res.logprob == pytest.approx(ll, abs=1e-4)
        assert res.is_greedy == greedy


def test_truncated_long_contexts_match_lm_eval_truncation(model_and_tok) -> None:
    model, tok = model_and_tok
    backend = HFBackend.from_model(model, tok, model_id="tiny", max_length=24, threads=1)
    reqs = [LoglikelihoodRequest(PREFIX + q, c) for q in QUESTIONS[:2] for c in CHOICES[:3]]
    for req, res in zip(reqs, backend.loglikelihood(reqs), strict=True):
        ll, _ = naive_loglikelihood(model, tok, req.context, req.continuation, 24)
        assert res.logprob == pytest.approx(ll, abs=1e-4)


def test_encode_pair_moves_trailing_space_and_splits_the_whole_encoding(model_and_tok) -> None:
    model, tok = model_and_tok
    backend = HFBackend.from_model(model, tok, model_id="tiny", threads=1)
    ctx, cont = backend.encode_pair("Answer: ", "the base")
    assert ctx == tok.encode("Answer:")
    assert tok.decode(cont) == " the base"
    whole = tok.encode("Answer: the base")
    assert ctx + cont == whole[:len(ctx)] + whole[len(ctx):]
    assert backend.encode_pair("", " the")[0] == [tok.bos_token_id]


def test_rolling_windows_cover_every_token_once(model_and_tok) -> None:
    model, tok = model_and_tok
    text = "A fine-tuned model should be compared with the base it came from. " * 6
    backend = HFBackend.from_model(model, tok, model_id="tiny", max_length=16, threads=1)
    windows = backend.rolling_windows(text)
    predicted = [t for _, pred in windows for t in pred]
    assert predicted == tok.encode(text)
    assert all(len(inp) <= 16 and len(inp) >= 1 for inp, _ in windows)
    # a document that fits one window scores as one plain forward from the BOS token
    short = "The quick brown fox."
    big = HFBackend.from_model(model, tok, model_id="tiny", threads=1)
    [r] = big.loglikelihood_rolling([short])
    ll, _ = naive_loglikelihood(model, tok, "", short, 512)
    ids = tok.encode(short)
    assert r.n_tokens == len(ids)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([[tok.bos_token_id] + ids[:-1]])).logits[0], -1)
    assert r.logprob == pytest.approx(logp.gather(1, torch.tensor(ids)[:, None]).sum().item(), abs=1e-4)


def test_token_logprobs_full_gives_next_token_distributions(model_and_tok) -> None:
    model, tok = model_and_tok
    backend = HFBackend.from_model(model, tok, model_id="tiny", threads=1)
    ids, logp = backend.token_logprobs_full("The quick brown fox")
    assert ids[0] == tok.bos_token_id and ids[1:] == tok.encode("The quick brown fox")
    assert logp.shape == (len(ids) - 1, model.config.vocab_size)
    assert torch.allclose(logp.exp().sum(-1), torch.ones(len(ids) - 1), atol=1e-5)


def test_generate_is_greedy_and_stops_at_stop_strings(model_and_tok) -> None:
    model, tok = model_and_tok
    backend = HFBackend.from_model(model, tok, model_id="tiny", threads=1)
    [free] = backend.generate([GenerationRequest("The quick brown", max_tokens=12)])
    with torch.no_grad():
        ids = tok.encode("The quick brown")
        ref = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[0, len(ids):]
    assert free == tok.decode([t for t in ref.tolist() if t != tok.eos_token_id], skip_special_tokens=True)
    assert free  # a random model still produces text
    stop = free[len(free) // 2:len(free) // 2 + 2]
    if stop.strip():
        [cut] = backend.generate([GenerationRequest("The quick brown", max_tokens=12, until=(stop,))])
        assert stop not in cut and free.startswith(cut)


# ----------------------------------------------------------------------------------------- loading
def _probe(backend: HFBackend) -> float:
    return backend.loglikelihood([LoglikelihoodRequest("The quick brown fox", " jumps over")])[0].logprob


@pytest.fixture(scope="module")
def reference_ll(model_and_tok) -> float:
    model, tok = model_and_tok
    return _probe(HFBackend.from_model(model, tok, model_id="tiny", threads=1))


@pytest.mark.parametrize("variant", ["safetensors_dir", "sharded_dir", "bin_dir", "gguf_f32"])
def test_load_after_scan_reads_every_format(zoo, reference_ll: float, variant: str) -> None:
    backend = load_after_scan(resolve(str(getattr(zoo, variant))), threads=1)
    assert _probe(backend) == pytest.approx(reference_ll, abs=1e-4)
    assert backend.info.model_id and backend.info.settings["dtype"] == "float32"


def test_single_safetensors_file_with_config_beside_it(zoo, tmp_path: Path, reference_ll: float) -> None:
    folder = tmp_path / "single"
    shutil.copytree(zoo.safetensors_dir, folder)
    backend = load_after_scan(resolve(str(folder / "model.safetensors")), threads=1)
    assert _probe(backend) == pytest.approx(reference_ll, abs=1e-4)


def test_peft_adapter_is_merged_into_its_base(zoo, reference_ll: float) -> None:
    backend = load_after_scan(resolve(str(zoo.lora_dir)), threads=1)
    assert abs(_probe(backend) - reference_ll) > 1e-3  # the adapter changes the model
    base_id = model_identity(resolve(str(zoo.safetensors_dir)))
    assert backend.info.model_id != base_id


def test_model_identity_follows_content(zoo, tmp_path: Path) -> None:
    a = model_identity(resolve(str(zoo.safetensors_dir)))
    copy = tmp_path / "copy"
    shutil.copytree(zoo.safetensors_dir, copy)
    assert model_identity(resolve(str(copy))) == a
    assert model_identity(resolve(str(zoo.gguf_f16))) != a


def test_an_unsafe_model_is_never_loaded(zoo, tmp_path: Path) -> None:
    folder = tmp_path / "booby"
    folder.mkdir()
    shutil.copy(zoo.safetensors_dir / "config.json", folder / "config.json")
    marker = tmp_path / "pwned"
    payload = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()
    (folder / "pytorch_model.bin").write_bytes(torch_zip(payload))
    with pytest.raises(UnsafeModelError) as err:
        load_after_scan(resolve(str(folder)))
    assert err.value.exit_code == 1
    assert not marker.exists()


def test_a_folder_without_a_model_is_a_clear_error(tmp_path: Path, zoo) -> None:
    folder = tmp_path / "nomodel"
    folder.mkdir()
    (folder / "notes.txt").write_text("nothing here")
    with pytest.raises(EvalError, match="no config.json"):
        load_after_scan(resolve(str(folder)))


def test_from_ref_refuses_an_unscanned_model(zoo) -> None:
    with pytest.raises(EvalError, match="has not been scanned"):
        HFBackend.from_ref(resolve(str(zoo.safetensors_dir)))


# ----------------------------------------------------------------------------------------- batching
FEWSHOT = ("Q: The quick brown fox?\nA: jumps over the lazy dog.\n\nQ: A small model is still a model?\n"
           "A: it has weights.\n\n")
GEN_PROMPTS = [FEWSHOT + f"Q: {q}\nA:" for q in ("Which format runs code?", "What is a hash?",
                                                  "What does a model card say about the data it was trained on?",
                                                  "Why?", "Which model is cheaper to run on one small card?")]


def _generate_alone(model, tok, prompt: str, max_tokens: int) -> list[int]:
    """The reference: transformers' own greedy generate, one prompt at a time, no stop strings."""
    ids = tok.encode(prompt)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=max_tokens, do_sample=False,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[0, len(ids):]
    return [t for t in out.tolist() if t != tok.eos_token_id]


def test_batched_generation_with_a_shared_prefix_equals_generating_each_prompt_alone(model_and_tok) -> None:
    model, tok = model_and_tok
    backend = HFBackend.from_model(model, tok, model_id="tiny", batch_size=16, threads=1)
    budgets = [12, 5, 9, 1, 12]
    reqs = [GenerationRequest(p, max_tokens=m) for p, m in zip(GEN_PROMPTS, budgets, strict=True)]
    got = backend.generate(reqs)
    for prompt, m, text in zip(GEN_PROMPTS, budgets, got, strict=True):
        assert text == tok.decode(_generate_alone(model, tok, prompt, m), skip_special_tokens=True)


def test_scores_and_generations_do_not_depend_on_the_batch_size(model_and_tok) -> None:
    model, tok = model_and_tok
    reqs = _requests()
    free = HFBackend.from_model(model, tok, model_id="tiny", batch_size=1, threads=1).generate(
        [GenerationRequest(p, max_tokens=10) for p in GEN_PROMPTS])
    stops = tuple({t[2:4] for t in free if len(t.strip()) > 4})[:2]  # stop strings the outputs really contain
    gen = [GenerationRequest(p, max_tokens=10, until=stops) for p in GEN_PROMPTS]
    runs = {}
    for batch_size in (1, 16):
        backend = HFBackend.from_model(model, tok, model_id="tiny", batch_size=batch_size, threads=1)
        runs[batch_size] = ([(r.logprob, r.is_greedy) for r in backend.loglikelihood(reqs)], backend.generate(gen))
    (ll1, gen1), (ll16, gen16) = runs[1], runs[16]
    assert gen1 == gen16
    assert any(a != b for a, b in zip(free, gen1, strict=True))  # the stop strings did cut some outputs
    for (a, ga), (b, gb) in zip(ll1, ll16, strict=True):
        assert a == pytest.approx(b, abs=1e-5) and ga == gb


def test_no_deprecation_warning_reaches_the_user(model_and_tok, capfd, recwarn) -> None:
    import transformers.utils.logging as hf_logging

    hf_logging.warning_once.cache_clear()  # a warning shown earlier in this process would otherwise be hidden
    model, tok = model_and_tok
    backend = HFBackend.from_model(model, tok, model_id="tiny", threads=1)
    backend.loglikelihood(_requests())
    backend.generate([GenerationRequest(p, max_tokens=4) for p in GEN_PROMPTS])
    backend.loglikelihood_rolling(["The quick brown fox jumps over the lazy dog. " * 8])
    err = capfd.readouterr().err
    assert "deprecat" not in err.lower()
    assert not [w for w in recwarn if issubclass(w.category, (DeprecationWarning, FutureWarning))]


def test_a_lazy_backend_loads_its_weights_only_when_something_is_computed(zoo, reference_ll: float,
                                                                           tmp_path: Path) -> None:
    from assay.evaluate.cache import ResultCache
    from assay.evaluate.runner import evaluate_model
    from assay.evaluate.tasks import Item, Task, TaskKind
    from assay.scan import scan_model

    ref = resolve(str(zoo.safetensors_dir))
    report = scan_model(ref)
    task = Task(name="probe", version="1", kind=TaskKind.MULTIPLE_CHOICE,
                items=(Item(id="0", context="The quick brown fox", choices=("jumps over", "sleeps"), gold=0),))
    cache = ResultCache(tmp_path / "cache.sqlite")
    first = HFBackend.from_ref(ref, scanned=report, threads=1, lazy=True)
    assert not first.loaded and first.info.settings["max_length"] == first.max_length
    fresh = evaluate_model(first, [task], cache=cache)["probe"]
    assert first.loaded and fresh.per_item[0].loglikelihoods[0] == pytest.approx(reference_ll, abs=1e-4)
    again = HFBackend.from_ref(ref, scanned=report, threads=1, lazy=True)
    cached = evaluate_model(again, [task], cache=cache)["probe"]
    assert cached.cached == 1 and cached.metrics == fresh.metrics
    assert not again.loaded  # every result came from the cache: the weights were never read
