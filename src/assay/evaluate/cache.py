"""The result cache: per-item evaluation results in SQLite, so a base is evaluated once and a run resumes.

Keys are digests of everything that changes a number: the model's identity (:func:`model_inputs`: the weights
root and the digest of every file beside the weights that a loader reads: ``config.json``,
``generation_config.json``, every tokenizer file, the chat template, the adapter config), the backend and its
settings, the scoring version, the major.minor versions of torch and transformers (:func:`library_versions`),
the task name and version, the rendered prompt and choices, the item's content; see
``assay.evaluate.runner._cache_key``. Values are the per-item results as JSON. The database lives in
``platformdirs.user_cache_dir("assay")/eval.sqlite3``; ``ASSAY_CACHE_DIR`` overrides the folder.

    cache = ResultCache()                  # or ResultCache(Path("/tmp/x.sqlite3"))
    cache.put_many({"k1": "{...}"})
    cache.get_many(["k1", "k2"])           # {"k1": "{...}"}
"""

from __future__ import annotations

import functools
import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from assay.errors import EvalError

#: Files beside the weights that change what a model computes or how its prompts are built (what transformers'
#: ``AutoConfig``, ``GenerationConfig``, ``AutoTokenizer`` and PEFT read from the model folder).
MODEL_INPUT_FILES = frozenset({
    "config.json", "generation_config.json", "adapter_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
    "vocab.json", "merges.txt", "vocab.txt", "spiece.model", "sentencepiece.bpe.model", "chat_template.jinja",
    "chat_template.json", "preprocessor_config.json", "processor_config.json",
})
#: Suffixes of further tokenizer files (tiktoken vocabularies, extra chat templates).
MODEL_INPUT_SUFFIXES = (".tiktoken", ".jinja")
#: Folders whose files are inputs too (transformers reads named chat templates from here).
MODEL_INPUT_FOLDERS = ("additional_chat_templates",)


def model_inputs(root: Path, weights: str, *, weight_files: Iterable[Path] = ()) -> dict[str, str]:
    """Digests of everything in a model folder that changes an output, by name.

    ``weights`` is the weights' own identity (the weights root); every file named in :data:`MODEL_INPUT_FILES`,
    ending in one of :data:`MODEL_INPUT_SUFFIXES` or inside :data:`MODEL_INPUT_FOLDERS` adds its blake3 digest
    under ``file:<name>``. A GGUF file carries its config, tokenizer and chat template in its own metadata, so
    each one in ``weight_files`` adds the digest of its whole content under ``gguf:<name>``.

        model_inputs(Path("./ft"), weights_root(ref))
        # {"weights": "…", "file:config.json": "blake3:…", "file:tokenizer.json": "blake3:…", ...}
    """
    from blake3 import blake3

    def digest(path: Path) -> str:
        h = blake3()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        return "blake3:" + h.hexdigest()

    out = {"weights": weights}
    candidates: list[Path] = []
    try:
        candidates = [p for p in root.iterdir() if p.is_file()]
        for folder in MODEL_INPUT_FOLDERS:
            if (root / folder).is_dir():
                candidates += sorted(p for p in (root / folder).iterdir() if p.is_file())
    except OSError as exc:
        raise EvalError(f"cannot list the model folder {root}: {exc.strerror or exc}") from exc
    for path in sorted(candidates):
        rel = path.relative_to(root).as_posix()
        if (path.name in MODEL_INPUT_FILES or path.name.endswith(MODEL_INPUT_SUFFIXES)
                or rel.split("/")[0] in MODEL_INPUT_FOLDERS):
            out[f"file:{rel}"] = digest(path)
    for rel in sorted(Path(w).as_posix() for w in weight_files):
        if rel.endswith(".gguf"):
            out[f"gguf:{rel}"] = digest(root / rel)
    return out


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str]:
    """The major.minor versions of the libraries that compute scores (torch, transformers; ``none`` if absent).

    A new minor version may change kernels or tokenisation, so results cached under another one are not reused.
    """
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in ("torch", "transformers"):
        try:
            out[name] = ".".join(version(name).split("+")[0].split(".")[:2])
        except PackageNotFoundError:
            out[name] = "none"
    return out


def default_cache_path() -> Path:
    """``$ASSAY_CACHE_DIR/eval.sqlite3``, else the user cache folder of assay."""
    env = os.environ.get("ASSAY_CACHE_DIR")
    if env:
        folder = Path(env).expanduser()
    else:
        from platformdirs import user_cache_dir

        folder = Path(user_cache_dir("assay"))
    return folder / "eval.sqlite3"


class ResultCache:
    """A key -> JSON text store in one SQLite file (safe for several processes; each write commits)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=30)
            self._db.execute("CREATE TABLE IF NOT EXISTS results (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                             "created REAL NOT NULL)")
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            raise EvalError(f"cannot open the result cache {self.path}: {exc}",
                            hint="set ASSAY_CACHE_DIR or pass --no-cache") from exc

    def get_many(self, keys: Iterable[str]) -> dict[str, str]:
        """Stored values for the keys that are present."""
        keys = list(keys)
        out: dict[str, str] = {}
        try:
            for start in range(0, len(keys), 500):
                part = keys[start:start + 500]
                marks = ",".join("?" * len(part))
                for k, v in self._db.execute(f"SELECT key, value FROM results WHERE key IN ({marks})", part):
                    out[k] = v
        except sqlite3.Error as exc:
            raise EvalError(f"the result cache {self.path} is unreadable: {exc}",
                            hint="delete it or pass --no-cache") from exc
        return out

    def put_many(self, values: Mapping[str, str]) -> None:
        """Store values (replacing existing keys) and commit."""
        now = time.time()
        try:
            self._db.executemany("INSERT OR REPLACE INTO results (key, value, created) VALUES (?, ?, ?)",
                                 [(k, v, now) for k, v in values.items()])
            self._db.commit()
        except sqlite3.Error as exc:
            raise EvalError(f"cannot write the result cache {self.path}: {exc}",
                            hint="pass --no-cache") from exc

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM results").fetchone()[0])

    def close(self) -> None:
        """Close the database."""
        self._db.close()
