"""The openai backend against a real OpenAI-compatible HTTP server serving a factory model.

The same model is scored in process by the hf backend: the two must agree (log-likelihoods within 1e-4,
same greedy flags, same generations), retries must ride out 429/5xx, and a server that does not return prompt
log-probabilities must be refused with a message that says so.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from assay.errors import BackendError
from assay.evaluate.backends.base import GenerationRequest, LoglikelihoodRequest
from assay.evaluate.backends.openai import ChatPrompt, OpenAIBackend
from assay.evaluate.suites import load_suite
from tests.evaluate.stand_in_server import ModelServer, serve


@pytest.fixture(scope="module")
def model_and_tok() -> tuple[Any, Any]:
    import torch

    torch.set_num_threads(1)
    from tests.factory.models import build_model, tiny_tokenizer

    return build_model(seed=0), tiny_tokenizer()


@pytest.fixture(scope="module")
def hf(model_and_tok: tuple[Any, Any]) -> Any:
    from assay.evaluate.backends.hf import HFBackend
    from tests.factory.models import build_model, tiny_tokenizer

    # A separate instance with the same seed: identical weights, no sharing with the server thread.
    return HFBackend.from_model(build_model(seed=0), tiny_tokenizer(), model_id="tiny", threads=1)


@pytest.fixture(scope="module")
def server(model_and_tok: tuple[Any, Any]) -> Iterator[ModelServer]:
    model, tok = model_and_tok
    with serve(model, tok, name="tiny-llama") as srv:
        yield srv


def _backend(server: ModelServer, **kw: Any) -> OpenAIBackend:
    kw.setdefault("sleep", lambda s: None)
    return OpenAIBackend(base_url=server.url, **kw)


def _mc_requests(n_items: int = 12) -> list[LoglikelihoodRequest]:
    task = load_suite("builtin:knowledge")
    return [LoglikelihoodRequest(it.context, " " + c) for it in task.items[:n_items] for c in it.choices]


def test_loglikelihood_equals_hf_backend(server: ModelServer, hf: Any) -> None:
    reqs = _mc_requests() + [LoglikelihoodRequest("The capital of France is ", "Paris"),
                             LoglikelihoodRequest("Question: What is 9 + 4?\nAnswer:", " 13")]
    remote = _backend(server, concurrency=4).loglikelihood(reqs)
    local = hf.loglikelihood(reqs)
    assert len(remote) == len(local) == len(reqs)
    for r, h, q in zip(remote, local, reqs, strict=True):
        assert abs(r.logprob - h.logprob) < 1e-4, q
        assert r.n_tokens == h.n_tokens, q
        assert r.is_greedy == h.is_greedy, q
    # same multiple-choice predictions, item by item
    for k in range(0, 48, 4):
        assert max(range(4), key=lambda j: remote[k + j].logprob) == max(range(4), key=lambda j: local[k + j].logprob)


def test_model_name_is_discovered_and_part_of_info(server: ModelServer) -> None:
    b = _backend(server)
    assert b.model_name == "tiny-llama"
    assert b.info.backend == "openai" and b.info.model_id == "tiny-llama"
    assert b.info.settings["base_url"] == server.url


def test_generation_equals_hf_backend(server: ModelServer, hf: Any) -> None:
    reqs = [GenerationRequest(prompt=p, until=("\n",), max_tokens=12)
            for p in ("Question: What is 9 + 4?\nAnswer:", "The quick brown fox", "A small model is")]
    assert _backend(server).generate(reqs) == hf.generate(reqs)


def test_chat_generation_uses_the_servers_template(server: ModelServer, hf: Any) -> None:
    b = _backend(server)
    prompt = b.apply_chat_template("Name a colour.")
    assert isinstance(prompt, ChatPrompt)
    before = len(server.calls)
    [remote] = b.generate([GenerationRequest(prompt=prompt, max_tokens=10)])
    assert server.calls[before:] == ["/v1/chat/completions"]
    [local] = hf.generate([GenerationRequest(prompt=hf.apply_chat_template("Name a colour."), max_tokens=10)])
    assert remote == local


def test_rolling_scores_every_token_the_server_can_condition(server: ModelServer, hf: Any) -> None:
    text = load_suite("builtin:reference").items[0].text[:400]
    [r] = _backend(server).loglikelihood_rolling([text])
    ids = hf.tok_encode(text)
    [h] = hf.loglikelihood_tokens([(ids[:1], ids[1:])])  # the server has no BOS: first token unconditioned
    assert r.n_tokens == len(ids) - 1 == h.n_tokens
    assert abs(r.logprob - h.logprob) < 1e-3


def test_429_and_500_are_retried_with_backoff(server: ModelServer) -> None:
    waits: list[float] = []
    b = OpenAIBackend(base_url=server.url, sleep=waits.append, max_retries=4, backoff=0.5)
    req = [LoglikelihoodRequest("Question: What is 9 + 4?\nAnswer:", " 13")]
    expected = b.loglikelihood(req)
    server.fail_next(429, 1)
    server.fail_next(500, 1)
    server.fail_next(503, 1)
    before = len(server.calls)
    assert b.loglikelihood(req) == expected
    assert len(server.calls) - before == 4
    assert len(waits) == 3 and waits[0] < waits[1] < waits[2]  # exponential


def test_retries_give_up_with_a_clear_error(server: ModelServer) -> None:
    b = _backend(server, max_retries=2)
    server.fail_next(500, 3)
    with pytest.raises(BackendError, match="failed after 3 attempts: HTTP 500"):
        b.generate([GenerationRequest(prompt="Hello", max_tokens=2)])


def test_client_errors_are_not_retried(server: ModelServer) -> None:
    b = _backend(server, max_retries=5)
    server.fail_next(400, 1)
    before = len(server.calls)
    with pytest.raises(BackendError, match="HTTP 400"):
        b.generate([GenerationRequest(prompt="Hello", max_tokens=2)])
    assert len(server.calls) - before == 1


def test_server_without_prompt_logprobs_is_refused(model_and_tok: tuple[Any, Any]) -> None:
    model, tok = model_and_tok
    with serve(model, tok, name="no-echo", prompt_logprobs=False) as srv:
        b = _backend(srv)
        with pytest.raises(BackendError, match="does not return log-probabilities of the prompt"):
            b.loglikelihood([LoglikelihoodRequest("Question: 2 + 2?\nAnswer:", " 4")])
        # generation still works there
        [text] = b.generate([GenerationRequest(prompt="The quick brown fox", max_tokens=3)])
        assert isinstance(text, str)


def test_api_key_comes_from_the_named_environment_variable(model_and_tok: tuple[Any, Any],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    model, tok = model_and_tok
    with serve(model, tok, name="keyed", require_key="s3cret") as srv:
        monkeypatch.delenv("MY_SERVER_KEY", raising=False)
        with pytest.raises(BackendError, match="HTTP 401.*--api-key-env"):
            OpenAIBackend.from_options(srv.url, api_key_env="MY_SERVER_KEY")
        monkeypatch.setenv("MY_SERVER_KEY", "s3cret")
        b = OpenAIBackend.from_options(srv.url, api_key_env="MY_SERVER_KEY")
        assert b.model_name == "keyed"
        assert "s3cret" not in repr(b.info)


def test_unreachable_server_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(BackendError, match="cannot reach the server"):
        OpenAIBackend(base_url=f"http://127.0.0.1:{port}", max_retries=1, sleep=lambda s: None, timeout=2)


def test_bad_base_url_is_refused() -> None:
    with pytest.raises(BackendError, match="http://"):
        OpenAIBackend(base_url="localhost:8000")


# ----------------------------------------------------------------------------------- through `assay eval`


def _eval(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    import json

    from assay.cli.main import main

    rc = main(["eval", *argv, "--json", "--no-cache"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_assay_eval_openai_backend_scores_like_hf(tiny_model_dir: Any, capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Any) -> None:
    import json

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, trust_remote_code=False)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir, trust_remote_code=False)
    tasks = ["--task", "builtin:knowledge", "--task", "builtin:arithmetic-gen", "--limit", "24"]
    local = _eval([str(tiny_model_dir), *tasks, "--log-items", str(tmp_path / "hf.jsonl")], capsys)
    with serve(model, tok, name="tiny") as srv:
        remote = _eval(["tiny", "--backend", "openai", "--base-url", srv.url, *tasks,
                        "--log-items", str(tmp_path / "oa.jsonl")], capsys)
    assert remote["tasks"]["builtin:knowledge"]["metrics"] == local["tasks"]["builtin:knowledge"]["metrics"]
    assert remote["tasks"]["builtin:arithmetic-gen"]["metrics"] == local["tasks"]["builtin:arithmetic-gen"]["metrics"]

    def rows(name: str) -> dict[tuple[str, str], dict[str, Any]]:
        out = {}
        for line in (tmp_path / name).read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            out[(r["task"], r["id"])] = r
        return out

    hf_rows, oa_rows = rows("hf.jsonl"), rows("oa.jsonl")
    assert hf_rows.keys() == oa_rows.keys() and len(hf_rows) == 48
    assert all(len(r["loglikelihoods"]) == 4 for k, r in oa_rows.items() if k[0] == "builtin:knowledge")
    for key, h in hf_rows.items():
        o = oa_rows[key]
        assert o["prediction"] == h["prediction"], key
        for a, b in zip(o.get("loglikelihoods") or [], h.get("loglikelihoods") or [], strict=True):
            assert abs(a - b) < 1e-4, key


def test_multiple_choice_inside_the_chat_template_is_refused(server: ModelServer) -> None:
    b = _backend(server)
    with pytest.raises(BackendError, match="cannot score choices inside the chat template"):
        b.loglikelihood([LoglikelihoodRequest(b.apply_chat_template("2 + 2 ="), " 4")])


def test_server_that_insists_on_generating_a_token(model_and_tok: tuple[Any, Any], server: ModelServer) -> None:
    model, tok = model_and_tok
    reqs = _mc_requests(3)
    expected = _backend(server).loglikelihood(reqs)
    with serve(model, tok, name="tiny-llama", min_max_tokens=1) as srv:
        b = _backend(srv, concurrency=1)
        got = b.loglikelihood(reqs)
        assert srv.calls.count("/v1/completions") == len(reqs) + 1  # one refusal of max_tokens=0, then max 1
    for g, e in zip(got, expected, strict=True):
        assert abs(g.logprob - e.logprob) < 1e-4 and g.n_tokens == e.n_tokens


@pytest.mark.parametrize("status", [400, 404, 408, 409, 422])
def test_no_4xx_but_429_is_retried(server: ModelServer, status: int) -> None:
    waits: list[float] = []
    b = OpenAIBackend(base_url=server.url, sleep=waits.append, max_retries=5)
    server.fail_next(status, 1)
    before = len(server.calls)
    with pytest.raises(BackendError, match=f"HTTP {status}"):
        b.generate([GenerationRequest(prompt="Hello", max_tokens=2)])
    assert len(server.calls) - before == 1 and waits == []


@pytest.mark.parametrize("body,shown", [
    (b'{"error": {"message": "model not found", "type": "invalid_request_error"}}', "model not found"),
    (b'{"detail": "`max_new_tokens` must be greater than 0, but is 0."}', "`max_new_tokens` must be greater"),
    (b'{"error": "Input validation error: inputs must have less than 2048 tokens"}', "Input validation error"),
    (b'{"error": {"message": null, "code": 400}}', '{"error": {"message": null, "code": 400}}'),
    (b"<html>Bad Gateway</html>", "<html>Bad Gateway</html>"),
])
def test_the_servers_error_is_shown_in_its_own_words(body: bytes, shown: str) -> None:
    from assay.evaluate.backends.openai import error_detail

    text = error_detail(body)
    assert shown in text and text != "None"


def test_a_multiple_choice_task_is_refused_before_any_item(model_and_tok: tuple[Any, Any]) -> None:
    from assay.evaluate.runner import evaluate_model

    model, tok = model_and_tok
    with serve(model, tok, name="no-echo", prompt_logprobs=False) as srv:
        b = _backend(srv)
        task = load_suite("builtin:knowledge")
        with pytest.raises(BackendError) as info:
            evaluate_model(b, [task])
        assert "cannot score multiple-choice tasks" in info.value.message
        assert "--backend hf" in info.value.diagnostics()
        # The probe's few requests, not 342 items x 4 choices.
        assert len([c for c in srv.calls if c.endswith("/completions")]) <= 3
        assert b.capabilities.completions and not b.capabilities.prompt_logprobs


def test_the_probe_reports_what_the_stand_in_can_do(server: ModelServer) -> None:
    caps = _backend(server).capabilities
    assert caps.prompt_logprobs and caps.completions and caps.streaming and caps.token_counts
    assert caps.models == ("tiny-llama",)
    doc = caps.to_json()
    assert doc["prompt_logprobs"] is True and doc["warnings"] == []


def test_generated_token_logprobs_are_not_taken_for_the_prompts(model_and_tok: tuple[Any, Any]) -> None:
    """A server that ignores echo but returns the generated token's log-probability at offset 0 (llama.cpp's
    server does): scored as the prompt's, every choice would get the same number. It is refused instead."""
    model, tok = model_and_tok
    with serve(model, tok, name="gen-only", prompt_logprobs="generated-only") as srv:
        b = _backend(srv)
        assert not b.capabilities.prompt_logprobs
        assert "does not echo the prompt" in b.capabilities.prompt_logprobs_detail
        with pytest.raises(BackendError, match="does not return log-probabilities of the prompt"):
            b.loglikelihood([LoglikelihoodRequest("Question: 2 + 2?\nAnswer:", " 4")])
