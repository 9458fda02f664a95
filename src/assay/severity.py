"""How bad a finding is: one ordered scale for the scanner, the policy (``scan.fail_on``), the verdict and the CLI.

    >>> Severity("high") > Severity.MEDIUM
    True
    >>> SEVERITIES[0]
    'critical'
"""

from __future__ import annotations

import enum


class Severity(enum.StrEnum):
    """How bad a finding is. Ordered: ``Severity.LOW < Severity.HIGH``."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """0 for info up to 4 for critical."""
        return _RANK[self]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank


_RANK = {Severity.INFO: 0, Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


SEVERITIES: tuple[str, ...] = tuple(s.value for s in sorted(Severity, reverse=True))
"""Every severity name, most severe first (``critical`` ... ``info``)."""
