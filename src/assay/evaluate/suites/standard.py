"""Standard benchmarks from local files, with lm-evaluation-harness's prompts and preprocessing.

``--task NAME:PATH`` reads the files a benchmark's public release ships (JSONL, JSON, CSV or Parquet, in the
column layouts of the Hugging Face dataset hub and of the original repositories). PATH is either one file (the
evaluated split; a sibling few-shot split such as ``train.jsonl`` next to ``test.jsonl`` is found automatically)
or a folder (the splits are found by name: ``test``, ``validation``/``val``/``dev``, ``train``).

========================  ===================================================  ==========  ===========
name                      layouts read                                         evaluated   few-shot
========================  ===================================================  ==========  ===========
``mmlu``                  cais/mmlu parquet (question, subject, choices,        test        dev, first n
                          answer); hendrycks CSV without header
``arc_easy``              allenai/ai2_arc (question, choices{text,label},       test        train
``arc_challenge``         answerKey); original AI2 JSONL (question{stem,...})
``hellaswag``             Rowan/hellaswag and the original JSONL                validation  train
``truthfulqa_mc1/_mc2``   truthful_qa multiple_choice (mc1_targets, ...);       validation  none (0)
                          original mc_task.json ({answer: label})
``gsm8k``                 openai/gsm8k JSONL or parquet (question, answer)      test        train, 5
``winogrande``            allenai/winogrande (sentence, option1, option2,       validation  train
                          answer); original dev.jsonl
========================  ===================================================  ==========  ===========

    task = load_standard("gsm8k", "data/gsm8k/test.jsonl")
    task.items[0].context   # 'Question: Janet’s ducks lay 16 eggs ...\\nAnswer:'

Few-shot examples are drawn as lm-evaluation-harness's task files draw them (its default sampler, seed 1234,
excluding the item itself where lm-eval does: HellaSwag and Winogrande, which have no test split); MMLU takes
the subject's first dev examples; TruthfulQA stays 0-shot whatever ``--num-fewshot`` says, as in lm-eval.

What the runner honours beyond the plain item (see :mod:`assay.evaluate.runner`): ``Item.meta["description"]`` is
a per-item description (MMLU with several subjects in one file); ``Item.meta["fewshot_group"]`` restricts few-shot
examples to pool items of the same group (the MMLU subject); :attr:`Item.contexts` gives one context per choice
(Winogrande's partial evaluation: choice ``i`` is scored as ``contexts[i] + target_delimiter + choices[i]``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assay.errors import EvalError
from assay.evaluate.tasks import GenerationSpec, Item, Task, TaskKind

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")

Record = Mapping[str, Any]

# ------------------------------------------------------------------------------------------------ reading


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of one data file (JSONL, JSON list, CSV with header, or Parquet), as dictionaries."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _read_jsonl(path)
    if suffix == ".json":
        return _read_json(path)
    if suffix == ".csv":
        rows = read_csv_rows(path)
        if not rows:
            return []
        header, body = rows[0], rows[1:]
        return [dict(zip(header, r, strict=False)) for r in body]
    if suffix == ".parquet":
        return _read_parquet(path)
    raise EvalError(f"{path}: unsupported data file type {suffix or '(none)'} (use .jsonl, .json, .csv or .parquet)")


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise EvalError(f"no such data file: {path}") from None
    except UnicodeDecodeError as exc:
        raise EvalError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise EvalError(f"cannot read {path}: {exc.strerror}") from None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for n, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise EvalError(f"{path} line {n}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise EvalError(f"{path} line {n}: expected a JSON object, got {type(row).__name__}")
        rows.append(row)
    return rows


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise EvalError(f"{path} line {exc.lineno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise EvalError(f"{path}: expected a JSON list of objects")
    return data


def read_csv_rows(path: Path) -> list[list[str]]:
    """All rows of a CSV file (no header interpretation)."""
    try:
        return list(csv.reader(_read_text(path).splitlines()))
    except csv.Error as exc:
        raise EvalError(f"{path}: malformed CSV ({exc})") from None


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise EvalError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from None
    try:
        rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
        return rows
    except FileNotFoundError:
        raise EvalError(f"no such data file: {path}") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types for a damaged file
        raise EvalError(f"{path}: not a readable Parquet file ({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------------------------------------- splits

_SPLIT_WORDS = {"test": "test", "validation": "validation", "valid": "validation", "val": "validation",
                "dev": "dev", "train": "train"}


def _tokens(rel: str) -> list[str]:
    return [t for t in re.split(r"[^a-z0-9]+", rel.lower()) if t]


def split_of(rel: str) -> str | None:
    """The split a data file belongs to, from the words of its relative path (last match wins)."""
    found = None
    for tok in _tokens(rel):
        if tok in _SPLIT_WORDS:
            found = _SPLIT_WORDS[tok]
    return found


@dataclass(frozen=True)
class Splits:
    """Data files of one benchmark, by split."""

    root: Path
    """The folder the files were found in (or the file's folder)."""
    files: Mapping[str, tuple[Path, ...]]
    """Split name -> files, sorted; files whose path names no split are under ``""``."""


_SUFFIX_RANK = {".parquet": 0, ".jsonl": 1, ".json": 2, ".csv": 3}


def find_splits(path: Path, *, eval_split: str, prefer: Sequence[str] = (), exclude: Sequence[str] = ()) -> Splits:
    """Locate the data files of each split under ``path`` (a file or a folder).

    Within a split, ``prefer`` words pick a subset when several are present (``all`` for MMLU, ``xl`` for
    Winogrande, ``main`` for GSM8K); files whose path contains an ``exclude`` word or ``auxiliary`` are ignored;
    when a split exists in several formats (the original ARC release ships CSV and JSONL), one format is read.
    """
    if not path.exists():
        raise EvalError(f"no such file or folder: {path}")
    if path.is_file():
        return _splits_for_file(path, eval_split)
    files = []
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path)
        words = _tokens(rel.as_posix())
        if (p.is_file() and p.suffix.lower() in DATA_SUFFIXES and not any(x.startswith(".") for x in rel.parts)
                and "auxiliary" not in words and not any(w in words for w in exclude)):
            files.append(p)
    if not files:
        raise EvalError(f"{path} holds no data files (.jsonl, .json, .csv, .parquet)")
    by_split: dict[str, list[Path]] = {}
    for p in files:
        by_split.setdefault(split_of(p.relative_to(path).as_posix()) or "", []).append(p)
    out: dict[str, tuple[Path, ...]] = {}
    for split, group in by_split.items():
        for word in prefer:
            subset = [p for p in group if word in _tokens(p.relative_to(path).as_posix())]
            if subset:
                group = subset
        best = min(_SUFFIX_RANK[p.suffix.lower()] for p in group)
        out[split] = tuple(p for p in group if _SUFFIX_RANK[p.suffix.lower()] == best)
    return Splits(root=path, files=out)


def _shard_glob(name: str) -> str:
    """``train-00000-of-00018-e65d08.parquet`` -> ``train-*.parquet`` (hub shard names); other names as they are."""
    return re.sub(r"\d{5}-of-\d{5}.*(?=\.[A-Za-z]+$)", "*", glob_escape(name)) if re.search(
        r"\d{5}-of-\d{5}", name) else glob_escape(name)


def glob_escape(name: str) -> str:
    """A file name with glob metacharacters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _splits_for_file(path: Path, eval_split: str) -> Splits:
    """One file is the evaluated split; sibling files of the other splits are found by renaming its split word."""
    shards = tuple(sorted(path.parent.glob(_shard_glob(path.name))))  # every shard of a sharded split
    found: dict[str, tuple[Path, ...]] = {eval_split: shards if path in shards else (path,)}
    own = split_of(path.name) or (split_of(path.parent.name) if path.parent.name.lower() in _SPLIT_WORDS else None)
    if own is None:
        return Splits(root=path.parent, files=found)
    words = [w for w, s in _SPLIT_WORDS.items() if s == own]
    for other in ("train", "dev", "validation", "test"):
        if other == eval_split or other == own:
            continue
        candidates: set[Path] = set()
        for w in words:
            for target in (w for w, s in _SPLIT_WORDS.items() if s == other):
                pattern = re.compile(rf"(?<![a-z0-9]){w}(?![a-z0-9])", re.IGNORECASE)
                name = pattern.sub(target, path.name)
                if name != path.name:
                    candidates.update(path.parent.glob(_shard_glob(name)))
                parent = path.parent
                if pattern.fullmatch(parent.name):
                    sib = parent.parent / target
                    candidates.update(sib.glob(_shard_glob(name)))
        files = tuple(sorted(p for p in candidates if p.is_file() and p not in found[eval_split]))
        if files:
            found[other] = files
    return Splits(root=path.parent, files=found)


def _load(files: Iterable[Path]) -> list[tuple[Path, dict[str, Any]]]:
    out: list[tuple[Path, dict[str, Any]]] = []
    for f in files:
        out.extend((f, r) for r in read_records(f))
    return out


def _need(rec: Record, keys: Sequence[str], where: str) -> None:
    missing = [k for k in keys if k not in rec]
    if missing:
        raise EvalError(f"{where}: missing field(s) {', '.join(missing)}; found {', '.join(map(str, rec)) or 'none'}")


def _source(files: Sequence[Path], note: str = "") -> str:
    h = hashlib.sha256()
    for f in files:
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    text = ", ".join(str(f) for f in files) + f" (sha256 {h.hexdigest()[:16]})"
    return f"{text}; {note}" if note else text


def _version(base: str, files: Sequence[Path]) -> str:
    """Loader version plus a digest of the data files (a changed file never reuses cached results)."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.read_bytes())
    return f"{base}-{h.hexdigest()[:12]}"


# --------------------------------------------------------------------------------------------------- MMLU

MMLU_CHOICES = ("A", "B", "C", "D")


def mmlu_description(subject: str) -> str:
    """lm-evaluation-harness's MMLU description for a subject (``high_school_physics`` -> words)."""
    return f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"


def _mmlu_subject_from_name(path: Path) -> str:
    stem = path.stem
    for suffix in ("_test", "_dev", "_val", "_validation", "_train"):
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _mmlu_rows(files: Sequence[Path]) -> list[tuple[str, dict[str, Any], str]]:
    """(subject, {question, choices, answer}, where) for every MMLU row of the files."""
    out: list[tuple[str, dict[str, Any], str]] = []
    for f in files:
        if f.suffix.lower() == ".csv":
            rows = read_csv_rows(f)
            if rows and [c.strip().lower() for c in rows[0][:1]] == ["question"]:
                header, body = rows[0], rows[1:]  # a CSV someone exported with a header row
                for n, r in enumerate(body, 2):
                    rec = dict(zip(header, r, strict=False))
                    choices = [rec[k] for k in ("A", "B", "C", "D") if k in rec] or rec.get("choices", [])
                    out.append((rec.get("subject") or _mmlu_subject_from_name(f),
                                {"question": rec.get("question", ""), "choices": choices,
                                 "answer": rec.get("answer", "")}, f"{f} line {n}"))
                continue
            for n, r in enumerate(rows, 1):  # hendrycks layout: question, A, B, C, D, answer letter; no header
                if len(r) != 6:
                    raise EvalError(f"{f} line {n}: expected 6 columns (question, A, B, C, D, answer), got {len(r)}")
                out.append((_mmlu_subject_from_name(f), {"question": r[0], "choices": r[1:5], "answer": r[5]},
                            f"{f} line {n}"))
        else:
            for n, rec in enumerate(read_records(f), 1):
                where = f"{f} row {n}"
                _need(rec, ("question", "choices", "answer"), where)
                out.append((rec.get("subject") or _mmlu_subject_from_name(f), rec, where))
    return out


def _mmlu_answer(value: Any, where: str) -> int:
    if isinstance(value, str) and value.strip().upper() in MMLU_CHOICES:
        return MMLU_CHOICES.index(value.strip().upper())
    try:
        idx = int(value)
    except (TypeError, ValueError):
        raise EvalError(f"{where}: answer {value!r} is neither A-D nor 0-3") from None
    if not 0 <= idx < 4:
        raise EvalError(f"{where}: answer {idx} is out of range 0-3")
    return idx


def _mmlu_items(rows: Sequence[tuple[str, dict[str, Any], str]], prefix: str) -> list[Item]:
    items = []
    for i, (subject, rec, where) in enumerate(rows):
        choices = list(rec["choices"])
        if len(choices) != 4:
            raise EvalError(f"{where}: MMLU needs exactly 4 choices, got {len(choices)}")
        q = str(rec["question"]).strip()
        context = (f"{q}\nA. {choices[0]}\nB. {choices[1]}\nC. {choices[2]}\nD. {choices[3]}\nAnswer:")
        items.append(Item(id=f"{prefix}{subject}-{i}", context=context, choices=MMLU_CHOICES,
                          gold=_mmlu_answer(rec["answer"], where),
                          meta={"subject": subject, "description": mmlu_description(subject),
                                "fewshot_group": subject}))
    return items


def load_mmlu(path: Path) -> Task:
    """MMLU (test split; few-shot from dev, first n, per subject), prompt as lm-evaluation-harness's ``mmlu``."""
    splits = find_splits(path, prefer=("all",), eval_split="test")
    test = splits.files.get("test")
    if not test:
        raise EvalError(f"{path}: no MMLU test split found (expected files named *test*)")
    items = _mmlu_items(_mmlu_rows(test), "")
    dev = splits.files.get("dev", ())
    pool = _mmlu_items(_mmlu_rows(dev), "dev-") if dev else []
    subjects = sorted({it.meta["subject"] for it in items})
    return Task(name="mmlu", version=_version("2", (*test, *dev)), kind=TaskKind.MULTIPLE_CHOICE,
                items=tuple(items), fewshot_pool=tuple(pool), num_fewshot=0, fewshot_sampler="first_n",
                description=mmlu_description(subjects[0]) if len(subjects) == 1 else "",
                metrics=("acc",), source=_source(test, f"{len(subjects)} subject(s)"
                                                 + ("; few-shot pool: dev" if dev else "; no dev split")))


# ---------------------------------------------------------------------------------------------------- ARC


def _arc_item(rec: Record, where: str, idx: int) -> Item:
    _need(rec, ("question", "answerKey"), where)
    q = rec["question"]
    if isinstance(q, Mapping):  # original AI2 release: question{stem, choices[{text, label}]}
        stem, raw = q.get("stem", ""), q.get("choices", [])
        texts, labels = [c["text"] for c in raw], [str(c["label"]) for c in raw]
    else:
        _need(rec, ("choices",), where)
        ch = rec["choices"]
        if not isinstance(ch, Mapping) or "text" not in ch or "label" not in ch:
            raise EvalError(f"{where}: choices must be {{text: [...], label: [...]}}")
        stem, texts, labels = q, list(ch["text"]), [str(x) for x in ch["label"]]
    key = str(rec["answerKey"]).strip()
    if key not in labels:
        raise EvalError(f"{where}: answerKey {key!r} is not one of the labels {labels}")
    return Item(id=str(rec.get("id", idx)), context=f"Question: {stem}\nAnswer:", choices=tuple(texts),
                gold=labels.index(key), meta={"labels": labels})


def load_arc(path: Path, *, challenge: bool) -> Task:
    """ARC-Easy or ARC-Challenge (test split), prompt as lm-evaluation-harness's ``arc_easy``/``arc_challenge``."""
    name = "arc_challenge" if challenge else "arc_easy"
    splits = find_splits(path, eval_split="test", exclude=("easy",) if challenge else ("challenge",))
    test = splits.files.get("test")
    if not test:
        raise EvalError(f"{path}: no ARC test split found (expected files named *test*)")
    items = [_arc_item(r, f"{f} row {i + 1}", i) for i, (f, r) in enumerate(_load(test))]
    train = splits.files.get("train", ())
    pool = [_arc_item(r, f"{f} row {i + 1}", i) for i, (f, r) in enumerate(_load(train))]
    return Task(name=name, version=_version("1", (*test, *train)), kind=TaskKind.MULTIPLE_CHOICE,
                items=tuple(items), fewshot_pool=tuple(pool), fewshot_sampler="lm_eval_default",
                fewshot_exclude_self=False,
                metrics=("acc", "acc_norm"), source=_source(test))


# ---------------------------------------------------------------------------------------------- HellaSwag


def hellaswag_preprocess(text: str) -> str:
    """lm-evaluation-harness's HellaSwag clean-up (WikiHow bracket artefacts, double spaces)."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


def _hellaswag_item(rec: Record, where: str, idx: int, *, need_label: bool) -> Item | None:
    _need(rec, ("ctx_a", "ctx_b", "activity_label", "endings"), where)
    label = rec.get("label")
    if label is None or str(label).strip() == "":
        if need_label:
            raise EvalError(f"{where}: no label (the HellaSwag test split is unlabelled; use validation)")
        return None
    ctx = rec["ctx_a"] + " " + rec["ctx_b"].capitalize()
    endings = [hellaswag_preprocess(e) for e in rec["endings"]]
    gold = int(label)
    if not 0 <= gold < len(endings):
        raise EvalError(f"{where}: label {gold} is out of range for {len(endings)} endings")
    return Item(id=str(rec.get("ind", idx)), context=hellaswag_preprocess(rec["activity_label"] + ": " + ctx),
                choices=tuple(endings), gold=gold, meta={"activity": rec["activity_label"]})


def load_hellaswag(path: Path) -> Task:
    """HellaSwag (validation split), lm-evaluation-harness's preprocessing; acc and acc_norm."""
    splits = find_splits(path, eval_split="validation")
    val = splits.files.get("validation")
    if not val:
        raise EvalError(f"{path}: no HellaSwag validation split found (expected files named *val*)")
    items = [_hellaswag_item(r, f"{f} row {i + 1}", i, need_label=True) for i, (f, r) in enumerate(_load(val))]
    train = splits.files.get("train", ())
    pool = [_hellaswag_item(r, f"{f}", i, need_label=False) for i, (f, r) in enumerate(_load(train))]
    return Task(name="hellaswag", version=_version("1", (*val, *train)), kind=TaskKind.MULTIPLE_CHOICE,
                items=tuple(i for i in items if i), fewshot_pool=tuple(p for p in pool if p),
                fewshot_sampler="lm_eval_default", metrics=("acc", "acc_norm"), source=_source(val))


# --------------------------------------------------------------------------------------------- TruthfulQA

TRUTHFULQA_PRIMER = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)
"""The six-question primer lm-evaluation-harness puts before every TruthfulQA MC question."""


def _tqa_targets(value: Any, where: str) -> tuple[list[str], list[int]]:
    if isinstance(value, Mapping) and "choices" in value and "labels" in value:
        return [str(c) for c in value["choices"]], [int(x) for x in value["labels"]]
    if isinstance(value, Mapping):  # original release mc_task.json: {answer text: 0 or 1}
        return [str(k) for k in value], [int(v) for v in value.values()]
    raise EvalError(f"{where}: targets must be {{choices, labels}} or {{answer: label}}")


def load_truthfulqa(path: Path, *, mc: int) -> Task:
    """TruthfulQA multiple choice, MC1 (one right answer, acc) or MC2 (probability mass on the true answers)."""
    splits = find_splits(path, eval_split="validation", prefer=("multiple",), exclude=("generation",))
    files = splits.files.get("validation") or splits.files.get("")
    if not files:
        raise EvalError(f"{path}: no TruthfulQA multiple_choice file found")
    field = f"mc{mc}_targets"
    items = []
    for i, (f, rec) in enumerate(_load(files)):
        where = f"{f} row {i + 1}"
        _need(rec, ("question", field), where)
        choices, labels = _tqa_targets(rec[field], where)
        if len(choices) != len(labels) or not choices:
            raise EvalError(f"{where}: {field} has {len(choices)} choices and {len(labels)} labels")
        true = tuple(j for j, lab in enumerate(labels) if lab == 1)
        if not true:
            raise EvalError(f"{where}: {field} has no true answer")
        if mc == 1 and len(true) != 1:
            raise EvalError(f"{where}: mc1_targets must have exactly one true answer, has {len(true)}")
        items.append(Item(id=str(i), context=f"{TRUTHFULQA_PRIMER}\n\nQ: {rec['question']}\nA:",
                          choices=tuple(choices), gold=true[0] if mc == 1 else true))
    return Task(name=f"truthfulqa_mc{mc}", version=_version("2" if mc == 1 else "3", files),
                kind=TaskKind.MULTIPLE_CHOICE, items=tuple(items), num_fewshot=0, num_fewshot_fixed=True,
                metrics=("acc",) if mc == 1 else ("mc2",), source=_source(files))


# -------------------------------------------------------------------------------------------------- GSM8K

GSM8K_FEWSHOT = 5
GSM8K_IGNORE = (",", "\\$", "(?s).*#### ", "\\.$")
"""lm-evaluation-harness's ``regexes_to_ignore`` for GSM8K (applied to the answer and the target)."""


def _gsm8k_item(rec: Record, where: str, idx: int, prefix: str = "") -> Item:
    _need(rec, ("question", "answer"), where)
    answer = str(rec["answer"])
    final = answer.split("####")[-1].strip() if "####" in answer else None
    return Item(id=f"{prefix}{idx}", context=f"Question: {rec['question']}\nAnswer:", gold=answer,
                meta={"answer": final})


def load_gsm8k(path: Path) -> Task:
    """GSM8K (test split), 5-shot from the train split when one is found; strict and flexible exact match."""
    splits = find_splits(path, prefer=("main",), eval_split="test")
    test = splits.files.get("test")
    if not test:
        raise EvalError(f"{path}: no GSM8K test split found (expected files named *test*)")
    items = [_gsm8k_item(r, f"{f} line {i + 1}", i) for i, (f, r) in enumerate(_load(test))]
    train = splits.files.get("train", ())
    pool = [_gsm8k_item(r, f"{f} line {i + 1}", i, "train-") for i, (f, r) in enumerate(_load(train))]
    note = "few-shot: train split" if pool else "no train split found: 0-shot"
    return Task(name="gsm8k", version=_version("3", (*test, *train)), kind=TaskKind.GENERATE,
                items=tuple(items), fewshot_pool=tuple(pool), num_fewshot=GSM8K_FEWSHOT if pool else 0,
                fewshot_sampler="lm_eval_default", fewshot_exclude_self=False,
                generation=GenerationSpec(until=("Question:", "</s>", "<|im_end|>"), max_tokens=256,
                                          extract=("strict", "flexible"), ignore_case=True,
                                          ignore_punctuation=False, regexes_to_ignore=GSM8K_IGNORE),
                source=_source(test, note))


# --------------------------------------------------------------------------------------------- Winogrande


def winogrande_parts(sentence: str, option1: str, option2: str, where: str) -> tuple[tuple[str, str], str]:
    """The two option-filled contexts and the shared continuation (lm-evaluation-harness's partial scoring)."""
    idx = sentence.find("_")
    if idx < 0:
        raise EvalError(f"{where}: the sentence has no blank '_'")
    return (sentence[:idx] + option1, sentence[:idx] + option2), sentence[idx + 1:].strip()


def _winogrande_item(rec: Record, where: str, idx: int, *, need_label: bool) -> Item | None:
    _need(rec, ("sentence", "option1", "option2", "answer"), where)
    answer = str(rec["answer"]).strip()
    if answer not in ("1", "2"):
        if need_label:
            raise EvalError(f"{where}: answer {answer!r} is not 1 or 2 (the Winogrande test split is unlabelled)")
        return None
    contexts, target = winogrande_parts(str(rec["sentence"]), str(rec["option1"]), str(rec["option2"]), where)
    return Item(id=str(rec.get("qID", idx)), context=str(rec["sentence"]), choices=(target, target),
                gold=int(answer) - 1, contexts=contexts, meta={"options": (rec["option1"], rec["option2"])})


def load_winogrande(path: Path) -> Task:
    """Winogrande (validation split): each option fills the blank and the rest of the sentence is scored."""
    splits = find_splits(path, prefer=("xl",), eval_split="validation")
    val = splits.files.get("validation") or splits.files.get("dev")
    if not val:
        raise EvalError(f"{path}: no Winogrande validation split found (expected dev.jsonl or *validation*)")
    items = [_winogrande_item(r, f"{f} row {i + 1}", i, need_label=True) for i, (f, r) in enumerate(_load(val))]
    train = splits.files.get("train", ())
    pool = [_winogrande_item(r, f"{f}", i, need_label=False) for i, (f, r) in enumerate(_load(train))]
    return Task(name="winogrande", version=_version("2", (*val, *train)), kind=TaskKind.MULTIPLE_CHOICE,
                items=tuple(i for i in items if i), fewshot_pool=tuple(p for p in pool if p),
                fewshot_sampler="lm_eval_default", metrics=("acc",), source=_source(val))


# ----------------------------------------------------------------------------------------------- registry

STANDARD: dict[str, Callable[[Path], Task]] = {
    "mmlu": load_mmlu,
    "arc_easy": lambda p: load_arc(p, challenge=False),
    "arc_challenge": lambda p: load_arc(p, challenge=True),
    "hellaswag": load_hellaswag,
    "truthfulqa_mc1": lambda p: load_truthfulqa(p, mc=1),
    "truthfulqa_mc2": lambda p: load_truthfulqa(p, mc=2),
    "gsm8k": load_gsm8k,
    "winogrande": load_winogrande,
}
"""Benchmark name -> loader of a local file or folder."""


def load_standard(name: str, path: str | Path) -> Task:
    """Load benchmark ``name`` from ``path``; the task refuses an empty file with a clear message."""
    try:
        loader = STANDARD[name]
    except KeyError:
        raise EvalError(f"unknown benchmark {name!r}; known: {', '.join(STANDARD)}") from None
    if not str(path):
        raise EvalError(f"{name}: give the data file or folder, e.g. --task {name}:data/{name}")
    task = loader(Path(path).expanduser())
    if not task.items:
        raise EvalError(f"{name}: {path} holds no evaluable items")
    return task
