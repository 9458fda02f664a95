"""A timed streaming client for an OpenAI-compatible server (vLLM, llama.cpp server, TGI, Ollama): standard
library HTTP, one connection per request, server-sent events read as they arrive.

    >>> server = Server(base_url="http://127.0.0.1:8000/v1", api_key=None, timeout=120.0)
    >>> s = server.stream("my-model", "Hello", 16)
    >>> s.first - s.start, s.completion_tokens     # time to first token, tokens the server counted
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from assay.errors import DeployError
from assay.evaluate.backends.openai import error_detail


@dataclass(frozen=True)
class Stream:
    """One streamed request: absolute ``perf_counter`` times and what the server counted."""

    start: float
    first: float
    last: float
    end: float
    chunks: int
    completion_tokens: int | None
    prompt_tokens: int | None
    finish_reason: str | None


class Server:
    """Streams completions from an OpenAI-compatible server (standard library HTTP, one connection per request).

    The connection is opened before the clock starts, so time to first token measures the server, not the
    TCP or TLS handshake. Request extras (``ignore_eos``, ``stream_options``) are dropped if the server refuses
    them with HTTP 400.
    """

    def __init__(self, *, base_url: str, api_key: str | None, timeout: float) -> None:
        self.base_url = base_url
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")  # ends with /v1
        self._root = self._prefix[: -len("/v1")] if self._prefix.endswith("/v1") else self._prefix
        self._api_key = api_key
        self._timeout = timeout
        self.extras: dict[str, Any] = {"ignore_eos": True, "stream_options": {"include_usage": True}}

    def _connect(self) -> Any:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self._timeout)
        try:
            conn.connect()
        except OSError as exc:
            raise DeployError(f"cannot reach the server at {self.base_url} ({_reason(exc)})") from None
        return conn

    def _headers(self, accept: str) -> dict[str, str]:
        h = {"Content-Type": "application/json", "Accept": accept}
        if self._api_key:
            h["Authorization"] = f"Bearer {self._api_key}"
        return h

    def post_json(self, path: str, payload: dict[str, Any], *, root: bool = False) -> tuple[int, Any]:
        """``(status, decoded body or None)`` of a plain JSON POST (``root``: outside ``/v1``, as ``/tokenize``)."""
        conn = self._connect()
        try:
            conn.request("POST", (self._root if root else self._prefix) + path, body=json.dumps(payload).encode(),
                         headers=self._headers("application/json"))
            resp = conn.getresponse()
            body = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            raise DeployError(f"{self.base_url}{path}: the connection failed ({_reason(exc)})") from None
        finally:
            conn.close()
        try:
            return resp.status, json.loads(body)
        except ValueError:
            return resp.status, None

    def stream(self, model: str, prompt: str, max_tokens: int, *, require_text: bool = True) -> Stream:
        """One streamed greedy completion, timed (``require_text=False``: a stream with no text is accepted)."""
        payload = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
                   **self.extras}
        body = json.dumps(payload).encode()
        conn = self._connect()
        try:
            start = time.perf_counter()
            conn.request("POST", self._prefix + "/completions", body=body, headers=self._headers("text/event-stream"))
            resp = conn.getresponse()
            if resp.status != 200:
                detail = error_detail(resp.read())
                # Stricter servers refuse the non-standard extras: 400 (llama.cpp, TGI) or 422 (FastAPI-based).
                if resp.status in (400, 422) and self.extras:
                    self.extras = {}
                    conn.close()
                    return self.stream(model, prompt, max_tokens, require_text=require_text)
                hint = " (check --api-key-env)" if resp.status in (401, 403) else ""
                raise DeployError(f"{self.base_url}/completions: HTTP {resp.status}"
                                  f"{': ' + detail if detail else ''}{hint}")
            ctype = (resp.getheader("Content-Type") or "").lower()
            if "text/event-stream" not in ctype:
                resp.read()
                raise DeployError(
                    f"the server at {self.base_url} answered a stream=true completion with one {ctype or 'untyped'} "
                    "document instead of server-sent events: it does not stream, so time to first token and decode "
                    "speed cannot be measured (vLLM, llama.cpp server, TGI and Ollama stream)")
            first = last = None
            chunks = 0
            usage: dict[str, Any] = {}
            finish = None
            for data in _sse_data(resp):
                if data == "[DONE]":
                    break
                try:
                    doc = json.loads(data)
                except ValueError:
                    raise DeployError(f"the server at {self.base_url} streamed an event that is not JSON: "
                                      f"{data[:80]!r}") from None
                if not isinstance(doc, dict):
                    continue
                if isinstance(doc.get("usage"), dict):
                    usage = doc["usage"]
                choices = doc.get("choices") or []
                choice = choices[0] if choices and isinstance(choices[0], dict) else None
                if choice is None:
                    continue
                finish = choice.get("finish_reason") or finish
                if choice.get("text"):
                    now = time.perf_counter()
                    first = now if first is None else first
                    last = now
                    chunks += 1
            end = time.perf_counter()
        except (OSError, http.client.HTTPException) as exc:
            raise DeployError(f"{self.base_url}/completions: the stream broke off ({_reason(exc)})") from None
        finally:
            conn.close()
        if (first is None or last is None) and not require_text:
            first = last = end
        if first is None or last is None:
            raise DeployError(f"the server at {self.base_url} streamed no text for a {max_tokens}-token completion")
        ct, pt = usage.get("completion_tokens"), usage.get("prompt_tokens")
        return Stream(start=start, first=first, last=last, end=end, chunks=chunks,
                       completion_tokens=ct if isinstance(ct, int) and not isinstance(ct, bool) and ct > 0 else None,
                       prompt_tokens=pt if isinstance(pt, int) and not isinstance(pt, bool) and pt > 0 else None,
                       finish_reason=finish)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _sse_data(resp: Any) -> Any:
    """The ``data`` of each server-sent event (lines of one event joined by newlines), as they arrive."""
    lines: list[str] = []
    for raw in resp:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if line.startswith("data:"):
            lines.append(line[5:].removeprefix(" "))
    if lines:
        yield "\n".join(lines)

