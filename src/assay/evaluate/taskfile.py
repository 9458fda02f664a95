"""Task YAML files: assay's own small format, and lm-evaluation-harness task YAMLs over local data files.

assay's format (every key but ``data`` and ``prompt`` optional)::

    name: capitals
    version: "1"
    kind: multiple_choice            # multiple_choice | generate | perplexity
    data: capitals.jsonl             # JSONL, JSON, CSV or Parquet; relative to this YAML file
    fewshot_data: capitals-train.jsonl
    prompt: "Q: {{question}}\\nA:"    # a field name or a Jinja template over a row
    choices: options                 # a field holding a list, a template giving a list, or a YAML list
    label: answer                    # a field or template: the right choice's index or text (the target text
                                     # for generate; the document for perplexity is `text`)
    target_delimiter: " "
    fewshot_delimiter: "\\n\\n"
    description: ""
    num_fewshot: 5
    fewshot_sampler: first_n         # or random (seeded with fewshot_seed)
    chat_template: false
    metrics: [acc, acc_norm]
    generation: {until: ["\\n\\n"], max_tokens: 256, extract: [strict, flexible], ignore_case: true}

lm-evaluation-harness task YAMLs (they name a ``task``) are read by :mod:`assay.evaluate.lmeval` with
lm-evaluation-harness's own semantics, over local data files. Templates are rendered in a Jinja sandbox with
lm-evaluation-harness's ``regex_replace`` filter.

    tasks = load_task_file(Path("arc_local.yaml"))
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from assay.errors import EvalError
from assay.evaluate.lmeval import FunctionRef, load_lmeval_task, read_yaml
from assay.evaluate.taskdata import Renderer, check_regex, digest_files, read_rows, resolve_data, text_field
from assay.evaluate.tasks import GenerationSpec, Item, Task, TaskKind, with_num_fewshot

OWN_FIELDS = frozenset({
    "name", "version", "kind", "data", "fewshot_data", "prompt", "choices", "label", "text", "id",
    "target_delimiter", "fewshot_delimiter", "description", "num_fewshot", "fewshot_sampler", "fewshot_seed",
    "chat_template", "metrics", "generation",
})


# --------------------------------------------------------------------------------------------- fields
class _Fields:
    """lm-evaluation-harness's rules for ``doc_to_text`` / ``doc_to_choice`` / ``doc_to_target``."""

    def __init__(self, renderer: Renderer, *, has_choices: bool) -> None:
        self.r = renderer
        self.has_choices = has_choices

    def text(self, spec: Any, row: Mapping[str, Any], where: str, what: str) -> str:
        if isinstance(spec, str) and spec in row:
            value = row[spec]
        elif isinstance(spec, str):
            value = self.r.render(spec, row, what, where)
        else:
            raise EvalError(f"{self.r.where}: {what} must be a field name or a template (got {type(spec).__name__})")
        if not isinstance(value, str):
            raise EvalError(f"{self.r.where}: {what} gives {type(value).__name__}, not text, at {where}")
        return value

    def choices(self, spec: Any, row: Mapping[str, Any], where: str) -> tuple[str, ...]:
        if isinstance(spec, str) and spec in row:
            value = row[spec]
        elif isinstance(spec, str):
            rendered = self.r.render(spec, row, "choices", where)
            try:
                value = ast.literal_eval(rendered)
            except (ValueError, SyntaxError) as exc:
                raise EvalError(f"{self.r.where}: choices template must give a list, got {rendered[:60]!r} at "
                                f"{where}") from exc
        elif isinstance(spec, list):
            value = [self.r.render(s, row, "choices", where) if "{" in str(s) else s for s in spec]
        elif isinstance(spec, dict):
            value = list(spec.values())
        else:
            raise EvalError(f"{self.r.where}: choices must be a field, a template or a list")
        if hasattr(value, "tolist"):
            value = value.tolist()
        if not isinstance(value, (list, tuple)) or not all(isinstance(c, str) for c in value):
            raise EvalError(f"{self.r.where}: choices at {where} are not a list of strings")
        return tuple(value)

    def target(self, spec: Any, row: Mapping[str, Any], where: str) -> Any:
        if isinstance(spec, bool):
            raise EvalError(f"{self.r.where}: target must be a field, a template or an index")
        if isinstance(spec, (int, list)):
            return spec
        if not isinstance(spec, str):
            raise EvalError(f"{self.r.where}: target must be a field name or a template")
        if spec in row:
            return row[spec]
        rendered = self.r.render(spec, row, "target", where)
        if rendered.isdigit() and self.has_choices:
            return int(rendered)
        if len(rendered) >= 2 and rendered[0] == "[" and rendered[-1] == "]":
            try:
                return ast.literal_eval(rendered)
            except (SyntaxError, ValueError):
                return rendered
        return rendered


def _gold_index(target: Any, choices: tuple[str, ...], where: str, task: str) -> int | tuple[int, ...]:
    def one(t: Any) -> int:
        if isinstance(t, bool):
            raise EvalError(f"task {task}: label {t!r} at {where} is not a choice index")
        if isinstance(t, float) and t.is_integer():
            t = int(t)
        if isinstance(t, int):
            if not 0 <= t < len(choices):
                raise EvalError(f"task {task}: label {t} at {where} is out of range for {len(choices)} choices")
            return t
        if isinstance(t, str):
            if t in choices:
                return choices.index(t)
            if t.strip().isdigit() and 0 <= int(t) < len(choices):
                return int(t)
            raise EvalError(f"task {task}: label {t!r} at {where} is not one of the choices")
        raise EvalError(f"task {task}: label {t!r} at {where} is not a choice index or text")

    if isinstance(target, (list, tuple)):
        if not target:
            raise EvalError(f"task {task}: empty label list at {where}")
        return tuple(one(t) for t in target)
    return one(target)


# --------------------------------------------------------------------------------------------- loading
def load_task_file(path: Path, *, data: Mapping[str, Any] | None = None, allow_task_code: bool = False,
                   num_fewshot: int | None = None) -> list[Task]:
    """Tasks defined by a YAML file (assay's format or an lm-evaluation-harness task YAML).

    ``data`` maps ``SPLIT`` or ``TASK:SPLIT`` to local files for an lm-evaluation-harness task
    (:mod:`assay.evaluate.lmeval`); ``allow_task_code`` lets its ``!function`` helpers run; ``num_fewshot`` is
    ``--num-fewshot`` (lm-evaluation-harness tasks apply it by lm-evaluation-harness's rule).
    """
    cfg = read_yaml(path)
    if any(k in cfg for k in ("dataset_path", "doc_to_text", "output_type", "task")):
        name = str(cfg.get("task", ""))
        splits = _data_for(name, data or {})
        return [load_lmeval_task(path, cfg, data=splits, allow_task_code=allow_task_code, num_fewshot=num_fewshot)]
    if any(isinstance(v, FunctionRef) for v in cfg.values()):
        raise EvalError(f"{path}: assay's task format has no `!function`; express the field as a field name or a "
                        f"Jinja template")
    if data:
        raise EvalError(f"{path}: --data applies to lm-evaluation-harness task YAMLs (this file names its `data`)")
    return [with_num_fewshot(_own_task(path, cfg), num_fewshot)]


def _data_for(task: str, data: Mapping[str, Any]) -> dict[str, list[Path]]:
    """The ``--data`` entries for one task: ``TASK:SPLIT`` ones for it, else the plain ``SPLIT`` ones."""
    mine: dict[str, list[Path]] = {}
    plain: dict[str, list[Path]] = {}
    for key, value in data.items():
        paths = [Path(v) for v in (value if isinstance(value, list | tuple) else [value])]
        owner, sep, split = str(key).rpartition(":")
        if sep and owner == task:
            mine[split] = paths
        elif not sep:
            plain[split] = paths
    return mine or plain


def _rows_of(paths: list[Path]) -> list[tuple[dict[str, Any], str]]:
    rows: list[tuple[dict[str, Any], str]] = []
    for p in paths:
        rows.extend((r, f"{p.name} row {i + 1}") for i, r in enumerate(read_rows(p)))
    return rows


# --------------------------------------------------------------------------------------------- own format
def _own_task(path: Path, cfg: dict[str, Any]) -> Task:
    where = str(path)
    unknown = sorted(set(cfg) - OWN_FIELDS)
    if unknown:
        raise EvalError(f"{where}: unknown field(s) {', '.join(unknown)} (see `assay eval --help` for the task "
                        f"format)")
    kind_name = cfg.get("kind", "multiple_choice")
    try:
        kind = TaskKind(kind_name)
    except ValueError:
        kind = None
    if kind not in (TaskKind.MULTIPLE_CHOICE, TaskKind.GENERATE, TaskKind.PERPLEXITY):
        raise EvalError(f"{where}: kind {kind_name!r} is not supported in a task file (multiple_choice, generate, "
                        f"perplexity)")
    if "data" not in cfg:
        raise EvalError(f"{where}: `data` (the data file) is missing")
    name = cfg.get("name") or path.stem
    renderer = Renderer(where)
    fields = _Fields(renderer, has_choices="choices" in cfg)
    id_field = cfg.get("id")

    def build(rows: list[tuple[dict[str, Any], str]], prefix: str) -> tuple[Item, ...]:
        out = []
        for i, (row, rwhere) in enumerate(rows):
            item_id = str(row[id_field]) if id_field and id_field in row else f"{prefix}{i}"
            if id_field and id_field not in row:
                raise EvalError(f"{where}: id field {id_field!r} missing at {rwhere}")
            if kind == TaskKind.PERPLEXITY:
                text = fields.text(cfg.get("text", "text"), row, rwhere, "text")
                out.append(Item(id=item_id, text=text))
                continue
            if "prompt" not in cfg:
                raise EvalError(f"{where}: `prompt` is missing")
            ctx = fields.text(cfg["prompt"], row, rwhere, "prompt")
            if "label" not in cfg:
                raise EvalError(f"{where}: `label` is missing")
            target = fields.target(cfg["label"], row, rwhere)
            if kind == TaskKind.MULTIPLE_CHOICE:
                if "choices" not in cfg:
                    raise EvalError(f"{where}: `choices` is missing")
                choices = fields.choices(cfg["choices"], row, rwhere)
                out.append(Item(id=item_id, context=ctx, choices=choices,
                                gold=_gold_index(target, choices, rwhere, name)))
            else:
                out.append(Item(id=item_id, context=ctx, gold=str(target)))
        return tuple(out)

    data_paths = resolve_data(path, cfg["data"], "data")
    rows = _rows_of(data_paths)
    if not rows:
        raise EvalError(f"{where}: the data file has no rows (an empty task)")
    items = build(rows, "")
    pool: tuple[Item, ...] = ()
    if cfg.get("fewshot_data") is not None:
        fs_paths = resolve_data(path, cfg["fewshot_data"], "fewshot_data")
        pool = build(_rows_of(fs_paths), "fewshot/")
        data_paths += fs_paths
    num = cfg.get("num_fewshot", 0) or 0
    if not isinstance(num, int) or num < 0:
        raise EvalError(f"{where}: num_fewshot must be a non-negative integer")
    if num and not pool:
        pool = items
    sampler = cfg.get("fewshot_sampler", "first_n")
    if sampler not in ("first_n", "random"):
        raise EvalError(f"{where}: fewshot_sampler must be first_n or random")
    seed = cfg.get("fewshot_seed", 1234)
    if not isinstance(seed, int):
        raise EvalError(f"{where}: fewshot_seed must be an integer")
    metrics = cfg.get("metrics") or ()
    if not isinstance(metrics, list | tuple) or not all(isinstance(m, str) for m in metrics):
        raise EvalError(f"{where}: metrics must be a list of names")
    gen = _own_generation(cfg.get("generation") or {}, where)
    return Task(name=str(name), version=str(cfg.get("version", "1")), kind=kind, items=items, fewshot_pool=pool,
                num_fewshot=num, fewshot_sampler=sampler, fewshot_seed=seed,
                target_delimiter=text_field(cfg, "target_delimiter", " ", where),
                fewshot_delimiter=text_field(cfg, "fewshot_delimiter", "\n\n", where),
                description=text_field(cfg, "description", "", where), metrics=tuple(metrics), generation=gen,
                use_chat_template=bool(cfg.get("chat_template", False)),
                source=f"{path} (data sha256 {digest_files(data_paths)})")


def _own_generation(g: Any, where: str) -> GenerationSpec:
    if not isinstance(g, dict):
        raise EvalError(f"{where}: generation must be a mapping")
    unknown = set(g) - {"until", "max_tokens", "extract", "ignore_case", "ignore_punctuation", "regexes_to_ignore"}
    if unknown:
        raise EvalError(f"{where}: generation: unknown field(s) {', '.join(sorted(unknown))}")
    default = GenerationSpec()
    until = g.get("until", list(default.until))
    until = [until] if isinstance(until, str) else until
    extract = g.get("extract", list(default.extract))
    extract = [extract] if isinstance(extract, str) else extract
    check: Callable[[Any], bool] = lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)  # noqa: E731
    if not check(until) or not check(extract):
        raise EvalError(f"{where}: generation.until and generation.extract must be lists of strings")
    for how in extract:
        if how not in ("exact", "none", "strict", "flexible") and not how.startswith("regex:"):
            raise EvalError(f"{where}: unknown answer filter {how!r} (exact, none, strict, flexible, regex:PATTERN)")
        if how.startswith("regex:"):
            check_regex(how[6:], where)
    regexes = g.get("regexes_to_ignore", [])
    if not check(regexes):
        raise EvalError(f"{where}: generation.regexes_to_ignore must be a list of patterns")
    for r in regexes:
        check_regex(r, where)
    max_tokens = g.get("max_tokens", default.max_tokens)
    if not isinstance(max_tokens, int) or max_tokens <= 0:
        raise EvalError(f"{where}: generation.max_tokens must be a positive integer")
    return GenerationSpec(until=tuple(until), max_tokens=max_tokens, extract=tuple(extract),
                          ignore_case=bool(g.get("ignore_case", False)),
                          ignore_punctuation=bool(g.get("ignore_punctuation", False)),
                          regexes_to_ignore=tuple(regexes))
