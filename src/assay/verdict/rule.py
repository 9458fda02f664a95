"""The shape every rule of the verdict has: a small object that looks at the stage outcomes and returns reasons.

    class ScanSafe(Rule):
        rule_id, stage = "scan.safe", "scan"
        def check(self, stages): ...   # [] when satisfied, else one Reason per problem

Rules compose with :class:`AllOf` (an empty one is refused: it would pass anything). :meth:`Rule.result` hands
a rule its stage's typed result (:mod:`assay.verdict.results`); :meth:`Rule.absent` turns a stage that did not
run into the reasons it implies.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TypeVar, assert_never

from assay.verdict.outcome import Level, Reason, Stages, Status

R = TypeVar("R")

#: Most reasons one rule gives for a list of findings (the rest are counted in one more reason).
MAX_FINDING_REASONS = 10


class Rule(abc.ABC):
    """A small check over the stage outcomes; returns the reasons it finds (none: satisfied)."""

    rule_id: str
    stage: str

    @abc.abstractmethod
    def check(self, stages: Stages) -> list[Reason]:
        """Reasons this rule finds in ``stages``."""

    def reason(self, message: str, evidence: str, level: Level) -> Reason:
        """A reason of this rule."""
        return Reason(self.rule_id, self.stage, message, evidence, level)

    def result(self, stages: Stages, kind: type[R]) -> R | None:
        """The typed result of this rule's stage when it ran and is a ``kind``, else None."""
        out = stages.get(self.stage)
        found = out.result if out is not None and out.status is Status.RAN else None
        return found if isinstance(found, kind) else None

    def absent(self, stages: Stages, *, why: str, level_if_skipped: Level = Level.WARN) -> list[Reason] | None:
        """Reasons for a stage that did not run (None when it ran). Blocked stages add nothing: the blocking
        stage already gave the reason."""
        out = stages.get(self.stage)
        if out is None:
            return [self.reason(f"{why}: the {self.stage} stage did not run", f"stages.{self.stage}",
                                Level.UNDECIDED)]
        match out.status:
            case Status.RAN:
                return None
            case Status.BLOCKED | Status.NOT_APPLICABLE:
                return []
            case Status.SKIPPED:
                return [self.reason(f"{why}: {out.reason}", f"stages.{self.stage}", level_if_skipped)]
            case Status.ERROR:
                return [self.reason(f"{why}: the {self.stage} stage failed: {out.reason}", f"stages.{self.stage}",
                                    Level.UNDECIDED)]
            case _ as unreachable:
                assert_never(unreachable)


class AllOf(Rule):
    """Every rule must hold; collects all their reasons. An empty AllOf is refused (it would pass anything)."""

    rule_id = "all"
    stage = "*"

    def __init__(self, rules: Sequence[Rule]) -> None:
        if not rules:
            raise ValueError("AllOf needs at least one rule: an empty policy would pass anything")
        self.rules = tuple(rules)

    def check(self, stages: Stages) -> list[Reason]:
        out: list[Reason] = []
        for r in self.rules:
            out.extend(r.check(stages))
        return out


class StageRan(Rule):
    """An informative stage (inventory, card, bench ...) that failed or could not run is still a reason."""

    rule_id = "stage.ran"

    def __init__(self, stage: str, statuses: tuple[Status, ...] = (Status.ERROR, Status.SKIPPED)) -> None:
        self.stage = stage
        self.statuses = statuses

    def check(self, stages: Stages) -> list[Reason]:
        out = stages.get(self.stage)
        if out is None or out.status not in self.statuses:
            return []
        what = "failed" if out.status is Status.ERROR else "did not run"
        return [self.reason(f"the {self.stage} stage {what}: {out.reason}", f"stages.{self.stage}", Level.WARN)]
