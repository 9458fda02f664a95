"""A stand-in for vLLM, for what the real server the tests start (``transformers serve``) cannot produce.

``transformers serve`` (see tests/evaluate/test_real_servers.py) ignores ``echo`` and ``logprobs``, so it cannot
show the backend scoring multiple choice from prompt log-probabilities, nor can it be told to fail on cue. This
HTTP server, written for the tests, answers those cases over a transformers model in the same process. It
speaks the parts of the API assay uses, the way vLLM does: ``GET /v1/models``; ``POST /v1/completions`` with
``echo``/``logprobs``/``max_tokens=0`` (log-probabilities of the prompt tokens, ``text_offset`` character
offsets, top-1 alternatives) and greedy generation with ``stop`` strings; ``POST /v1/chat/completions`` (the
tokenizer's chat template, greedy). It binds to 127.0.0.1 on an ephemeral port and runs in a thread.
For ``assay bench``: ``stream: true`` completions answer with server-sent events, one chunk per generated token
(``stream_options.include_usage`` adds a final ``usage`` chunk, ``ignore_eos`` generates ``max_tokens`` tokens), and
``POST /tokenize`` counts a prompt's tokens as vLLM's does; non-streamed completions carry ``usage``.

Switches for tests: ``fail_next(status, n)`` answers the next ``n`` API calls with that HTTP status;
``prompt_logprobs=False`` behaves like servers that ignore ``echo`` for log-probabilities (OpenAI's API);
``prompt_logprobs="generated-only"`` ignores ``echo`` but returns the generated tokens' log-probabilities with
offsets from 0 (as llama.cpp's server does), which a careless client takes for the prompt's;
``require_key`` demands ``Authorization: Bearer <key>``; ``min_max_tokens=1`` refuses ``max_tokens=0`` with HTTP 400
(as servers that always generate do), and then echoes the generated token's log-probability after the prompt's.
``streaming=False`` ignores ``stream`` (one JSON answer, like servers that cannot stream); ``tokenize=False`` has no
``/tokenize``; ``usage=False`` reports no token counts; ``strict=True`` refuses the non-standard request fields
``ignore_eos`` and ``stream_options`` with HTTP 400 (as stricter servers do); ``also_serves`` lists more names
for the same weights (as
vLLM serves LoRA adapters by name).

    with serve(model, tokenizer, name="tiny") as server:
        backend = OpenAIBackend(base_url=server.url)
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ModelServer(ThreadingHTTPServer):
    """The HTTP server; the model runs under a lock (one forward pass at a time)."""

    daemon_threads = True

    def __init__(self, model: Any, tokenizer: Any, *, name: str, prompt_logprobs: bool | str = True,
                 require_key: str | None = None, min_max_tokens: int = 0, streaming: bool = True,
                 tokenize: bool = True, usage: bool = True, also_serves: tuple[str, ...] = (),
                 strict: bool = False) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.names = (name, *also_serves)
        self.streaming, self.tokenize, self.usage, self.strict = streaming, tokenize, usage, strict
        self.prompt_logprobs = prompt_logprobs
        self.require_key = require_key
        self.min_max_tokens = min_max_tokens
        self.calls: list[str] = []
        self._failures: list[int] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        """Base URL including ``/v1``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def fail_next(self, status: int, n: int = 1) -> None:
        """Answer the next ``n`` API calls with HTTP ``status``."""
        with self._lock:
            self._failures.extend([status] * n)

    def pop_failure(self) -> int | None:
        with self._lock:
            return self._failures.pop(0) if self._failures else None

    # ------------------------------------------------------------------------------------ model work
    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def prompt_logprobs_doc(self, prompt: str) -> dict[str, Any]:
        import torch

        ids = self.encode(prompt)
        with self._lock, torch.inference_mode():
            logits = self.model(input_ids=torch.tensor([ids])).logits[0].float()
            lps = torch.log_softmax(logits, dim=-1)
        tokens, token_lps, top, offsets = [], [], [], []
        for i, tid in enumerate(ids):
            offsets.append(len(self.tokenizer.decode(ids[:i])))
            tokens.append(self.tokenizer.decode([tid]))
            if i == 0:
                token_lps.append(None)
                top.append(None)
                continue
            row = lps[i - 1]
            token_lps.append(float(row[tid]))
            best = int(row.argmax())
            top.append({self.tokenizer.decode([best]): float(row[best])})
        return {"tokens": tokens, "token_logprobs": token_lps, "top_logprobs": top, "text_offset": offsets}

    def _decode_greedily(self, ids: list[int], max_tokens: int, stop: list[str], *,
                         ignore_eos: bool) -> Iterator[tuple[str, str | None]]:
        """Yield ``(text so far, None)`` per generated token, then ``(final text, finish_reason)``.

        Holds the model lock while it runs; the text is cut at the first stop string.
        """
        import torch

        generated: list[int] = []
        text = ""
        eos = self.tokenizer.eos_token_id
        with self._lock, torch.inference_mode():
            past, inp = None, torch.tensor([ids])
            for _ in range(max_tokens):
                out = self.model(input_ids=inp, past_key_values=past, use_cache=True)
                past = out.past_key_values
                logits = out.logits[0, -1].float()
                if ignore_eos and eos is not None:
                    logits[eos] = float("-inf")
                nxt = int(logits.argmax())
                if nxt == eos:
                    yield text, "stop"
                    return
                generated.append(nxt)
                text = self.tokenizer.decode(generated, skip_special_tokens=True)
                hits = [text.index(s) for s in stop if s and s in text]
                if hits:
                    yield text[:min(hits)], "stop"
                    return
                yield text, None
                inp = torch.tensor([[nxt]])
        yield text, "length"

    def greedy(self, ids: list[int], max_tokens: int, stop: list[str]) -> tuple[str, str]:
        """The whole greedy completion and its finish reason."""
        text, finish = "", "length"
        for text, reason in self._decode_greedily(ids, max_tokens, stop, ignore_eos=False):  # noqa: B007 - the last text is the whole answer
            finish = reason or finish
        return text, finish

    def greedy_stream(self, ids: list[int], max_tokens: int, stop: list[str], *,
                      ignore_eos: bool) -> Iterator[tuple[str, str | None]]:
        """Yield ``(new text, None)`` per generated token, then ``("", finish_reason)``; holds the model lock."""
        sent = ""
        for text, reason in self._decode_greedily(ids, max_tokens, stop, ignore_eos=ignore_eos):
            if text[len(sent):]:
                yield text[len(sent):], None
                sent = text
            elif reason is None:
                yield "", None
            if reason is not None:
                yield "", reason
                return


class _Handler(BaseHTTPRequestHandler):
    server: ModelServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def _send(self, status: int, doc: Any) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(body)

    def _gate(self) -> bool:
        self.server.calls.append(self.path)
        if self.server.require_key and self.headers.get("Authorization") != f"Bearer {self.server.require_key}":
            self._send(401, {"error": {"message": "invalid api key"}})
            return False
        failure = self.server.pop_failure()
        if failure is not None:
            self._send(failure, {"error": {"message": f"injected failure {failure}"}})
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if not self._gate():
            return
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, {"object": "list", "data": [{"id": n, "object": "model"} for n in self.server.names]})
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self._gate():
            return
        try:
            req = json.loads(raw)
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "body is not JSON"}})
            return
        if req.get("model") not in self.server.names:
            self._send(404, {"error": {"message": f"model {req.get('model')!r} not found"}})
            return
        extra = sorted({"ignore_eos", "stream_options"} & set(req)) if self.server.strict else []
        if extra:
            self._send(400, {"error": {"message": f"unrecognized request arguments: {', '.join(extra)}"}})
        elif self.path == "/tokenize" and self.server.tokenize:
            ids = self.server.encode(str(req.get("prompt", "")))
            self._send(200, {"tokens": ids, "count": len(ids),
                             "max_model_len": int(getattr(self.server.model.config, "max_position_embeddings", 0))})
        elif self.path == "/v1/completions" and req.get("stream") and self.server.streaming:
            self._stream_completion(req)
        elif self.path == "/v1/completions":
            self._send(*self._completions(req))
        elif self.path == "/v1/chat/completions":
            self._send(200, self._chat(req))
        else:
            self._send(404, {"error": {"message": f"no route {self.path}"}})

    def _completions(self, req: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        prompt = str(req["prompt"])
        max_tokens = int(req.get("max_tokens", 16))
        stop = req.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        if max_tokens < self.server.min_max_tokens:
            return 400, {"error": {"message": f"max_tokens must be at least {self.server.min_max_tokens}"}}
        text, finish = ("", "length")
        if max_tokens > 0:
            text, finish = self.server.greedy(self.server.encode(prompt), max_tokens, stop)
        logprobs = None
        echo = bool(req.get("echo")) and self.server.prompt_logprobs is True
        if echo and req.get("logprobs") is not None:
            logprobs = self.server.prompt_logprobs_doc(prompt + text)
        elif self.server.prompt_logprobs == "generated-only" and req.get("logprobs") is not None and text:
            # The generated text's log-probabilities alone, offsets from 0, prompt not echoed.
            logprobs = self.server.prompt_logprobs_doc(text)
        choice = {"index": 0, "text": (prompt + text) if echo else text, "logprobs": logprobs,
                  "finish_reason": finish}
        doc = {"id": "cmpl-test", "object": "text_completion", "model": req["model"], "choices": [choice]}
        if self.server.usage:
            n_prompt = len(self.server.encode(prompt))
            n_out = len(self.server.tokenizer(text, add_special_tokens=False)["input_ids"]) if text else 0
            doc["usage"] = {"prompt_tokens": n_prompt, "completion_tokens": n_out, "total_tokens": n_prompt + n_out}
        return 200, doc

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, doc: Any) -> None:
        self._chunk(b"data: " + (doc if isinstance(doc, bytes) else json.dumps(doc).encode()) + b"\n\n")

    def _stream_completion(self, req: dict[str, Any]) -> None:
        """Server-sent events, one chunk per generated token, as vLLM streams ``/v1/completions``."""
        ids = self.server.encode(str(req["prompt"]))
        stop = req.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        n_out = 0
        base = {"id": "cmpl-stream", "object": "text_completion", "model": req["model"]}
        for delta, finish in self.server.greedy_stream(ids, int(req.get("max_tokens", 16)), stop,
                                                       ignore_eos=bool(req.get("ignore_eos"))):
            if finish is None:
                n_out += 1
            self._event({**base, "choices": [{"index": 0, "text": delta, "logprobs": None,
                                              "finish_reason": finish}]})
        if self.server.usage and (req.get("stream_options") or {}).get("include_usage"):
            self._event({**base, "choices": [], "usage": {"prompt_tokens": len(ids), "completion_tokens": n_out,
                                                          "total_tokens": len(ids) + n_out}})
        self._event(b"[DONE]")
        self._chunk(b"")

    def _chat(self, req: dict[str, Any]) -> dict[str, Any]:
        tok = self.server.tokenizer
        prompt = tok.apply_chat_template(req["messages"], tokenize=False, add_generation_prompt=True)
        stop = req.get("stop") or []
        stop = [stop] if isinstance(stop, str) else list(stop)
        text, finish = self.server.greedy(self.server.encode(prompt), int(req.get("max_tokens", 16)), stop)
        return {"id": "chat-test", "object": "chat.completion", "model": self.server.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": finish}]}


@contextmanager
def serve(model: Any, tokenizer: Any, *, name: str = "tiny", prompt_logprobs: bool | str = True,
          require_key: str | None = None, min_max_tokens: int = 0, streaming: bool = True, tokenize: bool = True,
          usage: bool = True, also_serves: tuple[str, ...] = (), strict: bool = False) -> Iterator[ModelServer]:
    """Run a :class:`ModelServer` in a background thread for the duration of the block."""
    server = ModelServer(model, tokenizer, name=name, prompt_logprobs=prompt_logprobs, require_key=require_key,
                         min_max_tokens=min_max_tokens, streaming=streaming, tokenize=tokenize, usage=usage,
                         also_serves=also_serves, strict=strict)
    thread = threading.Thread(target=server.serve_forever, name="openai-test-server", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
