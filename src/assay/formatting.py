"""Numbers for people, one way everywhere (verdict reasons, reports, the CLI, the hub's pages).

    >>> num(0.12345, "+.3f"), num(None), pct(0.25), human_bytes(3 * 2**30)
    ('+0.123', 'n/a', '25%', '3.0 GiB')
"""

from __future__ import annotations

import math
from typing import Any


def num(x: Any, spec: str = ".4f", *, compact: bool = False, missing: str = "n/a") -> str:
    """``x`` formatted with ``spec``; ``missing`` (``n/a``; tables use ``-``) when it is not a number or is NaN.
    ``compact``: numbers of 100,000 and more in fixed-point specs are written with 4 significant digits (keeps report
    columns narrow)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x:
        return missing
    if compact and abs(x) >= 1e5 and spec.endswith("f"):
        return format(x, "+.4g" if "+" in spec else ".4g")
    return format(x, spec)


def pct(x: Any) -> str:
    """A fraction as a whole percentage (``0.25`` -> ``25%``); ``n/a`` when it is not a number or is NaN."""
    return "n/a" if isinstance(x, bool) or not isinstance(x, (int, float)) or x != x else f"{100 * x:.0f}%"


def human_bytes(n: Any) -> str:
    """Bytes for people (binary units); ``n/a`` when unknown (not a number, NaN or infinite)."""
    if isinstance(n, bool) or not isinstance(n, (int, float)) or n != n or n in (math.inf, -math.inf):
        return "n/a"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{int(n)} B"
