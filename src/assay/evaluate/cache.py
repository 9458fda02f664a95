"""The result cache: per-item evaluation results in SQLite, so a base is evaluated once and a run resumes.

Keys are digests of everything that changes a number (model weights identity, backend settings, task name and
version, the rendered prompt and choices, the item's content); see ``assay.evaluate.runner._cache_key``. Values
are the per-item results as JSON. The database lives in ``platformdirs.user_cache_dir("assay")/eval.sqlite3``;
``ASSAY_CACHE_DIR`` overrides the folder.

    cache = ResultCache()                  # or ResultCache(Path("/tmp/x.sqlite3"))
    cache.put_many({"k1": "{...}"})
    cache.get_many(["k1", "k2"])           # {"k1": "{...}"}
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from assay.errors import EvalError


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
