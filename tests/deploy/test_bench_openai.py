"""``assay bench --backend openai`` against a real OpenAI-compatible server on 127.0.0.1 serving a factory model.

The server (tests.evaluate.stand_in_server.py) streams completions as server-sent events, one chunk per token, and
can be switched to lack ``/tokenize``, ``usage`` or streaming, like real servers that lack them.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from assay.cli.main import main
from assay.deploy.cost import inputs_from_bench
from tests.evaluate.stand_in_server import ModelServer, serve

PROMPT, OUTPUT, REPEATS = 24, 8, 3


@pytest.fixture(scope="module")
def model_and_tok() -> tuple[Any, Any]:
    import torch

    torch.set_num_threads(1)
    from tests.factory.models import build_model, tiny_tokenizer

    return build_model(seed=0), tiny_tokenizer()


@pytest.fixture(scope="module")
def server(model_and_tok: tuple[Any, Any]) -> Iterator[ModelServer]:
    model, tok = model_and_tok
    with serve(model, tok, name="tiny-ft", also_serves=("tiny-base",)) as srv:
        yield srv


def _bench(url: str, *extra: str, model: str = "tiny") -> list[str]:
    return ["bench", model, "--backend", "openai", "--base-url", url, "--prompt-tokens", str(PROMPT),
            "--output-tokens", str(OUTPUT), "--repeats", str(REPEATS), "--warmup", "1", *extra]


def test_openai_bench_json_with_base_and_concurrent_batches(server: ModelServer,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    server.calls.clear()
    rc = main(_bench(server.url, "--base", "tiny-base", "--batch-size", "1,3", "--json", model="tiny-ft"))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    doc = json.loads(captured.out)
    assert doc["schema"] == "assay.bench/1" and doc["backend"] == "openai" and doc["base_url"] == server.url
    assert doc["settings"]["batch_sizes"] == [1, 3] and doc["settings"]["dtype"] is None
    # Nothing local: no hardware, no memory fit, no memory figures; never invented.
    assert doc["hardware"] is None and doc["fit"] is None
    for who, name in (("candidate", "tiny-ft"), ("base", "tiny-base")):
        m = doc[who]
        assert m["model"] == name and m["backend"] == "openai" and m["device"] == "remote"
        for absent in ("parameters", "load_s", "scan_s", "peak_rss_bytes", "model_rss_bytes",
                       "rss_before_load_bytes", "cuda_peak_bytes", "dtype"):
            assert m[absent] is None, absent
        assert any("nothing was scanned or loaded" in n for n in m["notes"])
        # The prompt was built with the server's tokenizer to exactly the requested length; tokens from usage.
        assert m["prompt_tokens"] == PROMPT and m["prompt_length"] == "server /tokenize"
        assert m["tokens_counted_by"] == "usage"
        assert m["ttft_s"] > 0 and m["prefill_tokens_per_s"] > 0 and m["decode_tokens_per_s"] > 0
        assert 0 < m["latency_p50_s"] <= m["latency_p95_s"]
        assert [b["batch_size"] for b in m["batches"]] == [1, 3]
        for b in m["batches"]:
            lat = b["latencies_s"]
            assert b["repeats"] == REPEATS and len(lat) == b["batch_size"] * REPEATS
            assert b["requests_per_s"] > 0 and b["output_tokens_per_s"] > 0
            assert b["ttft_s"] < b["latency_p50_s"] <= b["latency_p95_s"] <= max(lat)
            # Each request's decode phase lies inside its latency, so the rate is above this bound.
            assert b["decode_tokens_per_s"] > (OUTPUT - 1) / max(lat)
    # Every measured figure has a ratio; the unmeasured ones have none.
    assert {"ttft_s", "decode_tokens_per_s", "latency_p50_s"} <= set(doc["ratios"])
    assert not {"load_s", "model_rss_bytes", "parameters"} & set(doc["ratios"])
    # The requests really went to the server: a probe, then (warm-up + repeats) runs of 1 and 3 requests, per model.
    streamed = server.calls.count("/v1/completions")
    assert streamed >= 2 * (1 + (1 + REPEATS) * (1 + 3))
    assert "/tokenize" in server.calls
    # `assay cost --bench` reads the document (best-throughput batch size).
    got = inputs_from_bench(doc)
    assert got["decode_tokens_per_s"] == max(b["decode_tokens_per_s"] for b in doc["candidate"]["batches"])


def test_counts_from_usage_when_the_server_has_no_tokenize(model_and_tok: tuple[Any, Any],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    with serve(*model_and_tok, name="tiny", tokenize=False) as srv:
        rc = main(_bench(srv.url, "--json", model="-"))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    cand = json.loads(captured.out)["candidate"]
    assert cand["model"] == "tiny"  # the server's only model, discovered
    assert cand["prompt_tokens"] == PROMPT and cand["prompt_length"] == "server usage"
    assert "/tokenize" in srv.calls  # asked, refused, fell back


def test_human_output_says_what_is_approximate_and_not_measured(model_and_tok: tuple[Any, Any],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    with serve(*model_and_tok, name="tiny", tokenize=False, usage=False) as srv:
        rc = main(_bench(srv.url, "--batch-size", "2"))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = " ".join(captured.out.split())  # rich wraps lines
    assert "remote: not measured" in out and "nothing was scanned or loaded" in out
    assert "prompt length approximate" in out and "counted as stream chunks" in out
    assert "prefill tokens/s (estimate)" in out and srv.url in out


def test_server_refusing_the_extra_fields_is_measured_without_them(model_and_tok: tuple[Any, Any],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with serve(*model_and_tok, name="tiny", strict=True) as srv:
        rc = main(_bench(srv.url, "--json"))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    cand = json.loads(captured.out)["candidate"]
    # Without stream_options the stream carries no usage: tokens are counted as chunks, and the output says so.
    assert cand["tokens_counted_by"] == "stream chunks" and cand["decode_tokens_per_s"] > 0
    assert any("stream chunks" in n for n in cand["notes"])


def test_server_that_does_not_stream_is_refused_clearly(model_and_tok: tuple[Any, Any],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    with serve(*model_and_tok, name="tiny", streaming=False) as srv:
        rc = main(_bench(srv.url))
    err = capsys.readouterr().err
    assert rc == 2 and "does not stream" in err and "time to first token" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("model", ["tiny", "-"])
def test_unreachable_server_is_one_line_exit_2(model: str, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc = main(_bench(f"http://127.0.0.1:{port}/v1", model=model))
    err = capsys.readouterr().err
    assert rc == 2 and "cannot reach" in err and f"127.0.0.1:{port}" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_api_key_is_read_from_the_named_variable(model_and_tok: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    with serve(*model_and_tok, name="tiny", require_key="s3cret") as srv:
        monkeypatch.delenv("BENCH_KEY", raising=False)
        assert main(_bench(srv.url, "--api-key-env", "BENCH_KEY", "--repeats", "1")) == 2
        assert "401" in capsys.readouterr().err
        monkeypatch.setenv("BENCH_KEY", "s3cret")
        assert main(_bench(srv.url, "--api-key-env", "BENCH_KEY", "--repeats", "1", "--json")) == 0
    assert json.loads(capsys.readouterr().out)["candidate"]["decode_tokens_per_s"] > 0


@pytest.mark.parametrize("args, message", [
    (["bench", "tiny", "--backend", "openai"], "needs --base-url"),
    (["bench", "tiny", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--fit-only"], "--fit-only"),
    (["bench", "tiny", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--threads", "2"], "--threads"),
    (["bench", "tiny", "--backend", "openai", "--base-url", "ftp://x/v1"], "http://"),
    (["bench", "tiny", "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--batch-size", "0"],
     "at least 1"),
    (["bench", "./model", "--base-url", "http://127.0.0.1:9/v1"], "--backend openai"),
])
def test_bad_openai_options_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
