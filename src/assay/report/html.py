"""A self-contained HTML report: verdict first, one section per stage, charts drawn as inline SVG.

No CDN, no script, no external request: the CSS and every chart are inline, so the file can be mailed, attached
to a ticket or opened inside an air-gapped network. Charts: per-task delta with its 95% interval, per-layer
relative weight change (lineage), the training loss curve (``trainer_state.json``), cumulative cost against
volume (when cost is known). Every string that came from the model or the user is escaped (Jinja2 autoescape,
and :func:`markupsafe.escape` inside the SVG builders); only assay's own template is rendered.

    html = HtmlRenderer().render(doc)                     # one result
    page = render_leaderboard([doc_a, doc_b, doc_c])      # a leaderboard and a section per model
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

from markupsafe import Markup, escape

from assay.jsonable import as_mapping
from assay.verdict.results import metric_comparison_from_document
from assay.report.base import (VERDICT_COLOURS, Renderer, behaviour_view, bench_rows, claim_rows, comparison_rows,
                               evaluation_policy, fit_rows, human_bytes, licence_terms, money, num, stage_rows)

_GOOD, _BAD, _NEUTRAL, _GRID, _INK = "#1a7f37", "#cf222e", "#57606a", "#d0d7de", "#24292f"
_BLUE, _ORANGE = "#0969da", "#bc4c00"

#: Leaderboard order (the terminal table of `assay demo` uses the same): best verdict first; ties keep their order.
LEADERBOARD_ORDER = {"PASS": 0, "WARN": 1, "NONE": 2, "FAIL": 3}


def _f(x: float) -> str:
    return f"{x:.1f}"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=raw)
    start = math.ceil(lo / step) * step
    ticks: list[float] = []
    t = start
    while t <= hi + 1e-12 and len(ticks) < 12:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _tick_label(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:g}M"
    if a >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:.3g}"


def delta_chart(rows: Sequence[Mapping[str, Any]]) -> Markup:
    """Forest plot: one row per (task, metric), the change toward *better* with its 95% interval.

    Lower-is-better metrics are flipped so that right is always better; the dashed tick is the regression margin.
    """
    rows = [r for r in rows if isinstance(r.get("delta"), (int, float))]
    if not rows:
        return Markup("")
    label_w, width, row_h, top, bottom = 250, 720, 26, 26, 34
    plot_w = width - label_w - 24
    vals: list[float] = [0.0]
    for r in rows:
        s = r["direction"]
        vals.append(s * r["delta"])
        if r["ci"]:
            vals += [s * c for c in r["ci"] if isinstance(c, (int, float))]
        if r["margin"] is not None:
            vals.append(-r["margin"])
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.08 or 0.05
    lo, hi = lo - pad, hi + pad

    def x(v: float) -> float:
        return label_w + (v - lo) / (hi - lo) * plot_w

    height = top + row_h * len(rows) + bottom
    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
           f'aria-label="Change of each metric against the base, with 95% intervals">']
    for t in _nice_ticks(lo, hi):
        out.append(f'<line x1="{_f(x(t))}" x2="{_f(x(t))}" y1="{top - 6}" y2="{height - bottom + 4}" '
                   f'stroke="{_GRID}" stroke-width="1"/>')
        out.append(f'<text x="{_f(x(t))}" y="{height - bottom + 18}" text-anchor="middle" class="tick">'
                   f'{escape(_tick_label(t))}</text>')
    out.append(f'<line x1="{_f(x(0))}" x2="{_f(x(0))}" y1="{top - 10}" y2="{height - bottom + 4}" stroke="{_INK}" '
               f'stroke-width="1.5"/>')
    out.append(f'<text x="{_f(x(0)) }" y="{top - 12}" text-anchor="middle" class="tick">base</text>')
    out.append(f'<text x="{label_w}" y="{height - 4}" class="tick">← worse</text>')
    out.append(f'<text x="{width - 24}" y="{height - 4}" text-anchor="end" class="tick">better →</text>')
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        colour = {"regressed": _BAD, "worse": _BAD, "better": _GOOD}.get(r["status"], _NEUTRAL)
        if i % 2 == 0:
            out.append(f'<rect x="0" y="{_f(y - row_h / 2)}" width="{width}" height="{row_h}" fill="#f6f8fa"/>')
        flip = " (lower is better)" if r["direction"] < 0 else ""
        label = f'{r["task"]} · {r["metric"]}'
        short = label if len(label) <= 38 else label[:36] + "…"
        out.append(f'<text x="{label_w - 10}" y="{_f(y + 4)}" text-anchor="end" class="lbl">'
                   f'<title>{escape(label + flip)}</title>{escape(short)}</text>')
        if r["margin"] is not None:
            mx = x(-r["margin"])
            out.append(f'<line x1="{_f(mx)}" x2="{_f(mx)}" y1="{_f(y - 9)}" y2="{_f(y + 9)}" stroke="{_BAD}" '
                       f'stroke-dasharray="3,2" stroke-width="1.5"><title>regression margin −{r["margin"]:g}'
                       f'</title></line>')
        s = r["direction"]
        if r["ci"] and all(isinstance(c, (int, float)) for c in r["ci"]):
            a, b = sorted((s * r["ci"][0], s * r["ci"][1]))
            out.append(f'<line x1="{_f(x(a))}" x2="{_f(x(b))}" y1="{_f(y)}" y2="{_f(y)}" stroke="{colour}" '
                       f'stroke-width="3" stroke-linecap="round"/>')
        tip = f'{label}: delta {num(r["delta"], "+.4f")}'
        if r["ci"]:
            tip += f' [{num(r["ci"][0], "+.4f")}, {num(r["ci"][1], "+.4f")}]'
        out.append(f'<circle cx="{_f(x(s * r["delta"]))}" cy="{_f(y)}" r="5" fill="{colour}" stroke="white" '
                   f'stroke-width="1.5"><title>{escape(tip + flip)}</title></circle>')
    out.append("</svg>")
    if all(r["delta"] == 0 and (not r["ci"] or all(c == 0 for c in r["ci"])) for r in rows):
        out.append('<p class="note empty-chart">Every point sits on the base line with no interval: the candidate '
                   'scored exactly as the base on every item (identical answers), so there is no change to draw.</p>')
    return Markup("".join(out))


def _layer_values(lineage: Mapping[str, Any]) -> list[tuple[str, float]]:
    """(layer label, relative weight change) pairs from a lineage document."""
    out: list[tuple[str, float]] = []
    for i, layer in enumerate(lineage.get("layers") or []):
        if not isinstance(layer, Mapping):
            continue
        value = next((layer[k] for k in ("relative_change", "rel_change", "relative_delta", "rel_delta")
                      if isinstance(layer.get(k), (int, float))), None)
        if value is None or not math.isfinite(value):
            continue
        name = layer.get("layer", layer.get("name", layer.get("index", i)))
        out.append((str(name), float(value)))
    return out


def layer_chart(lineage: Mapping[str, Any] | None) -> Markup:
    """Bar chart of the relative weight change ||ΔW|| / ||W|| per layer.

    When every layer's change is exactly zero there is nothing to draw: a sentence says why instead of an empty
    chart.
    """
    values = _layer_values(lineage or {})
    if not values:
        return Markup("")
    if all(v == 0 for _, v in values):
        return Markup(f'<p class="note empty-chart">No bars to draw: all {len(values)} layers have a relative change '
                      f'of exactly 0, so the candidate\'s weights are identical to the base\'s (a re-upload, not a '
                      f'fine-tune).</p>')
    width, height, left, right, top, bottom = 720, 230, 56, 16, 16, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    vmax = max(v for _, v in values) or 1.0
    ticks = _nice_ticks(0.0, vmax, 4)
    vmax = max(vmax, ticks[-1])
    bw = plot_w / len(values)
    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" '
           f'aria-label="Relative weight change per layer">']
    for t in ticks:
        y = top + plot_h - t / vmax * plot_h
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{_f(y)}" y2="{_f(y)}" stroke="{_GRID}"/>')
        out.append(f'<text x="{left - 6}" y="{_f(y + 4)}" text-anchor="end" class="tick">{escape(_tick_label(t))}'
                   f'</text>')
    every = max(1, math.ceil(len(values) / 24))
    for i, (name, v) in enumerate(values):
        h = v / vmax * plot_h
        x0 = left + i * bw
        out.append(f'<rect x="{_f(x0 + bw * 0.12)}" y="{_f(top + plot_h - h)}" width="{_f(max(bw * 0.76, 1))}" '
                   f'height="{_f(h)}" fill="{_BLUE}" rx="2"><title>{escape(name)}: {v:.4g}</title></rect>')
        if i % every == 0:
            short = name if len(name) <= 14 else name[:13] + "…"
            out.append(f'<text x="{_f(x0 + bw / 2)}" y="{top + plot_h + 14}" text-anchor="end" class="tick" '
                       f'transform="rotate(-35 {_f(x0 + bw / 2)} {top + plot_h + 14})">{escape(short)}</text>')
    out.append(f'<text x="12" y="{_f(top + plot_h / 2)}" class="tick" transform="rotate(-90 12 '
               f'{_f(top + plot_h / 2)})" text-anchor="middle">‖ΔW‖ / ‖W‖</text>')
    out.append("</svg>")
    return Markup("".join(out))


def _line_chart(series: Sequence[tuple[str, str, Sequence[tuple[float, float]]]], *, x_label: str, y_label: str,
                aria: str, marker: tuple[float, str] | None = None) -> Markup:
    pts = [p for _, _, s in series for p in s]
    if not pts:
        return Markup("")
    width, height, left, right, top, bottom = 720, 260, 64, 20, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0, y1 = min(min(p[1] for p in pts), 0.0), max(p[1] for p in pts)
    if x1 == x0:
        x1 = x0 + 1
    yt = _nice_ticks(y0, y1 if y1 > y0 else y0 + 1, 4)
    y1 = max(y1, yt[-1])

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * plot_w

    def sy(v: float) -> float:
        return top + plot_h - (v - y0) / ((y1 - y0) or 1) * plot_h

    out = [f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="100%" aria-label="{escape(aria)}">']
    for t in yt:
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{_f(sy(t))}" y2="{_f(sy(t))}" stroke="{_GRID}"/>')
        out.append(f'<text x="{left - 6}" y="{_f(sy(t) + 4)}" text-anchor="end" class="tick">'
                   f'{escape(_tick_label(t))}</text>')
    for t in _nice_ticks(x0, x1, 6):
        out.append(f'<text x="{_f(sx(t))}" y="{top + plot_h + 16}" text-anchor="middle" class="tick">'
                   f'{escape(_tick_label(t))}</text>')
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle" class="tick">'
               f'{escape(x_label)}</text>')
    out.append(f'<text x="14" y="{_f(top + plot_h / 2)}" class="tick" text-anchor="middle" '
               f'transform="rotate(-90 14 {_f(top + plot_h / 2)})">{escape(y_label)}</text>')
    if marker is not None and x0 <= marker[0] <= x1:
        mx = sx(marker[0])
        out.append(f'<line x1="{_f(mx)}" x2="{_f(mx)}" y1="{top}" y2="{top + plot_h}" stroke="{_INK}" '
                   f'stroke-dasharray="4,3"/>')
        out.append(f'<text x="{_f(mx + 4)}" y="{top + 12}" class="tick">{escape(marker[1])}</text>')
    lx = left + 8
    for name, colour, s in series:
        if not s:
            continue
        path = " ".join(f"{_f(sx(a))},{_f(sy(b))}" for a, b in s)
        if len(s) > 1:
            out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
                       f'stroke-linejoin="round"/>')
        if len(s) <= 60:
            for a, b in s:
                out.append(f'<circle cx="{_f(sx(a))}" cy="{_f(sy(b))}" r="2.5" fill="{colour}">'
                           f'<title>{escape(name)}: {_tick_label(a)} → {b:.4g}</title></circle>')
        out.append(f'<rect x="{lx}" y="8" width="12" height="4" fill="{colour}"/>'
                   f'<text x="{lx + 16}" y="14" class="tick">{escape(name)}</text>')
        lx += 24 + 7 * len(name)
    out.append("</svg>")
    return Markup("".join(out))


def loss_chart(training: Mapping[str, Any] | None) -> Markup:
    """The training (and evaluation) loss against the step, from ``trainer_state.json`` ``log_history``."""
    rows = (training or {}).get("log_history") or []
    train = [(float(r["step"]), float(r["loss"])) for r in rows if "loss" in r and "step" in r]
    evals = [(float(r["step"]), float(r["eval_loss"])) for r in rows if "eval_loss" in r and "step" in r]
    series = [("training loss", _BLUE, train), ("evaluation loss", _ORANGE, evals)]
    return _line_chart([s for s in series if s[2]], x_label="step", y_label="loss",
                       aria="Training loss curve from trainer_state.json")


def cost_chart(cost: Mapping[str, Any] | None) -> Markup:
    """Cumulative cost against volume for the paid API and for self-hosting (training cost up front).

    Uses the ``curve`` of an ``assay.cost/1`` document when present; otherwise draws the straight lines its
    per-task prices and one-off cost define.
    """
    c = cost or {}
    be = _first_num(c, "break_even_tasks")
    marker = (be, f"break-even {be:,.0f} tasks") if be else None
    curve = [p for p in (c.get("curve") or []) if isinstance(p, Mapping)]
    pts = [(float(p["tasks"]), float(p["api"]), float(p["self_hosted"])) for p in curve
           if all(isinstance(p.get(k), (int, float)) for k in ("tasks", "api", "self_hosted"))]
    if len(pts) < 2:
        api = _first_num(c, "api_per_task")
        own = _first_num(c, "self_per_task")
        if api is None or own is None:
            return Markup("")
        fixed = _first_num(c.get("inputs") or {}, "training_cost") or _first_num(c, "training_cost") or 0.0
        top = max((be or 0) * 2, 1000.0)
        pts = [(v, api * v, fixed + own * v) for v in (top * i / 40 for i in range(41))]
    return _line_chart([("API", _ORANGE, [(t, a) for t, a, _ in pts]),
                        ("self-hosted", _BLUE, [(t, s) for t, _, s in pts])],
                       x_label="tasks", y_label="cumulative cost ($)",
                       aria="Cumulative cost against volume, API and self-hosted", marker=marker)


def _first_num(d: Mapping[str, Any], *keys: str) -> float | None:
    for k in keys:
        v = d.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def _count_text(x: Any) -> str:
    """A whole number with thousands separators (``n/a`` when unknown)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "n/a"
    return f"{int(round(x)):,}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


_FINDING = re.compile(r"^scan\.findings\[(\d+)\]$")


def evidence_anchor(anchor: str, evidence: str) -> str:
    """The in-page link target for a reason's evidence path (a finding row, a comparison row, a stage section)."""
    m = _FINDING.match(evidence)
    if m:
        return f"#{anchor}-finding-{m.group(1)}"
    if evidence.startswith("comparison.") and evidence.count(".") >= 2:
        return f"#{anchor}-cmp-{_slug(evidence.removeprefix('comparison.'))}"
    if evidence.startswith("stages."):
        return f"#{anchor}-stages"
    stage = evidence.split(".", 1)[0].split("[", 1)[0]
    section = {"scan": "scan", "signature": "signature", "lineage": "lineage", "comparison": "evaluation",
               "evaluation": "evaluation", "card": "card", "licence": "card", "hardware": "deploy",
               "bench": "deploy", "cost": "cost", "probes": "behaviour", "drift": "behaviour"}.get(stage, "why")
    return f"#{anchor}-{section}"


#: Probe rates the Behaviour chart draws (all 0..1 per item, so they share a scale).
_PROBE_RATES = ("refused", "over_refused", "loop_rate", "repetition", "empty_rate", "greedy_identical",
                "batch_invariant", "fabricated", "abstained", "supported", "invented", "over_abstained")


def behaviour_chart(doc: Mapping[str, Any]) -> Markup:
    """Forest plot of the probe rates' change against the base (percentage points), right is better."""
    probes = as_mapping(doc.get("probes"))
    cmp = as_mapping(probes.get("comparison"))
    flagged = {str(r.get("evidence")) for r in doc.get("reasons") or [] if isinstance(r, Mapping)}
    rows = []
    for task, per in cmp.items():
        if not isinstance(per, Mapping):
            continue
        for metric in _PROBE_RATES:
            e = per.get(metric)
            if not isinstance(e, Mapping) or not isinstance(e.get("delta"), (int, float)):
                continue
            ci = e.get("ci") if isinstance(e.get("ci"), (list, tuple)) and len(e["ci"]) == 2 else None
            mc = metric_comparison_from_document(metric, e)  # the judgement stored with the entry
            status = "regressed" if f"probes.comparison.{task}.{metric}" in flagged else mc.change
            rows.append({"task": task, "metric": metric, "delta": 100 * e["delta"],
                         "direction": 1 if mc.higher_is_better else -1,
                         "ci": [100 * c for c in ci] if ci and None not in ci else None, "margin": None,
                         "status": status})
    return delta_chart(rows)


def model_view(doc: Mapping[str, Any], *, anchor: str = "") -> dict[str, Any]:
    """Everything the template shows for one result, with the charts already drawn."""
    rows = comparison_rows(doc)
    for r in rows:
        r["slug"] = _slug(f"{r['task']}.{r['metric']}")
    cost = doc.get("cost") if isinstance(doc.get("cost"), Mapping) else None
    scan = as_mapping(doc.get("scan"))
    lineage = doc.get("lineage") if isinstance(doc.get("lineage"), Mapping) else None
    regressed = [r for r in rows if r["status"] == "regressed"]
    lost = [r for r in rows if r["lost_items"] and r["judged"]]
    cand = doc.get("candidate") or {}
    anchor = anchor or _slug(str(cand.get("name", "model")))
    reasons = [{**r, "href": evidence_anchor(anchor, str(r.get("evidence", "")))} for r in doc.get("reasons") or []]
    return {
        "doc": doc,
        "anchor": anchor,
        "name": cand.get("name", "?"),
        "verdict": doc.get("verdict"),
        "colour": VERDICT_COLOURS.get(str(doc.get("verdict")), _NEUTRAL),
        "reasons": reasons,
        "stages": stage_rows(doc),
        "rows": rows,
        "regressed": regressed,
        "lost": lost,
        # Judged metrics share a scale (accuracies, bits per byte); perplexities would dwarf them.
        "delta_chart": delta_chart([r for r in rows if r["judged"]] or rows),
        "layer_chart": layer_chart(lineage),
        "loss_chart": loss_chart(doc.get("training") if isinstance(doc.get("training"), Mapping) else None),
        "cost_chart": cost_chart(cost),
        "behaviour": behaviour_view(doc),
        "behaviour_chart": behaviour_chart(doc),
        "cost": cost,
        "fit": fit_rows(doc),
        "hardware": doc.get("hardware") if isinstance(doc.get("hardware"), Mapping) else None,
        "bench": doc.get("bench") if isinstance(doc.get("bench"), Mapping) else None,
        "bench_rows": bench_rows(doc),
        "terms": licence_terms(doc),
        "claims": claim_rows(doc),
        "scan": scan,
        "findings": list(enumerate(scan.get("findings") or []))[:200],
        "lineage": lineage,
        "card": doc.get("card") if isinstance(doc.get("card"), Mapping) else None,
        "licence": doc.get("licence") if isinstance(doc.get("licence"), Mapping) else None,
        "signature": doc.get("signature") if isinstance(doc.get("signature"), Mapping) else None,
        "inventory": doc.get("inventory") if isinstance(doc.get("inventory"), Mapping) else None,
        "env": doc.get("environment") or {},
        "relation": (lineage or {}).get("relation"),
        "headline": headline_rows(rows, must_improve=evaluation_policy(doc).must_improve),
    }


def headline_rows(rows: Sequence[Mapping[str, Any]], *, must_improve: Sequence[str] = (),
                  most: int = 4) -> list[dict[str, Any]]:
    """The leaderboard's "measured" column for one model: each ``must_improve`` task's metrics first (for every
    model, whatever its verdict, so the rows can be compared), then every regression, then other judged metrics
    (significant changes first), up to ``most`` rows unless the must-improve and regressed rows alone are more."""
    measured = [dict(r) for r in rows if isinstance(r.get("delta"), (int, float))]
    must = [{**r, "must_improve": True} for r in measured if r["task"] in must_improve]
    regressed = [r for r in measured if r["task"] not in must_improve and r["judged"] and r["status"] == "regressed"]
    others = sorted((r for r in measured if r["task"] not in must_improve and r["judged"]
                     and r["status"] != "regressed"), key=lambda r: r["status"] not in ("worse", "better"))
    chosen = must + regressed
    return chosen + others[:max(0, most - len(chosen))]


@cache
def _template() -> Any:
    from jinja2 import ChainableUndefined, Environment, PackageLoader, select_autoescape

    # Stage documents evolve (fields are added): a missing field renders empty instead of failing the report.
    env = Environment(loader=PackageLoader("assay.report", "templates"), autoescape=select_autoescape(["j2", "html"],
                      default_for_string=True, default=True), undefined=ChainableUndefined, trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["num"] = num
    env.filters["bytes"] = human_bytes
    env.filters["money"] = money
    env.filters["whole"] = _count_text
    return env.get_template("report.html.j2")


class HtmlRenderer(Renderer):
    """One self-contained HTML page for one result."""

    name = "html"
    default_filename = "report.html"

    def render(self, doc: Mapping[str, Any]) -> str:
        view = model_view(doc)
        page: str = _template().render(title=f"assay vet: {view['verdict']} for {view['name']}", models=[view],
                                       leaderboard=False)
        return page


def render_leaderboard(docs: Sequence[Mapping[str, Any]], *, title: str = "assay: model leaderboard") -> str:
    """One HTML page: a leaderboard over several ``assay.vet/1`` documents, then a section per model."""
    views, seen = [], set()
    for d in docs:
        anchor = _slug(str((d.get("candidate") or {}).get("name", "model")))
        while anchor in seen:
            anchor += "-x"
        seen.add(anchor)
        views.append(model_view(d, anchor=anchor))
    # One order for the table and the sections below it, the same as `assay demo` prints: by verdict, and in the
    # order given within a verdict.
    board = sorted(views, key=lambda v: LEADERBOARD_ORDER.get(str(v["verdict"]), len(LEADERBOARD_ORDER)))
    return str(_template().render(title=title, models=board, board=board, leaderboard=True))
