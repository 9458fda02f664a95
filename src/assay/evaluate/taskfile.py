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
import csv
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from assay.errors import EvalError
from assay.evaluate.tasks import GenerationSpec, Item, Task, TaskKind

OWN_FIELDS = frozenset({
    "name", "version", "kind", "data", "fewshot_data", "prompt", "choices", "label", "text", "id",
    "target_delimiter", "fewshot_delimiter", "description", "num_fewshot", "fewshot_sampler", "fewshot_seed",
    "chat_template", "metrics", "generation",
})


# --------------------------------------------------------------------------------------------- templates
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters["regex_replace"] = lambda s, pattern, repl, count=0: re.sub(pattern, repl, s, count=count)
    return env


class _Renderer:
    """Renders one task's templates over rows, with errors that name the file and row."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.env = _environment()
        self._cache: dict[str, Any] = {}

    def render(self, template: str, row: Mapping[str, Any], what: str, row_where: str) -> str:
        from jinja2 import TemplateError, UndefinedError

        try:
            compiled = self._cache.get(template)
            if compiled is None:
                compiled = self._cache[template] = self.env.from_string(template)
            return str(compiled.render(**row))
        except UndefinedError as exc:
            raise EvalError(f"{self.where}: {what} template references a missing field ({exc.message}) at "
                            f"{row_where}") from exc
        except TemplateError as exc:
            raise EvalError(f"{self.where}: {what} template is invalid ({exc}) at {row_where}") from exc
        except Exception as exc:  # noqa: BLE001 - a method the template calls failed (e.g. list.index)
            raise EvalError(f"{self.where}: {what} template failed at {row_where}: "
                            f"{type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------------------------- data
def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL, JSON, CSV or Parquet file (by extension); errors name the file and line."""
    if not path.is_file():
        raise EvalError(f"data file not found: {path}")
    suffix = "".join(path.suffixes[-1:]).lower()
    try:
        if suffix in (".jsonl", ".ndjson"):
            return _read_jsonl(path)
        if suffix == ".json":
            text = path.read_text(encoding="utf-8")
            try:
                data = json.loads(text)
            except json.JSONDecodeError:
                return _read_jsonl(path)
            if isinstance(data, dict) and isinstance(data.get("data"), list):
                data = data["data"]
            if not isinstance(data, list):
                raise EvalError(f"{path}: expected a JSON list of objects")
            return [_as_row(r, f"{path} item {i}") for i, r in enumerate(data)]
        if suffix == ".csv":
            return _read_csv(path)
        if suffix == ".parquet":
            return _read_parquet(path)
    except UnicodeDecodeError as exc:
        raise EvalError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except OSError as exc:
        raise EvalError(f"cannot read {path}: {exc.strerror or exc}") from exc
    raise EvalError(f"{path}: unsupported data file type {suffix or '(none)'} (use .jsonl, .json, .csv, .parquet)")


def _as_row(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise EvalError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalError(f"{path}:{lineno}: malformed JSON line ({exc.msg})") from exc
            rows.append(_as_row(obj, f"{path}:{lineno}"))
    return rows


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        try:
            rows = [dict(r) for r in reader]
        except csv.Error as exc:
            raise EvalError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from exc
    for i, r in enumerate(rows):
        if None in r:
            raise EvalError(f"{path}:{i + 2}: row has more fields than the header")
    # Columns whose every value is an integer (or a number) become numbers, as the `datasets` CSV reader does.
    for col in (rows[0].keys() if rows else ()):
        values = [r[col] for r in rows]
        for cast in (int, float):
            try:
                converted = [cast(v) for v in values]
            except (TypeError, ValueError):
                continue
            for r, v in zip(rows, converted, strict=True):
                r[col] = v
            break
    return rows


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise EvalError("reading Parquet needs pyarrow (pip install pyarrow)") from exc
    try:
        return [dict(r) for r in pq.read_table(path).to_pylist()]
    except Exception as exc:  # noqa: BLE001 - any pyarrow failure is a bad file
        raise EvalError(f"{path}: not a readable Parquet file ({str(exc).splitlines()[0]})") from exc


def _digest_files(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------- fields
class _Fields:
    """lm-evaluation-harness's rules for ``doc_to_text`` / ``doc_to_choice`` / ``doc_to_target``."""

    def __init__(self, renderer: _Renderer, *, has_choices: bool) -> None:
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
    from assay.evaluate.lmeval import FunctionRef, load_lmeval_task, read_yaml

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
    from assay.evaluate.tasks import with_num_fewshot

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


def _resolve_data(path: Path, value: Any, what: str) -> list[Path]:
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    else:
        raise EvalError(f"{path}: {what} must be a path or a list of paths")
    out = []
    for v in items:
        p = Path(v).expanduser()
        if not p.is_absolute():
            beside = path.parent / p
            p = beside if beside.exists() or not p.exists() else p
        if not p.is_file():
            raise EvalError(f"{path}: data file not found: {v}")
        out.append(p)
    return out


def _rows_of(paths: list[Path]) -> list[tuple[dict[str, Any], str]]:
    rows: list[tuple[dict[str, Any], str]] = []
    for p in paths:
        rows.extend((r, f"{p.name} row {i + 1}") for i, r in enumerate(read_rows(p)))
    return rows


def _str_field(cfg: Mapping[str, Any], key: str, default: str, where: str) -> str:
    value = cfg.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise EvalError(f"{where}: {key} must be text")
    return value


def _check_regex(pattern: str, where: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise EvalError(f"{where}: invalid regular expression {pattern!r} ({exc})") from exc


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
    renderer = _Renderer(where)
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

    data_paths = _resolve_data(path, cfg["data"], "data")
    rows = _rows_of(data_paths)
    if not rows:
        raise EvalError(f"{where}: the data file has no rows (an empty task)")
    items = build(rows, "")
    pool: tuple[Item, ...] = ()
    if cfg.get("fewshot_data") is not None:
        fs_paths = _resolve_data(path, cfg["fewshot_data"], "fewshot_data")
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
                target_delimiter=_str_field(cfg, "target_delimiter", " ", where),
                fewshot_delimiter=_str_field(cfg, "fewshot_delimiter", "\n\n", where),
                description=_str_field(cfg, "description", "", where), metrics=tuple(metrics), generation=gen,
                use_chat_template=bool(cfg.get("chat_template", False)),
                source=f"{path} (data sha256 {_digest_files(data_paths)})")


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
            _check_regex(how[6:], where)
    regexes = g.get("regexes_to_ignore", [])
    if not check(regexes):
        raise EvalError(f"{where}: generation.regexes_to_ignore must be a list of patterns")
    for r in regexes:
        _check_regex(r, where)
    max_tokens = g.get("max_tokens", default.max_tokens)
    if not isinstance(max_tokens, int) or max_tokens <= 0:
        raise EvalError(f"{where}: generation.max_tokens must be a positive integer")
    return GenerationSpec(until=tuple(until), max_tokens=max_tokens, extract=tuple(extract),
                          ignore_case=bool(g.get("ignore_case", False)),
                          ignore_punctuation=bool(g.get("ignore_punctuation", False)),
                          regexes_to_ignore=tuple(regexes))
