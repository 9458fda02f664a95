"""The demo run: vet every zoo entry against the base (after evaluating them ahead in worker processes) and write
one HTML report with a leaderboard and the ``assay.demo/1`` document (:func:`run_demo`)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.demo.bundled import real_base
from assay.demo.task import DOMAIN_TASK
from assay.demo.training import Scale
from assay.demo.zoo import ZooEntry, build_demo_zoo, domain_task_file
from assay.errors import AssayError
from assay.progress import NULL_PROGRESS, Progress

DEMO_SCHEMA = "assay.demo/1"
DEFAULT_LIMIT = 100
"""Items per evaluation task in the demo (enough for the effects to be significant, small enough for a CPU)."""
KNOWLEDGE_TASK = "builtin:knowledge"


@dataclass(frozen=True)
class DemoModel:
    """One zoo entry after its vet."""

    entry: ZooEntry
    """The checkpoint and what it really is."""
    verdict: str
    """PASS, WARN, FAIL or NONE (NONE also when the vet itself could not run)."""
    reasons: tuple[Mapping[str, Any], ...]
    """The verdict's reasons (``rule``, ``stage``, ``message``, ``evidence``, ``level``)."""
    relation: str | None
    """Lineage relation to the base, when lineage ran."""
    domain: Mapping[str, Any] | None
    """Comparison of the domain task's accuracy (``base``, ``candidate``, ``delta``, ``ci``, ``p``)."""
    knowledge: Mapping[str, Any] | None
    """Comparison of ``builtin:knowledge`` accuracy."""
    as_expected: bool
    """The verdict is the expected one and, for a FAIL, the expected rule is among its reasons."""
    report: Path | None
    """The model's own ``assay.vet/1`` JSON file."""
    seconds: float
    """Wall time of this vet."""
    document: Mapping[str, Any] | None
    """The full ``assay.vet/1`` document (None when the vet could not run)."""


@dataclass(frozen=True)
class DemoResult:
    """Everything ``assay demo`` did."""

    base: Path
    """The base model folder (the converted SmolLM2-135M-Instruct)."""
    zoo: Path
    """The zoo folder."""
    task_file: Path
    """The domain task YAML."""
    models: tuple[DemoModel, ...]
    """One per zoo entry, in zoo order."""
    report: Path
    """The HTML report: leaderboard and a section per model."""
    limit: int | None
    """Items per evaluation task."""
    seconds: float
    """Wall time of the whole demo (conversion and zoo building included)."""

    @property
    def all_as_expected(self) -> bool:
        """Every verdict came out as expected."""
        return all(m.as_expected for m in self.models)


def demo_policy(task_file: Path, *, limit: int | None = DEFAULT_LIMIT) -> Any:
    """The default policy, plus the domain task, which every candidate must improve significantly."""
    from dataclasses import replace

    from assay.policy import default_policy

    policy = default_policy()
    evaluation = replace(policy.evaluation, tasks=(*policy.evaluation.tasks, str(task_file)),
                         must_improve=(DOMAIN_TASK,), limit=limit)
    return replace(policy, evaluation=evaluation, source=f"default + {DOMAIN_TASK} must improve (assay demo)")


def _evaluate_ahead(path: str, task_file: str, limit: int | None) -> str:
    """In a worker process: scan one model as ``vet`` scans it and, only when it scanned safe, run the demo's
    evaluation tasks on it with one thread, into the result cache ``vet`` reads. Returns what happened (one line).
    """
    from assay.evaluate.backends.hf import HFBackend
    from assay.evaluate.cache import ResultCache
    from assay.evaluate.loading import load_tasks
    from assay.evaluate.runner import evaluate_model
    from assay.model.ref import resolve
    from assay.scan import Severity, scan_model

    policy = demo_policy(Path(task_file), limit=limit)
    ref = resolve(path)
    report = scan_model(ref, fail_on=Severity(policy.scan.fail_on), allow_globals=list(policy.scan.allow_globals),
                        allow_remote_code=policy.scan.allow_remote_code)
    if report.verdict != "safe":
        return f"{ref.name}: scanned {report.verdict}, not loaded"
    tasks = [t for spec in policy.evaluation.tasks for t in load_tasks(spec)]
    cache = ResultCache()
    backend = HFBackend.from_ref(ref, scanned=report, dtype="float32", threads=1, lazy=True)
    try:
        evaluate_model(backend, tasks, limit=policy.evaluation.limit, cache=cache)
    finally:
        backend.close()
        cache.close()
    return f"{ref.name}: evaluated"


def evaluate_ahead(models: Sequence[Path], task_file: Path, *, limit: int | None, workers: int,
                   progress: Progress = NULL_PROGRESS) -> None:
    """Fill the result cache for ``models`` with ``workers`` single-threaded processes, so that the vets that
    follow read every model's results instead of computing them one model at a time.

    Measured on two quiet cores: one evaluation process ran 1.49x faster with two threads than with one (the
    threads wait on each other around every small matrix product), while two one-thread processes do twice the
    work of one. Each worker scans its model first and loads it only when it scanned safe. A model whose tensors
    are those of an earlier one (the same weights root, e.g. a re-sharded re-upload) is held back until the
    others are done, so it finds their results in the cache and is never loaded. A worker that fails changes
    nothing but the time: the vet computes what is missing and reports any error itself.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    first, later = _same_weights_last(models)
    label = f"demo: evaluating {len(models)} models ahead in {workers} processes"
    progress.start(label, total=len(models))
    # spawn, not fork: the parent has torch's thread pools (and possibly a model) loaded
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for group in (first, later):
            futures = {pool.submit(_evaluate_ahead, str(m), str(task_file), limit): m for m in group}
            for future in as_completed(futures):
                try:
                    progress.note(future.result())
                except Exception as exc:  # noqa: BLE001 - the vet that follows computes it and reports any error
                    progress.note(f"{futures[future].name}: not evaluated ahead ({type(exc).__name__}); "
                                  "the vet will")
                progress.advance(label)
    progress.finish(label)


def _same_weights_last(models: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """``models`` split into those with weights not seen before (in order) and those whose weights root (the digest
    over every tensor's name, dtype, shape and bytes) equals an earlier model's. Only tensor headers and bytes are
    read; a model whose tensors cannot be read that way (a pickle) counts as new."""
    from assay.model.ref import resolve
    from assay.provenance.manifest import weights_root

    seen: set[str] = set()
    first: list[Path] = []
    later: list[Path] = []
    for m in models:
        try:
            root = weights_root(resolve(str(m)))
        except (AssayError, OSError):
            root = None
        if root is not None and root in seen:
            later.append(m)
        else:
            first.append(m)
            if root is not None:
                seen.add(root)
    return first, later


def _metric(doc: Mapping[str, Any] | None, task: str, metric: str = "acc") -> Mapping[str, Any] | None:
    comparison = (doc or {}).get("comparison")
    entry = ((comparison or {}).get(task) or {}).get(metric) if isinstance(comparison, Mapping) else None
    if not isinstance(entry, Mapping):
        return None
    return {k: entry.get(k) for k in ("base", "candidate", "delta", "ci", "p", "p_holm") if k in entry}


def _judge(entry: ZooEntry, verdict: str, reasons: Sequence[Mapping[str, Any]]) -> bool:
    if verdict != entry.expected:
        return False
    if entry.expected_rule is None:
        return True
    return any(r.get("rule") == entry.expected_rule and r.get("level") == "fail" for r in reasons)


def vet_entry(entry: ZooEntry, base: Path, policy: Any, *, out_dir: Path,
              progress: Progress = NULL_PROGRESS) -> DemoModel:
    """Vet one zoo entry against ``base``; writes its JSON and HTML report into ``out_dir``."""
    from assay.vet import run_vet, vet_document

    t0 = time.perf_counter()
    try:
        result = run_vet(str(entry.path), base=str(base), policy=policy, out_dir=out_dir, formats=("json", "html"),
                         progress=progress)
    except AssayError as exc:
        reason = {"rule": "demo.vet", "stage": "vet", "message": exc.diagnostics(), "evidence": "",
                  "level": "undecided"}
        return DemoModel(entry, "NONE", (reason,), None, None, None, False, None,
                         round(time.perf_counter() - t0, 3), None)
    doc = vet_document(result)
    reasons = tuple(dict(r) for r in doc.get("reasons") or [])
    lineage = doc.get("lineage") if isinstance(doc.get("lineage"), Mapping) else None
    report = out_dir / "vet.json"
    return DemoModel(entry=entry, verdict=str(doc.get("verdict")), reasons=reasons,
                     relation=(lineage or {}).get("relation"), domain=_metric(doc, DOMAIN_TASK),
                     knowledge=_metric(doc, KNOWLEDGE_TASK),
                     as_expected=_judge(entry, str(doc.get("verdict")), reasons),
                     report=report if report.is_file() else None, seconds=round(time.perf_counter() - t0, 3),
                     document=doc)


def _free_cores() -> int:
    """Worker processes for evaluating ahead: the cores this process may use, at most 4 (each holds a model).
    On a busy machine one-thread workers still get their share of the cores, so none are held back for load."""
    from assay.evaluate.backends.hf import usable_cores

    return min(4, usable_cores())


def run_demo(*, out: Path, limit: int | None = DEFAULT_LIMIT, rebuild: bool = False, base_dir: Path | None = None,
             scale: Scale = "real", progress: Progress = NULL_PROGRESS) -> DemoResult:
    """Convert the bundled model (once), build the zoo (once), vet every entry, write the report.

    ``out`` receives ``zoo/``, ``models/<name>/`` (each model's ``vet.json`` and ``report.html``),
    ``report.html`` (leaderboard and a section per model) and ``demo.json``. ``base_dir`` replaces the bundled
    model (tests pass the factory's tiny model with ``scale="tiny"``). Raises :class:`AssayError` when the demo
    cannot start (bundled model missing, ``out`` not writable).
    """
    from assay.report import write_atomic
    from assay.report.html import render_leaderboard
    from assay.report.io import check_out_dir

    t0 = time.perf_counter()
    out = Path(out)
    check_out_dir(out)
    base = Path(base_dir) if base_dir is not None else real_base(progress=progress)
    entries = build_demo_zoo(base, out / "zoo", scale=scale, rebuild=rebuild, progress=progress)
    task_file = domain_task_file(out / "zoo")
    policy = demo_policy(task_file, limit=limit)
    workers = min(len(entries), _free_cores())
    if workers > 1:
        evaluate_ahead([base, *(e.path for e in entries)], task_file, limit=limit, workers=workers,
                       progress=progress)
    models: list[DemoModel] = []
    for i, entry in enumerate(entries, 1):
        step = f"demo: vetting {i}/{len(entries)} {entry.name}"
        progress.start(step)
        models.append(vet_entry(entry, base, policy, out_dir=out / "models" / entry.name, progress=progress))
        progress.finish(step)
    docs = [m.document for m in models if m.document is not None]
    report = out / "report.html"
    write_atomic(report, render_leaderboard(docs, title="assay demo: a model hub in miniature"))
    result = DemoResult(base=base, zoo=out / "zoo", task_file=task_file, models=tuple(models), report=report,
                        limit=limit, seconds=round(time.perf_counter() - t0, 3))
    write_atomic(out / "demo.json", json.dumps(demo_document(result), indent=2, ensure_ascii=False) + "\n")
    return result


def demo_document(result: DemoResult) -> dict[str, Any]:
    """The ``assay.demo/1`` document: one summary per model (the full vet documents are in ``models/``)."""
    return {
        "schema": DEMO_SCHEMA,
        "base": str(result.base),
        "zoo": str(result.zoo),
        "task_file": str(result.task_file),
        "report": str(result.report),
        "limit": result.limit,
        "seconds": result.seconds,
        "all_as_expected": result.all_as_expected,
        "models": [{
            "name": m.entry.name, "kind": m.entry.kind, "path": str(m.entry.path), "story": m.entry.story,
            "verdict": m.verdict, "expected": m.entry.expected, "expected_rule": m.entry.expected_rule,
            "as_expected": m.as_expected, "relation": m.relation, "domain": _jsonable(m.domain),
            "knowledge": _jsonable(m.knowledge), "reasons": [_jsonable(r) for r in m.reasons],
            "report": str(m.report) if m.report else None, "seconds": m.seconds,
        } for m in result.models],
    }


def _jsonable(obj: Any) -> Any:
    from assay.jsonable import to_jsonable

    return to_jsonable(obj)
