"""Run tasks on one backend: build prompts, score items, aggregate metrics, with a resumable result cache.

    backend = load_after_scan(resolve("./my-model"))
    results = evaluate_model(backend, load_tasks("tasks/capitals.yaml"), limit=100, cache=ResultCache())
    results["capitals"].metrics        # {"acc": 0.61, "acc_norm": 0.64, "acc_bytes": 0.64}

Scoring follows lm-evaluation-harness:

- multiple choice: each choice is scored as ``target_delimiter + choice`` after the context; ``acc`` is the argmax
  of the log-likelihoods, ``acc_norm`` of log-likelihood / characters of the choice, ``acc_bytes`` of
  log-likelihood / UTF-8 bytes of the choice, ``exact_match`` whether the gold choice is the greedy continuation;
  ``mc2`` (several right answers) the normalised probability mass of the right choices;
- generation: greedy text until a stop string, then each answer filter (``strict`` GSM8K ``#### N``,
  ``flexible`` last number, ``regex:...``, ``exact``, ``none``) and exact match after ``regexes_to_ignore``,
  ``ignore_case`` and ``ignore_punctuation``;
- perplexity: rolling windows over each document; token, word and byte perplexity and bits per byte.

Few-shot examples come before the context: ``description + (example + target_delimiter + answer +
fewshot_delimiter) * k + context``. The ``first_n`` sampler takes the first k of the pool; ``random`` samples k
with a generator seeded by (seed, item id), so an item's prompt does not depend on which other items run;
lm-evaluation-harness's samplers (``lm_eval_default``, ``lm_eval_first_n``) are reproduced draw for draw (see
:func:`fewshot_examples`). A pool item with a rendered ``meta["shot"]`` (lm-evaluation-harness task files) is
shown as that text.
An item's ``meta["description"]`` replaces the task's description (MMLU with several subjects in one file) and its
``meta["fewshot_group"]`` limits the pool to examples of the same group (the subject's dev split). An item with
per-choice :attr:`~assay.evaluate.tasks.Item.contexts` (Winogrande) scores choice ``i`` after
``prefix + contexts[i]``, and shows its gold context when it is a few-shot example.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from assay.errors import EvalError
from assay.evaluate.backends.base import Backend, GenerationRequest, LoglikelihoodRequest
from assay.evaluate.cache import ResultCache, library_versions
from assay.evaluate.filters import exact_match, extract_answer, generation_metric_name
from assay.evaluate.stats import aggregate, bootstrap_stderr, mean_stderr, metric_spec, register_metric
from assay.evaluate.tasks import Item, Task, TaskKind
from assay.progress import NULL_PROGRESS, Progress

#: Items scored per backend call (and written to the cache together): the unit of resumption.
CHUNK_ITEMS = 128

DEFAULT_METRICS: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.MULTIPLE_CHOICE: ("acc", "acc_norm", "acc_bytes"),
    TaskKind.PERPLEXITY: ("token_perplexity", "word_perplexity", "bits_per_byte"),
    TaskKind.LOGLIKELIHOOD: ("perplexity", "acc"),
}

# lm-evaluation-harness's aggregations that are ratios of per-item sums: perplexity of a continuation
# (exp of minus the mean log-likelihood over documents) and binary F1 (2TP / (2TP + FP + FN)).
register_metric("perplexity", higher_is_better=False, kind="ratio", num="logprob", den="docs", transform="exp_neg")
register_metric("f1", higher_is_better=True, kind="ratio", num="f1_num", den="f1_den")


@dataclass(frozen=True)
class ItemResult:
    """What one item scored (one line of ``--log-items``)."""

    id: str
    """The item id (pairs candidate and base)."""
    metrics: Mapping[str, float]
    """Per-item metric values (0/1 for accuracies; log-probability, token/byte/word counts for perplexity)."""
    loglikelihoods: tuple[float, ...] = ()
    """Multiple choice: log-likelihood of each choice."""
    is_greedy: tuple[bool, ...] = ()
    """Multiple choice: whether each choice is the greedy continuation."""
    prediction: int | str | None = None
    """Index of the chosen choice (multiple choice) or the generated text (generation)."""
    extracted: Mapping[str, str] = field(default_factory=dict)
    """Generation: the answer each filter extracted."""


@dataclass(frozen=True)
class TaskResult:
    """A task's scores on one model."""

    task: str
    """Task name."""
    version: str
    """Task version."""
    kind: TaskKind
    """Task kind."""
    n: int
    """Items evaluated."""
    metrics: dict[str, float]
    """Task-level metric values."""
    stderr: dict[str, float]
    """Standard error of each metric (sample standard error of the mean; bootstrap for ratio metrics)."""
    per_item: tuple[ItemResult, ...]
    """Per-item results, in item order."""
    num_fewshot: int = 0
    """Few-shot examples per item."""
    source: str = ""
    """Where the items came from."""
    cached: int = 0
    """Items whose results came from the result cache."""
    tokenizer: str = ""
    """Digest of the tokenizer that produced these results (:attr:`BackendInfo.tokenizer`; empty if unknown)."""

    def values(self, metric: str) -> dict[str, np.ndarray]:
        """Per-item arrays for one metric's keys, in item order (what the statistics consume)."""
        return {k: np.array([float(r.metrics[k]) for r in self.per_item]) for k in metric_spec(metric).keys}


KindRunner = Callable[[Backend, Task, Sequence[Item], Progress], list[ItemResult]]
_KIND_RUNNERS: dict[TaskKind, KindRunner] = {}


def register_kind_runner(kind: TaskKind, runner: KindRunner) -> None:
    """Let another module run a task kind this module does not (e.g. KL drift)."""
    _KIND_RUNNERS[kind] = runner


# --------------------------------------------------------------------------------------------- prompts
def answer_text(task: Task, item: Item) -> str:
    """The answer shown after a few-shot example: the gold choice, or the target text."""
    gold = item.gold
    if isinstance(gold, tuple):
        gold = gold[0] if gold else None
    if isinstance(gold, int) and item.choices:
        return item.choices[gold]
    if isinstance(gold, str):
        return gold
    raise EvalError(f"task {task.name}: few-shot item {item.id} has no answer to show")


def fewshot_examples(task: Task, item: Item) -> list[Item]:
    """The few-shot examples put before ``item``.

    assay's samplers never show an item as its own example: ``first_n`` takes the first k of the pool,
    ``random`` samples k with a generator seeded by (seed, item id). lm-evaluation-harness's samplers are
    reproduced draw for draw: ``lm_eval_default`` is one ``random.Random(fewshot_seed)`` shared by the task's
    items in order, drawing ``sample(pool, k)``, or, when the item may not be its own example
    (:attr:`Task.fewshot_exclude_self`), ``sample(pool, k + 1)`` minus the documents equal to the item, cut to k;
    ``lm_eval_first_n`` takes the first k of the pool minus the item's equals. Equality is that of the
    documents (``meta["doc_key"]``), as lm-evaluation-harness compares dicts.
    """
    k = task.num_fewshot
    if k <= 0:
        return []
    if task.fewshot_sampler == "lm_eval_default":
        draws = _lm_eval_draws(task)
        if item.id not in draws:
            raise EvalError(f"task {task.name}: item {item.id} is not one of the task's items, so lm-evaluation-"
                            f"harness's sampler has no draw for it")
        return [task.fewshot_pool[j] for j in draws[item.id]]
    if task.fewshot_sampler == "lm_eval_first_n":
        key = _doc_key(item)
        pool = [ex for ex in task.fewshot_pool if not (task.fewshot_exclude_self and _doc_key(ex) == key)]
        if len(pool) < k:
            raise EvalError(f"task {task.name}: {k} few-shot examples requested but the few-shot pool has "
                            f"{len(pool)}")
        return pool[:k]
    digest = item.digest()
    pool = [ex for ex in task.fewshot_pool if ex.digest() != digest]
    group = item.meta.get("fewshot_group")
    if group is not None:
        pool = [ex for ex in pool if ex.meta.get("fewshot_group") == group]
    if len(pool) < k:
        where = f" for group {group!r}" if group is not None else ""
        raise EvalError(f"task {task.name}: {k} few-shot examples requested but the few-shot pool{where} has "
                        f"{len(pool)}")
    if task.fewshot_sampler == "first_n":
        return pool[:k]
    if task.fewshot_sampler == "random":
        seed = int(hashlib.sha256(f"{task.fewshot_seed}:{item.id}".encode()).hexdigest()[:16], 16)
        return random.Random(seed).sample(pool, k)
    raise EvalError(f"task {task.name}: unknown few-shot sampler {task.fewshot_sampler!r} (first_n or random)")


def _doc_key(item: Item) -> str:
    return str(item.meta.get("doc_key") or item.digest())


_DRAWS: list[tuple[Task, dict[str, list[int]]]] = []


def _lm_eval_draws(task: Task) -> dict[str, list[int]]:
    """Pool indices lm-evaluation-harness's default sampler draws for each item (all items, in order)."""
    for known, draws in _DRAWS:
        if known is task:
            return draws
    k, n = task.num_fewshot, len(task.fewshot_pool)
    keys = [_doc_key(ex) for ex in task.fewshot_pool]
    rnd = random.Random(task.fewshot_seed)
    draws = {}
    for item in task.items:
        need = k + 1 if task.fewshot_exclude_self else k
        if need > n:
            raise EvalError(f"task {task.name}: {k} few-shot examples requested but the few-shot pool has {n} "
                            f"(lm-evaluation-harness's sampler draws {need})")
        # random.sample picks positions from the population's length alone, so sampling range(n) gives the
        # positions lm-evaluation-harness's sample over the documents gives.
        picked = rnd.sample(range(n), need)
        if task.fewshot_exclude_self:
            key = _doc_key(item)
            picked = [j for j in picked if keys[j] != key][:k]
            if len(picked) < k:  # the pool holds several copies of the item: draw again without any of them
                allowed = [j for j in range(n) if keys[j] != key]
                if len(allowed) < k:
                    raise EvalError(f"task {task.name}: item {item.id} has only {len(allowed)} few-shot examples "
                                    f"other than itself; {k} requested")
                picked = rnd.sample(allowed, k)
        draws[item.id] = picked
    _DRAWS.insert(0, (task, draws))
    del _DRAWS[4:]
    return draws


def fewshot_prefix(task: Task, item: Item) -> str:
    """What comes before an item's own context: its description, then its few-shot examples.

    The description is the item's ``meta["description"]`` when it has one (MMLU with several subjects in one
    file), else the task's; it appears once. A few-shot example with per-choice :attr:`Item.contexts` shows its
    gold choice's context (Winogrande: the sentence with the right option filled in).
    """
    parts = [str(item.meta.get("description", task.description))]
    for ex in fewshot_examples(task, item):
        if "shot" in ex.meta:  # rendered by the task loader (lm-evaluation-harness's few-shot turn)
            parts.append(str(ex.meta["shot"]))
            continue
        shown = ex.context
        if ex.contexts and isinstance(ex.gold, int) and 0 <= ex.gold < len(ex.contexts):
            shown = ex.contexts[ex.gold]
        parts.append(shown + task.target_delimiter + answer_text(task, ex) + task.fewshot_delimiter)
    return "".join(parts)


def build_context(task: Task, item: Item, backend: Backend | None = None) -> str:
    """The prompt of an item: description, few-shot examples, the item's context (chat template if asked)."""
    return _wrap(task, fewshot_prefix(task, item) + item.context, backend)


def build_choice_contexts(task: Task, item: Item, backend: Backend | None = None) -> list[str]:
    """One prompt per choice for an item with per-choice :attr:`Item.contexts` (same prefix before each)."""
    prefix = fewshot_prefix(task, item)
    return [_wrap(task, prefix + c, backend) for c in item.contexts]


def _wrap(task: Task, text: str, backend: Backend | None) -> str:
    # The result is passed on untouched: an openai backend returns a str subclass that routes it to chat.
    if task.use_chat_template and backend is not None:
        return backend.apply_chat_template(text)
    return text


# --------------------------------------------------------------------------------------------- scoring
def score_choices(item: Item, lls: Sequence[float], greedy: Sequence[bool],
                  unconditional: Sequence[float] | None = None) -> dict[str, float]:
    """Per-item multiple-choice metrics from the choices' log-likelihoods, as lm-evaluation-harness defines them.

    ``acc_norm`` and ``acc_bytes`` divide by the length of what ``doc_to_choice`` gives: the choices, or the
    per-choice contexts of an item that has them (Winogrande). ``unconditional`` (each choice's log-likelihood
    after an empty context) adds ``acc_mutual_info``. ``f1_num`` and ``f1_den`` are the per-item parts of the
    binary F1 of the predictions (2TP / (2TP + FP + FN), summed over items).
    """
    ll = np.asarray(lls, dtype=float)
    texts = item.contexts or item.choices
    chars = np.array([float(len(c)) for c in texts])
    nbytes = np.array([float(len(c.encode("utf-8"))) for c in texts])
    pred = int(np.argmax(ll))
    pred_norm = int(np.argmax(ll / chars))
    pred_bytes = int(np.argmax(ll / nbytes))
    gold = item.gold
    out: dict[str, float] = {}
    if isinstance(gold, tuple):
        out["acc"] = float(pred in gold)
        out["acc_norm"] = float(pred_norm in gold)
        out["acc_bytes"] = float(pred_bytes in gold)
        out["exact_match"] = float(any(greedy[g] for g in gold))
        p = np.exp(ll - ll.max())
        out["mc2"] = float(p[list(gold)].sum() / p.sum())
    else:
        assert isinstance(gold, int)
        out["acc"] = float(pred == gold)
        out["acc_norm"] = float(pred_norm == gold)
        out["acc_bytes"] = float(pred_bytes == gold)
        out["exact_match"] = float(bool(greedy[gold]))
        tp2 = 2.0 * float(gold == 1 and pred == 1)
        out["f1_num"] = tp2
        out["f1_den"] = tp2 + float(pred != gold)
    if unconditional is not None:
        mutual = ll - np.asarray(unconditional, dtype=float)
        best = int(np.argmax(mutual))
        out["acc_mutual_info"] = float(best in gold) if isinstance(gold, tuple) else float(best == gold)
    return out


# --------------------------------------------------------------------------------------------- validation
def validate_task(task: Task) -> None:
    """Refuse a task that cannot be scored (no items, labels out of range, duplicate ids)."""
    if not task.items:
        raise EvalError(f"task {task.name} has no items")
    seen: set[str] = set()
    for item in task.items:
        if item.id in seen:
            raise EvalError(f"task {task.name}: item id {item.id!r} appears twice (ids pair candidate and base)")
        seen.add(item.id)
        if task.kind == TaskKind.MULTIPLE_CHOICE:
            _validate_mc_item(task, item)
        elif task.kind == TaskKind.GENERATE and not isinstance(item.gold, str):
            raise EvalError(f"task {task.name}: item {item.id} has no target text")
        elif task.kind == TaskKind.PERPLEXITY and not (item.text or item.context):
            raise EvalError(f"task {task.name}: item {item.id} has no text")
        elif task.kind == TaskKind.LOGLIKELIHOOD and not (isinstance(item.gold, str) and item.gold):
            raise EvalError(f"task {task.name}: item {item.id} has no continuation to score")
    for ex in task.fewshot_pool if task.num_fewshot else ():
        if task.kind == TaskKind.MULTIPLE_CHOICE and "shot" not in ex.meta:  # a rendered shot was checked by its loader
            _validate_mc_item(task, ex)


def _validate_mc_item(task: Task, item: Item) -> None:
    n = len(item.choices)
    if n == 0:
        raise EvalError(f"task {task.name}: item {item.id} has no choices")
    for i, c in enumerate(item.choices):
        if not isinstance(c, str) or c == "":
            raise EvalError(f"task {task.name}: item {item.id} choice {i} is empty")
    if item.contexts and len(item.contexts) != n:
        raise EvalError(f"task {task.name}: item {item.id} has {len(item.contexts)} per-choice contexts for {n} "
                        f"choices")
    golds = item.gold if isinstance(item.gold, tuple) else (item.gold,)
    for g in golds:
        if not isinstance(g, int) or isinstance(g, bool) or not 0 <= g < n:
            raise EvalError(f"task {task.name}: item {item.id} label {g!r} is out of range for {n} choices")
    if not golds:
        raise EvalError(f"task {task.name}: item {item.id} has no right answer")


# --------------------------------------------------------------------------------------------- running
#: The backend request each task kind sends (KL drift reads logits in process and is not listed).
_REQUEST_KIND = {TaskKind.MULTIPLE_CHOICE: "loglikelihood", TaskKind.PERPLEXITY: "loglikelihood_rolling",
                 TaskKind.GENERATE: "generate", TaskKind.PROBE: "generate", TaskKind.LOGLIKELIHOOD: "loglikelihood"}


def evaluate_model(backend: Backend, tasks: Sequence[Task], *, limit: int | None = None,
                   cache: ResultCache | None = None, progress: Progress = NULL_PROGRESS) -> dict[str, TaskResult]:
    """Run every task on ``backend``; results by task name. Cached items are not recomputed.

    Before the first item the backend is asked whether it can serve every task (a server that returns no prompt
    log-probabilities cannot score multiple choice), so a task it cannot run is refused before any work."""
    needs = {_REQUEST_KIND[t.kind] for t in tasks if t.kind in _REQUEST_KIND and not hasattr(t.scorer, "needs")}
    needs |= {n for t in tasks for n in getattr(t.scorer, "needs", ())}  # a probe that names its own requests
    backend.preflight(needs)
    out: dict[str, TaskResult] = {}
    tokenizer = getattr(backend.info, "tokenizer", "")
    for task in tasks:
        if task.name in out:
            raise EvalError(f"task {task.name} is given twice")
        result = evaluate_task(backend, task, limit=limit, cache=cache, progress=progress)
        out[task.name] = replace(result, tokenizer=tokenizer) if tokenizer else result
    return out


def evaluate_task(backend: Backend, task: Task, *, limit: int | None = None, cache: ResultCache | None = None,
                  progress: Progress = NULL_PROGRESS) -> TaskResult:
    """Run one task (see :func:`evaluate_model`)."""
    if limit is not None and limit <= 0:
        raise EvalError(f"--limit must be a positive number of items (got {limit})")
    validate_task(task)
    items = list(task.items[:limit] if limit else task.items)
    label = task.name
    progress.start(label, total=len(items))
    if task.kind in _KIND_RUNNERS and task.kind not in (TaskKind.MULTIPLE_CHOICE, TaskKind.GENERATE,
                                                        TaskKind.PERPLEXITY, TaskKind.LOGLIKELIHOOD):
        ran = _KIND_RUNNERS[task.kind](backend, task, items, progress)
        progress.finish(label)
        return _aggregate(task, ran, cached=0)
    if task.kind == TaskKind.KL:
        raise EvalError(f"task {task.name} measures KL drift, which needs a base model and the KL module "
                        f"(assay.evaluate.kl)")
    renders = [_render(task, item, backend) for item in items]
    keys = [_cache_key(backend, task, item, r) for item, r in zip(items, renders, strict=True)]
    found = cache.get_many(keys) if cache is not None else {}
    results: list[ItemResult | None] = []
    for key in keys:
        hit = found.get(key)
        results.append(_item_from_json(hit) if hit is not None else None)
    n_cached = sum(r is not None for r in results)
    if n_cached:
        progress.advance(label, n_cached)
    todo = [i for i, r in enumerate(results) if r is None]
    for start in range(0, len(todo), CHUNK_ITEMS):
        chunk = todo[start:start + CHUNK_ITEMS]
        scored = _score(backend, task, [items[i] for i in chunk], [renders[i] for i in chunk])
        for i, res in zip(chunk, scored, strict=True):
            results[i] = res
        if cache is not None:
            cache.put_many({keys[i]: _item_to_json(res) for i, res in zip(chunk, scored, strict=True)})
        progress.advance(label, len(chunk))
    progress.finish(label)
    return _aggregate(task, [r for r in results if r is not None], cached=n_cached)


def _render(task: Task, item: Item, backend: Backend) -> dict[str, Any]:
    if task.kind == TaskKind.PERPLEXITY:
        return {"text": item.text if item.text is not None else item.context}
    if task.kind == TaskKind.MULTIPLE_CHOICE:
        delim = "" if task.use_chat_template else task.target_delimiter
        continuations = [delim + c for c in item.choices]
        if item.contexts:
            return {"contexts": build_choice_contexts(task, item, backend), "continuations": continuations}
        return {"context": build_context(task, item, backend), "continuations": continuations}
    if task.kind == TaskKind.LOGLIKELIHOOD:
        return {"context": build_context(task, item, backend), "continuation": str(item.gold)}
    context = build_context(task, item, backend)
    return {"prompt": context, "until": list(task.generation.until), "max_tokens": task.generation.max_tokens}


def _score(backend: Backend, task: Task, items: list[Item], renders: list[dict[str, Any]]) -> list[ItemResult]:
    if task.kind == TaskKind.MULTIPLE_CHOICE:
        # Choice i is scored after its own context when the item has one per choice (Winogrande), else all
        # choices share the item's context (and the backend runs that context once for all of them).
        # acc_mutual_info also scores each choice after an empty context (lm-evaluation-harness's "unconditional").
        mutual = "acc_mutual_info" in task.metrics
        reqs = []
        for r in renders:
            contexts = r.get("contexts") or [r["context"]] * len(r["continuations"])
            reqs += [LoglikelihoodRequest(ctx, c) for ctx, c in zip(contexts, r["continuations"], strict=True)]
            if mutual:
                reqs += [LoglikelihoodRequest("", c) for c in r["continuations"]]
        res = backend.loglikelihood(reqs)
        out, pos = [], 0
        for item in items:
            n = len(item.choices)
            chunk = res[pos:pos + n]
            uncond = [x.logprob for x in res[pos + n:pos + 2 * n]] if mutual else None
            pos += 2 * n if mutual else n
            lls = tuple(r.logprob for r in chunk)
            greedy = tuple(r.is_greedy for r in chunk)
            metrics = score_choices(item, lls, greedy, uncond)
            if task.process_results is not None:
                raw = [(x.logprob, x.is_greedy) for x in res[pos - (2 * n if mutual else n):pos]]
                metrics = {**metrics, **_task_code_metrics(task, item, raw)}
            out.append(ItemResult(id=item.id, metrics=metrics, loglikelihoods=lls, is_greedy=greedy,
                                  prediction=int(np.argmax(lls))))
        return out
    if task.kind == TaskKind.LOGLIKELIHOOD:
        res = backend.loglikelihood([LoglikelihoodRequest(r["context"], r["continuation"]) for r in renders])
        out = []
        for item, x in zip(items, res, strict=True):
            metrics = {"logprob": x.logprob, "docs": 1.0, "acc": float(x.is_greedy)}
            if task.process_results is not None:
                metrics.update(_task_code_metrics(task, item, [(x.logprob, x.is_greedy)]))
            out.append(ItemResult(id=item.id, metrics=metrics, loglikelihoods=(x.logprob,), is_greedy=(x.is_greedy,)))
        return out
    if task.kind == TaskKind.PERPLEXITY:
        rolled = backend.loglikelihood_rolling([r["text"] for r in renders])
        out = []
        for item, r, rr in zip(items, renders, rolled, strict=True):
            text = r["text"]
            metrics = {"logprob": rr.logprob, "tokens": float(rr.n_tokens),
                       "bytes": float(len(text.encode("utf-8"))), "words": float(len(re.split(r"\s+", text)))}
            if task.process_results is not None:
                metrics.update(_task_code_metrics(task, item, [rr.logprob]))
            out.append(ItemResult(id=item.id, metrics=metrics))
        return out
    if task.kind == TaskKind.PROBE and callable(getattr(task.scorer, "run", None)):
        # Probes that drive the backend themselves (sampling, repeats, token log-probs): assay.evaluate.probes.
        return list(task.scorer.run(backend, task, items))  # type: ignore[union-attr]
    if task.kind in (TaskKind.GENERATE, TaskKind.PROBE):
        spec = task.generation
        texts = backend.generate([GenerationRequest(prompt=r["prompt"], until=spec.until, max_tokens=spec.max_tokens)
                                  for r in renders])
        out = []
        for item, text in zip(items, texts, strict=True):
            if task.kind == TaskKind.PROBE:
                if task.scorer is None:
                    raise EvalError(f"probe task {task.name} has no scorer")
                metrics = {k: float(v) for k, v in task.scorer(item, text).items()}
                out.append(ItemResult(id=item.id, metrics=metrics, prediction=text))
                continue
            metrics, extracted = {}, {}
            for i, how in enumerate(spec.extract):
                name = generation_metric_name(how, i, spec.extract)
                answer = extract_answer(text, how)
                extracted[name] = answer
                metrics[name] = exact_match(answer, str(item.gold), ignore_case=spec.ignore_case,
                                            ignore_punctuation=spec.ignore_punctuation,
                                            regexes_to_ignore=spec.regexes_to_ignore)
            out.append(ItemResult(id=item.id, metrics=metrics, prediction=text, extracted=extracted))
        return out
    raise EvalError(f"task {task.name}: kind {task.kind.value} cannot be run by this backend")


#: What a ``process_results`` pair ``(log-likelihood, count)`` counts, by metric (lm-evaluation-harness's
#: weighted_perplexity and bits_per_byte aggregations).
_PAIR_COUNTS = {"word_perplexity": "words", "byte_perplexity": "bytes", "bits_per_byte": "bytes",
                "perplexity": "docs"}


def _task_code_metrics(task: Task, item: Item, raw: Any) -> dict[str, float]:
    """Per-item metrics from the task file's own ``process_results`` (allowed with ``--allow-task-code``)."""
    assert task.process_results is not None
    try:
        got = task.process_results(item.meta["doc"], raw)
    except Exception as exc:  # noqa: BLE001 - the task author's code; report it as the task's failure
        raise EvalError(f"task {task.name}: its process_results failed on item {item.id}: "
                        f"{type(exc).__name__}: {exc}") from exc
    out: dict[str, float] = {}
    for name, value in dict(got).items():
        if isinstance(value, tuple | list) and len(value) == 2 and name in _PAIR_COUNTS:
            out["logprob"], out[_PAIR_COUNTS[name]] = float(value[0]), float(value[1])
        elif isinstance(value, bool | int | float | np.number):
            out[str(name)] = float(value)
        else:
            raise EvalError(f"task {task.name}: process_results gives {name} = {value!r} at item {item.id}, which "
                            f"assay cannot aggregate (a number, or (log-likelihood, count) for perplexities)")
    return out


def task_metrics(task: Task, sample: ItemResult | None = None) -> tuple[str, ...]:
    """The metric names a task reports (its own list, else its kind's defaults)."""
    if task.metrics:
        return task.metrics
    if task.kind == TaskKind.MULTIPLE_CHOICE:
        base = DEFAULT_METRICS[task.kind]
        if any(isinstance(it.gold, tuple) for it in task.items):
            base = (*base, "mc2")
        return base
    if task.kind in DEFAULT_METRICS:
        return DEFAULT_METRICS[task.kind]
    if task.kind == TaskKind.GENERATE:
        ex = task.generation.extract
        return tuple(generation_metric_name(h, i, ex) for i, h in enumerate(ex))
    return tuple(sample.metrics) if sample is not None else ()


def _aggregate(task: Task, results: list[ItemResult], *, cached: int) -> TaskResult:
    names = task_metrics(task, results[0] if results else None)
    metrics: dict[str, float] = {}
    stderr: dict[str, float] = {}
    for name in names:
        spec = metric_spec(name)
        if results and any(k not in results[0].metrics for k in spec.keys):
            raise EvalError(f"task {task.name}: metric {name!r} is not computed for {task.kind.value} tasks")
        vals = {k: np.array([float(r.metrics[k]) for r in results]) for k in spec.keys}
        metrics[name] = aggregate(spec, vals)
        stderr[name] = mean_stderr(vals[name]) if spec.kind == "mean" else bootstrap_stderr(spec, vals)
    return TaskResult(task=task.name, version=task.version, kind=task.kind, n=len(results), metrics=metrics,
                      stderr=stderr, per_item=tuple(results), num_fewshot=task.num_fewshot, source=task.source,
                      cached=cached)


# --------------------------------------------------------------------------------------------- cache glue
#: Bump when scoring code changes in a way that changes cached numbers (2: model identity covers config,
#: tokenizer, chat template and adapter config; library versions in the key).
SCORING_VERSION = "2"


def _cache_key(backend: Backend, task: Task, item: Item, render: Mapping[str, Any]) -> str:
    info = backend.info
    spec = task.generation
    payload = {
        "scoring": SCORING_VERSION, "backend": info.backend, "model": info.model_id, "settings": info.settings,
        "libraries": library_versions(),
        "task": task.name, "version": task.version, "kind": task.kind.value, "item": item.digest(),
        "render": render, "metrics": list(task.metrics),
        "generation": [list(spec.extract), spec.ignore_case, spec.ignore_punctuation, list(spec.regexes_to_ignore)],
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str).encode()).hexdigest()


def _item_to_json(r: ItemResult) -> str:
    return json.dumps({"id": r.id, "metrics": dict(r.metrics), "loglikelihoods": list(r.loglikelihoods),
                       "is_greedy": list(r.is_greedy), "prediction": r.prediction, "extracted": dict(r.extracted)})


def _item_from_json(text: str) -> ItemResult:
    d = json.loads(text)
    return ItemResult(id=d["id"], metrics=d["metrics"], loglikelihoods=tuple(d["loglikelihoods"]),
                      is_greedy=tuple(d["is_greedy"]), prediction=d["prediction"], extracted=d["extracted"])


def item_log_record(task: str, r: ItemResult) -> dict[str, Any]:
    """One ``--log-items`` JSON line."""
    return {"task": task, "id": r.id, "metrics": dict(r.metrics), "loglikelihoods": list(r.loglikelihoods),
            "is_greedy": list(r.is_greedy), "prediction": r.prediction, "extracted": dict(r.extracted)}
