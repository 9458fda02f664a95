"""What assay's task files and lm-evaluation-harness task YAMLs share: data files, paths, templates, patterns.

Both loaders (:mod:`assay.evaluate.taskfile`, :mod:`assay.evaluate.lmeval`) read data files with
:func:`read_rows` (JSONL, JSON, CSV or Parquet, by extension), find them beside the YAML with
:func:`resolve_data`, put :func:`digest_files` of them in the task's source, render templates in a Jinja sandbox
with :class:`Renderer` (lm-evaluation-harness's ``regex_replace`` filter included) and refuse a bad pattern with
:func:`check_regex`. Every error is an :class:`~assay.errors.EvalError` naming the file (and the row).

    rows = read_rows(Path("capitals.jsonl"))
    Renderer("capitals.yaml").render("Q: {{question}}", rows[0], "prompt", "capitals.jsonl row 1")
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from assay.errors import EvalError


# --------------------------------------------------------------------------------------------- templates
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
    env.filters["regex_replace"] = lambda s, pattern, repl, count=0: re.sub(pattern, repl, s, count=count)
    return env


class Renderer:
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


def digest_files(paths: Sequence[Path]) -> str:
    """SHA-256 of the files' bytes in order, first 16 hex digits (the data digest in a task's source)."""
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


# --------------------------------------------------------------------------------------------- fields
def resolve_data(path: Path, value: Any, what: str) -> list[Path]:
    """The data files a YAML field names (a path or a list of paths); a relative path is looked up beside the
    YAML file ``path`` first. A missing file is an error naming the YAML file."""
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


def check_regex(pattern: str, where: str) -> None:
    """Refuse a pattern Python's ``re`` cannot compile, naming ``where`` it came from."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise EvalError(f"{where}: invalid regular expression {pattern!r} ({exc})") from exc


def text_field(cfg: Mapping[str, Any], key: str, default: str, where: str) -> str:
    """The text value of ``key`` in a task file (``default`` when absent or null); refuses any other type."""
    value = cfg.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise EvalError(f"{where}: {key} must be text")
    return value
