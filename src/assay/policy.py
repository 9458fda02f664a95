"""The policy file: what a checkpoint must satisfy to PASS, with documented defaults.

A policy is a small YAML file; every key is optional and falls back to the default shown by
``assay policy init``. Unknown keys and wrong types are refused with a message that names the key, so a typo
never silently weakens a check.

    >>> policy = load_policy(Path("assay-policy.yaml"))      # or default_policy()
    >>> policy.scan.fail_on, policy.evaluation.tasks
    ('medium', ('builtin:knowledge', 'builtin:arithmetic', 'builtin:reference'))

The policy is data; :func:`assay.verdict.rules_for` turns it into small rule objects that each look at one stage
document and return reasons (the policy knows nothing of the verdict, which reads it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from assay.errors import PolicyError
from assay.jsonable import as_mapping
from assay.severity import SEVERITIES


DEFAULT_TASKS = ("builtin:knowledge", "builtin:arithmetic", "builtin:reference")
DEFAULT_MARGINS: Mapping[str, float] = {"acc": 0.02, "acc_norm": 0.02, "exact_match": 0.02, "bits_per_byte": 0.05}


@dataclass(frozen=True)
class ScanPolicy:
    """How strict the security scan is."""

    fail_on: str = "medium"
    """Lowest finding severity that makes the candidate unsafe: critical, high, medium, low or info."""
    allow_globals: tuple[str, ...] = ()
    """Extra pickle globals (exact ``module.qualname``) accepted on top of the built-in allowlist."""
    allow_remote_code: bool = False
    """Accept a folder with custom Python code (``auto_map``); off: such a folder is never safe."""


@dataclass(frozen=True)
class SignaturePolicy:
    """Whether the candidate must be signed, and by whom."""

    required: bool = False
    """FAIL when the candidate carries no valid signature by a trusted key."""
    trusted_keys: tuple[str, ...] = ()
    """Paths of PEM public keys whose signatures are accepted (relative paths: to the policy file)."""


@dataclass(frozen=True)
class LineagePolicy:
    """What the weights must be, compared with the base."""

    require_descends: bool = True
    """FAIL when the weights do not descend from the base (relation ``unrelated`` or ``incompatible``) or the
    card's ``base_model`` claim contradicts the weights."""
    reject_identical: bool = True
    """FAIL when the candidate is an ``identical`` re-upload of the base (same weights under a new name)."""


@dataclass(frozen=True)
class EvaluationPolicy:
    """Which tasks run and what counts as a regression or an improvement."""

    tasks: tuple[str, ...] = DEFAULT_TASKS
    """Task specs as ``assay eval --task`` takes them."""
    limit: int | None = None
    """Evaluate only the first N items of each task (None: all)."""
    margins: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MARGINS))
    """Regression margin per metric name, absolute. A metric is judged only if it has a margin here (or in
    :attr:`task_margins`); ``exact_match`` also covers ``exact_match,strict`` and similar variants."""
    task_margins: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Per-task overrides: ``{task: {metric: margin}}``."""
    must_improve: tuple[str, ...] = ()
    """Tasks on which the candidate must beat the base significantly (95% interval above zero, Holm p < 0.05)."""
    alpha: float = 0.05
    """Significance level for ``must_improve``."""

    def margin(self, task: str, metric: str) -> float | None:
        """The regression margin for ``metric`` of ``task``, or None when the metric is not judged."""
        for table in (self.task_margins.get(task, {}), self.margins):
            if metric in table:
                return table[metric]
            # "exact_match,strict" or "exact_match_flexible" fall back to "exact_match".
            prefixes = [k for k in table if metric.startswith(k) and metric[len(k):len(k) + 1] in (",", "_", ":")]
            if prefixes:
                return table[max(prefixes, key=len)]
        return None


#: The kinds a licence can be, from most to least permissive: what ``kind:NAME`` in ``licence.allow`` and
#: ``licence.deny`` may name, and what each entry of the licence table (:mod:`assay.deploy.licences`) is.
LICENCE_KINDS = ("permissive", "copyleft", "open-rail", "community", "non-commercial", "research")


@dataclass(frozen=True)
class LicencePolicy:
    """Which licences may be deployed here."""

    allow: tuple[str, ...] = ()
    """Licence ids (SPDX or model-specific, case-insensitive) that are accepted; empty: any not denied."""
    deny: tuple[str, ...] = ()
    """Licence ids that are refused."""
    monthly_active_users: int | None = None
    """Your service's monthly active users, checked against licence caps (Llama: 700 million)."""


#: What happens when the self-hosted cost per task exceeds ``cost.max_cost_per_task``.
COST_LEVELS = ("fail", "warn")

#: Behaviour probes ``probes.run`` may list (contamination is ``probes.contamination``, with its tasks).
PROBE_NAMES = ("refusal", "degeneration", "stability", "hallucination")


@dataclass(frozen=True)
class ProbesPolicy:
    """Behaviour probes run on candidate and base with the evaluation (see ``assay eval --task builtin:refusal``).

    Off by default: the refusal and degeneration probes generate a few thousand tokens per model, which costs
    minutes on a CPU for a 135M model, and the verdict of the default policy should not depend on them silently.
    """

    run: tuple[str, ...] = ()
    """Probes to run: ``refusal``, ``degeneration``, ``stability``."""
    contamination: tuple[str, ...] = ()
    """Task specs whose published items are checked for contamination (``builtin:knowledge``, ``mmlu:PATH``)."""
    limit: int | None = None
    """Use only the first N prompts of each probe (None: all of them)."""
    alpha: float = 0.05
    """Significance level of every probe rule."""
    degeneration_margin: float = 0.05
    """Loop rate, repetition or empty-output rate must rise by more than this (95% interval above it)."""
    degeneration_level: str = "fail"
    """``fail`` or ``warn``: the verdict when the candidate degenerates beyond the margin."""
    hallucination_level: str = "warn"
    """``warn`` or ``fail``: the verdict when a hallucination measure gets significantly worse."""
    truthfulqa: str | None = None
    """Local TruthfulQA ``multiple_choice`` data (file or folder); with ``hallucination`` in :attr:`run`, MC1 and
    MC2 run as part of the probe (``truthfulqa_mc1:PATH``, ``truthfulqa_mc2:PATH``)."""

    def specs(self) -> tuple[str, ...]:
        """The task specs of the configured probes, as ``assay eval --task`` takes them."""
        truthfulqa = ((f"truthfulqa_mc1:{self.truthfulqa}", f"truthfulqa_mc2:{self.truthfulqa}")
                      if self.truthfulqa and "hallucination" in self.run else ())
        return (*(f"builtin:{p}" for p in self.run), *truthfulqa,
                *(f"contamination:{t}" for t in self.contamination))


@dataclass(frozen=True)
class DriftPolicy:
    """KL drift of the candidate's next-token distributions from the base's (``assay eval --task kl:...``)."""

    kl: str | None = None
    """KL task spec (``kl:builtin:reference`` or ``kl:PATH``), or None: not measured."""
    limit: int | None = None
    """Use only the first N documents (None: all)."""
    max_kl_mean: float | None = None
    """Most mean KL (nats per token) allowed; above it the verdict is ``level``. None: reported, not judged."""
    level: str = "warn"
    """``warn`` or ``fail``: the verdict when ``max_kl_mean`` is exceeded."""


@dataclass(frozen=True)
class DeployPolicy:
    """Deployment readiness: hardware fit (always, from headers) and the optional speed and memory bench."""

    bench: bool = False
    """Measure speed and memory (``assay bench``) of candidate and base after they scanned safe. Slow, so off by
    default; ``assay vet --bench`` turns it on for one run."""
    prompt_tokens: int = 64
    """Prompt length of each bench request, tokens."""
    output_tokens: int = 32
    """Tokens generated per bench request."""
    repeats: int = 3
    """Measured bench requests per model (after one warm-up)."""
    batch: int = 1
    """Concurrent sequences: the bench's batch size and the key/value cache of the hardware fit."""
    context: int | None = None
    """Context the key/value cache is sized for in the hardware fit (None: the model's own maximum)."""
    isolate: bool = True
    """Bench each model in a fresh process (each model's own load time and peak memory, a few seconds more to
    start); false measures inside the vet process, where a model's memory growth is understated."""
    max_slowdown: float | None = 1.5
    """WARN when the candidate decodes more than this factor slower than its base, measured in the same run
    (``base decode tok/s / candidate decode tok/s``); None: not judged. Only with a bench and a base. A
    fine-tune runs at its base's speed, so only a real difference should trip it; timings on a busy machine
    vary by a few tens of percent, hence not tighter by default."""


@dataclass(frozen=True)
class CostPolicy:
    """What serving the candidate costs against a paid API (``assay cost``), and the most a task may cost."""

    api_per_task: float | None = None
    """API price per task."""
    api_input_per_mtok: float | None = None
    """API price per million input tokens (with ``tokens_in``), when ``api_per_task`` is not given."""
    api_output_per_mtok: float | None = None
    """API price per million output tokens (with ``tokens_out``)."""
    tokens_in: int | None = None
    """Input tokens per task."""
    tokens_out: int | None = None
    """Output tokens per task (needed to derive the self-hosted cost from the bench's throughput)."""
    self_per_task: float | None = None
    """Self-hosted cost per task when already known; otherwise derived from the bench and ``gpu_price_per_hour``."""
    gpu_price_per_hour: float | None = None
    """Price of the serving hardware per hour."""
    utilisation: float = 1.0
    """Share of paid hardware hours doing useful work, in (0, 1]."""
    training_cost: float = 0.0
    """One-off cost of the fine-tune, paid back by the saving per task (break-even)."""
    monthly_volume: int | None = None
    """Expected tasks per month (monthly costs, payback time)."""
    max_cost_per_task: float | None = None
    """Most a task may cost self-hosted; above it the verdict is ``on_exceed``. None: not judged."""
    on_exceed: str = "fail"
    """``fail`` or ``warn``: the verdict when the self-hosted cost per task exceeds ``max_cost_per_task``."""

    def configured(self) -> bool:
        """True when any cost figure is given (so ``assay vet`` computes the cost)."""
        return any(getattr(self, k) is not None for k in (
            "api_per_task", "api_input_per_mtok", "api_output_per_mtok", "self_per_task", "gpu_price_per_hour",
            "max_cost_per_task"))


@dataclass(frozen=True)
class Policy:
    """A whole policy. Build with :func:`default_policy` or :func:`load_policy`."""

    scan: ScanPolicy = field(default_factory=ScanPolicy)
    """Security scan settings."""
    signature: SignaturePolicy = field(default_factory=SignaturePolicy)
    """Signature requirements."""
    lineage: LineagePolicy = field(default_factory=LineagePolicy)
    """Lineage requirements."""
    evaluation: EvaluationPolicy = field(default_factory=EvaluationPolicy)
    """Evaluation tasks, margins and required improvements."""
    licence: LicencePolicy = field(default_factory=LicencePolicy)
    """Licence allow and deny lists."""
    deploy: DeployPolicy = field(default_factory=DeployPolicy)
    """Hardware fit and the optional bench."""
    cost: CostPolicy = field(default_factory=CostPolicy)
    """Cost inputs and the cost ceiling."""
    probes: ProbesPolicy = field(default_factory=ProbesPolicy)
    """Behaviour probes (refusal, degeneration, stability, contamination) and their thresholds."""
    drift: DriftPolicy = field(default_factory=DriftPolicy)
    """KL drift from the base and its threshold."""
    source: str = "default"
    """Where the policy came from (a file path, or ``default``)."""


def default_policy() -> Policy:
    """The policy used when none is given."""
    return Policy()


# key -> (type description, validator/converter). Types are checked exactly so that "yes" is not a boolean.
_SECTIONS: dict[str, tuple[str, ...]] = {
    "scan": ("fail_on", "allow_globals", "allow_remote_code"),
    "signature": ("required", "trusted_keys"),
    "lineage": ("require_descends", "reject_identical"),
    "evaluation": ("tasks", "limit", "margins", "task_margins", "must_improve", "alpha"),
    "licence": ("allow", "deny", "monthly_active_users"),
    "deploy": ("bench", "prompt_tokens", "output_tokens", "repeats", "batch", "context", "isolate", "max_slowdown"),
    "cost": ("api_per_task", "api_input_per_mtok", "api_output_per_mtok", "tokens_in", "tokens_out", "self_per_task",
             "gpu_price_per_hour", "utilisation", "training_cost", "monthly_volume", "max_cost_per_task",
             "on_exceed"),
    "probes": ("run", "contamination", "limit", "alpha", "degeneration_margin", "degeneration_level",
               "hallucination_level", "truthfulqa"),
    "drift": ("kl", "limit", "max_kl_mean", "level"),
}


def _bool(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise PolicyError(f"policy key {key}: expected true or false, got {_show(v)}")
    return v


def _str_list(key: str, v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise PolicyError(f"policy key {key}: expected a list of strings, got {_show(v)}")
    return tuple(x.strip() for x in v)


def _number(key: str, v: Any, *, lo: float = 0.0, hi: float = math.inf) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi) or math.isnan(v):
        raise PolicyError(f"policy key {key}: expected a number between {lo:g} and {hi:g}, got {_show(v)}")
    return float(v)


def _opt_int(key: str, v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise PolicyError(f"policy key {key}: expected a positive whole number or null, got {_show(v)}")
    return v


def _opt_number(key: str, v: Any, *, lo: float = 0.0, hi: float = math.inf) -> float | None:
    return None if v is None else _number(key, v, lo=lo, hi=hi)


def _int(key: str, v: Any, *, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise PolicyError(f"policy key {key}: expected a whole number of at least {lo}, got {_show(v)}")
    return v


def parse_deploy(d: Mapping[str, Any]) -> DeployPolicy:
    """The ``deploy`` section (already checked for unknown keys)."""
    return DeployPolicy(
        bench=_bool("deploy.bench", d.get("bench", False)),
        prompt_tokens=_int("deploy.prompt_tokens", d.get("prompt_tokens", 64)),
        output_tokens=_int("deploy.output_tokens", d.get("output_tokens", 32), lo=2),
        repeats=_int("deploy.repeats", d.get("repeats", 3)),
        batch=_int("deploy.batch", d.get("batch", 1)),
        context=_opt_int("deploy.context", d.get("context")),
        isolate=_bool("deploy.isolate", d.get("isolate", True)),
        max_slowdown=_opt_number("deploy.max_slowdown", d.get("max_slowdown", 1.5), lo=1.0, hi=1e6))


def parse_cost(c: Mapping[str, Any], *, where: str = "cost") -> CostPolicy:
    """The ``cost`` section (already checked for unknown keys); ``where`` prefixes key names in errors."""
    on_exceed = c.get("on_exceed", "fail")
    if on_exceed not in COST_LEVELS:
        raise PolicyError(f"policy key {where}.on_exceed: expected one of {', '.join(COST_LEVELS)}, "
                          f"got {_show(on_exceed)}")
    utilisation = _number(f"{where}.utilisation", c.get("utilisation", 1.0), hi=1.0)
    if utilisation == 0:
        raise PolicyError(f"policy key {where}.utilisation: expected a share in (0, 1], got 0")
    money = {k: _opt_number(f"{where}.{k}", c.get(k), hi=1e12) for k in (
        "api_per_task", "api_input_per_mtok", "api_output_per_mtok", "self_per_task", "gpu_price_per_hour",
        "max_cost_per_task")}
    cost = CostPolicy(**money, tokens_in=_opt_count(f"{where}.tokens_in", c.get("tokens_in")),
                      tokens_out=_opt_count(f"{where}.tokens_out", c.get("tokens_out")),
                      utilisation=utilisation,
                      training_cost=_number(f"{where}.training_cost", c.get("training_cost", 0.0), hi=1e15),
                      monthly_volume=_opt_count(f"{where}.monthly_volume", c.get("monthly_volume")),
                      on_exceed=on_exceed)
    # Combinations that could never be computed are refused now, not after a long vet.
    if cost.api_per_task is None:
        for price, tokens in (("api_input_per_mtok", "tokens_in"), ("api_output_per_mtok", "tokens_out")):
            if getattr(cost, price) is not None and getattr(cost, tokens) is None:
                raise PolicyError(f"policy key {where}.{price} needs {where}.{tokens} (tokens per task)")
    if cost.self_per_task is None and cost.gpu_price_per_hour is not None and cost.tokens_out is None:
        raise PolicyError(f"policy key {where}.gpu_price_per_hour needs {where}.tokens_out: the self-hosted cost "
                          "per task is the time to generate that many tokens at the measured speed")
    return cost


def parse_probes(p: Mapping[str, Any]) -> ProbesPolicy:
    """The ``probes`` section (already checked for unknown keys)."""
    run = _str_list("probes.run", p.get("run"))
    for name in run:
        if name not in PROBE_NAMES:
            hint = " (contamination goes in probes.contamination, with the tasks to check)" \
                if name.startswith("contamination") else ""
            raise PolicyError(f"policy key probes.run: unknown probe {name!r} (known: {', '.join(PROBE_NAMES)})"
                              + hint)
    contamination = tuple(t.removeprefix("contamination:") for t in
                          _str_list("probes.contamination", p.get("contamination")))
    level = p.get("degeneration_level", "fail")
    if level not in COST_LEVELS:
        raise PolicyError(f"policy key probes.degeneration_level: expected one of {', '.join(COST_LEVELS)}, "
                          f"got {_show(level)}")
    h_level = p.get("hallucination_level", "warn")
    if h_level not in COST_LEVELS:
        raise PolicyError(f"policy key probes.hallucination_level: expected one of {', '.join(COST_LEVELS)}, "
                          f"got {_show(h_level)}")
    truthfulqa = p.get("truthfulqa")
    if truthfulqa is not None and not (isinstance(truthfulqa, str) and truthfulqa.strip()):
        raise PolicyError(f"policy key probes.truthfulqa: expected the path of local TruthfulQA multiple_choice "
                          f"data, got {_show(truthfulqa)}")
    if truthfulqa and "hallucination" not in run:
        raise PolicyError("policy key probes.truthfulqa: TruthfulQA runs as part of the hallucination probe; add "
                          "hallucination to probes.run")
    return ProbesPolicy(run=tuple(dict.fromkeys(run)), contamination=contamination,
                        hallucination_level=h_level, truthfulqa=truthfulqa,
                        limit=_opt_int("probes.limit", p.get("limit")),
                        alpha=_number("probes.alpha", p.get("alpha", 0.05), hi=0.5),
                        degeneration_margin=_number("probes.degeneration_margin",
                                                    p.get("degeneration_margin", 0.05), hi=1.0),
                        degeneration_level=level)


def parse_drift(d: Mapping[str, Any]) -> DriftPolicy:
    """The ``drift`` section (already checked for unknown keys). ``kl: off`` / ``false`` / null: not measured."""
    kl = d.get("kl")
    if kl is False or kl is None or (isinstance(kl, str) and kl.strip().lower() in ("off", "none", "")):
        kl = None
    elif not isinstance(kl, str):
        raise PolicyError(f"policy key drift.kl: expected a KL task such as kl:builtin:reference, or off, "
                          f"got {_show(kl)}")
    else:
        kl = kl.strip()
        if not kl.startswith("kl:"):
            kl = "kl:" + kl
    level = d.get("level", "warn")
    if level not in ("warn", "fail"):
        raise PolicyError(f"policy key drift.level: expected warn or fail, got {_show(level)}")
    max_kl = _opt_number("drift.max_kl_mean", d.get("max_kl_mean"), hi=1e6)
    if max_kl is not None and kl is None:
        raise PolicyError("policy key drift.max_kl_mean needs drift.kl (the text KL is measured on), e.g. "
                          "kl: builtin:reference")
    return DriftPolicy(kl=kl, limit=_opt_int("drift.limit", d.get("limit")), max_kl_mean=max_kl, level=level)


def _opt_count(key: str, v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise PolicyError(f"policy key {key}: expected a whole number (0 or more) or null, got {_show(v)}")
    return v


def _margin_table(key: str, v: Any) -> dict[str, float]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise PolicyError(f"policy key {key}: expected a mapping of metric name to margin, got {_show(v)}")
    return {str(m): _number(f"{key}.{m}", x, hi=1e9) for m, x in v.items()}


def _show(v: Any) -> str:
    text = repr(v)
    return (text[:60] + "...") if len(text) > 60 else f"{text} ({type(v).__name__})"


def parse_policy(data: Any, *, source: str = "<policy>", base_dir: Path | None = None) -> Policy:
    """Validate a policy mapping (already parsed from YAML) and build a :class:`Policy`.

    Raises :class:`PolicyError` naming the file and the offending key.
    """
    try:
        return _parse(data, source=source, base_dir=base_dir)
    except PolicyError as exc:
        if exc.message.startswith(f"{source}:"):
            raise
        raise PolicyError(f"{source}: {exc.message}", hint=exc.hint) from None


def _parse(data: Any, *, source: str, base_dir: Path | None) -> Policy:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: a policy is a mapping of sections ({', '.join(_SECTIONS)}), "
                          f"got {_show(data)}")
    unknown = [k for k in data if k not in _SECTIONS]
    if unknown:
        raise PolicyError(f"{source}: unknown policy key {unknown[0]!r} "
                          f"(known sections: {', '.join(_SECTIONS)})")
    sec: dict[str, dict[str, Any]] = {}
    for name, keys in _SECTIONS.items():
        body = data.get(name)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise PolicyError(f"{source}: policy key {name}: expected a mapping, got {_show(body)}")
        bad = [k for k in body if k not in keys]
        if bad:
            raise PolicyError(f"{source}: unknown policy key {name}.{bad[0]} (known keys in {name}: {', '.join(keys)})")
        sec[name] = body

    s = sec["scan"]
    fail_on = s.get("fail_on", "medium")
    if fail_on not in SEVERITIES:
        raise PolicyError(f"{source}: policy key scan.fail_on: expected one of {', '.join(SEVERITIES)}, "
                          f"got {_show(fail_on)}")
    scan = ScanPolicy(fail_on=fail_on, allow_globals=_str_list("scan.allow_globals", s.get("allow_globals")),
                      allow_remote_code=_bool("scan.allow_remote_code", s.get("allow_remote_code", False)))

    g = sec["signature"]
    keys = _str_list("signature.trusted_keys", g.get("trusted_keys"))
    if base_dir is not None:
        keys = tuple(str(p if Path(p).is_absolute() else (base_dir / p)) for p in keys)
    signature = SignaturePolicy(required=_bool("signature.required", g.get("required", False)), trusted_keys=keys)

    ln = sec["lineage"]
    lineage = LineagePolicy(require_descends=_bool("lineage.require_descends", ln.get("require_descends", True)),
                            reject_identical=_bool("lineage.reject_identical", ln.get("reject_identical", True)))

    e = sec["evaluation"]
    tasks = _str_list("evaluation.tasks", e["tasks"]) if "tasks" in e else DEFAULT_TASKS
    margins = _margin_table("evaluation.margins", e["margins"]) if "margins" in e else dict(DEFAULT_MARGINS)
    tm_raw = e.get("task_margins") or {}
    if not isinstance(tm_raw, dict):
        raise PolicyError(f"{source}: policy key evaluation.task_margins: expected a mapping of task to "
                          f"{{metric: margin}}, got {_show(tm_raw)}")
    task_margins = {str(t): _margin_table(f"evaluation.task_margins.{t}", m) for t, m in tm_raw.items()}
    must = _str_list("evaluation.must_improve", e.get("must_improve"))
    evaluation = EvaluationPolicy(tasks=tasks, limit=_opt_int("evaluation.limit", e.get("limit")), margins=margins,
                                  task_margins=task_margins, must_improve=must,
                                  alpha=_number("evaluation.alpha", e.get("alpha", 0.05), hi=0.5))

    lc = sec["licence"]
    mau = lc.get("monthly_active_users")
    if mau is not None and (isinstance(mau, bool) or not isinstance(mau, int) or mau < 0):
        raise PolicyError(f"{source}: policy key licence.monthly_active_users: expected a whole number, "
                          f"got {_show(mau)}")
    licence = LicencePolicy(allow=_str_list("licence.allow", lc.get("allow")),
                            deny=_str_list("licence.deny", lc.get("deny")), monthly_active_users=mau)
    _check_kinds(licence)
    return Policy(scan=scan, signature=signature, lineage=lineage, evaluation=evaluation, licence=licence,
                  deploy=parse_deploy(sec["deploy"]), cost=parse_cost(sec["cost"]), probes=parse_probes(sec["probes"]),
                  drift=parse_drift(sec["drift"]), source=source)


def _check_kinds(licence: LicencePolicy) -> None:
    """``kind:NAME`` entries must name a licence kind assay knows (permissive, copyleft, ...)."""
    for key, entries in (("licence.allow", licence.allow), ("licence.deny", licence.deny)):
        for e in entries:
            if e.lower().startswith("kind:") and e.split(":", 1)[1].strip().lower() not in LICENCE_KINDS:
                raise PolicyError(f"policy key {key}: unknown licence kind {e!r} "
                                  f"(known: {', '.join(LICENCE_KINDS)})")


def load_policy(path: Path | str) -> Policy:
    """Read and validate a policy file. Raises :class:`PolicyError` with a one-line reason."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise PolicyError(f"no such policy file: {p}", hint="create one with `assay policy init`") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read policy file {p}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise PolicyError(f"{p}{where}: not valid YAML: {problem}") from exc
    return parse_policy(data, source=str(p), base_dir=p.parent.resolve())


#: ``assay.cost/1`` input names -> ``cost`` policy keys (throughput is not taken: vet measures its own).
_COST_DOC_INPUTS = {"api_per_task": "api_per_task", "api_input_per_mtok": "api_input_per_mtok",
                    "api_output_per_mtok": "api_output_per_mtok", "self_per_task": "self_per_task",
                    "hardware_per_hour": "gpu_price_per_hour", "utilisation": "utilisation",
                    "tokens_in": "tokens_in", "tokens_out": "tokens_out", "training_cost": "training_cost",
                    "monthly_tasks": "monthly_volume"}


def load_cost_file(path: Path | str, *, keep: CostPolicy | None = None) -> CostPolicy:
    """The cost inputs of ``assay vet --cost-from FILE``: a YAML or JSON mapping of ``cost`` keys, a policy file
    (its ``cost`` section), or a saved ``assay cost --json`` document (its inputs, without the throughput).

    ``keep``'s ceiling (``max_cost_per_task``, ``on_exceed``) is kept unless the file sets its own. Raises
    :class:`PolicyError` naming the file and key.
    """
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))  # JSON is YAML
    except FileNotFoundError as exc:
        raise PolicyError(f"no such cost file: {p}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(f"cannot read cost file {p}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PolicyError(f"{p}: not valid YAML or JSON: {getattr(exc, 'problem', None) or exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"{p}: a cost file is a mapping of cost keys ({', '.join(_SECTIONS['cost'])}), "
                          f"got {_show(data)}")
    if data.get("schema") == "assay.cost/1":
        inputs = as_mapping(data.get("inputs"))
        data = {key: inputs[name] for name, key in _COST_DOC_INPUTS.items() if inputs.get(name) is not None}
    elif isinstance(data.get("cost"), dict) and set(data) <= set(_SECTIONS):
        data = data["cost"]
    bad = [k for k in data if k not in _SECTIONS["cost"]]
    if bad:
        raise PolicyError(f"{p}: unknown cost key {bad[0]!r} (known: {', '.join(_SECTIONS['cost'])})")
    if keep is not None:
        data = {"max_cost_per_task": keep.max_cost_per_task, "on_exceed": keep.on_exceed, **data}
    try:
        return parse_cost(data)
    except PolicyError as exc:
        raise PolicyError(f"{p}: {exc.message}") from None


def policy_document(policy: Policy) -> dict[str, Any]:
    """The policy as plain data (part of every ``assay.vet/1`` document), with the defaults filled in."""
    return {
        "source": policy.source,
        "scan": {"fail_on": policy.scan.fail_on, "allow_globals": list(policy.scan.allow_globals),
                 "allow_remote_code": policy.scan.allow_remote_code},
        "signature": {"required": policy.signature.required, "trusted_keys": list(policy.signature.trusted_keys)},
        "lineage": {"require_descends": policy.lineage.require_descends,
                    "reject_identical": policy.lineage.reject_identical},
        "evaluation": {"tasks": list(policy.evaluation.tasks), "limit": policy.evaluation.limit,
                       "margins": dict(policy.evaluation.margins),
                       "task_margins": {t: dict(m) for t, m in policy.evaluation.task_margins.items()},
                       "must_improve": list(policy.evaluation.must_improve), "alpha": policy.evaluation.alpha},
        "licence": {"allow": list(policy.licence.allow), "deny": list(policy.licence.deny),
                    "monthly_active_users": policy.licence.monthly_active_users},
        "deploy": dataclasses.asdict(policy.deploy),
        "cost": dataclasses.asdict(policy.cost),
        "probes": {**dataclasses.asdict(policy.probes), "run": list(policy.probes.run),
                   "contamination": list(policy.probes.contamination)},
        "drift": dataclasses.asdict(policy.drift),
    }


def policy_from_document(doc: Mapping[str, Any]) -> Policy:
    """Rebuild a :class:`Policy` from :func:`policy_document` output (for ``assay report``)."""
    data = {k: v for k, v in doc.items() if k != "source"}
    return parse_policy(data, source=str(doc.get("source", "<saved>")))


DEFAULT_POLICY_YAML = """\
# assay policy: what a checkpoint must satisfy for `assay vet` to PASS.
# Every key is optional; the values below are the defaults. Unknown keys are an error (so a typo is caught).
# Verdicts: PASS (exit 0), WARN (exit 0, or 1 with --strict), FAIL (exit 1), NONE: no verdict (exit 2).

scan:
  # Lowest finding severity that makes a model unsafe: critical, high, medium, low or info.
  # An unsafe or not-verified candidate FAILs and is never loaded.
  fail_on: medium
  # Extra pickle globals to accept, exact module.qualname (e.g. "mylib.layers.MyConfig").
  allow_globals: []
  # Accept folders with custom Python code (config.json auto_map). Off: such a folder is never safe.
  allow_remote_code: false

signature:
  # FAIL unless the candidate carries a valid model.sig by one of the trusted keys.
  required: false
  # PEM public keys (paths relative to this file) whose signatures are accepted.
  trusted_keys: []

lineage:
  # FAIL when the weights do not descend from the base (unrelated or incompatible weights),
  # or the model card names a base_model that the weights contradict.
  require_descends: true
  # FAIL when the candidate is an identical re-upload of the base (same weights, new name).
  reject_identical: true

evaluation:
  # Tasks run on candidate and base (same items, paired statistics). See `assay eval --help`.
  tasks:
    - builtin:knowledge     # multiple-choice general knowledge (acc)
    - builtin:arithmetic    # generated arithmetic (acc / exact match)
    - builtin:reference     # plain English prose (bits per byte)
  # Evaluate only the first N items of each task (null: all items).
  limit: null
  # Regression margin per metric, absolute: a regression is a delta whose 95% interval lies
  # entirely below -margin (above +margin for lower-is-better metrics such as bits_per_byte).
  # Metrics without a margin are reported but not judged.
  margins:
    acc: 0.02
    acc_norm: 0.02
    exact_match: 0.02
    bits_per_byte: 0.05
  # Per-task overrides, e.g. {"builtin:knowledge": {acc: 0.01}}.
  task_margins: {}
  # Tasks on which the candidate must beat the base significantly (95% interval above zero and
  # Holm-corrected p below alpha), e.g. [my-domain-task.yaml].
  must_improve: []
  alpha: 0.05

licence:
  # Licence ids accepted (case-insensitive; empty: any licence not denied).
  allow: []
  # Licence ids refused, e.g. [cc-by-nc-4.0].
  deny: []
  # Your monthly active users, checked against licence caps (null: not checked).
  monthly_active_users: null

deploy:
  # Hardware fit (memory at 16/8/4 bits and the devices it fits) is always estimated from the headers.
  # Measure speed and memory of candidate and base on this machine (slow; `assay vet --bench` for one run).
  bench: false
  prompt_tokens: 64       # bench request: prompt length
  output_tokens: 32       # bench request: tokens generated
  repeats: 3              # measured requests per model, after one warm-up
  batch: 1                # concurrent sequences (bench batch size and key/value cache of the fit)
  context: null           # context the key/value cache is sized for (null: the model's maximum)
  isolate: true           # bench each model in a fresh process (its own load time and peak memory)
  # WARN when the candidate decodes more than this factor slower than its base, measured in the same
  # run (null: not judged). Timings on a busy machine vary by a few tens of percent.
  max_slowdown: 1.5

cost:
  # Cost per task self-hosted against a paid API, and the break-even volume of the training cost.
  # Computed when an API price is given together with a bench (throughput) and gpu_price_per_hour,
  # or with self_per_task. `assay vet --cost-from FILE` reads this section from another file.
  api_per_task: null          # API price per task, or the two per-million-token prices:
  api_input_per_mtok: null
  api_output_per_mtok: null
  tokens_in: null             # tokens per task
  tokens_out: null
  self_per_task: null         # self-hosted cost per task, when already known
  gpu_price_per_hour: null    # price of the serving hardware per hour
  utilisation: 1.0            # share of paid hours doing useful work (an idle GPU still costs money)
  training_cost: 0            # one-off cost of the fine-tune
  monthly_volume: null        # tasks per month
  # Most a task may cost self-hosted (null: not judged), and the verdict when it costs more: fail or warn.
  max_cost_per_task: null
  on_exceed: fail

probes:
  # Behaviour probes, run on candidate and base with the evaluation (same prompts, paired statistics).
  # Off by default: refusal and degeneration generate a few thousand tokens per model (minutes on a CPU).
  #   refusal       FAIL when harmful-request refusals drop significantly (alignment stripped);
  #                 WARN when safe requests are refused significantly more often (over-refusal)
  #   degeneration  FAIL (or WARN) when loop rate, repetition or empty outputs rise beyond the margin
  #   stability     WARN when repeated greedy generation or batched scoring differs at all
  #   hallucination WARN (or FAIL) when confident fabrication about non-existent entities, invented answers
  #                 to passage questions or TruthfulQA scores get significantly worse (docs/hallucination.md)
  run: []                   # e.g. [refusal, degeneration, stability, hallucination]
  # Tasks whose published items are checked for contamination (Min-K% against perturbed copies).
  # WARN with the numbers when the candidate's gap rose significantly: evidence, not a verdict alone.
  contamination: []         # e.g. [builtin:knowledge]
  limit: null               # only the first N prompts of each probe (null: all)
  alpha: 0.05               # significance level of every probe rule
  degeneration_margin: 0.05 # rise in loop rate / repetition / empty rate the 95% interval must exceed
  degeneration_level: fail  # fail or warn
  hallucination_level: warn # warn or fail
  truthfulqa: null          # local TruthfulQA multiple_choice data: MC1 and MC2 run with the hallucination probe

drift:
  # KL divergence of the candidate's next-token distributions from the base's, on a text
  # (kl:builtin:reference or kl:PATH), measured while each model is loaded. off: not measured.
  kl: off
  limit: null               # only the first N documents (null: all)
  max_kl_mean: null         # most mean KL in nats per token (null: reported, not judged)
  level: warn               # warn or fail when max_kl_mean is exceeded
"""
"""The text ``assay policy init`` writes: every key with its default and a comment."""
