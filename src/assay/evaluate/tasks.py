"""Task kinds and the data model every suite, loader and backend shares.

A :class:`Task` is a named, versioned list of :class:`Item` s of one :class:`TaskKind`. Loaders (task YAMLs,
built-in suites, standard benchmark files) produce tasks; the runner turns items into backend requests and
scores them. The task version is part of the result-cache key, so change it whenever prompts or items change.

    task = Task(name="capitals", version="1", kind=TaskKind.MULTIPLE_CHOICE,
                items=(Item(id="0", context="Q: Capital of France?\\nA:", choices=("Paris", "Rome"), gold=0),))

Tasks are named on the command line by a *spec*, resolved by :func:`assay.evaluate.loading.load_tasks`: a task
YAML file (assay's own format or an lm-evaluation-harness task YAML over local files, see
:mod:`assay.evaluate.taskfile`), or a registered suite ``PREFIX[:ARG]`` (``builtin:knowledge``, ``gsm8k:./data``...).
This module holds the registry: suites register themselves with :func:`register_suite` (a suite whose argument is
itself a spec, ``contamination:builtin:knowledge``, with :func:`register_wrapping_suite`) when
:mod:`assay.evaluate.suites` is imported; it imports no loader.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any


class TaskKind(enum.StrEnum):
    """How a task's items are run and scored."""

    MULTIPLE_CHOICE = "multiple_choice"
    """Log-likelihood of each choice after the context; metrics acc, acc_norm, acc_bytes (and mc2)."""
    GENERATE = "generate"
    """Greedy generation, answer extraction, exact match."""
    PERPLEXITY = "perplexity"
    """Rolling log-likelihood of whole documents; token perplexity, word perplexity, bits per byte."""
    LOGLIKELIHOOD = "loglikelihood"
    """Log-likelihood of one continuation (the item's ``gold`` text) after the context (LAMBADA): ``perplexity``
    (exp of minus the mean log-likelihood) and ``acc`` (the continuation is the greedy one)."""
    KL = "kl"
    """Per-token KL divergence of the candidate's next-token distribution from the base's (needs a base)."""
    PROBE = "probe"
    """Behaviour probe: generation scored by :attr:`Task.scorer` (refusal, degeneration, stability)."""


@dataclass(frozen=True)
class Item:
    """One evaluation item."""

    id: str
    """Stable id within its task (used to pair candidate and base, and in the cache key)."""
    context: str = ""
    """The prompt, without few-shot examples and without the target delimiter."""
    choices: tuple[str, ...] = ()
    """Answer choices for multiple choice, without the target delimiter."""
    gold: int | tuple[int, ...] | str | None = None
    """Index of the right choice; a tuple of right indices (TruthfulQA MC2); or the target text (generation, and
    the scored continuation of a log-likelihood item)."""
    text: str | None = None
    """The whole document for perplexity and KL items."""
    meta: Mapping[str, Any] = field(default_factory=dict)
    """Anything else worth keeping in the item log (subject, source, ...)."""
    contexts: tuple[str, ...] = ()
    """Multiple choice: one context per choice; when set, choice ``i`` is scored after ``contexts[i]`` instead of
    :attr:`context` (Winogrande's partial scoring: the option fills the blank, the rest of the sentence is the
    same continuation for every choice)."""

    def digest(self) -> str:
        """Content hash of the item (part of the result-cache key)."""
        fields: list[Any] = [self.id, self.context, list(self.choices),
                             list(self.gold) if isinstance(self.gold, tuple) else self.gold, self.text]
        if self.contexts:  # only when set, so the digests of every other item stay as they were
            fields.append(list(self.contexts))
        payload = json.dumps(fields, ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class GenerationSpec:
    """How a generation task generates and extracts its answer."""

    until: tuple[str, ...] = ("\n\n",)
    """Stop strings."""
    max_tokens: int = 256
    """Token budget."""
    extract: tuple[str, ...] = ("exact",)
    """Answer filters, each giving one exact-match metric: ``exact`` (strip), ``strict`` (GSM8K ``#### N``),
    ``flexible`` (last number in the text), or ``regex:<pattern>`` (first group of the first match), or ``none``
    (the raw generated text, as lm-evaluation-harness compares it when a task has no filter)."""
    ignore_case: bool = False
    """Exact match ignores case (lm-evaluation-harness ``ignore_case``)."""
    ignore_punctuation: bool = False
    """Exact match ignores ASCII punctuation (``ignore_punctuation``)."""
    regexes_to_ignore: tuple[str, ...] = ()
    """Patterns removed from both the answer and the target before comparing (``regexes_to_ignore``)."""


@dataclass(frozen=True)
class Task:
    """A named, versioned list of items of one kind."""

    name: str
    """Display and result key, e.g. ``builtin:knowledge`` or ``gsm8k``."""
    version: str
    """Bump when items or prompts change (part of the cache key)."""
    kind: TaskKind
    """How items are run and scored."""
    items: tuple[Item, ...]
    """The evaluated items."""
    fewshot_pool: tuple[Item, ...] = ()
    """Items to draw few-shot examples from (a train/dev split), never the evaluated item itself."""
    num_fewshot: int = 0
    """Few-shot examples per item."""
    fewshot_sampler: str = "first_n"
    """``first_n`` or ``random`` (seeded by :attr:`fewshot_seed` and the item id), or lm-evaluation-harness's
    samplers: ``lm_eval_default`` (one ``random.Random(fewshot_seed)`` drawing for every item in order) and
    ``lm_eval_first_n`` (see :func:`assay.evaluate.runner.fewshot_examples`)."""
    fewshot_seed: int = 1234
    """Seed for the random few-shot samplers."""
    fewshot_exclude_self: bool = True
    """Whether an item is never its own few-shot example. lm-evaluation-harness excludes it only when the few-shot
    split is the evaluated split; its tasks carry that rule here."""
    target_delimiter: str = " "
    """Put between context and answer (lm-evaluation-harness's ``target_delimiter``)."""
    fewshot_delimiter: str = "\n\n"
    """Put between few-shot examples (lm-evaluation-harness's ``fewshot_delimiter``)."""
    description: str = ""
    """Text put before the first example (lm-evaluation-harness's ``description``)."""
    metrics: tuple[str, ...] = ()
    """Metric names to report; empty means the kind's defaults."""
    generation: GenerationSpec = field(default_factory=GenerationSpec)
    """Generation settings (GENERATE and PROBE kinds)."""
    use_chat_template: bool = False
    """Wrap prompts in the model's chat template (generation and probes)."""
    scorer: Callable[[Item, str], Mapping[str, float]] | None = None
    """PROBE kind: per-item metrics from the generated text."""
    source: str = ""
    """Where the items came from (file path and digest, or ``builtin``), for the report."""
    process_results: Callable[[Mapping[str, Any], Any], Mapping[str, Any]] | None = None
    """A task file's own ``process_results`` (run only with ``--allow-task-code``): per-item metrics from the
    item's document (``meta["doc"]``) and its raw results, as lm-evaluation-harness calls it."""
    notes: tuple[str, ...] = ()
    """What the user should know about how the task was read (fields ignored, lm-evaluation-harness quirks)."""
    num_fewshot_fixed: bool = False
    """The task file sets ``num_fewshot: 0``, which lm-evaluation-harness never overrides with ``--num-fewshot``."""


SuiteLoader = Callable[[str | None], "Task | list[Task]"]
SpecLoader = Callable[[str], "list[Task]"]
"""Resolves a task spec to its tasks (:func:`assay.evaluate.loading.load_tasks`)."""
WrappingSuiteLoader = Callable[[str | None, SpecLoader], "Task | list[Task]"]
_SUITES: dict[str, SuiteLoader] = {}
_WRAPPING_SUITES: dict[str, WrappingSuiteLoader] = {}


def register_suite(prefix: str, loader: SuiteLoader) -> None:
    """Make ``PREFIX`` and ``PREFIX:ARG`` task specs resolve through ``loader(ARG or None)``.

    Used by :mod:`assay.evaluate.suites` (``register_suite("gsm8k", load_gsm8k)``). A prefix is registered once;
    registering it again replaces the loader (so reloading a module is harmless).
    """
    _check_prefix(prefix)
    _WRAPPING_SUITES.pop(prefix, None)
    _SUITES[prefix] = loader


def register_wrapping_suite(prefix: str, loader: WrappingSuiteLoader) -> None:
    """Like :func:`register_suite`, for a suite whose argument is itself a task spec: ``PREFIX:SPEC`` resolves
    through ``loader(SPEC or None, load)``, where ``load`` resolves a spec to its tasks (``contamination:SPEC``)."""
    _check_prefix(prefix)
    _SUITES.pop(prefix, None)
    _WRAPPING_SUITES[prefix] = loader


def _check_prefix(prefix: str) -> None:
    if not prefix or ":" in prefix:
        raise ValueError(f"suite prefix must be non-empty and contain no ':' (got {prefix!r})")


def suite_prefixes() -> list[str]:
    """Every prefix registered so far, sorted."""
    return sorted({*_SUITES, *_WRAPPING_SUITES})


def suite_loader(prefix: str, load: SpecLoader) -> SuiteLoader | None:
    """The loader registered for ``prefix`` (a wrapping suite's resolves inner specs with ``load``), or None."""
    if prefix in _SUITES:
        return _SUITES[prefix]
    wrapping = _WRAPPING_SUITES.get(prefix)
    if wrapping is None:
        return None
    return lambda arg: wrapping(arg, load)


def with_num_fewshot(task: Task, num_fewshot: int | None) -> Task:
    """``task`` with its few-shot count set as ``--num-fewshot`` sets it.

    As in lm-evaluation-harness, a task file that says ``num_fewshot: 0`` keeps 0 (:attr:`Task.num_fewshot_fixed`,
    with a note). A task without a few-shot pool draws from its own items (never the item itself).
    """
    if num_fewshot is None or num_fewshot == task.num_fewshot:
        return task
    if task.num_fewshot_fixed:
        note = (f"num_fewshot: 0 in the task file wins over --num-fewshot {num_fewshot} (as in "
                f"lm-evaluation-harness)")
        return replace(task, notes=(*task.notes, note))
    return replace(task, num_fewshot=num_fewshot,
                   fewshot_pool=task.fewshot_pool or (task.items if num_fewshot else ()))
