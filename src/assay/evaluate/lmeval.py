"""lm-evaluation-harness task YAMLs, read with lm-evaluation-harness 0.4's semantics, over local data files.

lm-eval's own task files run unchanged: ``assay eval M --task lm_eval/tasks/arc/arc_easy.yaml --data
test=arc_easy_test.jsonl --data train=arc_easy_train.jsonl`` (``--data`` points a hub ``dataset_path`` at local
files; a YAML with ``dataset_path: json`` and ``dataset_kwargs.data_files`` needs no ``--data``). Every field is
read as lm-eval reads it (docs/lm-eval-tasks.md lists them):

- ``doc_to_text`` / ``doc_to_target`` / ``doc_to_choice``: a column name, a Jinja template (a target or text that
  renders to digits is an index; a choice template renders to a Python list literal), a YAML list (taken
  literally, never rendered) or an index; a string target is looked up among the choices;
- few-shot examples drawn by lm-eval's samplers, draw for draw (:func:`assay.evaluate.runner.fewshot_examples`),
  from ``fewshot_split``, ``fewshot_config.samples`` or the first of training/validation/test, rendered with
  ``fewshot_config``'s overrides, ``gen_prefix`` and the delimiters;
- ``!function`` helpers are the task author's Python code: they run only with ``allow_task_code``
  (``--allow-task-code``); without it the error names the file and the field.

Where lm-eval itself would score an item wrong whatever the model says (a label that is not among the choices,
an index out of range), assay refuses with an error naming the field instead of reporting that number.

    tasks = load_lmeval_task(Path("arc_easy.yaml"), cfg, data={"test": [Path("test.jsonl")]})
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml

from assay.errors import EvalError
from assay.evaluate.filters import FLEXIBLE_PATTERN, PIPELINE, PIPELINE_STEPS, STRICT_PATTERN
from assay.evaluate.taskdata import Renderer, check_regex, digest_files, read_rows, resolve_data, text_field
from assay.evaluate.tasks import GenerationSpec, Item, Task, TaskKind

#: Fields assay reads (docs/lm-eval-tasks.md says how); any other field is refused, naming it.
FIELDS = frozenset({
    "task", "task_alias", "tag", "group", "include", "dataset_path", "dataset_name", "dataset_kwargs",
    "training_split", "validation_split", "test_split", "fewshot_split", "process_docs", "doc_to_text",
    "doc_to_target", "doc_to_choice", "process_results", "description", "target_delimiter", "fewshot_delimiter",
    "fewshot_config", "num_fewshot", "metric_list", "output_type", "generation_kwargs", "repeats", "filter_list",
    "should_decontaminate", "doc_to_decontamination_query", "gen_prefix", "metadata", "unsafe_code",
})
#: Fields that do not change a score and are ignored with a note.
IGNORED_WITH_NOTE = ("should_decontaminate", "doc_to_decontamination_query")
FEWSHOT_FIELDS = frozenset({"sampler", "split", "process_docs", "fewshot_indices", "samples", "doc_to_text",
                            "doc_to_choice", "doc_to_target", "gen_prefix", "fewshot_delimiter", "target_delimiter"})
OUTPUT_TYPES = {"multiple_choice": TaskKind.MULTIPLE_CHOICE, "generate_until": TaskKind.GENERATE,
                "loglikelihood_rolling": TaskKind.PERPLEXITY, "loglikelihood": TaskKind.LOGLIKELIHOOD}
#: lm-eval's default metrics per output type (api/registry.py DEFAULT_METRIC_REGISTRY).
DEFAULT_METRICS = {TaskKind.MULTIPLE_CHOICE: ("acc", "acc_norm"), TaskKind.GENERATE: ("exact_match",),
                   TaskKind.PERPLEXITY: ("word_perplexity", "byte_perplexity", "bits_per_byte"),
                   TaskKind.LOGLIKELIHOOD: ("perplexity", "acc")}
#: Metrics assay computes per output type, with the aggregations lm-eval accepts for them.
METRICS = {
    TaskKind.MULTIPLE_CHOICE: {"acc": "mean", "acc_norm": "mean", "acc_bytes": "mean", "exact_match": "mean",
                               "acc_mutual_info": "mean", "f1": "f1"},
    TaskKind.GENERATE: {"exact_match": "mean"},
    TaskKind.PERPLEXITY: {"word_perplexity": "weighted_perplexity", "byte_perplexity": "weighted_perplexity",
                          "bits_per_byte": "bits_per_byte"},
    TaskKind.LOGLIKELIHOOD: {"perplexity": "perplexity", "acc": "mean"},
}
_MAX_INCLUDE_DEPTH = 8


# --------------------------------------------------------------------------------------------- YAML
@dataclass(frozen=True)
class FunctionRef:
    """A ``!function module.name`` tag: Python code beside the YAML file that declared it (not yet imported)."""

    qualname: str
    """``module.name`` as written."""
    yaml_file: Path
    """The YAML file whose tag this is (modules are looked up beside it)."""

    @property
    def module_file(self) -> Path:
        """The Python file lm-eval imports for it: ``<yaml folder>/<module path>.py``."""
        mod = self.qualname.rpartition(".")[0]
        return (self.yaml_file.parent / f"{mod.replace('.', '/')}.py").resolve()

    def load(self) -> Callable[..., Any]:
        """Import the module and return the function (the caller has the user's permission to run it)."""
        mod, _, name = self.qualname.rpartition(".")
        if not mod:
            raise EvalError(f"{self.yaml_file}: `!function {self.qualname}` names no module")
        path = self.module_file
        if not path.is_file():
            raise EvalError(f"{self.yaml_file}: `!function {self.qualname}`: {path} not found")
        key = f"assay_task_code_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        module = sys.modules.get(key)
        if module is None:
            spec = importlib.util.spec_from_file_location(key, path)
            if spec is None or spec.loader is None:
                raise EvalError(f"{self.yaml_file}: cannot import {path}")
            module = importlib.util.module_from_spec(spec)
            try:
                spec.loader.exec_module(module)
            except Exception as exc:  # noqa: BLE001 - the task author's code; report it as the task's failure
                raise EvalError(f"{path}: the task code failed to import ({type(exc).__name__}: {exc})") from exc
            sys.modules[key] = module
        fn = getattr(module, name, None)
        if not callable(fn):
            raise EvalError(f"{self.yaml_file}: `!function {self.qualname}`: {path} has no function {name}")
        return cast("Callable[..., Any]", fn)


def read_yaml(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A task YAML with its ``include`` s merged (local keys win), as lm-eval merges them; ``!function`` tags
    become :class:`FunctionRef` (nothing is imported)."""
    path = path.expanduser().resolve()
    if path in _seen or len(_seen) > _MAX_INCLUDE_DEPTH:
        raise EvalError(f"{path}: `include` cycles or nests too deeply")

    class Loader(yaml.SafeLoader):
        pass

    def function_ref(loader: yaml.SafeLoader, node: yaml.Node) -> FunctionRef:
        if not isinstance(node, yaml.ScalarNode):
            raise EvalError(f"{path}: `!function` must name module.function")
        return FunctionRef(str(loader.construct_scalar(node)), path)

    Loader.add_constructor("!function", function_ref)
    try:
        cfg = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise EvalError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise EvalError(f"cannot read task file {path}: {exc}") from exc
    if not isinstance(cfg, dict):
        raise EvalError(f"{path}: a task file must be a YAML mapping")
    if "include" not in cfg:
        return cfg
    includes = cfg.pop("include")
    merged: dict[str, Any] = {}
    for inc in includes if isinstance(includes, list) else [includes]:
        if not isinstance(inc, str):
            raise EvalError(f"{path}: `include` must name YAML files")
        inc_path = Path(inc).expanduser()
        inc_path = inc_path if inc_path.is_absolute() else path.parent / inc_path
        if not inc_path.is_file():
            raise EvalError(f"{path}: included file {inc} not found")
        sub = read_yaml(inc_path, (*_seen, path))
        sub.pop("task_list", None)
        merged.update(sub)
    merged.update(cfg)
    return merged


def _function_fields(cfg: Mapping[str, Any]) -> list[tuple[str, FunctionRef]]:
    found: list[tuple[str, FunctionRef]] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, FunctionRef):
            found.append((where, value))
        elif isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, f"{where}.{k}" if where else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")

    walk(cfg, "")
    return found


# --------------------------------------------------------------------------------------------- fields
class _Resolver:
    """lm-eval's ``doc_to_text`` / ``doc_to_target`` / ``doc_to_choice`` / ``description`` rules."""

    def __init__(self, where: str, features: set[str]) -> None:
        self.where = where
        self.features = features
        self.renderer = Renderer(where)

    def render(self, template: str, doc: Mapping[str, Any], field: str, at: str) -> str:
        return self.renderer.render(template, doc, field, at)

    def column(self, doc: Mapping[str, Any], name: str, field: str, at: str) -> Any:
        if name not in doc:
            raise EvalError(f"{self.where}: {field} names the column {name!r}, missing at {at}")
        return doc[name]

    def call(self, fn: Callable[..., Any], doc: Mapping[str, Any], field: str, at: str) -> Any:
        try:
            return fn(doc)
        except Exception as exc:  # noqa: BLE001 - the task author's code
            raise EvalError(f"{self.where}: {field} (task code) failed at {at}: {type(exc).__name__}: {exc}") from exc

    def text(self, spec: Any, doc: Mapping[str, Any], at: str, *, has_choices: bool) -> Any:
        if isinstance(spec, bool):
            raise EvalError(f"{self.where}: doc_to_text must be a field, a template or an index")
        if isinstance(spec, int):
            return spec
        if isinstance(spec, str):
            if spec in self.features:
                return self.column(doc, spec, "doc_to_text", at)
            rendered = self.render(spec, doc, "doc_to_text", at)
            return ast.literal_eval(rendered) if rendered.isdigit() and has_choices else rendered
        if callable(spec):
            return self.call(spec, doc, "doc_to_text", at)
        raise EvalError(f"{self.where}: doc_to_text must be a field, a template or an index")

    def target(self, spec: Any, doc: Mapping[str, Any], at: str, *, has_choices: bool) -> Any:
        if isinstance(spec, bool):
            raise EvalError(f"{self.where}: doc_to_target must be a field, a template, an index or a list")
        if isinstance(spec, int | list):
            return spec
        if isinstance(spec, str):
            if spec in self.features:
                return self.column(doc, spec, "doc_to_target", at)
            rendered = self.render(spec, doc, "doc_to_target", at)
            if rendered.isdigit() and has_choices:
                return ast.literal_eval(rendered)
            if len(rendered) >= 2 and rendered[0] == "[" and rendered[-1] == "]":
                try:
                    return ast.literal_eval(rendered)
                except (SyntaxError, ValueError):
                    return rendered
            return rendered
        if callable(spec):
            return self.call(spec, doc, "doc_to_target", at)
        raise EvalError(f"{self.where}: doc_to_target must be a field, a template, an index or a list")

    def choices(self, spec: Any, doc: Mapping[str, Any], at: str) -> list[str]:
        if isinstance(spec, str):
            if spec in self.features:
                value = self.column(doc, spec, "doc_to_choice", at)
            else:
                rendered = self.render(spec, doc, "doc_to_choice", at)
                try:
                    value = ast.literal_eval(rendered)
                except (ValueError, SyntaxError) as exc:
                    raise EvalError(f"{self.where}: doc_to_choice template must give a Python list literal, got "
                                    f"{rendered[:60]!r} at {at}") from exc
        elif isinstance(spec, list):
            value = spec  # lm-eval takes a YAML list literally: its entries are never rendered
        elif isinstance(spec, dict):
            value = list(spec.values())
        elif callable(spec):
            value = self.call(spec, doc, "doc_to_choice", at)
        else:
            raise EvalError(f"{self.where}: doc_to_choice must be a field, a template, a list or a mapping")
        if hasattr(value, "tolist"):
            value = value.tolist()
        if not isinstance(value, list | tuple) or not all(isinstance(c, str) for c in value):
            raise EvalError(f"{self.where}: doc_to_choice at {at} does not give a list of strings")
        return list(value)

    def field(self, spec: Any, doc: Mapping[str, Any], name: str, at: str) -> str:
        """``description`` and ``gen_prefix``: a column, else a template (lm-eval's ``resolve_field``)."""
        if spec is None or spec == "":
            return ""
        if callable(spec):
            raise EvalError(f"{self.where}: {name} cannot be `!function`")
        if not isinstance(spec, str):
            raise EvalError(f"{self.where}: {name} must be text")
        value = doc[spec] if spec in doc else self.render(spec, doc, name, at)
        return str(value)


def _maybe_delimit(prefix: str, suffix: str, delimiter: str) -> str:
    """lm-eval's ``maybe_delimit``: join with the delimiter only if neither side has whitespace at the seam."""
    if not prefix:
        return suffix
    if not suffix:
        return prefix
    return prefix + suffix if (prefix[-1].isspace() or suffix[0].isspace()) else prefix + delimiter + suffix


def _needs_delimiter(prefix: str, suffix: str) -> bool:
    return prefix != "" and not (prefix[-1].isspace() or suffix[0].isspace())


def _question_turn(q: str, gen_prefix: str, tgt_delim: str, *, has_answer: bool) -> str:
    """The user turn of lm-eval's ``build_qa_turn`` as text (the question and what follows it)."""
    if gen_prefix:
        return q + (tgt_delim if _needs_delimiter(q, gen_prefix) else "")
    return q + (tgt_delim if has_answer else "")


def _gold(target: Any, choices: Sequence[str], field: str, at: str, where: str) -> int | tuple[int, ...]:
    """The right choice's index as lm-eval finds it; a refusal where lm-eval would score the item wrong."""

    def one(t: Any) -> int:
        if isinstance(t, float) and t.is_integer():
            t = int(t)
        if isinstance(t, bool) or not isinstance(t, int | str):
            raise EvalError(f"{where}: {field} gives {t!r} at {at}, neither a choice index nor a choice's text")
        if isinstance(t, str):
            if t in choices:
                return list(choices).index(t)
            raise EvalError(f"{where}: {field} gives the text {t!r} at {at}, which is not one of the choices "
                            f"{list(choices)[:6]}; lm-evaluation-harness looks a text label up among the choices "
                            f"and would score this item wrong whatever the model answers")
        if not 0 <= t < len(choices):
            raise EvalError(f"{where}: {field} gives index {t} at {at}, out of range for {len(choices)} choices; "
                            f"lm-evaluation-harness would score this item wrong whatever the model answers")
        return t

    if isinstance(target, list | tuple):
        if not target or not all(isinstance(t, int) and not isinstance(t, bool) for t in target):
            raise EvalError(f"{where}: {field} gives {target!r} at {at}; several right answers must be a list of "
                            f"choice indices")
        return tuple(one(t) for t in target)
    return one(target)


# --------------------------------------------------------------------------------------------- loading
def load_lmeval_task(path: Path, cfg: dict[str, Any], *, data: Mapping[str, Sequence[Path]] | None = None,
                     allow_task_code: bool = False, num_fewshot: int | None = None) -> Task:
    """One task from a merged lm-eval task config (see the module docstring)."""
    where = str(path)
    unknown = sorted(set(cfg) - FIELDS)
    if unknown:
        raise EvalError(f"{where}: lm-evaluation-harness field(s) {', '.join(unknown)} are not supported by assay "
                        f"(docs/lm-eval-tasks.md lists the fields it reads)")
    refs = _function_fields(cfg)
    if refs and not allow_task_code:
        field, ref = refs[0]
        raise EvalError(f"{ref.yaml_file}: `{field}` is `!function {ref.qualname}`, Python code from "
                        f"{ref.module_file}; assay runs a task's own code only with --allow-task-code")
    code_files = sorted({ref.module_file for _, ref in refs})
    cfg = _resolve_functions(cfg)
    name = cfg.get("task")
    if not isinstance(name, str) or not name:
        raise EvalError(f"{where}: `task` (the task name) is missing")
    if cfg.get("unsafe_code"):
        raise EvalError(f"{where}: unsafe_code: true (a task that executes model output) is not supported")
    if cfg.get("repeats", 1) != 1:
        raise EvalError(f"{where}: repeats other than 1 are not supported")
    kind = OUTPUT_TYPES.get(cfg.get("output_type", "generate_until"))
    if kind is None:
        raise EvalError(f"{where}: output_type {cfg.get('output_type')!r} is not supported "
                        f"({', '.join(OUTPUT_TYPES)})")
    notes: list[str] = []
    ignored = [key for key in IGNORED_WITH_NOTE if cfg.get(key)]
    if ignored:
        notes.append(f"{' and '.join(ignored)} ignored (decontamination does not change a score)")
    splits, data_paths = _splits(path, cfg, data, notes)

    def split_docs(split: str, process: Any) -> list[dict[str, Any]]:
        if split not in splits:
            raise EvalError(f"{where}: split {split!r} has no data (splits given: {', '.join(splits) or 'none'}); "
                            f"give it with --data {split}=FILE")
        rows = [r for p in splits[split] for r in read_rows(p)]
        return _process_docs(process, rows, where, split) if process is not None else rows

    test_split, val_split, train_split = (cfg.get("test_split"), cfg.get("validation_split"),
                                          cfg.get("training_split"))
    eval_split = test_split or val_split
    if not eval_split:
        raise EvalError(f"{where}: test_split (or validation_split) is required")
    docs = split_docs(eval_split, cfg.get("process_docs"))
    if not docs:
        raise EvalError(f"{where}: the {eval_split} split is empty")
    features: set[str] = set()
    for d in docs:
        features.update(d)
    res = _Resolver(where, features)
    has_choices = cfg.get("doc_to_choice") is not None
    if kind == TaskKind.MULTIPLE_CHOICE and not has_choices:
        raise EvalError(f"{where}: multiple_choice needs doc_to_choice")
    if "doc_to_target" not in cfg:
        raise EvalError(f"{where}: doc_to_target is required")
    tgt_delim = text_field(cfg, "target_delimiter", " ", where)
    few_delim = text_field(cfg, "fewshot_delimiter", "\n\n", where)
    gen_prefix_spec = cfg.get("gen_prefix")
    description_spec = cfg.get("description") or ""
    doc_to_text, doc_to_target, doc_to_choice = cfg.get("doc_to_text"), cfg["doc_to_target"], cfg.get("doc_to_choice")

    first = f"{eval_split} row 1"
    first_text = res.text(doc_to_text, docs[0], first, has_choices=has_choices)
    multiple_input = isinstance(first_text, int) and has_choices
    if multiple_input and kind != TaskKind.MULTIPLE_CHOICE:
        raise EvalError(f"{where}: an integer doc_to_text (one input per choice) needs output_type: multiple_choice")
    if multiple_input and gen_prefix_spec:
        raise EvalError(f"{where}: gen_prefix with one input per choice (an integer doc_to_text) is not supported")
    metrics, gen_options = _metrics(cfg, kind, where, has_code=cfg.get("process_results") is not None)
    if isinstance(doc_to_choice, list) and any("{{" in str(c) or "{%" in str(c) for c in doc_to_choice):
        notes.append("doc_to_choice is a YAML list whose entries look like templates: they are scored literally, "
                     "unrendered, as lm-evaluation-harness scores them (use a template string giving a list to "
                     "render them)")
    if multiple_input and "acc_mutual_info" in metrics:
        raise EvalError(f"{where}: acc_mutual_info with one input per choice (an integer doc_to_text) is not "
                        f"supported (lm-evaluation-harness scores the per-choice contexts, not the continuation, "
                        f"without context there)")
    if "f1" in metrics and kind == TaskKind.MULTIPLE_CHOICE:
        notes.append("f1 is binary F1 with choice 1 as the positive class (scikit-learn's default, as in "
                     "lm-evaluation-harness)")

    items: list[Item] = []
    for i, doc in enumerate(docs):
        at = f"{eval_split} row {i + 1}"
        q = res.text(doc_to_text, doc, at, has_choices=has_choices)
        target = res.target(doc_to_target, doc, at, has_choices=has_choices)
        gen_prefix = res.field(gen_prefix_spec, doc, "gen_prefix", at)
        meta = {"doc": doc, "doc_key": _doc_key(doc),
                "description": res.field(description_spec, doc, "description", at)}
        item_id = f"{eval_split}/{i}"
        if kind == TaskKind.MULTIPLE_CHOICE:
            choices = res.choices(doc_to_choice, doc, at)
            if multiple_input:
                if not isinstance(q, int):
                    raise EvalError(f"{where}: doc_to_text gives {q!r} at {at} but an index on the first row")
                gold = _gold(q, choices, "doc_to_text", at, where)
                if not isinstance(target, str):
                    raise EvalError(f"{where}: doc_to_target must give the shared continuation text at {at}")
                items.append(Item(id=item_id, context="", choices=(target,) * len(choices), gold=gold,
                                  contexts=tuple(choices), meta=meta))
                continue
            if not isinstance(q, str):
                raise EvalError(f"{where}: doc_to_text gives {type(q).__name__} at {at}, not text")
            gold = _gold(target, choices, "doc_to_target", at, where)
            if "f1" in metrics and (len(choices) > 2 or isinstance(gold, tuple)):
                raise EvalError(f"{where}: metric f1 is binary (two choices, one right answer); {at} has "
                                f"{len(choices)} choices")
            items.append(Item(id=item_id, context=_question_turn(q, gen_prefix, tgt_delim, has_answer=False)
                              + gen_prefix, choices=tuple(choices), gold=gold, meta=meta))
        elif kind in (TaskKind.GENERATE, TaskKind.LOGLIKELIHOOD):
            if not isinstance(q, str):
                raise EvalError(f"{where}: doc_to_text gives {type(q).__name__} at {at}, not text")
            if has_choices and kind == TaskKind.GENERATE:
                choices = res.choices(doc_to_choice, doc, at)
                if not isinstance(target, int) or isinstance(target, bool) or not 0 <= target < len(choices):
                    raise EvalError(f"{where}: with doc_to_choice, doc_to_target must give a choice index (it gives "
                                    f"{target!r} at {at})")
                target = choices[target]
            if isinstance(target, list):
                raise EvalError(f"{where}: several targets per item (doc_to_target gives a list at {at}) are not "
                                f"supported for {cfg.get('output_type')}")
            if kind == TaskKind.LOGLIKELIHOOD and not isinstance(target, str):
                raise EvalError(f"{where}: doc_to_target must give the continuation text at {at}")
            items.append(Item(id=item_id, context=_question_turn(q, gen_prefix, tgt_delim, has_answer=False)
                              + gen_prefix, gold=str(target), meta=meta))
        else:
            if not isinstance(target, str):
                raise EvalError(f"{where}: doc_to_target must give the document text at {at}")
            items.append(Item(id=item_id, text=target, meta=meta))

    # Few-shot: lm-eval's num_fewshot rule, pool and sampler.
    yaml_shots = cfg.get("num_fewshot")
    if yaml_shots is not None and (not isinstance(yaml_shots, int) or isinstance(yaml_shots, bool) or yaml_shots < 0):
        raise EvalError(f"{where}: num_fewshot must be a non-negative integer")
    fixed = yaml_shots == 0
    shots = yaml_shots or 0
    if num_fewshot is not None and not fixed:
        shots = num_fewshot
    fs = cfg.get("fewshot_config") or {}
    if not isinstance(fs, dict):
        raise EvalError(f"{where}: fewshot_config must be a mapping")
    unknown_fs = sorted(set(fs) - FEWSHOT_FIELDS)
    if unknown_fs:
        raise EvalError(f"{where}: fewshot_config field(s) {', '.join(unknown_fs)} are not supported")
    if fs.get("fewshot_indices") is not None:
        raise EvalError(f"{where}: fewshot_config.fewshot_indices is not supported: lm-evaluation-harness 0.4.13 "
                        f"never passes it to its sampler, so it would draw from the whole pool while the file says "
                        f"otherwise; remove it, or put the chosen examples in fewshot_config.samples")
    sampler = fs.get("sampler", "default")
    if sampler not in ("default", "first_n"):
        raise EvalError(f"{where}: fewshot_config.sampler {sampler!r} is not supported (default, first_n; "
                        f"lm-evaluation-harness itself implements no other)")
    fs_split = fs.get("split", cfg.get("fewshot_split"))
    pool: tuple[Item, ...] = ()
    if shots and kind == TaskKind.PERPLEXITY:
        notes.append(f"{shots} few-shot examples asked for, none used: a loglikelihood_rolling task scores the "
                     f"document alone (lm-evaluation-harness builds the examples and ignores them too)")
        shots = 0
    if shots:
        fs_docs, pool_note = _fewshot_docs(cfg, fs, fs_split=fs_split, split_docs=split_docs, train=train_split,
                                               val=val_split, test=test_split)
        if pool_note:
            notes.append(pool_note)
        pool = tuple(_shot_item(res, cfg, fs, doc, at=f"fewshot row {j + 1}", j=j, multiple_input=multiple_input,
                                has_choices=has_choices, tgt_delim=tgt_delim, few_delim=few_delim)
                     for j, doc in enumerate(fs_docs))
    if fixed and num_fewshot:
        notes.append(f"num_fewshot: 0 in the task file wins over --num-fewshot {num_fewshot} (as in "
                     f"lm-evaluation-harness)")
    gen = _generation(cfg, gen_options, few_delim, where) if kind == TaskKind.GENERATE else GenerationSpec()
    if kind == TaskKind.GENERATE:
        metrics = ()
    process_results = cfg.get("process_results")
    if process_results is not None and not callable(process_results):
        raise EvalError(f"{where}: process_results must be `!function module.name` (got {process_results!r})")
    if process_results is not None and kind == TaskKind.GENERATE:
        raise EvalError(f"{where}: process_results for generate_until tasks is not supported")
    metadata = cfg.get("metadata")
    version = str(metadata.get("version", "0")) if isinstance(metadata, dict) else "0"
    if code_files:
        version += "+code." + _digest(code_files)
    data_digest = digest_files(data_paths)
    if process_results is not None:  # it reads the whole document, which the item digest does not cover
        version += f"+data.{data_digest[:12]}"
    source = f"{path} (data sha256 {data_digest})"
    if code_files:
        source += f"; task code {', '.join(str(p) for p in code_files)}"
    return Task(name=name, version=version, kind=kind, items=tuple(items), fewshot_pool=pool, num_fewshot=shots,
                fewshot_sampler="lm_eval_first_n" if sampler == "first_n" else "lm_eval_default", fewshot_seed=1234,
                fewshot_exclude_self=fs_split == test_split, target_delimiter=tgt_delim,
                fewshot_delimiter=few_delim, metrics=metrics, generation=gen, source=source,
                process_results=process_results, notes=tuple(notes), num_fewshot_fixed=fixed)


def _resolve_functions(cfg: Any) -> Any:
    if isinstance(cfg, FunctionRef):
        return cfg.load()
    if isinstance(cfg, dict):
        return {k: _resolve_functions(v) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_resolve_functions(v) for v in cfg]
    return cfg


def _digest(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


def _doc_key(doc: Mapping[str, Any]) -> str:
    """Equality of documents (lm-eval compares the dicts) as a digest of their canonical JSON."""
    return hashlib.sha256(json.dumps(doc, sort_keys=True, ensure_ascii=False, default=repr).encode()).hexdigest()


def _splits(path: Path, cfg: Mapping[str, Any], data: Mapping[str, Sequence[Path]] | None,
            notes: list[str]) -> tuple[dict[str, list[Path]], list[Path]]:
    where = str(path)
    if data:
        splits = {str(k): [Path(p) for p in v] for k, v in data.items()}
        for split, paths in splits.items():
            for p in paths:
                if not p.is_file():
                    raise EvalError(f"--data {split}={p}: file not found")
        if cfg.get("dataset_path") not in ("json", "csv", "parquet") or cfg.get("dataset_name"):
            notes.append(f"dataset_path {cfg.get('dataset_path')!r}"
                         + (f" ({cfg.get('dataset_name')})" if cfg.get("dataset_name") else "")
                         + " read from the local files given with --data")
        return splits, [p for ps in splits.values() for p in ps]
    builder = cfg.get("dataset_path")
    if builder not in ("json", "csv", "parquet"):
        raise EvalError(f"{where}: dataset_path {builder!r} is a dataset on the Hugging Face hub and assay never "
                        f"downloads datasets: give local copies of its splits with --data SPLIT=FILE (e.g. --data "
                        f"{cfg.get('test_split') or cfg.get('validation_split') or 'test'}=test.jsonl)")
    kwargs = cfg.get("dataset_kwargs") or {}
    if not isinstance(kwargs, dict) or "data_files" not in kwargs:
        raise EvalError(f"{where}: dataset_path {builder} needs dataset_kwargs.data_files")
    extra = sorted(set(kwargs) - {"data_files"})
    if extra:
        raise EvalError(f"{where}: dataset_kwargs {', '.join(extra)} are not supported for local {builder} files")
    if cfg.get("dataset_name") not in (None, "default"):
        raise EvalError(f"{where}: dataset_name is not supported for local {builder} files")
    files = kwargs["data_files"]
    splits = {}
    if isinstance(files, dict):
        for split, value in files.items():
            splits[str(split)] = resolve_data(path, value, f"data_files.{split}")
    else:
        splits["train"] = resolve_data(path, files, "data_files")
    return splits, [p for ps in splits.values() for p in ps]


def _process_docs(fn: Callable[..., Any], rows: list[dict[str, Any]], where: str, split: str) -> list[dict[str, Any]]:
    """A task's ``process_docs`` on a split, given a ``datasets.Dataset`` as lm-eval gives it."""
    try:
        import datasets  # type: ignore[import-untyped,unused-ignore]
    except ImportError as exc:
        raise EvalError(f"{where}: process_docs needs the `datasets` package (pip install datasets)") from exc
    datasets.disable_progress_bars()
    try:
        out = fn(datasets.Dataset.from_list(rows))
        return [dict(d) for d in out]
    except EvalError:
        raise
    except Exception as exc:  # noqa: BLE001 - the task author's code
        raise EvalError(f"{where}: process_docs (task code) failed on the {split} split: "
                        f"{type(exc).__name__}: {exc}") from exc


def _fewshot_docs(cfg: Mapping[str, Any], fs: Mapping[str, Any], *, fs_split: str | None,
                  split_docs: Callable[[str, Any], list[dict[str, Any]]], train: str | None, val: str | None,
                  test: str | None) -> tuple[list[dict[str, Any]], str]:
    """lm-eval's few-shot docs: ``fewshot_split``, else ``fewshot_config.samples``, else train/val/test."""
    where = str(cfg.get("task"))
    if fs_split is not None:
        process = fs.get("process_docs", cfg.get("process_docs"))
        return split_docs(fs_split, process), ""
    samples = fs.get("samples")
    if samples is not None:
        if callable(samples):
            samples = samples()
        if not isinstance(samples, list) or not all(isinstance(s, dict) for s in samples):
            raise EvalError(f"{where}: fewshot_config.samples must be a list of documents")
        return [dict(s) for s in samples], ""
    for split in (train, val):
        if split:
            return split_docs(split, cfg.get("process_docs")), ""
    if not test:
        return [], ""
    note = ("few-shot examples come from the evaluated split and may include the item itself, as "
            "lm-evaluation-harness draws them (the task has no training or validation split)")
    return split_docs(test, cfg.get("process_docs")), note


def _shot_item(res: _Resolver, cfg: Mapping[str, Any], fs: Mapping[str, Any], doc: dict[str, Any], *, at: str, j: int,
               multiple_input: bool, has_choices: bool, tgt_delim: str, few_delim: str) -> Item:
    """A few-shot document with its rendered turn (``meta["shot"]``), as lm-eval's ``build_qa_turn`` renders it."""
    text_spec = fs["doc_to_text"] if fs.get("doc_to_text") is not None else cfg.get("doc_to_text")
    choice_spec = fs["doc_to_choice"] if fs.get("doc_to_choice") is not None else cfg.get("doc_to_choice")
    target_spec = fs.get("doc_to_target") if fs.get("doc_to_target") is not None else cfg["doc_to_target"]
    q = res.text(text_spec, doc, at, has_choices=has_choices)
    c = res.choices(choice_spec, doc, at) if choice_spec is not None else None
    a = res.target(target_spec, doc, at, has_choices=has_choices)
    gen_prefix = res.field(fs.get("gen_prefix", cfg.get("gen_prefix")), doc, "gen_prefix", at)
    t_delim = fs.get("target_delimiter", tgt_delim)
    f_delim = fs.get("fewshot_delimiter", few_delim)
    if not isinstance(t_delim, str) or not isinstance(f_delim, str):
        raise EvalError(f"{res.where}: fewshot_config delimiters must be text")
    if multiple_input:
        if c is None or not isinstance(q, int) or not 0 <= q < len(c):
            raise EvalError(f"{res.where}: few-shot {at}: doc_to_text must give a choice index")
        q, c = c[q], None
    if not isinstance(q, str):
        raise EvalError(f"{res.where}: few-shot {at}: doc_to_text gives {type(q).__name__}, not text")
    has_answer = a is not None and a != ""
    shot = _question_turn(q, gen_prefix, t_delim, has_answer=has_answer)
    if has_answer:
        if c and isinstance(a, int) and not isinstance(a, bool):
            if not 0 <= a < len(c):
                raise EvalError(f"{res.where}: few-shot {at}: doc_to_target index {a} is out of range")
            answer = c[a]
        else:
            answer = a[0] if isinstance(a, list) else a
        if not isinstance(answer, str):
            raise EvalError(f"{res.where}: few-shot {at}: the answer to show is {answer!r}, not text (lm-evaluation-"
                            f"harness stops on it too)")
        shot += _maybe_delimit(gen_prefix, answer, " ") + f_delim
    elif gen_prefix:
        shot += gen_prefix
    return Item(id=f"fewshot/{j}", context=q, meta={"doc_key": _doc_key(doc), "shot": shot})


def _metrics(cfg: Mapping[str, Any], kind: TaskKind, where: str, *,
             has_code: bool) -> tuple[tuple[str, ...], dict[str, Any]]:
    ml = cfg.get("metric_list")
    if ml is None:
        return DEFAULT_METRICS[kind], {}
    if not isinstance(ml, list) or not ml:
        raise EvalError(f"{where}: metric_list must be a non-empty list")
    names: list[str] = []
    options: dict[str, Any] = {}
    allowed = METRICS[kind]
    for entry in ml:
        if not isinstance(entry, dict) or not isinstance(entry.get("metric"), str):
            raise EvalError(f"{where}: each metric_list entry needs a `metric` name")
        metric = entry["metric"]
        agg = entry.get("aggregation")
        if has_code:  # the task's process_results computes it; assay aggregates as lm-eval does
            ok_aggs = {None, "mean", allowed.get(metric)}
            if agg not in ok_aggs or (agg is None and metric in METRICS[TaskKind.PERPLEXITY]
                                      and kind != TaskKind.PERPLEXITY):
                raise EvalError(f"{where}: metric {metric}: aggregation {agg!r} is not supported")
            names.append(metric)
            continue
        if metric not in allowed:
            raise EvalError(f"{where}: metric {metric!r} is not supported for output_type {cfg.get('output_type')} "
                            f"(supported: {', '.join(allowed)})")
        if agg not in (None, allowed[metric]):
            raise EvalError(f"{where}: metric {metric}: aggregation {agg!r} is not supported (lm-evaluation-harness's "
                            f"{allowed[metric]} is)")
        extra = set(entry) - {"metric", "aggregation", "higher_is_better"}
        if metric == "exact_match" and kind == TaskKind.GENERATE:
            for k in ("ignore_case", "ignore_punctuation", "regexes_to_ignore"):
                if k in entry:
                    options[k] = entry[k]
                    extra.discard(k)
        if extra:
            raise EvalError(f"{where}: metric {metric}: unsupported option(s) {', '.join(sorted(extra))}")
        names.append(metric)
    return tuple(names), options


def _generation(cfg: Mapping[str, Any], options: Mapping[str, Any], few_delim: str, where: str) -> GenerationSpec:
    gk = cfg.get("generation_kwargs")
    gk = {"until": [few_delim]} if gk is None else gk
    if not isinstance(gk, dict):
        raise EvalError(f"{where}: generation_kwargs must be a mapping")
    unknown = set(gk) - {"until", "max_gen_toks", "do_sample", "temperature"}
    if unknown:
        raise EvalError(f"{where}: generation_kwargs {', '.join(sorted(unknown))} not supported")
    if gk.get("do_sample"):
        raise EvalError(f"{where}: generation_kwargs.do_sample: true is not supported (evaluation is greedy)")
    if float(gk.get("temperature", 0.0) or 0.0) != 0.0:
        raise EvalError(f"{where}: generation_kwargs.temperature other than 0 is not supported (evaluation is greedy)")
    until = gk.get("until", [few_delim])
    until = [until] if isinstance(until, str) else until
    if not isinstance(until, list) or not all(isinstance(u, str) for u in until):
        raise EvalError(f"{where}: generation_kwargs.until must be a list of strings")
    max_toks = gk.get("max_gen_toks", 256)
    if not isinstance(max_toks, int) or max_toks <= 0:
        raise EvalError(f"{where}: generation_kwargs.max_gen_toks must be a positive integer")
    extract: list[str] = []
    fl = cfg.get("filter_list")
    if fl is None:
        extract = ["none"]
    else:
        if not isinstance(fl, list) or not fl:
            raise EvalError(f"{where}: filter_list must be a non-empty list")
        for entry in fl:
            if not isinstance(entry, dict) or not isinstance(entry.get("filter"), list):
                raise EvalError(f"{where}: each filter_list entry needs a `filter` list")
            fname = str(entry.get("name", "filter"))
            steps = []
            for step in entry["filter"]:
                fn = step.get("function") if isinstance(step, dict) else None
                if fn not in PIPELINE_STEPS:
                    raise EvalError(f"{where}: filter {fname!r}: function {fn!r} is not supported (supported: "
                                    f"{', '.join(PIPELINE_STEPS)})")
                kw = {k: v for k, v in step.items() if k != "function"}
                bad = set(kw) - PIPELINE_STEPS[fn]
                if bad:
                    raise EvalError(f"{where}: filter {fname!r}: {fn} option(s) {', '.join(sorted(bad))} not supported")
                if fn == "regex":
                    check_regex(str(kw.get("regex_pattern", STRICT_PATTERN)), where)
                    if not isinstance(kw.get("group_select", 0), int):
                        raise EvalError(f"{where}: filter {fname!r}: group_select must be an integer")
                steps.append([fn, kw])
            if not steps or steps[-1][0] != "take_first" or any(s[0] == "take_first" for s in steps[:-1]):
                raise EvalError(f"{where}: filter {fname!r} must end with take_first (and use it once)")
            extract.append(_named_filter(steps, fname, PIPELINE, STRICT_PATTERN, FLEXIBLE_PATTERN))
    regexes = options.get("regexes_to_ignore", ()) or ()
    if not isinstance(regexes, list | tuple) or not all(isinstance(r, str) for r in regexes):
        raise EvalError(f"{where}: regexes_to_ignore must be a list of patterns")
    for r in regexes:
        check_regex(r, where)
    return GenerationSpec(until=tuple(until), max_tokens=max_toks, extract=tuple(extract),
                          ignore_case=bool(options.get("ignore_case", False)),
                          ignore_punctuation=bool(options.get("ignore_punctuation", False)),
                          regexes_to_ignore=tuple(regexes))


def _named_filter(steps: list[list[Any]], name: str, pipeline: str, strict: str, flexible: str) -> str:
    """assay's short names for the common pipelines (the GSM8K ones), else the pipeline itself."""
    if len(steps) == 1:
        return "none"
    if len(steps) == 2 and steps[0][0] == "regex" and steps[0][1].get("fallback", "[invalid]") == "[invalid]":
        pattern, group = steps[0][1].get("regex_pattern", strict), steps[0][1].get("group_select", 0)
        if pattern == strict and group == 0:
            return "strict"
        if pattern == flexible and group == -1:
            return "flexible"
    return pipeline + json.dumps({"name": name, "steps": steps}, sort_keys=True)
