"""Plain JSON data from assay's typed results: every document goes through :func:`to_jsonable` before it is
written, so stages can keep frozen dataclasses, enums and paths until the last moment.

    json.dumps(to_jsonable(scan_report))
"""

from __future__ import annotations

import dataclasses
import enum
import math
from pathlib import Path
from collections.abc import Mapping
from typing import Any


def to_jsonable(obj: Any) -> Any:
    """Plain JSON data from dataclasses, enums, paths, numpy scalars, sets and tuples (NaN becomes null)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return obj.as_posix()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return to_jsonable(obj.item())
    return obj


def as_mapping(value: Any) -> Mapping[str, Any]:
    """``value`` if it is a mapping (a stage's document), else an empty one (the stage did not run, or wrote
    something else): the read side of optional document fields."""
    return value if isinstance(value, Mapping) else {}
