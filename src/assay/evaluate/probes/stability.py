"""Stability: the same question gives the same answer, and batching does not change the numbers.

``builtin:stability`` has :data:`CASES` (prompt, continuation). For each item it

- generates greedily :data:`REPEATS` times and checks the texts are identical (``greedy_identical``, 0/1);
- scores ``log P(continuation | prompt)`` alone (one request per backend call: batch size 1) and together with
  every other item of the chunk (one call: the backend batches and pads them), and reports the absolute
  difference (``ll_batch_diff``, lower is better) and whether it is within :data:`TOLERANCE`
  (``batch_invariant``, 0/1).

A deterministic model in fp32 passes both on every item; a backend with non-deterministic kernels, a server that
samples despite temperature 0, or half precision with batch-dependent padding shows up here. Each item's texts
and log-likelihoods are kept in the item log (``extracted``), so a difference can be inspected.

    task = stability_task(repeats=3)
    results = evaluate_model(backend, [task])
    results[TASK_NAME].metrics        # {"greedy_identical": 1.0, "batch_invariant": 1.0, "ll_batch_diff": 0.0}
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

TASK_NAME = "builtin:stability"
REPEATS = 3
"""Greedy generations per prompt."""
MAX_TOKENS = 32
"""Token budget of each generation."""
TOLERANCE = 1e-4
"""Largest absolute log-likelihood difference (nats) between batch size 1 and a batch that counts as the same
(fp32; half precision needs a looser tolerance: ``stability_task(tolerance=...)``)."""

CASES: tuple[tuple[str, str], ...] = (
    ("The capital of France is", " Paris, a city on the river Seine."),
    ("Water freezes at", " zero degrees Celsius."),
    ("Question: What is 12 times 12?\nAnswer:", " 144"),
    ("The quick brown fox", " jumps over the lazy dog."),
    ("In 1969, astronauts", " landed on the Moon for the first time and walked on its surface."),
    ("def add(a, b):\n", "    return a + b\n"),
    ("A good night's sleep", " helps the body recover and the mind remember what it learned during the day."),
    ("Translate to French: cheese =>", " fromage"),
    ("The largest ocean on Earth is", " the Pacific."),
    ("Once upon a time", ", there lived a king who had three daughters and a very old horse."),
    ("To reset the router, press", " and hold the button on the back for ten seconds."),
    ("Shakespeare wrote", " Hamlet."),
    ("The opposite of hot is", " cold."),
    ("Light travels faster than", " sound, which is why we see lightning before we hear thunder."),
    ("My grandmother always said that", " patience is the best teacher."),
    ("Two plus two equals", " four."),
)
"""Prompts and continuations of different lengths (so batching pads them), written for assay."""


class StabilityProbe(ProbeRunner):
    """Repeated greedy generation and batch-size invariance of log-likelihoods."""

    def __init__(self, *, repeats: int = REPEATS, max_tokens: int = MAX_TOKENS, tolerance: float = TOLERANCE) -> None:
        if repeats < 2:
            raise ValueError("stability needs at least 2 repeats")
        self.repeats = repeats
        self.max_tokens = max_tokens
        self.tolerance = tolerance

    def run(self, backend: Backend, task: Task, items: Sequence[Item]) -> list[ItemResult]:
        from assay.evaluate.backends.base import GenerationRequest, LoglikelihoodRequest
        from assay.evaluate.runner import ItemResult

        reqs = [GenerationRequest(prompt=it.context, until=(), max_tokens=self.max_tokens, temperature=0.0)
                for it in items]
        runs = [backend.generate(reqs) for _ in range(self.repeats)]
        ll_reqs = [LoglikelihoodRequest(it.context, str(it.gold)) for it in items]
        batched = backend.loglikelihood(ll_reqs)
        single = [backend.loglikelihood([r])[0] for r in ll_reqs]
        out = []
        for k, item in enumerate(items):
            texts = [run[k] for run in runs]
            identical = all(t == texts[0] for t in texts)
            diff = abs(batched[k].logprob - single[k].logprob)
            extracted = {"ll_batch1": repr(single[k].logprob), "ll_batched": repr(batched[k].logprob),
                         "distinct_generations": str(len(set(texts)))}
            if not identical:
                extracted["generations"] = json.dumps(texts, ensure_ascii=False)
            out.append(ItemResult(id=item.id, prediction=texts[0], extracted=extracted, metrics={
                "greedy_identical": float(identical),
                "batch_invariant": float(diff <= self.tolerance),
                "ll_batch_diff": float(diff)}))
        return out


METRICS = ("greedy_identical", "batch_invariant", "ll_batch_diff")
LOWER_IS_BETTER = ("ll_batch_diff",)


def stability_task(*, cases: Sequence[tuple[str, str]] = CASES, repeats: int = REPEATS, max_tokens: int = MAX_TOKENS,
                   tolerance: float = TOLERANCE) -> Task:
    """``builtin:stability``: repeated greedy generation and batch-size invariance on ``cases``."""
    items = tuple(Item(id=f"st{k:02d}", context=prompt, gold=cont) for k, (prompt, cont) in enumerate(cases))
    digest = hashlib.sha256(json.dumps([list(map(list, cases)), repeats, max_tokens, tolerance]).encode()
                            ).hexdigest()[:8]
    return Task(name=TASK_NAME, version=f"1-{digest}", kind=TaskKind.PROBE, items=items, metrics=METRICS,
                generation=GenerationSpec(until=(), max_tokens=max_tokens, extract=("none",)),
                scorer=StabilityProbe(repeats=repeats, max_tokens=max_tokens, tolerance=tolerance),
                source=f"builtin (assay: {len(items)} prompts, {repeats} greedy repeats, batch 1 vs batched)")
