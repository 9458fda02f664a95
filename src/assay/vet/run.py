"""``run_vet``: the bad input refused up front, then the loop over :data:`~assay.vet.stages.STAGE_TABLE`, one
verdict and, with ``out_dir``, the reports written atomically.

    result = run_vet("./my-finetune", base="./base-model", policy=default_policy(), out_dir=Path("vet-out"))
    result.exit_code()     # 0 PASS/WARN, 1 FAIL, 2 no verdict

Each stage's outcome is a progress note (``lineage: ran``, ``evaluation: skipped: ...``).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from assay.deploy.training_log import read_training_log
from assay.environment import environment
from assay.evaluate.policy_tasks import kl_tasks, probe_tasks
from assay.model.ref import ModelRef, resolve
from assay.policy import CostPolicy, Policy
from assay.progress import NULL_PROGRESS, Progress
from assay.report.io import check_out_dir, write_reports
from assay.verdict import StageOutcome, decide
from assay.vet.context import VetContext, VetSettings, VetState
from assay.vet.document import VetResult, vet_document
from assay.vet.inputs import _check_trusted_keys, _load_tasks, _require_model
from assay.vet.stages import STAGE_TABLE, STAGES


def run_vet(candidate: str, *, base: str | None = None, policy: Policy, tasks: Sequence[str] | None = None,
            limit: int | None = None, out_dir: Path | None = None, revision: str | None = None,
            formats: Sequence[str] = ("json", "html", "md", "sarif", "cyclonedx"),
            progress: Progress = NULL_PROGRESS, bench: bool | None = None,
            cost: CostPolicy | None = None, download: bool = False) -> VetResult:
    """Vet ``candidate`` (against ``base``, else the card's ``base_model`` when cached) under ``policy``.

    ``tasks`` and ``limit`` override the policy's evaluation tasks and item limit; ``bench`` overrides
    ``deploy.bench`` and ``cost`` the policy's cost section (the document's policy shows what was applied). With
    ``out_dir``, the reports in ``formats`` are written there atomically (see
    :func:`assay.report.io.write_reports`). Raises :class:`AssayError` for bad input (unresolvable candidate or
    base, a candidate that is not a model, an unwritable ``out_dir``).
    """
    if bench is not None and bench != policy.deploy.bench:
        policy = replace(policy, deploy=replace(policy.deploy, bench=bench))
    if cost is not None:
        policy = replace(policy, cost=cost)
    started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    if out_dir is not None:
        check_out_dir(out_dir)
    cand_ref = resolve(candidate, revision=revision, download=download)
    _require_model(cand_ref, "candidate")
    base_ref: ModelRef | None = None
    if base is not None:
        base_ref = resolve(base, download=download)
        _require_model(base_ref, "base")
    # Bad input is refused here, before any scan or model load: evaluation, probe and KL task specs, trusted keys.
    specs = tuple(tasks) if tasks else tuple(policy.evaluation.tasks)
    settings = VetSettings(tasks=specs, eval_tasks=tuple(_load_tasks(specs)) if specs else (),
                           limit=limit if limit is not None else policy.evaluation.limit,
                           probes=tuple(probe_tasks(policy)) if policy.probes.specs() else (),
                           kl=tuple(kl_tasks(policy)))
    _check_trusted_keys(policy)
    ctx = VetContext(candidate=cand_ref, policy=policy, settings=settings, progress=progress,
                     state=VetState(base=base_ref, base_source="--base"))

    progress.start("vet", total=len(STAGE_TABLE))
    outcomes: dict[str, StageOutcome] = {}
    for stage in STAGE_TABLE:
        outcome = stage.run(replace(ctx, outcomes=MappingProxyType(dict(outcomes))))
        outcomes[outcome.name] = outcome
        progress.advance("vet")
        state = outcome.status.value if outcome.reason is None else f"{outcome.status.value}: {outcome.reason}"
        progress.note(f"{outcome.name}: {state}")
    progress.finish("vet")

    base_ref, base_source = ctx.state.base, ctx.state.base_source
    if base_ref is None and base_source == "--base":
        base_source = "none: no base given"
    stages = tuple(outcomes[n] for n in STAGES if n in outcomes)
    result = VetResult(candidate=cand_ref, base=base_ref, base_source=base_source, policy=policy, stages=stages,
                       verdict=decide({s.name: s for s in stages}, policy), training=read_training_log(cand_ref),
                       environment=environment(), started_at=started, seconds=round(time.perf_counter() - t0, 3))
    if out_dir is not None:
        write_reports(vet_document(result), out_dir, formats=formats)
    return result
