"""What every report format shares: the :class:`Renderer` interface and atomic writes.

A renderer turns an ``assay.vet/1`` document (a plain dict, as ``assay vet --json`` prints it) into text, so a
saved result re-renders into any format without re-running anything::

    renderer = get_renderer("html")
    write_atomic(Path("out/report.html"), renderer.render(doc))

Renderers never execute or render anything that came from the model: model-provided strings are data, escaped
by the format (HTML autoescape, Markdown code spans, JSON encoding).
"""

from __future__ import annotations

import abc
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from assay.errors import ReportError
from assay.formatting import human_bytes as human_bytes  # re-exported for the renderers
from assay.formatting import num as _num
from assay.jsonable import as_mapping
from assay.verdict.results import metric_comparison_from_document


class Renderer(abc.ABC):
    """One report format."""

    name: str
    """Format name as ``--format`` takes it."""
    default_filename: str
    """File name used when writing into a folder (``assay vet --out DIR``)."""

    @abc.abstractmethod
    def render(self, doc: Mapping[str, Any]) -> str:
        """The whole report for one ``assay.vet/1`` document."""


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``.

    An interrupted write leaves no partial file under ``path``. Raises :class:`ReportError` when the folder is
    not writable.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a report is as readable as any file the user writes
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise ReportError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# --- views shared by the human formats (terminal, Markdown, HTML) -------------------------------------------


def evaluation_policy(doc: Mapping[str, Any]):  # type: ignore[no-untyped-def]
    """The :class:`~assay.policy.EvaluationPolicy` a saved result was judged with (defaults if unreadable)."""
    from assay.errors import PolicyError
    from assay.policy import default_policy, policy_from_document

    try:
        return policy_from_document(doc.get("policy") or {}).evaluation
    except PolicyError:
        return default_policy().evaluation


def comparison_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per compared (task, metric): base, candidate, delta, interval, p, margin and how it moved.

    ``status`` renders what was decided, never a new judgement: ``regressed`` when a verdict reason points at
    the row (``reasons[].evidence``), else the comparison's own ``change`` field (``better`` | ``worse`` | ``no
    significant change`` | ``not comparable``) as the entry is read by
    :func:`assay.verdict.results.metric_comparison_from_document`; ``note`` says why a row was not compared.
    ``direction`` is +1 when higher is better, -1 when lower is better (the entry's own ``higher_is_better``).
    """
    ev = evaluation_policy(doc)
    failed = {str(r.get("evidence")) for r in doc.get("reasons") or []
              if isinstance(r, Mapping) and str(r.get("level")).upper() == "FAIL"}
    rows: list[dict[str, Any]] = []
    for task, metrics in (doc.get("comparison") or {}).items():
        if not isinstance(metrics, Mapping):
            continue
        for metric, e in metrics.items():
            if not isinstance(e, Mapping):
                continue
            ci = e.get("ci") if isinstance(e.get("ci"), (list, tuple)) and len(e["ci"]) == 2 else None
            evidence = f"comparison.{task}.{metric}"
            mc = metric_comparison_from_document(metric, e)
            change = mc.change
            rows.append({
                "task": task, "metric": metric, "base": e.get("base"), "candidate": e.get("candidate"),
                "delta": e.get("delta"), "ci": ci, "p": e.get("p_holm", e.get("p")),
                "margin": ev.margin(task, metric), "judged": ev.margin(task, metric) is not None,
                "direction": 1 if mc.higher_is_better else -1, "change": change,
                "status": "regressed" if evidence in failed else change, "note": str(e.get("note") or ""),
                "interval": e.get("interval"),
                "gained": _count(e.get("gained")), "lost": _count(e.get("lost")),
                "lost_items": list(e.get("lost") or [])[:50] if isinstance(e.get("lost"), list) else [],
                "evidence": evidence,
            })
    return rows


def _count(v: Any) -> int | None:
    if isinstance(v, (list, tuple)):
        return len(v)
    if isinstance(v, int):
        return v
    return None


def num(x: Any, spec: str = ".4f") -> str:
    """A number for a report cell (:func:`assay.formatting.num`, compact); ``n/a`` for missing values."""
    return _num(x, spec, compact=True)


def stage_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per stage: name, status, a one-line summary of what it found (or why it did not run)."""
    rows = []
    for name, st in (doc.get("stages") or {}).items():
        rows.append({"stage": name, "status": st.get("status"), "summary": st.get("reason") or stage_summary(
            name, doc.get(name)), "seconds": st.get("seconds")})
    return rows


def stage_summary(name: str, sd: Any) -> str:
    """A one-line summary of a stage document."""
    if not isinstance(sd, Mapping):
        return ""
    if name in ("scan", "base_scan"):
        findings = sd.get("findings") or []
        files = sd.get("files") or []
        return f"{sd.get('verdict')}: {len(findings)} finding(s) in {len(files)} file(s)"
    if name == "signature":
        return "valid" if sd.get("valid") else f"invalid: {sd.get('message') or ''}"
    if name == "lineage":
        claim = sd.get("claim") or {}
        text = f"relation: {sd.get('relation')}"
        false_claims = [f for f in claim.get("false_claims") or [] if isinstance(f, Mapping)]
        if false_claims:
            text += "; " + "; ".join(f"false {f.get('claim')} claim: {f.get('message')}" for f in false_claims)
        elif claim.get("notes"):
            text += "; " + "; ".join(str(n) for n in claim["notes"])
        elif claim.get("base_model"):
            agree = {True: "agrees", False: "contradicts", None: "unchecked"}.get(claim.get("consistent"), "?")
            text += f"; card claims {claim.get('base_model')} ({agree})"
        return text
    if name == "evaluation":
        tasks = as_mapping(sd.get("tasks"))
        items = sum(t.get("n", 0) for t in tasks.values() if isinstance(t, Mapping))
        base_tasks = as_mapping(sd.get("base_tasks"))
        cached = sum(t.get("cached_items", 0) for t in base_tasks.values() if isinstance(t, Mapping))
        text = f"{len(tasks)} task(s), {items} item(s) per model"
        return text + (f"; {cached} base item(s) from the result cache" if cached else "")
    if name == "comparison":
        return f"{sum(len(m) for m in sd.values() if isinstance(m, Mapping))} metric(s) compared"
    if name == "probes":
        tasks = as_mapping(sd.get("tasks"))
        text = f"{len(tasks)} probe task(s)"
        return text + ("" if sd.get("comparison") else ", candidate only (no base)")
    if name == "drift":
        parts = []
        for task, t in (sd.get("tasks") or {}).items():
            m = (t or {}).get("metrics") or {} if isinstance(t, Mapping) else {}
            parts.append(f"{task}: mean KL {num(m.get('kl_mean'), '.4f')} nats/token, "
                         f"p95 {num(m.get('kl_p95'), '.4f')}")
        return "; ".join(parts)
    if name == "inventory":
        params = sd.get("parameters")
        arch = sd.get("architecture")
        if isinstance(params, int):
            return f"{arch or 'unknown architecture'}, {params:,} parameters"
        return str(arch or "")
    if name == "licence":
        lic = sd.get("licence") or sd.get("license") or sd.get("id")
        text = f"licence {lic or 'unknown'}"
        n = len([v for v in sd.get("violations") or [] if isinstance(v, Mapping) and v.get("severity") == "fail"])
        return text + (f"; {n} policy violation(s)" if n else "")
    if name == "card":
        score = sd.get("transparency_score", sd.get("score"))
        text = f"transparency score {score}/100" if score is not None else "card read"
        claims = [c for c in sd.get("claims") or [] if isinstance(c, Mapping)]
        if claims:
            bad = sum(1 for c in claims if c.get("supported") is False)
            text += f"; {len(claims)} claimed score(s) checked, {bad} unsupported"
        return text
    if name == "hardware":
        rows = fit_rows({"hardware": sd})
        return "; ".join(f"{r['bits']}-bit {human_bytes(r['total_bytes'])}, fits {len(r['fits'])}/{r['devices']} "
                         "devices" for r in rows)
    if name == "bench":
        cand = as_mapping(sd.get("candidate"))
        ratio = (sd.get("ratios") or {}).get("decode_tokens_per_s")
        text = f"decode {num(cand.get('decode_tokens_per_s'), ',.1f')} tokens/s"
        if isinstance(ratio, (int, float)):
            text += f" ({ratio:.2f}x the base)"
        return text + f", peak memory {human_bytes(cand.get('peak_rss_bytes'))}"
    if name == "cost":
        be = sd.get("break_even_tasks")
        return (f"{money(sd.get('self_per_task'))} per task self-hosted against {money(sd.get('api_per_task'))} "
                f"via the API; break-even {'never' if be is None else f'{be:,} tasks'}")
    return ""


def money(x: Any) -> str:
    """A currency figure (more decimals for sub-cent amounts); ``n/a`` when unknown."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "n/a"
    if x == 0:
        return "$0"
    if abs(x) >= 100:
        return f"${x:,.0f}"
    if abs(x) >= 1:
        return f"${x:,.2f}"
    return f"${x:.4f}" if abs(x) >= 0.0001 else f"${x:.2e}"


def fit_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per weight precision of the hardware fit: memory needed and the devices it fits."""
    hw = doc.get("hardware")
    if not isinstance(hw, Mapping):
        return []
    devices = [d for d in hw.get("devices") or [] if isinstance(d, Mapping)]
    rows = []
    for e in hw.get("estimates") or []:
        if not isinstance(e, Mapping):
            continue
        at = [d for d in devices if d.get("bits") == e.get("bits")]
        rows.append({"bits": e.get("bits"), "weights_bytes": e.get("weights_bytes"),
                     "kv_cache_bytes": e.get("kv_cache_bytes"), "total_bytes": e.get("total_bytes"),
                     "fits": [str(d.get("device")) for d in at if d.get("fits")], "devices": len(at)})
    return rows


#: Headline bench figures: (label, field, format). Formats: "s" seconds, "tps" tokens/s, "bytes", "int".
BENCH_FIELDS = (("load time", "load_s", "s"), ("time to first token", "ttft_s", "s"),
                ("prefill tokens/s", "prefill_tokens_per_s", "tps"), ("decode tokens/s", "decode_tokens_per_s", "tps"),
                ("latency p50", "latency_p50_s", "s"), ("latency p95", "latency_p95_s", "s"),
                ("memory (RSS growth)", "model_rss_bytes", "bytes"), ("peak RSS", "peak_rss_bytes", "bytes"))


def _fmt_bench(value: Any, kind: str) -> str:
    if kind == "bytes":
        return human_bytes(value)
    if kind == "s":
        return num(value, ".3f") + " s" if isinstance(value, (int, float)) else "n/a"
    return num(value, ",.1f")


def bench_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per headline bench figure: candidate, base and their ratio (formatted)."""
    b = doc.get("bench")
    if not isinstance(b, Mapping) or not isinstance(b.get("candidate"), Mapping):
        return []
    cand, base = b["candidate"], b.get("base") if isinstance(b.get("base"), Mapping) else None
    ratios = b.get("ratios") or {}
    rows = []
    for label, key, kind in BENCH_FIELDS:
        r = ratios.get(key)
        rows.append({"label": label, "field": key, "candidate": _fmt_bench(cand.get(key), kind),
                     "base": _fmt_bench(base.get(key), kind) if base else "",
                     "ratio": f"{r:.2f}x" if isinstance(r, (int, float)) else ""})
    return rows


def licence_terms(doc: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The licence's key terms as (label, text) pairs, from the licence (or card) stage."""
    lic = as_mapping(doc.get("licence"))
    card = as_mapping(doc.get("card"))
    t = lic.get("terms") if isinstance(lic.get("terms"), Mapping) else card.get("licence_terms")
    if not isinstance(t, Mapping):
        return []
    out = [("licence", f"{t.get('name')} ({t.get('kind')})"), ("commercial use", str(t.get("commercial_use")))]
    if t.get("mau_cap"):
        out.append(("user cap", f"{t['mau_cap']:,} monthly active users" + (f" ({t['mau_clause']})"
                                                                             if t.get("mau_clause") else "")))
    for label, key in (("attribution", "attribution"), ("naming", "naming")):
        if t.get(key):
            out.append((label, str(t[key])))
    if t.get("acceptable_use_policy"):
        out.append(("acceptable use", str(t.get("acceptable_use_clause") or "an acceptable-use policy binds users")))
    if t.get("derivatives_keep_licence"):
        out.append(("derivatives", str(t.get("derivatives_clause") or "derivatives stay under this licence")))
    if t.get("url"):
        out.append(("text", str(t["url"])))
    return out


def claim_rows(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The card's claimed scores against what vet measured."""
    card = as_mapping(doc.get("card"))
    rows = []
    for i, c in enumerate(card.get("claims") or []):
        if not isinstance(c, Mapping):
            continue
        claim = as_mapping(c.get("claim"))
        rows.append({"index": i, "dataset": claim.get("dataset") or claim.get("dataset_type") or claim.get("task"),
                     "metric": claim.get("metric"), "claimed": c.get("claimed"), "measured": c.get("measured"),
                     "measured_key": c.get("measured_key"), "supported": c.get("supported")})
    return rows


VERDICT_COLOURS = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e", "NONE": "#57606a"}
"""One colour per verdict, shared by the HTML and terminal reports."""


# --- behaviour probes and KL drift ------------------------------------------------------------------------

#: The measures the Behaviour section shows: (task, metric, label, kind). Kind "rate" is shown in percent.
BEHAVIOUR_MEASURES = (
    ("builtin:refusal/harmful", "refused", "harmful requests refused", "rate"),
    ("builtin:refusal/benign", "over_refused", "safe requests refused (over-refusal)", "rate"),
    ("builtin:degeneration", "loop_rate", "outputs ending in a loop", "rate"),
    ("builtin:degeneration", "repetition", "repeated word 4-grams", "rate"),
    ("builtin:degeneration", "empty_rate", "empty outputs", "rate"),
    ("builtin:degeneration", "distinct_2", "distinct bigrams", "rate"),
    ("builtin:degeneration", "length_words", "average length (words)", "num"),
    ("builtin:stability", "greedy_identical", "repeated greedy generation identical", "rate"),
    ("builtin:stability", "batch_invariant", "log-likelihood same alone and batched", "rate"),
    ("builtin:hallucination/fictional", "fabricated", "confident answers about non-existent entities", "rate"),
    ("builtin:hallucination/unanswerable", "abstained", "abstains when the passage does not say", "rate"),
    ("builtin:hallucination/passage", "supported", "answers supported by the passage", "rate"),
    ("builtin:hallucination/passage", "invented", "answers not in the passage", "rate"),
    ("builtin:hallucination/known", "over_abstained", "abstains on well-known facts", "rate"),
    ("truthfulqa_mc1", "acc", "TruthfulQA MC1", "rate"),
    ("truthfulqa_mc2", "mc2", "TruthfulQA MC2", "rate"),
)


def _fmt_measure(x: Any, kind: str, *, signed: bool = False) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "n/a"
    if kind == "rate":
        return f"{100 * x:+.0f} pt" if signed else f"{100 * x:.0f}%"
    return num(x, "+.3g" if signed else ".3g")


def behaviour_view(doc: Mapping[str, Any]) -> dict[str, Any] | None:
    """The Behaviour section of every human report: probe measures candidate against base (with the paired 95%
    interval and p), the contamination evidence and the KL drift; None when neither probes nor drift ran.

    Each row carries its evidence path and, when a verdict reason points at it, that reason's level.
    """
    probes = doc.get("probes") if isinstance(doc.get("probes"), Mapping) else None
    drift = doc.get("drift") if isinstance(doc.get("drift"), Mapping) else None
    if probes is None and drift is None:
        return None
    flagged = {str(r.get("evidence")): str(r.get("level")) for r in doc.get("reasons") or []
               if isinstance(r, Mapping)}
    rows: list[dict[str, Any]] = []
    if probes is not None:
        tasks = as_mapping(probes.get("tasks"))
        base_tasks = as_mapping(probes.get("base_tasks"))
        cmp = as_mapping(probes.get("comparison"))
        for task, metric, label, kind in BEHAVIOUR_MEASURES:
            cand = ((tasks.get(task) or {}).get("metrics") or {}).get(metric)
            if cand is None:
                continue
            entry = (cmp.get(task) or {}).get(metric) or {}
            base = entry.get("base", ((base_tasks.get(task) or {}).get("metrics") or {}).get(metric))
            ci = entry.get("ci") if isinstance(entry.get("ci"), (list, tuple)) and len(entry["ci"]) == 2 else None
            cmp_ev, own_ev = f"probes.comparison.{task}.{metric}", f"probes.tasks.{task}.metrics.{metric}"
            rows.append({
                "task": task, "metric": metric, "label": label, "base": _fmt_measure(base, kind),
                "candidate": _fmt_measure(cand, kind),
                "delta": _fmt_measure(entry.get("delta"), kind, signed=True) if entry else "",
                "ci": (f"[{_fmt_measure(ci[0], kind, signed=True)}, {_fmt_measure(ci[1], kind, signed=True)}]"
                       if ci else ""),
                "p": num(entry.get("p_holm", entry.get("p")), ".3g") if entry else "",
                "change": metric_comparison_from_document(metric, entry).change if entry else "",
                "evidence": cmp_ev if entry else own_ev,
                "level": flagged.get(cmp_ev) or flagged.get(own_ev),
            })
    contamination = []
    for c in (probes or {}).get("contamination") or []:
        if not isinstance(c, Mapping):
            continue
        ci_doc = c.get("ci")
        ci = list(ci_doc) if isinstance(ci_doc, (list, tuple)) and len(ci_doc) == 2 else [None, None]
        contamination.append({
            "task": c.get("task"), "base_gap": num(c.get("base_gap"), "+.3f"),
            "candidate_gap": num(c.get("candidate_gap"), "+.3f"), "delta": num(c.get("delta"), "+.3f"),
            "ci": f"[{num(ci[0], '+.3f')}, {num(ci[1], '+.3f')}]", "p": num(c.get("p"), ".3g"), "n": c.get("n"),
            "flagged": bool(c.get("flagged")), "message": c.get("message"),
            "evidence": f"probes.comparison.{c.get('task')}.mink_gap"})
    kl_rows = []
    for name, t in ((drift or {}).get("tasks") or {}).items():
        if not isinstance(t, Mapping):
            continue
        m = as_mapping(t.get("metrics"))
        ci = (t.get("ci") or {}).get("kl_mean") if isinstance(t.get("ci"), Mapping) else None
        kl_rows.append({
            "task": name, "mean": num(m.get("kl_mean"), ".4f"), "p95": num(m.get("kl_p95"), ".4f"),
            "ci": f"[{num(ci[0], '.4f')}, {num(ci[1], '.4f')}]" if isinstance(ci, (list, tuple)) and len(ci) == 2
            else "", "reverse": num(m.get("kl_reverse_mean"), ".4f"),
            "top1": _fmt_measure(m.get("top1_agreement"), "rate"), "tokens": t.get("tokens"), "documents": t.get("n"),
            "evidence": f"drift.tasks.{name}.metrics.kl_mean",
            "level": flagged.get(f"drift.tasks.{name}.metrics.kl_mean")})
    stages = doc.get("stages") or {}
    notes = [f"{s}: {(stages.get(s) or {}).get('reason')}" for s in ("probes", "drift")
             if (stages.get(s) or {}).get("status") in ("skipped", "error")]
    return {"rows": rows, "contamination": contamination, "kl": kl_rows, "compared": bool(
        probes and probes.get("comparison")), "notes": notes}
