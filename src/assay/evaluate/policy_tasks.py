"""What a policy asks the evaluation to run besides its tasks, and the probes stage's document.

:func:`probe_tasks` turns the policy's ``probes`` section into probe tasks, :func:`kl_tasks` its ``drift.kl``
into the KL task; both refuse a bad spec before any model is loaded. :func:`probes_document` is the
``assay.probes/1`` document ``assay vet`` saves: the probe tasks' results, their paired comparison, the refusal
summary and the contamination evidence.

    >>> probes = probe_tasks(policy)                 # refusal, degeneration, ... cut to probes.limit
    >>> probes_document(cand_ref, base_ref, cand_results, base_results, policy)["refusal"]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from assay.errors import PolicyError
from assay.evaluate.compare import MetricComparison, compare_results, eval_document
from assay.evaluate.loading import load_tasks
from assay.evaluate.probes import degeneration, possible_contamination, refusal_summary, stability
from assay.evaluate.probes.contamination import contamination_document
from assay.evaluate.runner import TaskResult
from assay.evaluate.tasks import Task, TaskKind
from assay.jsonable import to_jsonable
from assay.model.ref import ModelRef
from assay.policy import Policy


def probe_tasks(policy: Policy) -> list[Task]:
    """The behaviour probe tasks the policy asks for (``probes.run``, ``probes.contamination``), each cut to
    ``probes.limit`` prompts. Raises :class:`~assay.errors.EvalError` for a task that cannot be probed."""
    n = policy.probes.limit
    out: list[Task] = []
    for name in policy.probes.run:
        if n and name == "degeneration":  # each prompt greedy and sampled: keep both halves of the first n
            out.append(degeneration.degeneration_task(prompts=degeneration.PROMPTS[:n]))
        elif n and name == "stability":
            out.append(stability.stability_task(cases=stability.CASES[:n]))
        else:
            out += [replace(t, items=t.items[:n]) if n else t for t in load_tasks(f"builtin:{name}")]
    for spec in policy.probes.contamination:
        out += [replace(t, items=t.items[:n]) if n else t for t in load_tasks(f"contamination:{spec}")]
    return out


def kl_tasks(policy: Policy) -> list[Task]:
    """The KL drift task of ``drift.kl`` (none when off). Raises EvalError for a spec that is not a KL text."""
    if policy.drift.kl is None:
        return []
    tasks = load_tasks(policy.drift.kl)
    bad = [t.name for t in tasks if t.kind is not TaskKind.KL]
    if bad:
        raise PolicyError(f"policy key drift.kl: {policy.drift.kl} is not a KL task (use kl:builtin:reference or "
                          f"kl:PATH)")
    return tasks


def probes_document(cand: ModelRef, base: ModelRef | None, cand_results: Mapping[str, TaskResult],
                    base_results: Mapping[str, TaskResult] | None, policy: Policy, *,
                    comparison: Mapping[str, Mapping[str, MetricComparison]] | None = None) -> dict[str, Any]:
    """The probes stage document: ``tasks``, ``base_tasks``, ``comparison`` (paired, Holm across the probe tasks;
    computed here unless given), ``refusal`` (rates of both sets, candidate against base) and ``contamination``
    (each task's Min-K% gap)."""
    if comparison is None and base_results is not None:
        comparison = compare_results(base_results, cand_results, alpha=policy.probes.alpha)
    doc = eval_document(model=cand.spec, results=cand_results, base=base.spec if base_results is not None and base
                        else None, base_results=base_results, comparison=comparison,
                        settings={"backend": "hf", "dtype": "float32", "limit": policy.probes.limit,
                                  "probes": list(policy.probes.specs()), "alpha": policy.probes.alpha})
    doc["schema"] = "assay.probes/1"
    summary = refusal_summary(comparison, alpha=policy.probes.alpha) if comparison is not None else None
    doc["refusal"] = dataclasses.asdict(summary) if summary is not None else None
    doc["contamination"] = (contamination_document(possible_contamination(comparison, alpha=policy.probes.alpha))
                            if comparison is not None else [])
    out: dict[str, Any] = to_jsonable(doc)
    return out
