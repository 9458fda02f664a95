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

    ``status`` is ``regressed`` | ``improved`` | ``better`` | ``worse`` | ``unchanged`` | ``unknown``, decided by
    the same test the verdict uses; ``direction`` is +1 when higher is better, -1 when lower is better.
    """
    from assay.verdict import _metric_direction, classify_delta

    ev = evaluation_policy(doc)
    rows: list[dict[str, Any]] = []
    for task, metrics in (doc.get("comparison") or {}).items():
        if not isinstance(metrics, Mapping):
            continue
        for metric, e in metrics.items():
            if not isinstance(e, Mapping):
                continue
            ci = e.get("ci") if isinstance(e.get("ci"), (list, tuple)) and len(e["ci"]) == 2 else None
            rows.append({
                "task": task, "metric": metric, "base": e.get("base"), "candidate": e.get("candidate"),
                "delta": e.get("delta"), "ci": ci, "p": e.get("p_holm", e.get("p")),
                "margin": ev.margin(task, metric), "judged": ev.margin(task, metric) is not None,
                "direction": _metric_direction(metric, e), "status": classify_delta(task, metric, e, ev),
                "gained": _count(e.get("gained")), "lost": _count(e.get("lost")),
                "lost_items": list(e.get("lost") or [])[:50] if isinstance(e.get("lost"), list) else [],
                "evidence": f"comparison.{task}.{metric}",
            })
    return rows


def _count(v: Any) -> int | None:
    if isinstance(v, (list, tuple)):
        return len(v)
    if isinstance(v, int):
        return v
    return None


def num(x: Any, spec: str = ".4f") -> str:
    """A number formatted for people; ``n/a`` for missing values."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "n/a"
    if abs(x) >= 1e5 and spec.endswith("f"):  # perplexities of tiny models: keep the columns narrow
        return format(x, "+.4g" if "+" in spec else ".4g")
    return format(x, spec)


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
        if claim.get("base_model"):
            agree = {True: "agrees", False: "contradicts", None: "unchecked"}.get(claim.get("consistent"), "?")
            text += f"; card claims {claim.get('base_model')} ({agree})"
        return text
    if name == "evaluation":
        tasks = sd.get("tasks") if isinstance(sd.get("tasks"), Mapping) else {}
        items = sum(t.get("n", 0) for t in tasks.values() if isinstance(t, Mapping))
        base_tasks = sd.get("base_tasks") if isinstance(sd.get("base_tasks"), Mapping) else {}
        cached = sum(t.get("cached_items", 0) for t in base_tasks.values() if isinstance(t, Mapping))
        text = f"{len(tasks)} task(s), {items} item(s) per model"
        return text + (f"; {cached} base item(s) from the result cache" if cached else "")
    if name == "comparison":
        return f"{sum(len(m) for m in sd.values() if isinstance(m, Mapping))} metric(s) compared"
    if name == "inventory":
        params = sd.get("parameters")
        arch = sd.get("architecture")
        if isinstance(params, int):
            return f"{arch or 'unknown architecture'}, {params:,} parameters"
        return str(arch or "")
    if name == "licence":
        lic = sd.get("licence") or sd.get("license") or sd.get("id")
        return f"licence {lic or 'unknown'}"
    if name == "card":
        score = sd.get("transparency_score", sd.get("score"))
        return f"transparency score {score}" if score is not None else "card read"
    return ""


VERDICT_COLOURS = {"PASS": "#1a7f37", "WARN": "#9a6700", "FAIL": "#cf222e", "NONE": "#57606a"}
"""One colour per verdict, shared by the HTML and terminal reports."""
