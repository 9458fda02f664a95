"""The openai backend against a real inference server: ``transformers serve`` (pip ``transformers[serving]``).

The server runs in its own process on a loopback port, serving a tiny factory model from a folder. What a user
would check: generation tasks score the same as the model run in process; ``assay bench --backend openai``
measures it; a multiple-choice task it cannot score (it ignores ``echo``/``logprobs``) is refused before any
work with one line naming the missing capability; the server's error text is shown, a 4xx is not retried; a
server whose tokenizer counts differently from the local one is warned about.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from assay.cli.main import main
from assay.errors import BackendError
from assay.evaluate.backends.base import GenerationRequest
from assay.evaluate.backends.openai import PROBE_PROMPT, OpenAIBackend

STARTUP_S = 240.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.factory.models import build_model, save_safetensors_folder, tiny_tokenizer

    return save_safetensors_folder(build_model(seed=0), tiny_tokenizer(), tmp_path_factory.mktemp("served") / "m")


@pytest.fixture(scope="module")
def real_server(served_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``transformers serve FOLDER`` on 127.0.0.1; yields the API root URL. Stopped at the end of the module."""
    port = _free_port()
    log = (tmp_path_factory.mktemp("serve-log") / "serve.log").open("wb")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "transformers.cli.transformers", "serve", str(served_dir),
                             "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", "--dtype", "float32"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    root = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_S
    try:
        while True:
            if proc.poll() is not None:
                log.close()
                pytest.fail(f"transformers serve exited with {proc.returncode}: "
                            f"{Path(log.name).read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{root}/health", timeout=2) as resp:  # noqa: S310 - loopback
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"transformers serve did not answer /health within {STARTUP_S:.0f} s")
            time.sleep(0.5)
        yield f"{root}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_probe_tells_what_transformers_serve_can_do(real_server: str, served_dir: Path) -> None:
    caps = OpenAIBackend(base_url=real_server).capabilities
    assert caps.models == (str(served_dir),)
    assert caps.completions and caps.streaming and caps.token_counts
    assert caps.prompt_logprobs is False
    assert "echo" in caps.prompt_logprobs_detail or "no choices[0].logprobs" in caps.prompt_logprobs_detail \
        or "logprobs is empty" in caps.prompt_logprobs_detail
    # The served name is the local folder: its tokenizer counts the probe prompt as the server does.
    assert caps.local_prompt_tokens is not None
    assert caps.local_prompt_tokens == caps.probe_prompt_tokens
    assert caps.warnings == ()


def test_multiple_choice_is_refused_before_any_work(real_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    start = time.monotonic()
    rc, out, err = _run(["eval", "-", "--backend", "openai", "--base-url", real_server, "--no-cache",
                         "--task", "builtin:knowledge"], capsys)
    assert rc == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "does not return log-probabilities of the prompt" in lines[0]
    assert "multiple-choice" in lines[0] and "--backend hf" in lines[0]
    assert "Traceback" not in err
    # 342 knowledge items at 4 choices would take minutes through the server; the refusal is the probe's time.
    assert time.monotonic() - start < 60


def test_generation_scores_like_the_model_in_process(real_server: str, served_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    def run(extra: list[str], name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        log = tmp_path / f"{name}.jsonl"
        rc, out, err = _run(["eval", *extra, "--task", "builtin:arithmetic-gen", "--limit", "4", "--no-cache",
                             "--log-items", str(log), "--json"], capsys)
        assert rc == 0, err
        return json.loads(out), [json.loads(line) for line in log.read_text().splitlines()]

    remote, remote_items = run(["-", "--backend", "openai", "--base-url", real_server], "remote")
    local, local_items = run([str(served_dir)], "local")
    assert remote["tasks"]["builtin:arithmetic-gen"]["metrics"] == local["tasks"]["builtin:arithmetic-gen"]["metrics"]
    assert [i.get("prediction") for i in remote_items] == [i.get("prediction") for i in local_items]
    assert remote["server"]["candidate"]["prompt_logprobs"] is False
    assert remote["server"]["candidate"]["streaming"] is True


def test_bench_through_the_real_server(real_server: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = _run(["bench", "-", "--backend", "openai", "--base-url", real_server, "--prompt-tokens", "16",
                         "--output-tokens", "8", "--repeats", "2", "--warmup", "1", "--json"], capsys)
    assert rc == 0, err
    doc = json.loads(out)
    cand = doc["candidate"]
    assert cand["ttft_s"] is not None and cand["ttft_s"] > 0
    assert cand["decode_tokens_per_s"] is not None and cand["decode_tokens_per_s"] > 0
    assert cand["prompt_tokens"] == 16  # counted by the server's usage, not estimated


def test_a_4xx_is_shown_in_the_servers_words_and_not_retried(real_server: str) -> None:
    sleeps: list[float] = []
    backend = OpenAIBackend(base_url=real_server, model="no-such-model", sleep=sleeps.append)
    with pytest.raises(BackendError) as info:
        backend.generate([GenerationRequest("Hello", max_tokens=2)])
    assert sleeps == []
    msg = info.value.message
    assert "HTTP 4" in msg and "None" not in msg
    assert len(msg.split(":", 2)[-1].strip()) > 5  # the server's own explanation, not an empty detail


def test_a_tokenizer_that_counts_differently_is_warned_about(real_server: str, served_dir: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = PROBE_PROMPT.replace(".", " .").split()
    other = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[UNK]", *dict.fromkeys(words)])},
                                       unk_token="[UNK]"))
    other.pre_tokenizer = pre_tokenizers.Whitespace()
    folder = tmp_path / "other-tokenizer"
    folder.mkdir()
    other.save(str(folder / "tokenizer.json"))
    caps = OpenAIBackend(base_url=real_server).capabilities
    assert caps.probe_prompt_tokens != len(words)  # the premise: the two tokenizers disagree on the probe
    rc, out, err = _run(["eval", "-", "--backend", "openai", "--base-url", real_server, "--tokenizer", str(folder),
                         "--task", "builtin:arithmetic-gen", "--limit", "1", "--no-cache", "--json"], capsys)
    assert rc == 0, err
    warnings = json.loads(out)["server"]["candidate"]["warnings"]
    assert len(warnings) == 1 and "tokenizer differs" in warnings[0]
    assert "tokenizer differs" in err
