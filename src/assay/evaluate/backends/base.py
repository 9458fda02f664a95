"""The small interface every evaluation backend implements.

Requests follow lm-evaluation-harness's three request kinds, so task code never knows which backend runs it:

- :meth:`Backend.loglikelihood`: ``log P(continuation | context)`` and whether the continuation is the greedy one;
- :meth:`Backend.loglikelihood_rolling`: total log-likelihood of a whole document (perplexity);
- :meth:`Backend.generate`: text generated from a prompt until a stop string or a token budget.

    backend = HFBackend.from_ref(resolve("./my-model"), dtype="float32")
    [r] = backend.loglikelihood([LoglikelihoodRequest("The capital of France is", " Paris")])
    r.logprob, r.is_greedy

Backends are used one at a time (one model in memory at a time); call :meth:`Backend.close` when done.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from assay.progress import NULL_PROGRESS, Progress


@dataclass(frozen=True)
class LoglikelihoodRequest:
    """Score ``continuation`` after ``context`` (context may be empty: then the BOS/EOS token conditions it)."""

    context: str
    """Prompt text, including any few-shot prefix."""
    continuation: str
    """The text whose log-probability is wanted (usually starts with the target delimiter, e.g. a space)."""


@dataclass(frozen=True)
class LoglikelihoodResult:
    """Result of one :class:`LoglikelihoodRequest`."""

    logprob: float
    """Sum of the log-probabilities of the continuation tokens."""
    is_greedy: bool
    """True if every continuation token is the argmax at its position."""
    n_tokens: int
    """Number of continuation tokens scored."""


@dataclass(frozen=True)
class RollingResult:
    """Result of scoring a whole document."""

    logprob: float
    """Sum of log-probabilities of every token of the document."""
    n_tokens: int
    """Number of tokens scored."""


@dataclass(frozen=True)
class GenerationRequest:
    """Generate from ``prompt``."""

    prompt: str
    """The full prompt (chat template already applied if the task asks for it)."""
    until: tuple[str, ...] = ()
    """Stop strings; the output is cut at the first one found."""
    max_tokens: int = 256
    """Token budget for the generated text."""
    temperature: float = 0.0
    """0 means greedy."""
    seed: int | None = None
    """Seed for sampling (ignored when greedy)."""


@dataclass(frozen=True)
class BackendInfo:
    """What a backend runs, for the result cache key and the report."""

    backend: str
    """``hf`` or ``openai``."""
    model_id: str
    """A content identity of the model: the weights root for local models, the served model name otherwise."""
    settings: dict[str, Any] = field(default_factory=dict)
    """Settings that change numbers (dtype, device, max length, server URL, ...)."""
    tokenizer: str = ""
    """A digest of the tokenizer (vocabulary, merges, special tokens); empty when the backend cannot tell (a
    server). Two models with different digests are not compared on per-token metrics."""


class Backend(abc.ABC):
    """A model that can score and generate text."""

    @property
    @abc.abstractmethod
    def info(self) -> BackendInfo:
        """Identity and settings (part of every cache key)."""

    @abc.abstractmethod
    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], *,
                      progress: Progress = NULL_PROGRESS) -> list[LoglikelihoodResult]:
        """Score every request, results in request order."""

    @abc.abstractmethod
    def loglikelihood_rolling(self, texts: Sequence[str], *,
                              progress: Progress = NULL_PROGRESS) -> list[RollingResult]:
        """Total log-likelihood of each document (rolling windows when longer than the context)."""

    @abc.abstractmethod
    def generate(self, requests: Sequence[GenerationRequest], *,
                 progress: Progress = NULL_PROGRESS) -> list[str]:
        """Generated text for every request, stop strings removed, in request order."""

    def preflight(self, needs: Collection[str]) -> None:  # noqa: B027 - optional hook
        """Refuse, before any work, request kinds this backend cannot serve.

        ``needs`` holds the request kinds the tasks ahead will send: ``loglikelihood``, ``loglikelihood_rolling``,
        ``generate``. A backend that can do everything (a local model) accepts all; a server backend probes the
        server once and raises :class:`~assay.errors.BackendError` naming what is missing.
        """

    def apply_chat_template(self, user_message: str) -> str:
        """The prompt a chat model sees for one user turn (default: the message itself)."""
        return user_message

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free the model (memory, connections)."""
