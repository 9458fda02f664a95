"""Rules about where the weights come from: ``lineage.descends`` and ``lineage.not_identical``. They read
:class:`~assay.verdict.results.LineageResult`.
"""

from __future__ import annotations

from assay.verdict.outcome import Level, Reason, Stages
from assay.verdict.results import LineageResult
from assay.verdict.rule import Rule

#: Lineage relations that do not descend from the base.
NOT_DESCENDED = ("unrelated", "incompatible")


class DescendsFromBase(Rule):
    """The weights descend from the base, and the card's base claim agrees with the weights."""

    rule_id = "lineage.descends"
    stage = "lineage"

    def check(self, stages: Stages) -> list[Reason]:
        absent = self.absent(stages, why="descent from the base not checked")
        if absent is not None:
            return absent
        lineage = self.result(stages, LineageResult) or LineageResult("None")
        relation, claim = lineage.relation, lineage.claim
        reasons: list[Reason] = []
        if relation in NOT_DESCENDED:
            reasons.append(self.reason(f"the weights do not descend from the base (relation: {relation})",
                                       "lineage.relation", Level.FAIL))
        false_claims = claim.false_claims or ()
        for i, f in enumerate(false_claims):  # one reason per false claim, naming it
            reasons.append(self.reason(f"false {f.claim} claim: {f.message}", f"lineage.claim.false_claims[{i}]",
                                       Level.FAIL))
        if claim.consistent is False and not false_claims:  # a document from before false_claims existed
            reasons.append(self.reason(f"the card claims base_model {claim.base_model!r} but the weights "
                                       f"contradict it (relation: {relation})", "lineage.claim.consistent",
                                       Level.FAIL))
        return reasons


class NotIdentical(Rule):
    """The candidate is not an identical re-upload of the base."""

    rule_id = "lineage.not_identical"
    stage = "lineage"

    def check(self, stages: Stages) -> list[Reason]:
        lineage = self.result(stages, LineageResult)  # DescendsFromBase says why lineage did not run
        if lineage is not None and lineage.relation == "identical":
            return [self.reason("identical re-upload: every tensor equals the base's, so it adds nothing",
                                "lineage.relation", Level.FAIL)]
        return []
