"""Backend ``openai``: any OpenAI-compatible server (vLLM, llama.cpp server, TGI, Ollama) over HTTP.

- Generation goes to ``/v1/completions`` (greedy, ``stop`` strings, ``max_tokens``), or to
  ``/v1/chat/completions`` when the task asks for the chat template (the server applies the model's template).
- Log-likelihood (multiple choice, perplexity) needs the server to return log-probabilities of the *prompt*:
  ``/v1/completions`` with ``echo=true, logprobs=1, max_tokens=0``, as vLLM supports. The continuation's tokens
  are found with the returned character offsets (``text_offset``): every prompt token that ends after the
  context (its trailing whitespace moved to the continuation, as lm-evaluation-harness does) is scored. A server that does not return prompt log-probabilities (llama.cpp server,
  OpenAI's own API) is refused with a clear message rather than scored wrongly.
- Requests run concurrently (a bounded thread pool), each with a timeout, and are retried with exponential
  backoff on HTTP 429, 5xx and connection errors (``Retry-After`` is honoured).

    backend = OpenAIBackend.from_options("http://127.0.0.1:8000/v1", api_key_env="OPENAI_API_KEY")
    [r] = backend.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris")])

Nothing is sent except the prompts of the task being run, and only to the URL the user gave.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

from assay.errors import BackendError
from assay.evaluate.backends.base import (Backend, BackendInfo, GenerationRequest, LoglikelihoodRequest,
                                          LoglikelihoodResult, RollingResult)
from assay.progress import NULL_PROGRESS, Progress

T = TypeVar("T")

DEFAULT_CONCURRENCY = 4
DEFAULT_TIMEOUT = 120.0
DEFAULT_RETRIES = 5
DEFAULT_BACKOFF = 0.5
_MAX_BACKOFF = 30.0
_RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
_GREEDY_TOLERANCE = 1e-4


class ChatPrompt(str):
    """A user message that the server should wrap in the model's chat template (``/v1/chat/completions``).

    :meth:`OpenAIBackend.apply_chat_template` returns one, since only the server knows the template;
    :meth:`OpenAIBackend.generate` sends it as a chat message instead of a raw completion prompt.
    """

    __slots__ = ()


class _HTTPFailure(Exception):
    def __init__(self, status: int | None, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


class OpenAIBackend(Backend):
    """A model served behind an OpenAI-compatible HTTP API."""

    def __init__(self, *, base_url: str, model: str | None = None, api_key: str | None = None,
                 concurrency: int = DEFAULT_CONCURRENCY, timeout: float = DEFAULT_TIMEOUT,
                 max_retries: int = DEFAULT_RETRIES, backoff: float = DEFAULT_BACKOFF,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        url = base_url.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise BackendError(f"--base-url must start with http:// or https:// (got {base_url!r})")
        if not url.endswith("/v1"):
            url += "/v1"
        if concurrency < 1:
            raise BackendError("--concurrency must be at least 1")
        self.base_url = url
        self.api_key = api_key
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self._sleep = sleep
        self._echo_max_tokens = 0  # vLLM accepts 0; some servers insist on 1 (see _prompt_logprobs)
        self._lock = threading.Lock()
        self.model_name = model or self._served_model()

    @classmethod
    def from_options(cls, base_url: str, *, model: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                     concurrency: int = DEFAULT_CONCURRENCY, timeout: float = DEFAULT_TIMEOUT,
                     max_retries: int = DEFAULT_RETRIES) -> OpenAIBackend:
        """The CLI's constructor: the API key is read from the environment variable ``api_key_env`` (if set)."""
        return cls(base_url=base_url, model=model, api_key=os.environ.get(api_key_env) or None,
                   concurrency=concurrency, timeout=timeout, max_retries=max_retries)

    # ------------------------------------------------------------------------------------------- identity
    @property
    def info(self) -> BackendInfo:
        # The served name is all a server tells about its weights: the URL keeps two servers' results apart.
        return BackendInfo(backend="openai", model_id=self.model_name, settings={"base_url": self.base_url})

    # ------------------------------------------------------------------------------------------- HTTP
    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """One API call with retries; returns the decoded JSON body."""
        url = f"{self.base_url}{path}"
        last: _HTTPFailure | None = None
        for attempt in range(self.max_retries + 1):
            try:
                return self._once(method, url, payload)
            except _HTTPFailure as exc:
                last = exc
                if exc.status is not None and exc.status not in _RETRY_STATUS:
                    raise
                if attempt == self.max_retries:
                    break
                delay = min(_MAX_BACKOFF, self.backoff * (2 ** attempt)) * (1 + 0.1 * random.random())
                if exc.retry_after is not None:
                    delay = min(_MAX_BACKOFF, max(delay, exc.retry_after))
                self._sleep(delay)
        assert last is not None
        raise BackendError(f"{url} failed after {self.max_retries + 1} attempts: {last.message}")

    def _once(self, method: str, url: str, payload: dict[str, Any] | None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - user-given URL
                body = resp.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc.read())
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            raise _HTTPFailure(exc.code, f"HTTP {exc.code}{': ' + detail if detail else ''}", retry_after) from None
        except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _HTTPFailure(None, f"cannot reach the server ({reason})") from None
        try:
            return json.loads(body)
        except json.JSONDecodeError:
            raise _HTTPFailure(None, "the server's answer is not JSON") from None

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        try:
            return self._request(method, path, payload)
        except _HTTPFailure as exc:
            hint = " (check --api-key-env)" if exc.status in (401, 403) else ""
            raise BackendError(f"{self.base_url}{path}: {exc.message}{hint}") from None

    def _served_model(self) -> str:
        doc = self._call("GET", "/models")
        ids = [m.get("id") for m in (doc.get("data") or []) if isinstance(m, dict) and m.get("id")]
        if len(ids) == 1:
            return str(ids[0])
        if not ids:
            raise BackendError(f"{self.base_url}/models lists no model; name one with --model")
        raise BackendError(f"{self.base_url} serves {len(ids)} models ({', '.join(map(str, ids[:5]))}); "
                           "pick one with --model")

    def _map(self, fn: Callable[[Any], T], inputs: Sequence[Any], progress: Progress, label: str) -> list[T]:
        """Apply ``fn`` to every input with at most ``concurrency`` requests in flight; results in input order."""
        out: list[T | None] = [None] * len(inputs)
        progress.start(label, total=len(inputs))
        try:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(inputs)))) as pool:
                futures = {pool.submit(fn, x): i for i, x in enumerate(inputs)}
                for fut in as_completed(futures):
                    out[futures[fut]] = fut.result()
                    progress.advance(label)
        finally:
            progress.finish(label)
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------------------------------- scoring
    def _prompt_logprobs(self, prompt: str) -> tuple[list[str], list[float | None], list[Any], list[int]]:
        """tokens, their log-probabilities, top log-probabilities and character offsets of a prompt."""
        payload = {"model": self.model_name, "prompt": prompt, "max_tokens": self._echo_max_tokens, "echo": True,
                   "logprobs": 1, "temperature": 0.0}
        try:
            doc = self._request("POST", "/completions", payload)
        except _HTTPFailure as exc:
            if exc.status == 400 and "max_tokens" in exc.message and self._echo_max_tokens == 0:
                with self._lock:
                    self._echo_max_tokens = 1
                return self._prompt_logprobs(prompt)
            raise BackendError(f"{self.base_url}/completions: {exc.message}") from None
        try:
            lp = doc["choices"][0]["logprobs"]
            tokens, token_lps, offsets = list(lp["tokens"]), list(lp["token_logprobs"]), list(lp["text_offset"])
            top = list(lp.get("top_logprobs") or [None] * len(tokens))
        except (KeyError, IndexError, TypeError):
            lp = None
        if lp is None or not tokens or len(token_lps) != len(tokens) or len(offsets) != len(tokens) \
                or all(x is None for x in token_lps):
            raise BackendError(f"the server at {self.base_url} does not return log-probabilities of the prompt "
                               "(completions with echo=true and logprobs), so it cannot score multiple-choice or "
                               "perplexity tasks; use generation tasks, or a server that supports it (e.g. vLLM)")
        # Drop generated tokens (a server that insists on max_tokens >= 1 appends one).
        keep = [i for i, off in enumerate(offsets) if off < len(prompt)]
        return ([tokens[i] for i in keep], [token_lps[i] for i in keep], [top[i] for i in keep],
                [offsets[i] for i in keep])

    def _score(self, req: LoglikelihoodRequest) -> LoglikelihoodResult:
        if isinstance(req.context, ChatPrompt):
            raise BackendError("the openai backend cannot score choices inside the chat template: the server "
                               "applies it only to chat requests, which return no prompt log-probabilities "
                               "(run this multiple-choice task without the chat template)")
        prompt = req.context + req.continuation
        tokens, lps, top, offsets = self._prompt_logprobs(prompt)
        # lm-evaluation-harness moves the context's trailing whitespace into the continuation; so do we.
        boundary = len(req.context.rstrip())
        ends = offsets[1:] + [len(prompt)]
        idx = [i for i in range(len(tokens)) if ends[i] > boundary]
        if not idx:
            raise BackendError(f"the server returned no tokens for the continuation {req.continuation!r}")
        total, greedy = 0.0, True
        for i in idx:
            if lps[i] is None:
                raise BackendError("the server gave no log-probability for the first token of the prompt; "
                                   "a continuation cannot start the prompt (give a context, or a server that "
                                   "prepends a BOS token)")
            total += float(lps[i])
            alts = top[i]
            if isinstance(alts, dict) and alts:
                greedy = greedy and float(lps[i]) >= max(float(v) for v in alts.values()) - _GREEDY_TOLERANCE
            else:
                greedy = False
        return LoglikelihoodResult(logprob=total, is_greedy=greedy, n_tokens=len(idx))

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *,
                      progress: Progress = NULL_PROGRESS) -> list[LoglikelihoodResult]:
        return self._map(self._score, requests, progress, "loglikelihood")

    def _rolling(self, text: str) -> RollingResult:
        _, lps, _, _ = self._prompt_logprobs(text)
        scored = [float(x) for x in lps if x is not None]
        return RollingResult(logprob=sum(scored), n_tokens=len(scored))

    def loglikelihood_rolling(self, texts: Sequence[str], *,
                              progress: Progress = NULL_PROGRESS) -> list[RollingResult]:
        """Log-likelihood of each document in one request (the server must hold the whole text in context);
        a first token the server cannot condition (no BOS prepended) is not counted."""
        return self._map(self._rolling, texts, progress, "perplexity")

    # ------------------------------------------------------------------------------------------- generation
    def apply_chat_template(self, user_message: str) -> str:
        """The server applies the model's chat template: mark the message for ``/v1/chat/completions``."""
        return ChatPrompt(user_message)

    def _generate(self, req: GenerationRequest) -> str:
        common: dict[str, Any] = {"model": self.model_name, "max_tokens": req.max_tokens,
                                  "temperature": req.temperature}
        if req.until:
            common["stop"] = list(req.until)
        if req.seed is not None:
            common["seed"] = req.seed
        if isinstance(req.prompt, ChatPrompt):
            doc = self._call("POST", "/chat/completions",
                             {**common, "messages": [{"role": "user", "content": str(req.prompt)}]})
            text = _first(doc, lambda c: c["message"]["content"])
        else:
            doc = self._call("POST", "/completions", {**common, "prompt": req.prompt})
            text = _first(doc, lambda c: c["text"])
        for stop in req.until:  # servers differ in how many stop strings they honour
            if stop and stop in text:
                text = text.split(stop)[0]
        return text

    def generate(self, requests: Sequence[GenerationRequest], *,
                 progress: Progress = NULL_PROGRESS) -> list[str]:
        return self._map(self._generate, requests, progress, "generating")


def open_backend(spec: str | None, *, base_url: str, api_key_env: str | None = None,
                 concurrency: int = DEFAULT_CONCURRENCY, timeout: float = DEFAULT_TIMEOUT,
                 max_retries: int = DEFAULT_RETRIES) -> OpenAIBackend:
    """The ``assay eval --backend openai`` constructor: MODEL is the served model's name (``-`` or empty: the
    server's only model); the key comes from ``api_key_env`` (default ``OPENAI_API_KEY``)."""
    model = None if spec in (None, "", "-") else spec
    return OpenAIBackend.from_options(base_url, model=model, api_key_env=api_key_env or "OPENAI_API_KEY",
                                      concurrency=concurrency, timeout=timeout, max_retries=max_retries)


def _first(doc: Any, get: Callable[[dict[str, Any]], Any]) -> str:
    try:
        value = get(doc["choices"][0])
    except (KeyError, IndexError, TypeError):
        raise BackendError("the server's answer has no choices[0] text") from None
    return "" if value is None else str(value)


def _error_detail(body: bytes) -> str:
    try:
        doc = json.loads(body)
        err = doc.get("error", doc) if isinstance(doc, dict) else doc
        msg = err.get("message") if isinstance(err, dict) else err
        text = str(msg)
    except (json.JSONDecodeError, AttributeError):
        text = body.decode("utf-8", "replace")
    return text.strip().splitlines()[0][:300] if text.strip() else ""


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
