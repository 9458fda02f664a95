"""Answer filters of generation tasks: what part of the generated text is compared, and how.

A task's :attr:`~assay.evaluate.tasks.GenerationSpec.extract` names its filters: ``exact`` (strip), ``none`` (the
raw text), ``strict`` (GSM8K ``#### N``), ``flexible`` (the last number), ``regex:PATTERN`` (first group of the
first match) or an lm-evaluation-harness filter pipeline (``pipeline:{...}``). Each filter gives one exact-match
metric, named by :func:`generation_metric_name`. The runner applies them; the task loaders check them.

    extract_answer("so the total is #### 1,018", "strict")    # "1,018"
    exact_match("Paris!", "paris", ignore_case=True, ignore_punctuation=True)    # 1.0
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from typing import Any

from assay.errors import EvalError

STRICT_PATTERN = r"#### (\-?[0-9\.\,]+)"
FLEXIBLE_PATTERN = r"(-?[$0-9.,]{2,})|(-?[0-9]+)"
INVALID = "[invalid]"


def extract_answer(text: str, how: str) -> str:
    """Apply one answer filter to generated text (lm-evaluation-harness's regex filter + take_first)."""
    if how == "none":
        return text
    if how == "exact":
        return text.strip()
    if how == "strict":
        return _regex_extract(text, STRICT_PATTERN, 0)
    if how == "flexible":
        return _regex_extract(text, FLEXIBLE_PATTERN, -1)
    if how.startswith("regex:"):
        return _regex_extract(text, how[len("regex:"):], 0)
    if how.startswith(PIPELINE):
        return _run_pipeline(text, json.loads(how[len(PIPELINE):])["steps"])
    raise EvalError(f"unknown answer filter {how!r} (exact, none, strict, flexible, regex:PATTERN)")


#: Prefix of an answer filter that is an lm-evaluation-harness filter pipeline: ``pipeline:{"name": ...,
#: "steps": [["regex", {"regex_pattern": ...}], ["lowercase", {}], ["take_first", {}]]}``.
PIPELINE = "pipeline:"
#: lm-evaluation-harness filter functions assay applies, with the options each takes.
PIPELINE_STEPS: dict[str, frozenset[str]] = {
    "regex": frozenset({"regex_pattern", "group_select", "fallback"}), "take_first": frozenset(),
    "lowercase": frozenset(), "uppercase": frozenset(), "remove_whitespace": frozenset(),
}


def _run_pipeline(text: str, steps: Sequence[Sequence[Any]]) -> str:
    """lm-evaluation-harness's filters on one response (a list of one until ``take_first``)."""
    value: Any = [text]
    for fn, kw in steps:
        if fn == "take_first":
            value = value[0]
            continue
        assert isinstance(value, list), "take_first must come last"
        if fn == "regex":
            value = [_regex_extract(v, kw.get("regex_pattern", STRICT_PATTERN), int(kw.get("group_select", 0)),
                                    str(kw.get("fallback", INVALID))) for v in value]
        elif fn == "lowercase":
            value = [v.lower() for v in value]
        elif fn == "uppercase":
            value = [v.upper() for v in value]
        elif fn == "remove_whitespace":
            value = [v.strip() for v in value]
        else:
            raise EvalError(f"unknown answer filter step {fn!r}")
    return str(value)


def _regex_extract(text: str, pattern: str, group_select: int, fallback: str = INVALID) -> str:
    matches = re.findall(pattern, text)
    if not matches:
        return fallback
    m = matches[group_select]
    if isinstance(m, tuple):
        nonempty = [g for g in m if g]
        m = nonempty[0] if nonempty else fallback
    return str(m).strip()


def exact_match(prediction: str, reference: str, *, ignore_case: bool = False, ignore_punctuation: bool = False,
                regexes_to_ignore: Sequence[str] = ()) -> float:
    """1.0 if the normalised prediction equals the normalised reference (lm-evaluation-harness ``exact_match``)."""
    for pattern in regexes_to_ignore:
        prediction = re.sub(pattern, "", prediction)
        reference = re.sub(pattern, "", reference)
    if ignore_case:
        prediction, reference = prediction.lower(), reference.lower()
    if ignore_punctuation:
        table = str.maketrans("", "", string.punctuation)
        prediction, reference = prediction.translate(table), reference.translate(table)
    return float(prediction == reference)


def generation_metric_name(how: str, index: int, extract: Sequence[str]) -> str:
    """Metric name of an answer filter: ``exact_match`` for exact/none, else ``exact_match_<filter>``."""
    if how in ("exact", "none"):
        return "exact_match"
    if how.startswith(PIPELINE):
        return f"exact_match_{json.loads(how[len(PIPELINE):])['name']}"
    base = "exact_match_regex" if how.startswith("regex:") else f"exact_match_{how}"
    same = [h for h in extract if (h.startswith("regex:") if how.startswith("regex:") else h == how)]
    return base if len(same) == 1 else f"{base}_{index}"
