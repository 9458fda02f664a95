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

lm-evaluation-harness YAMLs run unchanged when they use ``dataset_path: json|csv|parquet`` with
``dataset_kwargs: {data_files: ...}`` and the fields in :data:`LMEVAL_FIELDS`; anything else (``!function``,
``process_docs``, hub datasets, unknown keys) is refused with a message naming the field, never ignored.
Templates are rendered in a Jinja sandbox with lm-evaluation-harness's ``regex_replace`` filter.

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

import yaml

from assay.errors import EvalError
from assay.evaluate.tasks import GenerationSpec, Item, Task, TaskKind

#: lm-evaluation-harness task fields assay understands (others are refused).
LMEVAL_FIELDS = frozenset({
    "task", "tag", "include", "dataset_path", "dataset_name", "dataset_kwargs", "test_split", "validation_split",
    "training_split", "fewshot_split", "output_type", "doc_to_text", "doc_to_choice", "doc_to_target",
    "target_delimiter", "fewshot_delimiter", "num_fewshot", "fewshot_config", "metric_list", "description",
    "generation_kwargs", "filter_list", "metadata", "repeats", "should_decontaminate",
})
OWN_FIELDS = frozenset({
    "name", "version", "kind", "data", "fewshot_data", "prompt", "choices", "label", "text", "id",
    "target_delimiter", "fewshot_delimiter", "description", "num_fewshot", "fewshot_sampler", "fewshot_seed",
    "chat_template", "metrics", "generation",
})
_LM_OUTPUT_TYPES = {"multiple_choice": TaskKind.MULTIPLE_CHOICE, "generate_until": TaskKind.GENERATE,
                    "loglikelihood_rolling": TaskKind.PERPLEXITY}
_MC_METRICS = {"acc", "acc_norm", "acc_bytes", "exact_match"}
_PPL_METRICS = {"word_perplexity", "byte_perplexity", "bits_per_byte", "token_perplexity"}


class _Loader(yaml.SafeLoader):
    """Safe YAML that names ``!function`` instead of failing with a parser error."""


def _refuse_function(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise EvalError("the task uses `!function` (Python code from the task folder), which assay never runs; "
                    "express the field as a field name or a Jinja template")


_Loader.add_constructor("!function", _refuse_function)


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
def load_task_file(path: Path) -> list[Task]:
    """Tasks defined by a YAML file (assay's format or an lm-evaluation-harness task YAML)."""
    cfg = _read_yaml(path)
    if any(k in cfg for k in ("dataset_path", "doc_to_text", "output_type", "task")):
        return [_lmeval_task(path, cfg)]
    return [_own_task(path, cfg)]


def _read_yaml(path: Path, depth: int = 0) -> dict[str, Any]:
    try:
        cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise EvalError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"cannot read task file {path}: {exc}") from exc
    if not isinstance(cfg, dict):
        raise EvalError(f"{path}: a task file must be a YAML mapping")
    if "include" in cfg:
        if depth > 4:
            raise EvalError(f"{path}: `include` nests too deeply")
        inc = cfg.pop("include")
        if not isinstance(inc, str):
            raise EvalError(f"{path}: `include` must name one YAML file")
        base = _read_yaml((path.parent / inc), depth + 1) if (path.parent / inc).is_file() else None
        if base is None:
            raise EvalError(f"{path}: included file {inc} not found beside it")
        base.update(cfg)
        cfg = base
    return cfg


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


def _lmeval_task(path: Path, cfg: dict[str, Any]) -> Task:
    where = str(path)
    unknown = sorted(set(cfg) - LMEVAL_FIELDS)
    if unknown:
        raise EvalError(f"{where}: unsupported lm-evaluation-harness field(s): {', '.join(unknown)} (assay runs "
                        f"local-data task YAMLs with the fields listed in its README)")
    name = cfg.get("task")
    if not isinstance(name, str) or not name:
        raise EvalError(f"{where}: `task` (the task name) is missing")
    builder = cfg.get("dataset_path")
    if builder not in ("json", "csv", "parquet"):
        raise EvalError(f"{where}: dataset_path {builder!r} is not supported (use json, csv or parquet with "
                        f"dataset_kwargs.data_files; assay never downloads datasets)")
    if cfg.get("dataset_name") not in (None, "default"):
        raise EvalError(f"{where}: dataset_name is not supported for local {builder} files")
    kwargs = cfg.get("dataset_kwargs") or {}
    if not isinstance(kwargs, dict) or set(kwargs) - {"data_files"} or "data_files" not in kwargs:
        raise EvalError(f"{where}: dataset_kwargs must hold only data_files (got {sorted(kwargs) if isinstance(kwargs, dict) else kwargs!r})")
    files = kwargs["data_files"]
    splits: dict[str, list[Path]] = {}
    if isinstance(files, dict):
        for split, value in files.items():
            splits[str(split)] = _resolve_data(path, value, f"data_files.{split}")
    else:
        splits["train"] = _resolve_data(path, files, "data_files")
    kind = _LM_OUTPUT_TYPES.get(cfg.get("output_type", "generate_until"))
    if kind is None:
        raise EvalError(f"{where}: output_type {cfg.get('output_type')!r} is not supported (multiple_choice, "
                        f"generate_until, loglikelihood_rolling)")
    if cfg.get("repeats", 1) != 1:
        raise EvalError(f"{where}: repeats other than 1 are not supported")
    if cfg.get("should_decontaminate"):
        raise EvalError(f"{where}: should_decontaminate is not supported")
    eval_split = cfg.get("test_split") or cfg.get("validation_split")
    if not eval_split:
        raise EvalError(f"{where}: test_split (or validation_split) is required")
    for key in ("test_split", "validation_split", "training_split", "fewshot_split"):
        if cfg.get(key) is not None and cfg[key] not in splits:
            raise EvalError(f"{where}: {key} {cfg[key]!r} is not among data_files splits ({', '.join(splits)})")
    if cfg.get("fewshot_split"):
        pool_split = cfg["fewshot_split"]
    else:
        pool_split = next((cfg.get(k) for k in ("training_split", "validation_split", "test_split")
                           if cfg.get(k)), None)
    fs_cfg = cfg.get("fewshot_config") or {}
    if not isinstance(fs_cfg, dict) or set(fs_cfg) - {"sampler"}:
        raise EvalError(f"{where}: fewshot_config supports only `sampler` (got {fs_cfg!r})")
    sampler = fs_cfg.get("sampler", "first_n" if fs_cfg else "default")
    if sampler != "first_n":
        num = cfg.get("num_fewshot", 0) or 0
        if num:
            raise EvalError(f"{where}: fewshot sampler {sampler!r} is not supported for lm-evaluation-harness tasks "
                            f"(set fewshot_config: {{sampler: first_n}}); its random sampler's draws depend on "
                            f"item order and cannot be reproduced item by item")
        sampler = "first_n"
    renderer = _Renderer(where)
    has_choices = cfg.get("doc_to_choice") is not None
    fields = _Fields(renderer, has_choices=has_choices)
    doc_to_text = cfg.get("doc_to_text", "")
    if isinstance(doc_to_text, int):
        raise EvalError(f"{where}: an integer doc_to_text (multiple inputs, as in Winogrande) is not supported")
    if kind == TaskKind.MULTIPLE_CHOICE and not has_choices:
        raise EvalError(f"{where}: multiple_choice needs doc_to_choice")
    if "doc_to_target" not in cfg:
        raise EvalError(f"{where}: doc_to_target is required")
    target_delim = _str_field(cfg, "target_delimiter", " ", where)
    fewshot_delim = _str_field(cfg, "fewshot_delimiter", "\n\n", where)
    description = _str_field(cfg, "description", "", where)
    if "{{" in description:
        raise EvalError(f"{where}: a templated description is not supported")
    gen = GenerationSpec()
    metrics: tuple[str, ...] = ()
    ml = cfg.get("metric_list")
    gen_options: dict[str, Any] = {}
    if ml is not None:
        metrics, gen_options = _lm_metrics(ml, kind, where)
    if kind == TaskKind.GENERATE:
        gen = _lm_generation(cfg, gen_options, where)
        metrics = ()
    elif cfg.get("generation_kwargs") or cfg.get("filter_list"):
        raise EvalError(f"{where}: generation_kwargs and filter_list apply only to generate_until tasks")
    version = str((cfg.get("metadata") or {}).get("version", "0")) if isinstance(cfg.get("metadata"), dict) else "0"

    def build(rows: list[tuple[dict[str, Any], str]], split: str) -> tuple[Item, ...]:
        out = []
        for i, (row, rwhere) in enumerate(rows):
            ctx = fields.text(doc_to_text, row, rwhere, "doc_to_text")
            target = fields.target(cfg["doc_to_target"], row, rwhere)
            if kind == TaskKind.MULTIPLE_CHOICE:
                choices = fields.choices(cfg["doc_to_choice"], row, rwhere)
                gold: Any = _gold_index(target, choices, rwhere, name)
                out.append(Item(id=f"{split}/{i}", context=ctx, choices=choices, gold=gold))
            elif kind == TaskKind.GENERATE:
                if has_choices:
                    choices = fields.choices(cfg["doc_to_choice"], row, rwhere)
                    target = choices[_gold_index(target, choices, rwhere, name)]  # type: ignore[index]
                if isinstance(target, list):
                    raise EvalError(f"{where}: several targets per item are not supported for generation")
                out.append(Item(id=f"{split}/{i}", context=ctx, gold=str(target)))
            else:
                if not isinstance(target, str):
                    raise EvalError(f"{where}: doc_to_target must give the document text at {rwhere}")
                out.append(Item(id=f"{split}/{i}", text=target))
        return tuple(out)

    eval_rows = _rows_of(splits[eval_split])
    if not eval_rows:
        raise EvalError(f"{where}: the {eval_split} split is empty")
    items = build(eval_rows, eval_split)
    num_fewshot = cfg.get("num_fewshot", 0) or 0
    if not isinstance(num_fewshot, int) or num_fewshot < 0:
        raise EvalError(f"{where}: num_fewshot must be a non-negative integer")
    pool: tuple[Item, ...] = ()
    if pool_split is not None and kind != TaskKind.PERPLEXITY:
        pool = items if pool_split == eval_split else build(_rows_of(splits[pool_split]), pool_split)
    data_paths = [p for ps in splits.values() for p in ps]
    return Task(name=name, version=version, kind=kind, items=items, fewshot_pool=pool, num_fewshot=num_fewshot,
                fewshot_sampler=sampler, target_delimiter=target_delim, fewshot_delimiter=fewshot_delim,
                description=description, metrics=metrics, generation=gen,
                source=f"{path} (data sha256 {_digest_files(data_paths)})")


def _str_field(cfg: Mapping[str, Any], key: str, default: str, where: str) -> str:
    value = cfg.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise EvalError(f"{where}: {key} must be text")
    return value


def _lm_metrics(ml: Any, kind: TaskKind, where: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    if not isinstance(ml, list) or not ml:
        raise EvalError(f"{where}: metric_list must be a non-empty list")
    names: list[str] = []
    options: dict[str, Any] = {}
    allowed = {TaskKind.MULTIPLE_CHOICE: _MC_METRICS, TaskKind.GENERATE: {"exact_match"},
               TaskKind.PERPLEXITY: _PPL_METRICS}[kind]
    for entry in ml:
        if not isinstance(entry, dict) or not isinstance(entry.get("metric"), str):
            raise EvalError(f"{where}: each metric_list entry needs a `metric` name")
        metric = entry["metric"]
        if metric not in allowed:
            raise EvalError(f"{where}: metric {metric!r} is not supported for this output_type "
                            f"(supported: {', '.join(sorted(allowed))})")
        extra = set(entry) - {"metric", "aggregation", "higher_is_better"}
        if metric == "exact_match" and kind == TaskKind.GENERATE:
            extra -= {"ignore_case", "ignore_punctuation", "regexes_to_ignore"}
            for k in ("ignore_case", "ignore_punctuation", "regexes_to_ignore"):
                if k in entry:
                    options[k] = entry[k]
        if extra:
            raise EvalError(f"{where}: metric {metric}: unsupported option(s) {', '.join(sorted(extra))}")
        agg = entry.get("aggregation")
        ok_aggs = {None, "mean"} if kind != TaskKind.PERPLEXITY else {None, "weighted_perplexity", "bits_per_byte"}
        if agg not in ok_aggs:
            raise EvalError(f"{where}: metric {metric}: aggregation {agg!r} is not supported")
        names.append(metric)
    return tuple(names), options


def _lm_generation(cfg: Mapping[str, Any], options: Mapping[str, Any], where: str) -> GenerationSpec:
    gk = cfg.get("generation_kwargs") or {}
    if not isinstance(gk, dict):
        raise EvalError(f"{where}: generation_kwargs must be a mapping")
    unknown = set(gk) - {"until", "max_gen_toks", "do_sample", "temperature"}
    if unknown:
        raise EvalError(f"{where}: generation_kwargs {', '.join(sorted(unknown))} not supported")
    if gk.get("do_sample"):
        raise EvalError(f"{where}: do_sample: true is not supported (evaluation is greedy)")
    if float(gk.get("temperature", 0.0) or 0.0) != 0.0:
        raise EvalError(f"{where}: temperature other than 0 is not supported (evaluation is greedy)")
    until = gk.get("until", ["\n\n"])
    if isinstance(until, str):
        until = [until]
    if not isinstance(until, list) or not all(isinstance(u, str) for u in until):
        raise EvalError(f"{where}: generation_kwargs.until must be a list of strings")
    max_toks = gk.get("max_gen_toks", 256)
    if not isinstance(max_toks, int) or max_toks <= 0:
        raise EvalError(f"{where}: max_gen_toks must be a positive integer")
    extract: list[str] = []
    fl = cfg.get("filter_list")
    if fl is None:
        extract = ["none"]
    else:
        if not isinstance(fl, list) or not fl:
            raise EvalError(f"{where}: filter_list must be a non-empty list")
        for entry in fl:
            extract.append(_lm_filter(entry, where))
    regexes = options.get("regexes_to_ignore", ()) or ()
    if not isinstance(regexes, list | tuple) or not all(isinstance(r, str) for r in regexes):
        raise EvalError(f"{where}: regexes_to_ignore must be a list of patterns")
    for r in regexes:
        _check_regex(r, where)
    return GenerationSpec(until=tuple(until), max_tokens=max_toks, extract=tuple(extract),
                          ignore_case=bool(options.get("ignore_case", False)),
                          ignore_punctuation=bool(options.get("ignore_punctuation", False)),
                          regexes_to_ignore=tuple(regexes))


def _lm_filter(entry: Any, where: str) -> str:
    from assay.evaluate.runner import FLEXIBLE_PATTERN, STRICT_PATTERN

    if not isinstance(entry, dict) or not isinstance(entry.get("filter"), list):
        raise EvalError(f"{where}: each filter_list entry needs a `filter` list")
    steps = entry["filter"]
    fns = [s.get("function") if isinstance(s, dict) else None for s in steps]
    if fns == ["take_first"]:
        return "none"
    if len(fns) != 2 or fns[0] != "regex" or fns[1] != "take_first":
        raise EvalError(f"{where}: filter {entry.get('name')!r}: only `regex` followed by `take_first` is supported "
                        f"(got {fns})")
    step = steps[0]
    extra = set(step) - {"function", "regex_pattern", "group_select", "fallback"}
    if extra or step.get("fallback", "[invalid]") != "[invalid]":
        raise EvalError(f"{where}: filter {entry.get('name')!r}: unsupported regex option(s) {sorted(extra) or 'fallback'}")
    pattern = step.get("regex_pattern", STRICT_PATTERN)
    group = step.get("group_select", 0)
    _check_regex(pattern, where)
    if pattern == STRICT_PATTERN and group == 0:
        return "strict"
    if pattern == FLEXIBLE_PATTERN and group == -1:
        return "flexible"
    if group == 0:
        return f"regex:{pattern}"
    raise EvalError(f"{where}: filter {entry.get('name')!r}: group_select {group} is supported only for the "
                    f"standard GSM8K patterns")


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
