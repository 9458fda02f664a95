"""Read a model card offline and report what a careful reviewer looks for, with a transparency score.

The card is ``README.md``: YAML front matter (read by :mod:`assay.model.card_text`, as the Hub reads it) and
markdown sections (split at headings). Next to it, ``trainer_state.json`` gives the loss curve
(``log_history``); ``training_args.bin`` is a pickle and is never loaded. A single GGUF file carries its card in
its metadata (``general.license``, ``general.base_model.*``); that is read too.

    >>> r = read_card(resolve("./my-finetune"))
    >>> r.base_model, r.licence, r.transparency_score, r.missing
    (('meta-llama/Llama-3.1-8B',), 'apache-2.0', 55, ('datasets', 'hyper-parameters', ...))
    >>> [f.rule for f in r.findings]
    ['LICENCE-LAUNDERING', 'LICENCE-NAMING']

Transparency rubric (points, total 100; :data:`RUBRIC`): licence 10, base model 15, base-model relation 5,
training datasets 15, training procedure 10, hyper-parameters 10, evaluation results 15 (``model-index`` 15; an
evaluation section with no machine-readable results 8), loss curve 5, intended use 10, limitations and risks 5.
A section counts only if it has content other than the template's "More Information Needed".

Cross-checks (findings, rule ids stable):

- ``LICENCE-LAUNDERING``: the base's licence binds derivatives (``derivatives_keep_licence`` in the licence table)
  but the card declares another, incompatible licence (high when the new one is permissive). The base licence comes
  from the base's own card (``base=``, or the base found in the local Hugging Face cache), else from a name
  heuristic over ``base_model`` (``data/base_licences.yaml``; ``meta-llama/...`` -> Llama family), reported as such.
- ``LICENCE-DROPPED``: the base's licence binds derivatives and the card declares none.
- ``LICENCE-NAMING``: the base licence requires derivative names to start with a prefix (Llama 3.1+: "Llama").
- ``LICENCE-MISSING`` / ``LICENCE-UNKNOWN``, ``CARD-MISSING``, ``CARD-FRONT-MATTER-INVALID``,
  ``CARD-LOSS-NAN``, ``CARD-LOSS-DIVERGED``, and (from :func:`check_claims`) ``CARD-CLAIM-UNSUPPORTED``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from assay.deploy.licences import Licence, card_licence, guess_licence_from_name, lookup
from assay.deploy.training_log import TRAINER_STATE_MAX, read_trainer_state
from assay.model.ref import ModelRef
from assay.jsonable import as_mapping
from assay.model.card_text import read_front_matter
from assay.formatting import human_bytes

#: Largest README read (bytes); a bigger one is read up to this size and flagged.
MAX_CARD_BYTES = 2 * 1024 * 1024
#: Largest trainer_state.json parsed (bytes): one limit, the reader's (:mod:`assay.deploy.training_log`).
MAX_STATE_BYTES = TRAINER_STATE_MAX
#: Claimed and measured scores further apart than this (on a 0..1 scale) make a claim unsupported.
CLAIM_TOLERANCE = 0.05

#: The transparency rubric: (item, points). The score is the sum of the items present.
RUBRIC: tuple[tuple[str, int], ...] = (
    ("licence", 10),
    ("base model", 15),
    ("base-model relation", 5),
    ("datasets", 15),
    ("training procedure", 10),
    ("hyper-parameters", 10),
    ("evaluation results", 15),
    ("loss curve", 5),
    ("intended use", 10),
    ("limitations", 5),
)
_PARTIAL_EVAL_POINTS = 8

_PLACEHOLDER = re.compile(r"^\W*(more information needed|\[more information needed\]|tbd|todo|n/?a|coming soon)\W*$",
                          re.IGNORECASE)
_SECTION_PATTERNS = {
    "training procedure": re.compile(
        r"training (procedure|details|recipe|process)|fine-?tuning|^training$|how .*trained", re.IGNORECASE),
    "hyper-parameters": re.compile(r"hyper-?parameters?|training (arguments|config)", re.IGNORECASE),
    "evaluation": re.compile(r"evaluation|results|benchmarks?", re.IGNORECASE),
    "intended use": re.compile(r"intended|uses?\b|use cases?|out-of-scope", re.IGNORECASE),
    "limitations": re.compile(r"limitations?|bias|risks?|safety|caveats", re.IGNORECASE),
    "datasets": re.compile(r"training data|datasets?", re.IGNORECASE),
}
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET_KV = re.compile(r"^\s*[-*]\s*([A-Za-z_][\w .()/-]{0,60}?)\s*:\s*(.+?)\s*$")


@dataclass(frozen=True)
class CardFinding:
    """Something a reviewer should know about the card or its licence (same fields as scan findings)."""

    rule: str
    """Stable rule id (see the module docstring)."""
    severity: str
    """``critical``, ``high``, ``medium``, ``low`` or ``info``."""
    path: str | None
    """The file concerned (``README.md``, ``trainer_state.json``)."""
    location: str | None
    """Where in it (front-matter key, section heading)."""
    message: str
    """One sentence for the user."""
    evidence: str | None = None
    """The values or clause behind the finding."""


@dataclass(frozen=True)
class EvalClaim:
    """One evaluation result a card claims (from ``model-index``)."""

    task: str | None
    """Task type or name (``text-generation``)."""
    dataset: str | None
    """Dataset name as written (``AI2 Reasoning Challenge (25-Shot)``)."""
    dataset_type: str | None
    """Dataset id (``ai2_arc``)."""
    metric: str
    """Metric type (``acc_norm``)."""
    value: float
    """The claimed value, as written (a percentage or a fraction)."""


@dataclass(frozen=True)
class LossCurve:
    """Training and evaluation loss against step, from ``trainer_state.json``."""

    train: tuple[tuple[float, float], ...]
    """(step, loss) pairs."""
    eval: tuple[tuple[float, float], ...]
    """(step, eval_loss) pairs."""
    first: float | None
    """First training loss."""
    last: float | None
    """Last training loss."""
    minimum: float | None
    """Lowest training loss."""


@dataclass(frozen=True)
class ClaimCheck:
    """A card's claimed score against what assay measured."""

    claim: EvalClaim
    """The claim."""
    measured_key: str
    """The measured result it was matched with."""
    claimed: float
    """The claim on a 0..1 scale."""
    measured: float
    """The measured value on a 0..1 scale."""
    delta: float
    """``claimed - measured``."""
    supported: bool
    """False when the claim exceeds the measurement by more than the tolerance."""


@dataclass(frozen=True)
class CardReport:
    """What the model card says, what it leaves out, and the findings."""

    model: str
    """The model reference as given."""
    card_path: str | None
    """The card file read (None when the model has none)."""
    metadata: dict[str, Any]
    """The card's front matter (or GGUF ``general.*`` metadata), as parsed."""
    base_model: tuple[str, ...]
    """Declared base model(s)."""
    base_model_relation: str | None
    """Declared relation to the base (``finetune``, ``adapter``, ``merge``, ``quantized``)."""
    datasets: tuple[str, ...]
    """Declared training datasets."""
    licence: str | None
    """Declared licence id (``license_name`` when ``license: other``)."""
    licence_terms: Licence | None
    """The licence's key terms, when it is in assay's table."""
    base_licence: str | None
    """The base model's licence, when known."""
    base_licence_source: str | None
    """Where that came from: ``base card``, ``base card (local Hugging Face cache)`` or ``name heuristic (...)``."""
    sections: tuple[str, ...]
    """Headings of the card, in order."""
    training_procedure: str | None
    """Text of the training-procedure section."""
    hyperparameters: dict[str, str]
    """Hyper-parameters from the card's section (``- learning_rate: 2e-05``) and trainer_state.json."""
    eval_results: tuple[EvalClaim, ...]
    """Evaluation results claimed in ``model-index``."""
    loss_curve: LossCurve | None
    """The loss curve, when trainer_state.json is present."""
    intended_use: str | None
    """Text of the intended-use section."""
    limitations: str | None
    """Text of the limitations / bias / risks section."""
    transparency_score: int
    """0..100 by :data:`RUBRIC`."""
    transparency: dict[str, int]
    """Points earned per rubric item."""
    missing: tuple[str, ...]
    """Rubric items not (fully) present."""
    findings: tuple[CardFinding, ...]
    """Cross-check results."""


def _read_text(path: Path, limit: int) -> tuple[str, bool]:
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    return data[:limit].decode("utf-8", errors="replace"), len(data) > limit


def parse_sections(body: str) -> list[tuple[str, int, str]]:
    """``(heading, level, text)`` for every markdown heading outside code fences."""
    sections: list[tuple[str, int, list[str]]] = [("", 0, [])]
    fence = False
    for line in body.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
        m = None if fence else _HEADING.match(line)
        if m:
            sections.append((m.group(2).strip(), len(m.group(1)), []))
        else:
            sections[-1][2].append(line)
    return [(h, lvl, "\n".join(lines).strip()) for h, lvl, lines in sections]


def _has_content(text: str) -> bool:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("<!--")]
    return any(not _PLACEHOLDER.match(ln) for ln in lines)


def _section_text(sections: list[tuple[str, int, str]], concept: str) -> str | None:
    """Text of the sections whose heading names ``concept`` (their subsections included), if any has content."""
    pattern = _SECTION_PATTERNS[concept]
    parts: list[str] = []
    i = 0
    while i < len(sections):
        heading, level, text = sections[i]
        if heading and pattern.search(heading):
            chunk, bodies = [text], [text]
            j = i + 1
            while j < len(sections) and sections[j][1] > level:
                chunk.append(f"{sections[j][0]}\n{sections[j][2]}")
                bodies.append(sections[j][2])
                j += 1
            if _has_content("\n".join(bodies)):  # subsection headings alone are not content
                parts.append("\n".join(c for c in chunk if c).strip())
            i = j
        else:
            i += 1
    return "\n\n".join(parts) if parts else None


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value.strip(),) if value.strip() else ()
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value if isinstance(v, (str, int, float)) and str(v).strip())
    return ()


def _eval_claims(model_index: Any) -> list[EvalClaim]:
    claims: list[EvalClaim] = []
    if not isinstance(model_index, list):
        return claims
    for entry in model_index:
        results = entry.get("results") if isinstance(entry, dict) else None
        for res in results if isinstance(results, list) else []:
            if not isinstance(res, dict):
                continue
            task = as_mapping(res.get("task"))
            ds = as_mapping(res.get("dataset"))
            for met in res.get("metrics") or []:
                if not isinstance(met, dict):
                    continue
                try:
                    value = float(met["value"])
                except (KeyError, TypeError, ValueError):
                    continue
                if not math.isfinite(value):
                    continue
                claims.append(EvalClaim(task=task.get("name") or task.get("type"), dataset=ds.get("name"),
                                        dataset_type=ds.get("type"), metric=str(met.get("type") or met.get("name")),
                                        value=value))
    return claims


def _loss_curve(state: Any) -> LossCurve | None:
    history = state.get("log_history") if isinstance(state, dict) else None
    if not isinstance(history, list):
        return None
    train: list[tuple[float, float]] = []
    evals: list[tuple[float, float]] = []
    for row in history:
        if not isinstance(row, dict):
            continue
        step = row.get("step", row.get("epoch"))
        if not isinstance(step, (int, float)):
            continue
        for key, out in (("loss", train), ("eval_loss", evals)):
            val = row.get(key)
            if isinstance(val, (int, float)) and not isinstance(val, bool):
                out.append((float(step), float(val)))
    if not train and not evals:
        return None
    finite = [v for _, v in train if math.isfinite(v)]
    return LossCurve(train=tuple(train), eval=tuple(evals), first=train[0][1] if train else None,
                     last=train[-1][1] if train else None, minimum=min(finite) if finite else None)


def _gguf_metadata(path: Path) -> dict[str, Any]:
    """``general.*`` metadata of a GGUF file, from its header alone (the one GGUF reader; no tensor is read).

    Raises :class:`~assay.errors.FormatError` for a truncated or damaged file.
    """
    from assay.errors import FormatError
    from assay.model.gguf_file import read_gguf_file
    from assay.model.problems import problem_message

    g = read_gguf_file(path)
    reason = g.fatal()
    if reason is not None:
        raise FormatError(problem_message(path.name, reason))
    out: dict[str, Any] = {}
    for name, val in g.metadata.items():
        if not name.startswith("general."):
            continue
        if isinstance(val, (str, int, float)) or (isinstance(val, list) and all(isinstance(v, str) for v in val)):
            out[name] = val
    return out


def _metadata_from_gguf(meta: dict[str, Any]) -> dict[str, Any]:
    from assay.model.gguf_file import card_fields

    return card_fields(meta)


def _find(ref: ModelRef, name: str) -> Path | None:
    for rel in ref.files:
        if len(rel.parts) == 1 and rel.name.lower() == name.lower():
            return ref.path(rel)
    return None


@dataclass(frozen=True)
class _Parsed:
    path: Path | None
    metadata: dict[str, Any]
    body: str
    findings: list[CardFinding]


def _parse_card(ref: ModelRef) -> _Parsed:
    findings: list[CardFinding] = []
    if ref.single_file:
        target = ref.path(ref.files[0])
        from assay.model.formats import Format, detect

        if detect(target) is Format.GGUF:
            meta = _metadata_from_gguf(_gguf_metadata(target))  # a damaged file is bad input (exit 2)
            return _Parsed(target if meta else None, meta, "", findings)
        return _Parsed(None, {}, "", findings)
    path = _find(ref, "README.md")
    if path is None or not path.is_file():
        return _Parsed(None, {}, "", findings)
    text, truncated = _read_text(path, MAX_CARD_BYTES)
    if truncated:
        findings.append(CardFinding("CARD-TOO-LARGE", "low", "README.md", None,
                                    f"the card is larger than {human_bytes(MAX_CARD_BYTES)}; "
                                    "only the start was read"))
    fm = read_front_matter(text)
    if fm.problem is not None and "YAML" in fm.problem:
        findings.append(CardFinding("CARD-FRONT-MATTER-INVALID", "medium", "README.md",
                                    f"line {fm.line}" if fm.line is not None else None,
                                    "the card's YAML front matter does not parse, so its metadata is ignored",
                                    fm.problem))
    elif fm.problem is not None:
        findings.append(CardFinding("CARD-FRONT-MATTER-INVALID", "medium", "README.md", None,
                                    f"the card's {fm.problem}, so its metadata is ignored"))
    meta, body = fm.meta, fm.body
    return _Parsed(path, meta, body, findings)


def _base_licence(base_ids: tuple[str, ...], base: ModelRef | None) -> tuple[str | None, str | None]:
    if base is not None:
        parsed = _parse_card(base)
        lic = card_licence(parsed.metadata.get("license"), parsed.metadata.get("license_name"))
        if lic:
            return lic, "base card"
    from assay.errors import ModelError
    from assay.model.ref import resolve

    for bid in base_ids:
        if "/" not in bid or bid.startswith((".", "/", "~")):
            continue
        try:
            cached = resolve(bid)  # the local Hugging Face cache only: never downloads
        except ModelError:
            continue
        if cached.hf_id is None:
            continue
        parsed = _parse_card(cached)
        lic = card_licence(parsed.metadata.get("license"), parsed.metadata.get("license_name"))
        if lic:
            return lic, "base card (local Hugging Face cache)"
    for bid in base_ids:
        guess = guess_licence_from_name(bid)
        if guess:
            return guess[0], f"name heuristic ({bid} matches /{guess[1]}/)"
    return None, None


def _model_name(ref: ModelRef, meta: dict[str, Any]) -> str:
    mi = meta.get("model-index")
    first = mi[0] if isinstance(mi, list) and mi and isinstance(mi[0], dict) else {}
    for name in (first.get("name"), meta.get("model_name")):
        if isinstance(name, str):
            return name
    return ref.name


def read_card(ref: ModelRef, *, base: ModelRef | None = None) -> CardReport:
    """Read the card of ``ref`` (and the licence of ``base``, when given) and cross-check it."""
    parsed = _parse_card(ref)
    meta, findings = parsed.metadata, list(parsed.findings)
    card_name = parsed.path.name if parsed.path else None
    if parsed.path is None:
        findings.append(CardFinding("CARD-MISSING", "medium", None, None,
                                    "the model has no card (README.md): its base, data, recipe and licence are "
                                    "undocumented"))
    sections = parse_sections(parsed.body) if parsed.body else []

    base_ids = _strings(meta.get("base_model"))
    relation = meta.get("base_model_relation") if isinstance(meta.get("base_model_relation"), str) else None
    datasets = _strings(meta.get("datasets"))
    licence = card_licence(meta.get("license"), meta.get("license_name"))
    terms = lookup(licence)

    training = _section_text(sections, "training procedure")
    hp_text = _section_text(sections, "hyper-parameters")
    hyper: dict[str, str] = {}
    for line in (hp_text or "").splitlines():
        m = _BULLET_KV.match(line)
        if m:
            hyper[m.group(1).strip()] = m.group(2).strip()
    evaluation_text = _section_text(sections, "evaluation")
    claims = _eval_claims(meta.get("model-index"))
    intended = _section_text(sections, "intended use")
    limitations = _section_text(sections, "limitations")
    if not datasets and _section_text(sections, "datasets"):
        datasets = ("(described in the card text)",)

    curve: LossCurve | None = None
    trainer = read_trainer_state(ref)
    if trainer is not None:
        if trainer.error is not None:
            findings.append(CardFinding("CARD-TRAINER-STATE-INVALID", "low", "trainer_state.json", None,
                                        f"trainer_state.json could not be read ({trainer.error})"))
        state = trainer.state
        curve = _loss_curve(state)
        if isinstance(state, dict):
            for key in ("max_steps", "num_train_epochs", "train_batch_size", "total_flos"):
                if isinstance(state.get(key), (int, float)) and key not in hyper:
                    hyper[key] = str(state[key])
    if curve is not None:
        findings.extend(_loss_findings(curve))

    points = {
        "licence": 10 if licence else 0,
        "base model": 15 if base_ids else 0,
        "base-model relation": 5 if relation else 0,
        "datasets": 15 if datasets else 0,
        "training procedure": 10 if training else 0,
        "hyper-parameters": 10 if hyper else 0,
        "evaluation results": 15 if claims else (_PARTIAL_EVAL_POINTS if evaluation_text else 0),
        "loss curve": 5 if curve is not None else 0,
        "intended use": 10 if intended else 0,
        "limitations": 5 if limitations else 0,
    }
    full = dict(RUBRIC)
    missing = tuple(item for item, _ in RUBRIC if points[item] < full[item])

    base_licence, base_source = _base_licence(base_ids, base)
    if not licence and parsed.path is not None:
        findings.append(CardFinding("LICENCE-MISSING", "medium", card_name, "license",
                                    "the card declares no licence: whether it may be used at all is unknown"))
    elif licence and terms is None:
        findings.append(CardFinding("LICENCE-UNKNOWN", "low", card_name, "license",
                                    f"licence {licence!r} is not in assay's licence table: check its terms by hand"))
    findings.extend(_licence_findings(licence, terms, base_licence, base_source, _model_name(ref, meta), card_name))

    return CardReport(
        model=ref.spec, card_path=str(parsed.path) if parsed.path else None, metadata=meta, base_model=base_ids,
        base_model_relation=relation, datasets=datasets, licence=licence, licence_terms=terms,
        base_licence=base_licence, base_licence_source=base_source,
        sections=tuple(h for h, _, _ in sections if h), training_procedure=training, hyperparameters=hyper,
        eval_results=tuple(claims), loss_curve=curve, intended_use=intended, limitations=limitations,
        transparency_score=sum(points.values()), transparency=points, missing=missing, findings=tuple(findings))


def _loss_findings(curve: LossCurve) -> list[CardFinding]:
    out: list[CardFinding] = []
    values = [v for _, v in curve.train] + [v for _, v in curve.eval]
    if any(not math.isfinite(v) for v in values):
        out.append(CardFinding("CARD-LOSS-NAN", "high", "trainer_state.json", "log_history",
                               "the training log contains NaN or infinite losses: the run diverged"))
    elif curve.first is not None and curve.last is not None and len(curve.train) >= 2 and curve.last > curve.first:
        out.append(CardFinding("CARD-LOSS-DIVERGED", "medium", "trainer_state.json", "log_history",
                               "the training loss ended higher than it started: training did not converge",
                               f"first {curve.first:.4g}, last {curve.last:.4g}"))
    return out


def _licence_findings(licence: str | None, terms: Licence | None, base_licence: str | None,
                      base_source: str | None, name: str, card_name: str | None) -> list[CardFinding]:
    out: list[CardFinding] = []
    base_terms = lookup(base_licence)
    if base_terms is None:
        return out
    if base_terms.derivatives_keep_licence and licence != base_terms.id and licence not in base_terms.compatible:
        clause = base_terms.derivatives_clause or base_terms.url
        if not licence:
            out.append(CardFinding("LICENCE-DROPPED", "medium", card_name, "license",
                                   f"the card declares no licence, but its base is under {base_terms.name}, whose "
                                   "terms bind derivatives", f"base licence from {base_source}; {clause}"))
        else:
            permissive = terms is not None and terms.permissive
            out.append(CardFinding(
                "LICENCE-LAUNDERING", "high" if permissive else "medium", card_name, "license",
                f"relabelled as {licence}, but its base is under {base_terms.name}, whose terms bind derivatives: "
                f"this model cannot be used under {licence}",
                f"base licence {base_terms.id} from {base_source}; {clause}"))
    if base_terms.naming_prefix:
        short = name.rsplit("/", 1)[-1]
        if not short.lower().startswith(base_terms.naming_prefix.lower()):
            out.append(CardFinding("LICENCE-NAMING", "medium", card_name, "model name",
                                   f"{base_terms.name} requires a derivative's name to begin with "
                                   f"\"{base_terms.naming_prefix}\"; this one is named {short!r}",
                                   base_terms.naming))
    return out


def _norm(text: str | None) -> str:
    return re.sub(r"[^a-z0-9]+", "", (text or "").lower())


def check_claims(card: CardReport, measured: Mapping[str, float], *,
                 tolerance: float = CLAIM_TOLERANCE) -> list[ClaimCheck]:
    """Compare the card's claimed scores with measured ones.

    ``measured`` maps ``task/metric`` (or ``task``, meaning its main metric) to a value in 0..1; a claim matches
    when its dataset type, dataset name or task name equals the measured task (letters and digits only, case
    folded) and, for ``task/metric`` keys, its metric equals the metric. Claimed percentages (> 1) are divided
    by 100. A claim more than ``tolerance`` above the measurement is unsupported.
    """
    out: list[ClaimCheck] = []
    for claim in card.eval_results:
        names = {_norm(claim.dataset_type), _norm(claim.dataset), _norm(claim.task)} - {""}
        for key, value in measured.items():
            task, _, metric = key.partition("/")
            if _norm(task) not in names or (metric and _norm(metric) != _norm(claim.metric)):
                continue
            claimed = claim.value / 100 if claim.value > 1 and value <= 1 else claim.value
            delta = claimed - float(value)
            out.append(ClaimCheck(claim, key, claimed, float(value), delta, delta <= tolerance))
            break
    return out


def claim_findings(checks: list[ClaimCheck]) -> list[CardFinding]:
    """``CARD-CLAIM-UNSUPPORTED`` findings for the claims measurements do not support."""
    return [CardFinding("CARD-CLAIM-UNSUPPORTED", "medium", "README.md", "model-index",
                        f"the card claims {c.claim.metric} {c.claimed:.3f} on "
                        f"{c.claim.dataset or c.claim.dataset_type}, but assay measured {c.measured:.3f}",
                        f"measured as {c.measured_key}")
            for c in checks if not c.supported]


def card_document(r: CardReport, *, claims: list[ClaimCheck] | None = None) -> dict[str, Any]:
    """The ``assay.card/1`` JSON document."""
    from assay.jsonable import to_jsonable

    doc: dict[str, Any] = {"schema": "assay.card/1"}
    body = to_jsonable(r)
    body["metadata"] = _json_safe(r.metadata)
    doc.update(body)
    doc["rubric"] = dict(RUBRIC)
    doc["claims"] = to_jsonable(claims or [])
    if claims:
        doc["findings"] = doc["findings"] + to_jsonable(claim_findings(claims))
    return doc


def _json_safe(value: Any, depth: int = 0) -> Any:
    """Front matter as JSON data (YAML dates and odd keys become strings; deep nesting is cut)."""
    if depth > 20:
        return "..."
    if isinstance(value, dict):
        return {str(k): _json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v, depth + 1) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)
