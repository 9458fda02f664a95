"""Degeneration: does the candidate repeat itself, loop, or stop empty where its base did not?

``builtin:degeneration`` continues :data:`PROMPTS` (varied openings: narrative, instructions, dialogue, lists,
code, facts) twice each: greedily (item ``g00``...) and sampled at temperature :data:`TEMPERATURE` with a fixed
seed per item (``s00``...), as raw text (no chat template). Per-item metrics, so the candidate is compared with
its base item by item:

- ``repetition``: share of the output's word 4-grams that repeat an earlier 4-gram of the same output (lower is
  better);
- ``distinct_1``, ``distinct_2``: distinct words / words and distinct word bigrams / bigrams (higher is better;
  0 for an output without any);
- ``loop_rate``: 1 when the output ends in a loop, a span of at least :data:`MIN_LOOP_CHARS` characters made of
  one unit repeated at least :data:`MIN_REPEATS` times (the last copy may be cut off by the token budget);
- ``empty_rate``: 1 when the output is empty or whitespace;
- ``length_words``: words in the output (neither better nor worse in itself; a drop flags as a regression).

    task = degeneration_task()
    ends_in_loop("and then and then and then and th")     # True
    repeated_ngram_rate("a b c d a b c d".split(), 4)    # 0.2 (1 of 5 4-grams repeats an earlier one)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from assay.evaluate.probes.base import ProbeRunner
from assay.evaluate.tasks import GenerationSpec, Item, Task, TaskKind

if TYPE_CHECKING:
    from assay.evaluate.backends.base import Backend
    from assay.evaluate.runner import ItemResult

TASK_NAME = "builtin:degeneration"
MAX_TOKENS = 64
"""Token budget of each continuation."""
TEMPERATURE = 1.0
"""Sampling temperature of the sampled continuations."""
SEED = 1234
"""Base seed; each sampled item uses ``SEED + its index``."""
MIN_REPEATS = 3
"""A loop is a unit repeated at least this many times at the end of the output."""
MIN_LOOP_CHARS = 12
"""...covering at least this many characters (so "!!!" or "..." is not a loop)."""

PROMPTS: tuple[str, ...] = (
    "Once upon a time, in a village at the edge of a forest,",
    "The best way to learn a new language is",
    "To make a cup of tea, first",
    "Here is a list of things to pack for a camping trip:",
    "Dear Sir or Madam, I am writing to",
    "The history of the printing press begins",
    "def fibonacci(n):",
    "Q: Why is the sky blue?\nA:",
    "The meeting was postponed because",
    "In the year 2050, cities will",
    "My favourite recipe for a rainy day is",
    "The theory of evolution explains",
    "She opened the door and saw",
    "Step 1: Preheat the oven to 180 degrees.\nStep 2:",
    "Photosynthesis is the process by which",
    "The football match ended in a draw after",
    "User: Can you recommend a good book?\nAssistant:",
    "The three most important rules of investing are",
    "It was the coldest winter anyone could remember.",
    "A haiku about the sea:\n",
    "The committee reviewed the proposal and decided",
    "Water boils at 100 degrees Celsius, but",
    "Breaking news: scientists have discovered",
    "The old lighthouse keeper had a secret:",
)
"""Varied openings, written for assay."""


def _words(text: str) -> list[str]:
    return text.lower().split()


def repeated_ngram_rate(words: Sequence[str], n: int = 4) -> float:
    """Share of the n-grams of ``words`` that repeat an earlier one (0 when there are none)."""
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return (len(grams) - len(set(grams))) / len(grams)


def distinct_n(words: Sequence[str], n: int) -> float:
    """Distinct n-grams / n-grams (0 when there are none)."""
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def loop_period(text: str, *, min_repeats: int = MIN_REPEATS, min_chars: int = MIN_LOOP_CHARS) -> int | None:
    """Length in characters of the unit the text ends looping on, or None.

    For each period ``p`` the periodic tail is the longest suffix with ``s[i] == s[i - p]``; the text loops when
    that tail (plus one unit) covers ``min_repeats`` units and at least ``min_chars`` characters.
    """
    s = text.rstrip()
    n = len(s)
    for p in range(1, n // min_repeats + 1):
        run = 0
        i = n - 1
        while i - p >= 0 and s[i] == s[i - p]:
            run += 1
            i -= 1
        span = run + p
        if span >= min_repeats * p and span >= min_chars:
            return p
    return None


def ends_in_loop(text: str) -> bool:
    """True when the text ends repeating one unit (see :func:`loop_period`)."""
    return loop_period(text) is not None


def degeneration_metrics(text: str) -> dict[str, float]:
    """Every per-item degeneration metric of one output."""
    words = _words(text)
    return {
        "repetition": repeated_ngram_rate(words, 4),
        "distinct_1": distinct_n(words, 1),
        "distinct_2": distinct_n(words, 2),
        "loop_rate": float(ends_in_loop(text)),
        "empty_rate": float(not text.strip()),
        "length_words": float(len(words)),
    }


METRICS = ("repetition", "distinct_1", "distinct_2", "loop_rate", "empty_rate", "length_words")
LOWER_IS_BETTER = ("repetition", "loop_rate", "empty_rate")


class DegenerationProbe(ProbeRunner):
    """Greedy and seeded sampled continuations of each prompt, scored by :func:`degeneration_metrics`."""

    def __init__(self, *, max_tokens: int = MAX_TOKENS, temperature: float = TEMPERATURE) -> None:
        self.max_tokens = max_tokens
        self.temperature = temperature

    def run(self, backend: Backend, task: Task, items: Sequence[Item]) -> list[ItemResult]:
        from assay.evaluate.backends.base import GenerationRequest
        from assay.evaluate.runner import ItemResult

        reqs = []
        for item in items:
            sampled = item.meta.get("mode") == "sampled"
            reqs.append(GenerationRequest(prompt=item.context, until=(), max_tokens=self.max_tokens,
                                          temperature=self.temperature if sampled else 0.0,
                                          seed=int(item.meta["seed"]) if sampled else None))
        texts = backend.generate(reqs)
        return [ItemResult(id=item.id, metrics=degeneration_metrics(text), prediction=text,
                           extracted={"mode": str(item.meta.get("mode"))})
                for item, text in zip(items, texts, strict=True)]


def degeneration_task(*, prompts: Sequence[str] = PROMPTS, max_tokens: int = MAX_TOKENS,
                      temperature: float = TEMPERATURE, seed: int = SEED) -> Task:
    """``builtin:degeneration``: each prompt continued greedily and sampled (seeded)."""
    items = []
    for k, prompt in enumerate(prompts):
        items.append(Item(id=f"g{k:02d}", context=prompt, meta={"mode": "greedy"}))
    for k, prompt in enumerate(prompts):
        # The seed goes into the item's content (gold), so it is part of the item digest and the cache key.
        items.append(Item(id=f"s{k:02d}", context=prompt, gold=f"seed={seed + k}",
                          meta={"mode": "sampled", "seed": seed + k}))
    digest = hashlib.sha256(json.dumps([list(prompts), max_tokens, temperature, seed, MIN_REPEATS,
                                        MIN_LOOP_CHARS]).encode()).hexdigest()[:8]
    return Task(name=TASK_NAME, version=f"1-{digest}", kind=TaskKind.PROBE, items=tuple(items), metrics=METRICS,
                generation=GenerationSpec(until=(), max_tokens=max_tokens, extract=("none",)),
                scorer=DegenerationProbe(max_tokens=max_tokens, temperature=temperature),
                source=f"builtin (assay: {len(prompts)} prompts, greedy and sampled at T={temperature})")
