"""Backend ``openai``: any OpenAI-compatible server (vLLM, llama.cpp server, TGI, Ollama) over HTTP.

- Generation goes to ``/v1/completions`` (greedy, ``stop`` strings, ``max_tokens``), or to
  ``/v1/chat/completions`` when the task asks for the chat template (the server applies the model's template).
- Log-likelihood (multiple choice, perplexity) needs the server to return log-probabilities of the *prompt*:
  ``/v1/completions`` with ``echo=true, logprobs=1, max_tokens=0``, as vLLM supports. The continuation's tokens
  are found with the returned character offsets (``text_offset``): every prompt token that ends after the
  context (its trailing whitespace moved to the continuation, as lm-evaluation-harness does) is scored. A server
  that does not return prompt log-probabilities (llama.cpp server, OpenAI's own API, ``transformers serve``) is
  refused with a clear message rather than scored wrongly.
- Before the first item, :meth:`OpenAIBackend.preflight` probes what the server can do (one small request per
  capability: prompt log-probabilities, token counts, streaming, the model names it serves; see
  :class:`ServerCapabilities`) and refuses a task the server cannot score, naming the missing capability.
- Requests run concurrently (a bounded thread pool), each with a timeout. Server errors (5xx), timeouts and
  dropped connections are retried with exponential backoff; HTTP 429 too, since it asks to come back later
  (``Retry-After`` is honoured). Every other 4xx is the request's fault and is never retried: the server's own
  message is shown.

    backend = OpenAIBackend.from_options("http://127.0.0.1:8000/v1", api_key_env="OPENAI_API_KEY")
    [r] = backend.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris")])

Nothing is sent except the prompts of the task being run, and only to the URL the user gave.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
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
#: 429 asks the client to come back later; 5xx are the server's trouble. Any other 4xx is final.
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_GREEDY_TOLERANCE = 1e-4
#: The probe prompt: short, plain ASCII, several tokens in every tokenizer.
PROBE_PROMPT = "The quick brown fox jumps over the lazy dog."
#: What each request kind needs from a server (see :meth:`OpenAIBackend.preflight`).
_HOW_TO_GET = ("run it with --backend hf on a local copy of the model, or against a server that returns prompt "
               "log-probabilities (vLLM, llama.cpp server; see the server compatibility table in docs/servers.md)")


@dataclass(frozen=True)
class ServerCapabilities:
    """What one probe of an OpenAI-compatible server found (``assay eval --json`` reports it under ``server``)."""

    base_url: str
    """The server's API root (ends with ``/v1``)."""
    models: tuple[str, ...]
    """The model names ``GET /v1/models`` lists."""
    prompt_logprobs: bool
    """``/v1/completions`` with ``echo`` and ``logprobs`` returns log-probabilities of the prompt's tokens, which
    multiple-choice and perplexity scoring need."""
    prompt_logprobs_detail: str
    """Why not, in the server's words or ours (empty when it does)."""
    completions: bool
    """``/v1/completions`` answers a plain prompt (generation tasks need it)."""
    token_counts: bool
    """Answers carry ``usage.prompt_tokens`` and ``usage.completion_tokens``."""
    probe_prompt_tokens: int | None
    """The server's count of :data:`PROBE_PROMPT`'s tokens (from ``usage``), when it gives one."""
    streaming: bool
    """``stream: true`` answers with server-sent events (bench's time to first token needs it)."""
    local_prompt_tokens: int | None = None
    """The local tokenizer's count of :data:`PROBE_PROMPT`, when the served model is also available here."""
    warnings: tuple[str, ...] = field(default=())
    """Things the user should know (tokenizer disagreement, ...)."""

    def to_json(self) -> dict[str, Any]:
        """The JSON form (plain types)."""
        return {"base_url": self.base_url, "models": list(self.models), "prompt_logprobs": self.prompt_logprobs,
                "prompt_logprobs_detail": self.prompt_logprobs_detail, "completions": self.completions,
                "token_counts": self.token_counts, "probe_prompt_tokens": self.probe_prompt_tokens,
                "local_prompt_tokens": self.local_prompt_tokens, "streaming": self.streaming,
                "warnings": list(self.warnings)}


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
                 sleep: Callable[[float], None] = time.sleep, tokenizer: Path | None = None) -> None:
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
        self._models: tuple[str, ...] | None = None
        self._capabilities: ServerCapabilities | None = None
        self._tokenizer = tokenizer
        self.model_name = model or self._served_model()

    @classmethod
    def from_options(cls, base_url: str, *, model: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                     concurrency: int = DEFAULT_CONCURRENCY, timeout: float = DEFAULT_TIMEOUT,
                     max_retries: int = DEFAULT_RETRIES, tokenizer: Path | None = None) -> OpenAIBackend:
        """The CLI's constructor: the API key is read from the environment variable ``api_key_env`` (if set)."""
        return cls(base_url=base_url, model=model, api_key=os.environ.get(api_key_env) or None,
                   concurrency=concurrency, timeout=timeout, max_retries=max_retries, tokenizer=tokenizer)

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
            detail = error_detail(exc.read())
            retry_after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            raise _HTTPFailure(exc.code, f"HTTP {exc.code}{': ' + detail if detail else ''}", retry_after) from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
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

    def _list_models(self) -> tuple[str, ...]:
        if self._models is None:
            doc = self._call("GET", "/models")
            data = doc.get("data") if isinstance(doc, dict) else None
            self._models = tuple(str(m["id"]) for m in (data or []) if isinstance(m, dict) and m.get("id"))
        return self._models

    def _served_model(self) -> str:
        ids = list(self._list_models())
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

    # ------------------------------------------------------------------------------------------- capabilities
    @property
    def capabilities(self) -> ServerCapabilities:
        """What the server can do, probed once with a few small requests (see :class:`ServerCapabilities`)."""
        with self._lock:
            if self._capabilities is None:
                self._capabilities = self._probe()
            return self._capabilities

    def _probe(self) -> ServerCapabilities:
        models = self._list_models()
        base = {"model": self.model_name, "prompt": PROBE_PROMPT, "max_tokens": 1, "temperature": 0.0}
        # 1. A plain completion: can it generate, does it count tokens?
        try:
            plain = self._request("POST", "/completions", base)
        except _HTTPFailure as exc:
            raise BackendError(f"{self.base_url}/completions: {exc.message} (the capability probe: one "
                               "completion of one token)") from None
        completions = _first_or_none(plain, lambda c: c["text"]) is not None
        usage = plain.get("usage") if isinstance(plain, dict) else None
        n_prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        token_counts = isinstance(n_prompt, int) and isinstance(usage.get("completion_tokens"), int)  # type: ignore[union-attr]
        # 2. Prompt log-probabilities, as vLLM gives them.
        ok, detail = True, ""
        try:
            echoed = self._request("POST", "/completions", {**base, "echo": True, "logprobs": 1})
            _parse_prompt_logprobs(echoed, PROBE_PROMPT)
        except _HTTPFailure as exc:
            ok, detail = False, f"it answered {exc.message}"
        except _NoPromptLogprobs as exc:
            ok, detail = False, str(exc)
        # 3. Streaming: server-sent events.
        try:
            streaming = self._streams({**base, "stream": True})
        except _HTTPFailure:
            streaming = False
        local = self._local_count()
        warnings: list[str] = []
        if local is not None and isinstance(n_prompt, int) and local != n_prompt:
            warnings.append(f"the server counts {n_prompt} tokens in the probe prompt, the local tokenizer "
                            f"({self._tokenizer}) {local}: the server's tokenizer differs, so prompt lengths and "
                            "cost per token measured through it do not hold for the local model")
        return ServerCapabilities(base_url=self.base_url, models=models, prompt_logprobs=ok,
                                  prompt_logprobs_detail=detail, completions=completions, token_counts=token_counts,
                                  probe_prompt_tokens=n_prompt if isinstance(n_prompt, int) else None,
                                  streaming=streaming, local_prompt_tokens=local, warnings=tuple(warnings))

    def _streams(self, payload: dict[str, Any]) -> bool:
        """True if the answer to ``payload`` (``stream: true``) is a stream of ``data:`` events."""
        data = json.dumps(payload).encode()
        req = urllib.request.Request(f"{self.base_url}/completions", data=data, method="POST")
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "text/event-stream")
        if self.api_key:
            req.add_header("Authorization", f"Bearer {self.api_key}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - user-given URL
                kind = resp.headers.get("Content-Type", "")
                head = resp.read(4096)
        except urllib.error.HTTPError as exc:
            raise _HTTPFailure(exc.code, f"HTTP {exc.code}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise _HTTPFailure(None, str(getattr(exc, "reason", exc))) from None
        return "text/event-stream" in kind or head.lstrip().startswith(b"data:")

    def _local_count(self) -> int | None:
        """Tokens of :data:`PROBE_PROMPT` by the local tokenizer (``tokenizer.json``, read as data), if any."""
        folder = self._tokenizer
        if folder is None:
            candidate = Path(self.model_name)
            folder = candidate if candidate.is_dir() else None
        if folder is None or not (folder / "tokenizer.json").is_file():
            return None
        try:
            from tokenizers import Tokenizer

            return len(Tokenizer.from_file(str(folder / "tokenizer.json")).encode(PROBE_PROMPT).ids)
        except Exception:  # noqa: BLE001 - an unreadable local tokenizer only means no check
            return None

    def preflight(self, needs: Collection[str]) -> None:
        """Refuse, before any item runs, work the server cannot do (see :meth:`Backend.preflight`)."""
        scoring = sorted(set(needs) & {"loglikelihood", "loglikelihood_rolling"})
        caps = self.capabilities
        if scoring and not caps.prompt_logprobs:
            what = " and ".join({"loglikelihood": "multiple-choice", "loglikelihood_rolling": "perplexity"}[n]
                                for n in scoring)
            raise BackendError(f"the server at {self.base_url} does not return log-probabilities of the prompt "
                               f"(/v1/completions with echo and logprobs: {caps.prompt_logprobs_detail}), so it "
                               f"cannot score {what} tasks", hint=_HOW_TO_GET)
        if "generate" in needs and not caps.completions:
            raise BackendError(f"the server at {self.base_url} returns no text from /v1/completions, so it cannot "
                               "run generation tasks")

    # ------------------------------------------------------------------------------------------- scoring
    def _prompt_logprobs(self, prompt: str) -> tuple[list[str], list[float | None], list[Any], list[int]]:
        """tokens, their log-probabilities, top log-probabilities and character offsets of a prompt."""
        payload = {"model": self.model_name, "prompt": prompt, "max_tokens": self._echo_max_tokens, "echo": True,
                   "logprobs": 1, "temperature": 0.0}
        try:
            doc = self._request("POST", "/completions", payload)
        except _HTTPFailure as exc:
            # vLLM scores a prompt with max_tokens=0; servers that always generate refuse it (400 or 422).
            if exc.status in (400, 422) and self._echo_max_tokens == 0:
                with self._lock:
                    self._echo_max_tokens = 1
                return self._prompt_logprobs(prompt)
            raise BackendError(f"{self.base_url}/completions: {exc.message}") from None
        try:
            tokens, token_lps, top, offsets = _parse_prompt_logprobs(doc, prompt)
        except _NoPromptLogprobs as exc:
            raise BackendError(f"the server at {self.base_url} does not return log-probabilities of the prompt "
                               f"(completions with echo=true and logprobs: {exc}), so it cannot score "
                               "multiple-choice or perplexity tasks", hint=_HOW_TO_GET) from None
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
            lp = lps[i]
            if lp is None:
                raise BackendError("the server gave no log-probability for the first token of the prompt; "
                                   "a continuation cannot start the prompt (give a context, or a server that "
                                   "prepends a BOS token)")
            total += float(lp)
            alts = top[i]
            if isinstance(alts, dict) and alts:
                greedy = greedy and float(lp) >= max(float(v) for v in alts.values()) - _GREEDY_TOLERANCE
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
                 max_retries: int = DEFAULT_RETRIES, tokenizer: Path | None = None) -> OpenAIBackend:
    """The ``assay eval --backend openai`` constructor: MODEL is the served model's name (``-`` or empty: the
    server's only model); the key comes from ``api_key_env`` (default ``OPENAI_API_KEY``)."""
    model = None if spec in (None, "", "-") else spec
    return OpenAIBackend.from_options(base_url, model=model, api_key_env=api_key_env or "OPENAI_API_KEY",
                                      concurrency=concurrency, timeout=timeout, max_retries=max_retries,
                                      tokenizer=tokenizer)


class _NoPromptLogprobs(Exception):
    """An answer without log-probabilities of the prompt's tokens."""


def _parse_prompt_logprobs(doc: Any, prompt: str) -> tuple[list[str], list[float | None], list[Any], list[int]]:
    """tokens, log-probabilities, top alternatives and character offsets from an ``echo`` + ``logprobs`` answer;
    raises :class:`_NoPromptLogprobs` saying what is missing."""
    try:
        lp = doc["choices"][0]["logprobs"]
    except (KeyError, IndexError, TypeError):
        raise _NoPromptLogprobs("the answer has no choices[0].logprobs") from None
    if not isinstance(lp, dict):
        raise _NoPromptLogprobs("the answer's logprobs is empty (the server ignores echo/logprobs)")
    try:
        tokens, token_lps, offsets = list(lp["tokens"]), list(lp["token_logprobs"]), list(lp["text_offset"])
    except (KeyError, TypeError):
        raise _NoPromptLogprobs("the answer's logprobs has no tokens, token_logprobs and text_offset") from None
    top = list(lp.get("top_logprobs") or [None] * len(tokens))
    if not tokens or len(token_lps) != len(tokens) or len(offsets) != len(tokens) or len(top) != len(tokens):
        raise _NoPromptLogprobs("the answer's logprobs lists are empty or of different lengths")
    text = _first_or_none(doc, lambda c: c["text"])
    if isinstance(text, str) and not text.startswith(prompt):
        # llama.cpp's server, for one, answers echo+logprobs with the generated token's log-probability alone,
        # at offset 0: taken for the prompt's, every choice would score the same.
        raise _NoPromptLogprobs("the answer does not echo the prompt, so its log-probabilities are the generated "
                                "tokens', not the prompt's")
    in_prompt = [i for i, o in enumerate(offsets) if isinstance(o, int) and 0 <= o < len(prompt)]
    if not in_prompt or offsets[in_prompt[0]] != 0:
        raise _NoPromptLogprobs("the answer scores no token of the prompt (echo is ignored)")
    if all(token_lps[i] is None for i in in_prompt):
        raise _NoPromptLogprobs("the answer gives no log-probability for any token of the prompt")
    if any(b < a for a, b in zip(offsets, offsets[1:], strict=False)):
        raise _NoPromptLogprobs("the answer's text_offset values go backwards")
    return tokens, token_lps, top, offsets


def _first_or_none(doc: Any, get: Callable[[dict[str, Any]], Any]) -> Any:
    try:
        return get(doc["choices"][0])
    except (KeyError, IndexError, TypeError):
        return None


def _first(doc: Any, get: Callable[[dict[str, Any]], Any]) -> str:
    try:
        value = get(doc["choices"][0])
    except (KeyError, IndexError, TypeError):
        raise BackendError("the server's answer has no choices[0] text") from None
    return "" if value is None else str(value)


def error_detail(body: bytes) -> str:
    """The server's own words from an error body: OpenAI's ``error.message``, FastAPI's ``detail``, a bare
    ``error`` string, or the body itself."""
    text = body.decode("utf-8", "replace")
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        doc = None
    if isinstance(doc, dict):
        err = doc.get("error")
        for value in ((err.get("message") if isinstance(err, dict) else err), doc.get("detail"), doc.get("message")):
            if value not in (None, "", [], {}):
                text = value if isinstance(value, str) else json.dumps(value)
                break
    return " ".join(text.split())[:300]


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
