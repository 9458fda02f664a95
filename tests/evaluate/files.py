"""Writing the small task and data files the evaluation tests build."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    """``rows`` as JSON lines at ``path``."""
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_yaml(path: Path, text: str) -> Path:
    """``text`` (dedented) at ``path``."""
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path
