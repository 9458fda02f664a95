"""``assay vet``: every stage in order, one verdict under a policy, and the evidence behind it.

Stages, in order: inventory; hardware fit (memory at 16/8/4 bits and the devices it fits, from the headers);
scan (candidate, and the base before it is ever loaded); signature (when a ``model.sig`` is present or the policy
requires one); lineage against the base; evaluation of candidate and base on the policy's tasks (base results
come from the result cache when present) and their paired comparison; the behaviour probes of the policy's
``probes`` section (refusal, degeneration, stability, contamination) and the KL drift of its ``drift`` section,
run while each model is loaded for the evaluation (the base first, then the candidate); card (transparency,
claimed scores against the measured ones) and licence; the optional bench of speed and memory (``deploy.bench``
or ``bench=True``, candidate and base in the same run); cost per task and break-even (the policy's ``cost``
section). An ``unsafe`` or ``not verified`` candidate is never loaded: every later stage is *blocked* with that
reason. A stage that cannot run (no base, a stage not installed) is recorded with why, and the verdict says so.

    >>> from assay.policy import default_policy
    >>> result = run_vet("./my-finetune", base="./base-model", policy=default_policy(), out_dir=Path("vet-out"))
    >>> result.verdict.outcome, [r.message for r in result.verdict.reasons]
    >>> vet_document(result)["schema"]
    'assay.vet/1'

Bad input (a base that does not exist, a candidate that is not a model, an unwritable ``out_dir``) raises an
:class:`~assay.errors.AssayError` before any long work starts. Reports are written atomically, so an interrupted
vet never leaves a half-written report under its final name.
"""

from __future__ import annotations

import datetime as _dt
import importlib
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from assay import __version__
from assay.errors import AssayError, ModelError, PolicyError, ReportError, debugging
from assay.model.formats import Format, detect
from assay.model.ref import ModelRef, resolve
from assay.policy import CostPolicy, Policy, policy_document
from assay.progress import NULL_PROGRESS, Progress
from assay.verdict import Status, StageOutcome, Verdict, decide, reason_document

SCHEMA = "assay.vet/1"
#: The order stages run (and appear in reports).
STAGES = ("inventory", "hardware", "scan", "base_scan", "signature", "lineage", "evaluation", "comparison", "probes",
          "drift", "card", "licence", "bench", "cost")
#: Weight formats ``assay vet`` can take as a candidate (others are refused as bad input).
VET_FORMATS = frozenset({Format.SAFETENSORS, Format.GGUF, Format.TORCH_ZIP, Format.PICKLE})
#: Largest trainer_state.json read for the loss curve.
_TRAINER_STATE_MAX = 32 * 1024 * 1024


@dataclass(frozen=True)
class VetResult:
    """Everything ``assay vet`` found about one candidate."""

    candidate: ModelRef
    """The candidate's files."""
    base: ModelRef | None
    """The base it was compared with, if any."""
    base_source: str
    """Where the base came from: ``--base``, ``card`` (the card's base_model, found in the local HF cache) or
    ``none``, with the reason after a colon when there is none."""
    policy: Policy
    """The policy applied."""
    stages: tuple[StageOutcome, ...]
    """What each stage did, in :data:`STAGES` order."""
    verdict: Verdict
    """PASS / WARN / FAIL / NONE with reasons."""
    training: Mapping[str, Any] | None
    """``log_history`` from the candidate's ``trainer_state.json`` (for the loss curve), when present."""
    environment: Mapping[str, Any]
    """Versions of assay, Python, torch, transformers; the hardware."""
    started_at: str
    """UTC ISO-8601 time the vet started."""
    seconds: float
    """Wall time of the whole vet."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Documents added by callers (e.g. the demo's bench or cost figures), keyed like stages."""

    def stage(self, name: str) -> StageOutcome | None:
        """The outcome of stage ``name``."""
        return next((s for s in self.stages if s.name == name), None)

    def exit_code(self, *, strict: bool = False) -> int:
        """0 PASS (and WARN unless strict), 1 FAIL, 2 NONE."""
        return self.verdict.exit_code(strict=strict)


def check_out_dir(out_dir: Path) -> Path:
    """Create ``out_dir`` if needed and prove it writable now, before any long work. Raises ReportError."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".assay-probe-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ReportError(f"cannot write reports to {out_dir}: {exc.strerror or exc}") from exc
    return out_dir


def _weight_formats(ref: ModelRef) -> set[Format]:
    found: set[Format] = set()
    for rel in ref.files:
        path = ref.path(rel)
        if not path.is_file():  # follows links: a Hugging Face cache snapshot is links into its blobs
            continue
        try:
            fmt = detect(path)
        except AssayError:
            continue
        if fmt in VET_FORMATS:
            found.add(fmt)
    return found


def _require_model(ref: ModelRef, role: str) -> None:
    """Refuse, as bad input, a reference with no weights file vet can read (e.g. a lone ONNX or text file)."""
    if not _weight_formats(ref):
        what = f"{ref.spec} is a single file" if ref.single_file else f"folder {ref.spec} has no weights file"
        raise ModelError(f"the {role} is not a model assay can vet: {what} in a supported format "
                         f"(safetensors, GGUF, torch archive or pickle)")


def environment() -> dict[str, Any]:
    """Versions and hardware, without importing torch (its version comes from package metadata)."""
    def version(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    gpus: list[str] = []
    torch = sys.modules.get("torch")  # only if evaluation already imported it
    if torch is not None:
        try:
            if torch.cuda.is_available():
                gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:  # noqa: BLE001 - a broken CUDA install must not break the report
            gpus = []
    return {
        "assay": __version__,
        "python": platform.python_version(),
        "torch": version("torch"),
        "transformers": version("transformers"),
        "platform": platform.platform(),
        "hardware": {"cpu": cpu, "cpu_count": os.cpu_count(), "memory_bytes": mem, "gpus": gpus},
    }


def _available(module: str, attr: str | None = None) -> bool:
    """True when a stage's module (and ``attr`` in it) exists in this install (stages are optional extras)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module.startswith(exc.name) or exc.name.split(".")[0] in ("torch", "transformers")):
            return False
        raise
    return attr is None or hasattr(mod, attr)


def _timed(name: str, fn: Callable[[], Mapping[str, Any]], progress: Progress) -> StageOutcome:
    """Run one stage; an AssayError inside it becomes an ``error`` outcome (the vet goes on)."""
    progress.start(f"vet: {name}")
    t0 = time.perf_counter()
    try:
        doc = fn()
        return StageOutcome.ran(name, _plain(doc), seconds=round(time.perf_counter() - t0, 3))
    except AssayError as exc:
        return StageOutcome.error(name, exc.diagnostics(), seconds=round(time.perf_counter() - t0, 3))
    except Exception as exc:  # noqa: BLE001 - one stage's failure is recorded; the vet goes on to a verdict
        return StageOutcome.error(name, _internal(exc), seconds=round(time.perf_counter() - t0, 3))
    finally:
        progress.finish(f"vet: {name}")


def _internal(exc: BaseException) -> str:
    """A stage's unexpected failure as one line (with --debug it is re-raised, traceback and all)."""
    if debugging():
        raise exc
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"internal error: {type(exc).__name__}: {first[:300]} (run with --debug for details)"


def _plain(doc: Any) -> Any:
    from assay.jsonable import to_jsonable

    return to_jsonable(doc)


# --- stages -----------------------------------------------------------------------------------------------


def _inventory(ref: ModelRef, keep: dict[str, Any]) -> Mapping[str, Any]:
    """The inventory document; the :class:`~assay.model.inventory.Inventory` is kept in ``keep["inventory"]``."""
    from assay.model.inventory import inventory_document, open_model

    inv = open_model(ref.spec)
    keep["inventory"] = inv
    return inventory_document(inv)


def _hardware(inv: Any, policy: Policy) -> StageOutcome:
    """Memory at 16/8/4 bits plus the key/value cache, and the devices it fits (from the headers alone)."""
    from assay.deploy.bench import fit_document
    from assay.deploy.hardware import hardware_fit, shape_from_inventory

    if inv is None:
        return StageOutcome.skipped("hardware", "no inventory, so the model's size is unknown")
    if getattr(inv, "adapter", None) is not None:
        return StageOutcome.skipped("hardware", "the candidate is an adapter: it needs its base's memory plus its own "
                                                "few parameters (`assay bench BASE --fit-only` estimates the base)")
    if not getattr(inv, "parameters", None):
        return StageOutcome.skipped("hardware", "the parameter count could not be read from the headers, so the "
                                                "memory needed is unknown")

    def run() -> Mapping[str, Any]:
        fit = hardware_fit(shape_from_inventory(inv), context=policy.deploy.context, batch=policy.deploy.batch)
        return {"schema": "assay.fit/1", "source": "headers (estimate, nothing loaded)", **fit_document(fit)}

    return _timed("hardware", run, NULL_PROGRESS)


def _scan(ref: ModelRef, policy: Policy, progress: Progress, keep: dict[str, Any], key: str) -> Mapping[str, Any]:
    """Scan ``ref``; the report object is kept in ``keep[key]`` (the evaluation backend asks for it)."""
    from assay.scan import scan_document, scan_model

    from assay.scan.findings import Severity

    report = scan_model(ref, fail_on=Severity(policy.scan.fail_on), allow_globals=list(policy.scan.allow_globals),
                        allow_remote_code=policy.scan.allow_remote_code, deep=False, progress=progress)
    keep[key] = report
    return scan_document(report)


def _scan_is_safe(outcome: StageOutcome) -> bool:
    return outcome.status is Status.RAN and str((outcome.document or {}).get("verdict")) == "safe"


def _signature(ref: ModelRef, policy: Policy) -> StageOutcome:
    sig = ref.root / (ref.files[0].name + ".sig") if ref.single_file else ref.root / "model.sig"
    if not sig.is_file():
        if policy.signature.required:
            return StageOutcome.not_applicable("signature", f"the candidate carries no signature ({sig.name})")
        return StageOutcome.not_applicable("signature", f"no {sig.name} in the candidate, and the policy does not "
                                                        "require one")
    if not policy.signature.trusted_keys:
        return StageOutcome.skipped("signature", f"{sig.name} is present but the policy trusts no public key "
                                                 "(signature.trusted_keys), so it was not verified")
    if not _available("assay.provenance.signing", "verify_model"):
        return StageOutcome.skipped("signature", "signature verification is not available in this install")

    from assay.provenance.signing import verify_document, verify_model

    def run() -> Mapping[str, Any]:
        last: Mapping[str, Any] | None = None
        for key in policy.signature.trusted_keys:
            try:
                pem = Path(key).read_bytes()
            except OSError as exc:
                raise PolicyError(f"cannot read trusted key {key} (signature.trusted_keys): "
                                  f"{exc.strerror or exc}") from exc
            doc = _plain(verify_document(verify_model(ref, public_key_pem=pem, signature_path=sig)))
            doc = {**doc, "key": key}
            if doc.get("valid") is True:
                return doc
            last = doc
        assert last is not None
        return last

    return _timed("signature", run, NULL_PROGRESS)


def _base_from_card(inventory: Mapping[str, Any] | None) -> tuple[ModelRef | None, str]:
    card = (inventory or {}).get("card") or {}
    claimed = card.get("base_model")
    if isinstance(claimed, list):
        claimed = claimed[0] if claimed else None
    if not claimed:
        return None, "none: no --base given and the model card names no base_model"
    try:
        ref = resolve(str(claimed))
    except ModelError as exc:
        return None, f"none: the card's base_model {claimed} is not available locally ({exc.message})"
    return ref, "card"


def _lineage(cand: ModelRef, base: ModelRef, progress: Progress) -> Mapping[str, Any]:
    from assay.provenance.lineage import compare_lineage, lineage_document

    # Both were scanned safe before this point, so torch archives may be read with weights_only=True.
    return lineage_document(compare_lineage(cand, base, allow_pickle=True, progress=progress))


def _load_tasks(specs: Sequence[str]) -> list[Any]:
    from assay.evaluate.tasks import load_tasks

    return [t for s in specs for t in load_tasks(s)]


def _open_backend(ref: ModelRef, scanned: Any, progress: Progress) -> Any:
    """Load a model that scanned safe (``scanned``: its scan report) for evaluation."""
    from assay.evaluate.backends.hf import HFBackend, load_after_scan

    if not ref.single_file and (ref.root / "adapter_config.json").is_file():
        return load_after_scan(ref, dtype="float32", progress=progress)  # scans the adapter's base too
    # lazy: a base whose results all come from the result cache is never loaded (vetting ten fine-tunes of one
    # base loads it once)
    return HFBackend.from_ref(ref, scanned=scanned, dtype="float32", lazy=True)


def probe_tasks(policy: Policy) -> list[Any]:
    """The behaviour probe tasks the policy asks for (``probes.run``, ``probes.contamination``), each cut to
    ``probes.limit`` prompts. Raises :class:`~assay.errors.EvalError` for a task that cannot be probed."""
    from assay.evaluate.probes import degeneration, stability
    from assay.evaluate.tasks import load_tasks

    n = policy.probes.limit
    out: list[Any] = []
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


def kl_tasks(policy: Policy) -> list[Any]:
    """The KL drift task of ``drift.kl`` (none when off). Raises EvalError for a spec that is not a KL text."""
    if policy.drift.kl is None:
        return []
    from assay.evaluate.tasks import TaskKind, load_tasks

    tasks = load_tasks(policy.drift.kl)
    bad = [t.name for t in tasks if t.kind is not TaskKind.KL]
    if bad:
        raise PolicyError(f"policy key drift.kl: {policy.drift.kl} is not a KL task (use kl:builtin:reference or "
                          f"kl:PATH)")
    return tasks


#: Names model cards use in ``model-index`` for the benchmarks assay runs (measured task -> dataset ids / names).
CLAIM_ALIASES: Mapping[str, tuple[str, ...]] = {
    "arc_challenge": ("ai2_arc", "allenai/ai2_arc", "arc", "arc-challenge", "ARC-Challenge",
                      "AI2 Reasoning Challenge"),
    "arc_easy": ("arc-easy", "ARC-Easy", "ARC Easy"),
    "hellaswag": ("Rowan/hellaswag", "HellaSwag"),
    "mmlu": ("cais/mmlu", "hails/mmlu_no_train", "lukaemon/mmlu", "MMLU"),
    "truthfulqa_mc2": ("truthful_qa", "truthfulqa", "TruthfulQA"),
    "winogrande": ("allenai/winogrande", "WinoGrande"),
    "gsm8k": ("openai/gsm8k", "GSM8K"),
}
#: Metric names cards use -> the metric assay reports.
METRIC_ALIASES: Mapping[str, str] = {"accuracy": "acc", "normalizedaccuracy": "acc_norm", "accnorm": "acc_norm",
                                     "em": "exact_match", "exactmatch": "exact_match", "mc2": "mc2", "acc": "acc"}


def _name_key(text: str | None) -> str:
    """Letters and digits only, lower case, without a parenthesised suffix (``ARC (25-Shot)`` -> ``arc``)."""
    import re

    return re.sub(r"[^a-z0-9]+", "", re.sub(r"\(.*?\)", "", (text or "").lower()))


def _claim_names(claim: Any) -> set[str]:
    names: set[str] = set()
    for raw in (claim.dataset_type, claim.dataset, claim.task):
        if raw:
            names |= {_name_key(raw), _name_key(str(raw).rsplit("/", 1)[-1])}
    return names - {""}


def _task_names(task: str) -> set[str]:
    short = task.rsplit(":", 1)[-1]
    names = {_name_key(task), _name_key(short)}
    for alias in CLAIM_ALIASES.get(short, ()):
        names |= {_name_key(alias), _name_key(alias.rsplit("/", 1)[-1])}
    return names - {""}


def _metric_key(metric: str) -> str:
    base = metric.split(",", 1)[0]
    return METRIC_ALIASES.get(_name_key(base), base.lower())


def measured_scores(evaluation: Mapping[str, Any] | None) -> dict[tuple[str, str], float]:
    """``(task, metric) -> value`` of the candidate's higher-is-better scores in 0..1 (what card claims state)."""
    from assay.verdict import _metric_direction

    out: dict[tuple[str, str], float] = {}
    for task, t in ((evaluation or {}).get("tasks") or {}).items():
        for metric, value in ((t or {}).get("metrics") or {}).items():
            if (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1
                    and _metric_direction(metric) > 0):
                out[(str(task), str(metric))] = float(value)
    return out


def match_claims(report: Any, measured: Mapping[tuple[str, str], float]) -> tuple[list[Any], list[Any]]:
    """Pair each ``model-index`` claim of a card with what vet measured; ``(checks, unmatched claims)``.

    A claim matches a measured task when its dataset id, dataset name or task name is the task's name (or its
    name after the suite prefix, or a name cards use for that benchmark, :data:`CLAIM_ALIASES`) and its metric
    is the same metric (:data:`METRIC_ALIASES`). The comparison itself is :func:`assay.deploy.card.check_claims`
    (percentages scaled, a claim more than its tolerance above the measurement is unsupported); the returned
    checks name the measured ``task/metric``.
    """
    from assay.deploy.card import check_claims

    checks: list[Any] = []
    unmatched: list[Any] = []
    for claim in report.eval_results:
        names = _claim_names(claim)
        hit = next(((task, metric, value) for (task, metric), value in measured.items()
                    if names & _task_names(task) and _metric_key(metric) == _metric_key(claim.metric)), None)
        if hit is None:
            unmatched.append(claim)
            continue
        task, metric, value = hit
        # check_claims matches on the claim's own names: hand it the measurement under one of them
        label = next(_name_key(x) for x in (claim.dataset_type, claim.dataset, claim.task) if _name_key(x))
        found = check_claims(replace(report, eval_results=(claim,)), {f"{label}/{claim.metric}": value})
        checks += [replace(c, measured_key=f"{task}/{metric}") for c in found]
    return checks, unmatched


def _card(ref: ModelRef, base: ModelRef | None, evaluation: Mapping[str, Any] | None) -> Mapping[str, Any]:
    from assay.deploy.card import card_document, read_card

    report = read_card(ref, base=base)
    measured = measured_scores(evaluation)
    claims, unmatched = match_claims(report, measured) if measured else ([], list(report.eval_results))
    doc = dict(card_document(report, claims=claims))
    doc["claims_unmatched"] = _plain(unmatched)
    doc["claims_basis"] = ("the candidate's scores measured by this vet" if measured
                           else "nothing measured (evaluation did not run), so no claim was checked")
    return doc


def _licence(card_doc: Mapping[str, Any], policy: Policy) -> Mapping[str, Any]:
    from assay.deploy.licences import check_licence, lookup, normalise

    lic = card_doc.get("licence")
    violations = check_licence(lic, allow=list(policy.licence.allow), deny=list(policy.licence.deny),
                               monthly_active_users=policy.licence.monthly_active_users)
    return {"schema": "assay.licence/1", "licence": normalise(lic) if lic else None,
            "terms": _plain(lookup(lic)), "violations": _plain(violations),
            "base_licence": card_doc.get("base_licence"), "base_licence_source": card_doc.get("base_licence_source")}


def _bench(cand: ModelRef, base: ModelRef | None, base_note: str | None, policy: Policy,
           progress: Progress) -> Mapping[str, Any]:
    """Speed and memory of the candidate (and its base, in the same run); both scanned safe before this."""
    from assay.deploy.bench import bench_document, run_bench

    d = policy.deploy
    report = run_bench(cand, base=base, prompt_tokens=d.prompt_tokens, output_tokens=d.output_tokens,
                       batch_sizes=(d.batch,), repeats=d.repeats, warmup=1, isolate=d.isolate, progress=progress)
    doc = bench_document(report)
    if base_note:
        doc["notes"] = [*doc["notes"], base_note]
    return doc


def cost_inputs(cost: CostPolicy, bench: Mapping[str, Any] | None) -> Any:
    """The :class:`~assay.deploy.cost.CostInputs` of the policy's ``cost`` section and the bench document."""
    from assay.deploy.cost import CostInputs, inputs_from_bench

    derived: dict[str, Any] = {}
    if cost.self_per_task is None and bench is not None:
        derived = inputs_from_bench(dict(bench))
    return CostInputs(api_per_task=cost.api_per_task, api_input_per_mtok=cost.api_input_per_mtok,
                      api_output_per_mtok=cost.api_output_per_mtok, self_per_task=cost.self_per_task,
                      decode_tokens_per_s=derived.get("decode_tokens_per_s"),
                      prefill_tokens_per_s=derived.get("prefill_tokens_per_s"),
                      hardware_per_hour=cost.gpu_price_per_hour if cost.self_per_task is None else None,
                      utilisation=cost.utilisation, tokens_in=cost.tokens_in, tokens_out=cost.tokens_out,
                      training_cost=cost.training_cost, monthly_tasks=cost.monthly_volume,
                      source=derived.get("source", {"self_per_task": "given by the policy"}))


def _cost(policy: Policy, bench: StageOutcome | None) -> StageOutcome:
    """Cost per task self-hosted and via the API, and break-even, from the policy's prices and the bench."""
    c = policy.cost
    if not c.configured():
        return StageOutcome.not_applicable("cost", "no cost inputs (the policy's cost section, or --cost-from FILE)")
    if c.api_per_task is None and c.api_input_per_mtok is None and c.api_output_per_mtok is None:
        return StageOutcome.skipped("cost", "no API price to compare with (cost.api_per_task, or "
                                            "cost.api_input_per_mtok / cost.api_output_per_mtok with tokens per task)")
    bench_doc = None
    if c.self_per_task is None:
        if c.gpu_price_per_hour is None:
            return StageOutcome.skipped("cost", "the self-hosted cost needs cost.self_per_task, or "
                                                "cost.gpu_price_per_hour with a bench")
        if bench is None or bench.status is Status.NOT_APPLICABLE:
            return StageOutcome.skipped("cost", "the self-hosted cost needs a measured throughput: run with --bench "
                                                "(policy deploy.bench) or give cost.self_per_task")
        if bench.status is Status.BLOCKED:
            return StageOutcome.blocked("cost", bench.reason or "the bench was blocked")
        if bench.status is not Status.RAN:
            return StageOutcome.skipped("cost", f"no measured throughput: the bench {bench.status.value} "
                                                f"({bench.reason})")
        bench_doc = bench.document

    def run() -> Mapping[str, Any]:
        from assay.deploy.cost import compute_cost, cost_document

        return cost_document(compute_cost(cost_inputs(c, bench_doc)))

    return _timed("cost", run, NULL_PROGRESS)


def read_training_log(ref: ModelRef) -> dict[str, Any] | None:
    """``log_history`` from ``trainer_state.json`` (read as JSON data only), or None."""
    if ref.single_file:
        return None
    path = ref.root / "trainer_state.json"
    try:
        if not path.is_file() or path.is_symlink() or path.stat().st_size > _TRAINER_STATE_MAX:
            return None
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        return None
    keep = ("step", "epoch", "loss", "eval_loss", "learning_rate", "grad_norm")
    rows = [{k: h[k] for k in keep if isinstance(h, dict) and isinstance(h.get(k), (int, float))}
            for h in history if isinstance(h, dict)]
    rows = [r for r in rows if "step" in r and ("loss" in r or "eval_loss" in r)]
    return {"path": "trainer_state.json", "log_history": rows} if rows else None


# --- the orchestrator -------------------------------------------------------------------------------------


def run_vet(candidate: str, *, base: str | None = None, policy: Policy, tasks: Sequence[str] | None = None,
            limit: int | None = None, out_dir: Path | None = None, revision: str | None = None,
            formats: Sequence[str] = ("json", "html", "md", "sarif", "cyclonedx"),
            progress: Progress = NULL_PROGRESS, bench: bool | None = None,
            cost: CostPolicy | None = None, download: bool = False) -> VetResult:
    """Vet ``candidate`` (against ``base``, else the card's ``base_model`` when cached) under ``policy``.

    ``tasks`` and ``limit`` override the policy's evaluation tasks and item limit; ``bench`` overrides
    ``deploy.bench`` and ``cost`` the policy's cost section (the document's policy shows what was applied). With
    ``out_dir``, the reports in ``formats`` are written there atomically (see :func:`write_reports`). Raises
    :class:`AssayError` for bad input (unresolvable candidate or base, a candidate that is not a model, an
    unwritable ``out_dir``).
    """
    if bench is not None and bench != policy.deploy.bench:
        policy = replace(policy, deploy=replace(policy.deploy, bench=bench))
    if cost is not None:
        policy = replace(policy, cost=cost)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    t0 = time.perf_counter()
    if out_dir is not None:
        check_out_dir(out_dir)
    cand_ref = resolve(candidate, revision=revision, download=download)
    _require_model(cand_ref, "candidate")
    base_ref: ModelRef | None = None
    base_source = "--base"
    if base is not None:
        base_ref = resolve(base, download=download)
        _require_model(base_ref, "base")

    pre = {"probes": probe_tasks(policy) if policy.probes.specs() else [],
           "drift": kl_tasks(policy)}  # bad probe or KL specs are bad input: refused before any long work

    stage_names = list(STAGES)
    progress.start("vet", total=len(stage_names))
    outcomes: dict[str, StageOutcome] = {}
    reports: dict[str, Any] = {}  # scan reports by "candidate" / "base", and the "inventory" object

    def done(outcome: StageOutcome) -> None:
        outcomes[outcome.name] = outcome
        progress.advance("vet")
        state = outcome.status.value if outcome.reason is None else f"{outcome.status.value}: {outcome.reason}"
        progress.note(f"{outcome.name}: {state}")

    def block_rest(reason: str) -> None:
        for name in stage_names:
            if name not in outcomes:
                done(StageOutcome.blocked(name, reason))

    # 1. inventory (headers only; an unreadable model is bad input)
    if _available("assay.model.inventory", "open_model"):
        done(_timed("inventory", lambda: _inventory(cand_ref, reports), progress))
    else:
        done(StageOutcome.skipped("inventory", "the inventory stage is not available in this install"))
    inventory_doc = outcomes["inventory"].document

    # 1b. hardware fit: an estimate from the headers, so it runs whatever the scan finds
    if _available("assay.deploy.hardware", "hardware_fit"):
        done(_hardware(reports.get("inventory"), policy))
    else:
        done(StageOutcome.skipped("hardware", "the hardware-fit estimate is not available in this install"))

    # 2. scan the candidate; nothing later loads it unless it is safe
    if _available("assay.scan", "scan_model"):
        done(_timed("scan", lambda: _scan(cand_ref, policy, progress, reports, "candidate"), progress))
    else:
        done(StageOutcome.error("scan", "the scanner is not available in this install"))
    training = read_training_log(cand_ref)
    if not _scan_is_safe(outcomes["scan"]):
        verdict_word = (outcomes["scan"].document or {}).get("verdict") or "not scanned"
        block_rest(f"the candidate scanned {verdict_word.replace('_', ' ')}, so it is never loaded")
        return _finish(cand_ref, base_ref, base_source, policy, outcomes, training, started, t0, out_dir,
                       formats, progress)

    # the base: from --base, else the card's base_model in the local HF cache
    if base_ref is None:
        base_ref, base_source = _base_from_card(inventory_doc)
        if base_ref is not None:
            try:
                _require_model(base_ref, "base")
            except ModelError as exc:
                base_ref, base_source = None, f"none: {exc.message}"
    no_base_reason = base_source.split(": ", 1)[1] if base_ref is None else None

    # 2b. scan the base before it is ever loaded
    base_ok = False
    if base_ref is None:
        done(StageOutcome.not_applicable("base_scan", f"no base: {no_base_reason}"))
    else:
        b0 = base_ref
        done(_timed("base_scan", lambda: _scan(b0, policy, progress, reports, "base"), progress))
        base_ok = _scan_is_safe(outcomes["base_scan"])

    bad_base: str | None = None
    if base_ref is not None and not base_ok:
        word = (outcomes["base_scan"].document or {}).get("verdict") or "not scanned"
        bad_base = f"the base {base_ref.name} scanned {word}, so it is not loaded"

    # 3. signature
    done(_signature(cand_ref, policy))

    # 4. lineage
    if base_ref is None:
        done(StageOutcome.skipped("lineage", f"no base model to compare with ({no_base_reason})"))
    elif bad_base is not None:
        done(StageOutcome.error("lineage", bad_base))
    elif not _available("assay.provenance.lineage", "compare_lineage"):
        done(StageOutcome.skipped("lineage", "lineage is not available in this install"))
    else:
        assert base_ref is not None
        b = base_ref
        done(_timed("lineage", lambda: _lineage(cand_ref, b, progress), progress))

    # 5. evaluation and comparison, behaviour probes, KL drift: each model is loaded once (base, then candidate)
    task_specs = list(tasks) if tasks else list(policy.evaluation.tasks)
    eff_limit = limit if limit is not None else policy.evaluation.limit
    if not (task_specs or pre["probes"] or pre["drift"]):
        done(StageOutcome.not_applicable("evaluation", "no evaluation tasks in the policy"))
        done(StageOutcome.skipped("comparison", "no evaluation tasks in the policy"))
        done(StageOutcome.not_applicable("probes", _PROBES_OFF))
        done(StageOutcome.not_applicable("drift", _DRIFT_OFF))
    elif not (_available("assay.evaluate.runner", "evaluate_model")
              and _available("assay.evaluate.backends.hf", "HFBackend")):
        why = "evaluation needs the eval extra (torch, transformers): pip install 'assay[eval]'"
        done(StageOutcome.skipped("evaluation", why))
        done(StageOutcome.skipped("comparison", "no evaluation"))
        done(StageOutcome.skipped("probes", why) if pre["probes"] else
             StageOutcome.not_applicable("probes", _PROBES_OFF))
        done(StageOutcome.skipped("drift", why) if pre["drift"] else StageOutcome.not_applicable("drift", _DRIFT_OFF))
    else:
        _run_models(cand_ref, base_ref, reports, bad_base, no_base_reason, task_specs, eff_limit, policy, pre,
                    progress, done)

    # 6. card and licence
    if _available("assay.deploy.card", "read_card"):
        ev = outcomes["evaluation"].document if "evaluation" in outcomes else None
        done(_timed("card", lambda: _card(cand_ref, base_ref if base_ok else None, ev), progress))
    else:
        done(StageOutcome.skipped("card", "the model-card review is not available in this install"))
    card_doc = outcomes["card"].document
    if card_doc is None:
        done(StageOutcome.skipped("licence", "no model card was read, so the licence is unknown"))
    elif not _available("assay.deploy.licences", "check_licence"):
        done(StageOutcome.skipped("licence", "licence checks are not available in this install"))
    else:
        c = card_doc
        done(_timed("licence", lambda: _licence(c, policy), progress))

    # 7. bench (optional, slow): only models that scanned safe are loaded
    if not policy.deploy.bench:
        done(StageOutcome.not_applicable("bench", "off (policy deploy.bench is false; `assay vet --bench` measures "
                                                  "speed and memory)"))
    elif not _available("assay.deploy.bench", "run_bench") or not _available("assay.evaluate.backends.hf",
                                                                             "HFBackend"):
        done(StageOutcome.skipped("bench", "the bench needs the eval extra (torch, transformers): "
                                           "pip install 'assay[eval]'"))
    else:
        bench_base = base_ref if base_ok else None
        note = None if bench_base is not None else (
            f"no base measured ({bad_base or no_base_reason}): no ratios")
        done(_timed("bench", lambda: _bench(cand_ref, bench_base, note, policy, progress), progress))

    # 8. cost per task and break-even
    if _available("assay.deploy.cost", "compute_cost"):
        done(_cost(policy, outcomes.get("bench")))
    else:
        done(StageOutcome.skipped("cost", "the cost model is not available in this install"))

    return _finish(cand_ref, base_ref, base_source, policy, outcomes, training, started, t0, out_dir, formats,
                   progress)


_PROBES_OFF = "off (policy probes.run and probes.contamination are empty)"
_DRIFT_OFF = "off (policy drift.kl)"


def _why(exc: BaseException) -> str:
    return exc.diagnostics() if isinstance(exc, AssayError) else _internal(exc)


def _run_models(cand: ModelRef, base: ModelRef | None, reports: Mapping[str, Any], bad_base: str | None,
                no_base_reason: str | None, specs: Sequence[str], limit: int | None, policy: Policy,
                pre: Mapping[str, list[Any]], progress: Progress, done: Callable[[StageOutcome], None]) -> None:
    """Evaluation, probes and KL drift with each model loaded once: the base first (its results may come from
    the cache; its KL distributions are recorded while it is loaded), then the candidate."""
    from contextlib import ExitStack

    from assay.evaluate.cache import ResultCache
    from assay.evaluate.runner import evaluate_model

    probes, kl = pre["probes"], pre["drift"]
    use_base = base is not None and bad_base is None
    errors: dict[str, str] = {}
    seconds = {"evaluation": 0.0, "probes": 0.0, "drift": 0.0}
    results: dict[str, dict[str, Any]] = {"base": {}, "candidate": {}}
    kl_results: dict[str, Any] | None = None
    cache = ResultCache()
    eval_tasks: list[Any] = []
    if specs:
        try:
            eval_tasks = _load_tasks(specs)
        except Exception as exc:  # noqa: BLE001 - recorded; the vet goes on to a verdict
            errors["evaluation"] = _why(exc)

    def timed(stage: str, fn: Callable[[], Any]) -> Any:
        if stage in errors:
            return None
        t0 = time.perf_counter()
        progress.start(f"vet: {stage}")
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - one stage's failure is recorded; the others go on
            errors[stage] = _why(exc)
            return None
        finally:
            progress.finish(f"vet: {stage}")
            seconds[stage] += time.perf_counter() - t0

    roles = ([("base", base, reports.get("base"))] if use_base else []) + [("candidate", cand, reports["candidate"])]
    with ExitStack() as stack:
        session = None
        if kl and use_base:
            from assay.evaluate.kl import KLSession

            session = timed("drift", lambda: stack.enter_context(KLSession(kl, limit=policy.drift.limit, seed=0)))
        for role, ref, scanned in roles:
            assert ref is not None
            t0 = time.perf_counter()
            try:
                backend = _open_backend(ref, scanned, progress)
            except Exception as exc:  # noqa: BLE001 - a model that cannot be loaded fails every stage that needs it
                why = f"the {role} could not be loaded: {_why(exc)}"
                for stage in ("evaluation", "probes", "drift"):
                    errors.setdefault(stage, why)
                break
            seconds["evaluation"] += time.perf_counter() - t0
            try:
                if eval_tasks:
                    results[role]["eval"] = timed("evaluation", lambda b=backend: evaluate_model(
                        b, eval_tasks, limit=limit, cache=cache, progress=progress))
                if probes:
                    results[role]["probes"] = timed("probes", lambda b=backend: evaluate_model(
                        b, probes, cache=cache, progress=progress))
                if session is not None:
                    if role == "base":
                        timed("drift", lambda b=backend: session.record_base(b, progress=progress))
                    else:
                        kl_results = timed("drift", lambda b=backend: session.compare(b, progress=progress))
            finally:
                backend.close()

    _eval_outcomes(cand, base, bad_base, no_base_reason, specs, limit, results, errors, seconds, done)
    _probe_outcome(cand, base if use_base else None, probes, results, errors, seconds, policy, done)
    _drift_outcome(base, bad_base, no_base_reason, kl, kl_results, errors, seconds, done)


def _eval_outcomes(cand: ModelRef, base: ModelRef | None, bad_base: str | None, no_base_reason: str | None,
                   specs: Sequence[str], limit: int | None, results: Mapping[str, Mapping[str, Any]],
                   errors: Mapping[str, str], seconds: Mapping[str, float],
                   done: Callable[[StageOutcome], None]) -> None:
    from assay.evaluate.compare import compare_results, eval_document

    secs = round(seconds["evaluation"], 3)
    if not specs:
        done(StageOutcome.not_applicable("evaluation", "no evaluation tasks in the policy"))
        done(StageOutcome.skipped("comparison", "no evaluation tasks in the policy"))
        return
    if "evaluation" in errors:
        done(StageOutcome.error("evaluation", errors["evaluation"], seconds=secs))
        done(StageOutcome.error("comparison", "the evaluation failed"))
        return
    cand_results, base_results = results["candidate"].get("eval"), results["base"].get("eval")
    try:
        comparison = compare_results(base_results, cand_results) if base_results is not None else None
        doc = _plain(eval_document(model=cand.spec, results=cand_results,
                                   base=base.spec if base_results is not None and base is not None else None,
                                   base_results=base_results, comparison=comparison,
                                   settings={"backend": "hf", "dtype": "float32", "limit": limit,
                                             "tasks": list(specs)}))
    except Exception as exc:  # noqa: BLE001 - recorded; the vet goes on to a verdict
        done(StageOutcome.error("evaluation", _why(exc), seconds=secs))
        done(StageOutcome.error("comparison", "the evaluation failed"))
        return
    done(StageOutcome.ran("evaluation", doc, seconds=secs))
    if base is None:
        done(StageOutcome.skipped("comparison", f"no base model to compare with ({no_base_reason})"))
    elif bad_base is not None:
        done(StageOutcome.error("comparison", bad_base))
    else:
        done(StageOutcome.ran("comparison", doc.get("comparison") or {}))


def _probe_outcome(cand: ModelRef, base: ModelRef | None, probes: Sequence[Any],
                   results: Mapping[str, Mapping[str, Any]], errors: Mapping[str, str],
                   seconds: Mapping[str, float], policy: Policy, done: Callable[[StageOutcome], None]) -> None:
    """The ``probes`` stage: an ``assay.eval/1``-shaped document of the probe tasks, plus the refusal summary
    and the contamination evidence read from their comparison."""
    if not probes:
        done(StageOutcome.not_applicable("probes", _PROBES_OFF))
        return
    secs = round(seconds["probes"], 3)
    if "probes" in errors:
        done(StageOutcome.error("probes", errors["probes"], seconds=secs))
        return
    try:
        done(StageOutcome.ran("probes", probes_document(cand, base, results["candidate"]["probes"],
                                                        results["base"].get("probes"), policy), seconds=secs))
    except Exception as exc:  # noqa: BLE001 - recorded; the vet goes on to a verdict
        done(StageOutcome.error("probes", _why(exc), seconds=secs))


def probes_document(cand: ModelRef, base: ModelRef | None, cand_results: Mapping[str, Any],
                    base_results: Mapping[str, Any] | None, policy: Policy) -> dict[str, Any]:
    """The probes stage document: ``tasks``, ``base_tasks``, ``comparison`` (paired, Holm across the probe tasks),
    ``refusal`` (rates of both sets, candidate against base) and ``contamination`` (each task's Min-K% gap)."""
    import dataclasses

    from assay.evaluate.compare import compare_results, eval_document
    from assay.evaluate.probes import possible_contamination, refusal_summary
    from assay.evaluate.probes.contamination import contamination_document

    comparison = compare_results(base_results, cand_results) if base_results is not None else None
    doc = eval_document(model=cand.spec, results=cand_results, base=base.spec if base_results is not None and base
                        else None, base_results=base_results, comparison=comparison,
                        settings={"backend": "hf", "dtype": "float32", "limit": policy.probes.limit,
                                  "probes": list(policy.probes.specs()), "alpha": policy.probes.alpha})
    doc["schema"] = "assay.probes/1"
    summary = refusal_summary(comparison, alpha=policy.probes.alpha) if comparison is not None else None
    doc["refusal"] = dataclasses.asdict(summary) if summary is not None else None
    doc["contamination"] = (contamination_document(possible_contamination(comparison, alpha=policy.probes.alpha))
                            if comparison is not None else [])
    return _plain(doc)


def _drift_outcome(base: ModelRef | None, bad_base: str | None, no_base_reason: str | None, kl: Sequence[Any],
                   kl_results: Mapping[str, Any] | None, errors: Mapping[str, str], seconds: Mapping[str, float],
                   done: Callable[[StageOutcome], None]) -> None:
    from assay.evaluate.kl import kl_document

    secs = round(seconds["drift"], 3)
    if not kl:
        done(StageOutcome.not_applicable("drift", _DRIFT_OFF))
    elif base is None:
        done(StageOutcome.skipped("drift", f"KL drift needs a base model ({no_base_reason})"))
    elif bad_base is not None:
        done(StageOutcome.error("drift", bad_base))
    elif "drift" in errors or kl_results is None:
        done(StageOutcome.error("drift", errors.get("drift", "the KL comparison did not run"), seconds=secs))
    else:
        doc = {"schema": "assay.drift/1", "tasks": {name: kl_document(r) for name, r in kl_results.items()}}
        done(StageOutcome.ran("drift", _plain(doc), seconds=secs))


def _finish(cand: ModelRef, base: ModelRef | None, base_source: str, policy: Policy,
            outcomes: Mapping[str, StageOutcome], training: Mapping[str, Any] | None, started: str, t0: float,
            out_dir: Path | None, formats: Sequence[str], progress: Progress) -> VetResult:
    progress.finish("vet")
    if base is None and base_source == "--base":
        base_source = "none: no base given"
    stages = tuple(outcomes[n] for n in STAGES if n in outcomes)
    verdict = decide({s.name: s for s in stages}, policy)
    result = VetResult(candidate=cand, base=base, base_source=base_source, policy=policy, stages=stages,
                       verdict=verdict, training=training, environment=environment(), started_at=started,
                       seconds=round(time.perf_counter() - t0, 3))
    if out_dir is not None:
        write_reports(vet_document(result), out_dir, formats=formats)
    return result


def _ref_doc(ref: ModelRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {"spec": ref.spec, "name": ref.name, "root": ref.root.as_posix(), "single_file": ref.single_file,
            "hf_id": ref.hf_id, "revision": ref.revision}


def vet_document(result: VetResult) -> dict[str, Any]:
    """The ``assay.vet/1`` document: verdict and reasons at the top, then every stage's own document.

    Each stage's document sits under its stage name (``scan``, ``lineage``, ``comparison``, ...), so a reason's
    ``evidence`` (``scan.findings[3]``) is a path into this document; ``stages`` says what ran and why not.
    """
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "verdict": result.verdict.outcome.value,
        "exit_code": result.verdict.exit_code(),
        "reasons": [reason_document(r) for r in result.verdict.reasons],
        "candidate": _ref_doc(result.candidate),
        "base": _ref_doc(result.base),
        "base_source": result.base_source,
        "policy": policy_document(result.policy),
        "stages": {s.name: {"status": s.status.value, "reason": s.reason, "seconds": s.seconds}
                   for s in result.stages},
    }
    for s in result.stages:
        doc[s.name] = s.document
    doc["training"] = result.training
    for k, v in result.extra.items():
        doc[k] = _plain(v)
    doc["environment"] = dict(result.environment)
    doc["started_at"] = result.started_at
    doc["seconds"] = result.seconds
    return _plain(doc)


def load_vet_document(path: Path) -> dict[str, Any]:
    """Read a saved ``assay.vet/1`` document (for ``assay report``). Raises ReportError on anything else."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ReportError(f"no such file: {path}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read {path}: {exc}") from exc
    except ValueError as exc:
        raise ReportError(f"{path} is not JSON ({exc}); expected a saved `assay vet --json` result") from exc
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        found = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
        raise ReportError(f"{path} is not an {SCHEMA} document (schema: {found!r}); save one with "
                          f"`assay vet MODEL --json > vet.json`")
    return doc


def write_reports(doc: Mapping[str, Any], out_dir: Path, *, formats: Sequence[str]) -> dict[str, Path]:
    """Write each report format into ``out_dir`` atomically; returns format -> path."""
    from assay.report import get_renderer, write_atomic

    written: dict[str, Path] = {}
    for fmt in formats:
        renderer = get_renderer(fmt)
        path = out_dir / renderer.default_filename
        write_atomic(path, renderer.render(doc))
        written[fmt] = path
    return written
