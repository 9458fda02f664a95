"""Rules about whether the candidate is safe to load and is what its signer signed: ``scan.safe`` and
``signature.valid``. They read :class:`~assay.verdict.results.ScanResult` and
:class:`~assay.verdict.results.SignatureResult`.
"""

from __future__ import annotations

from assay.severity import Severity
from assay.verdict.outcome import Level, Reason, Stages, Status
from assay.verdict.results import ScanResult, SignatureResult
from assay.verdict.rule import MAX_FINDING_REASONS, Rule


class ScanSafe(Rule):
    """The candidate scanned ``safe``: no finding at or above the threshold, every file analysed."""

    rule_id = "scan.safe"
    stage = "scan"

    def __init__(self, fail_on: str) -> None:
        self.fail_on = fail_on

    def check(self, stages: Stages) -> list[Reason]:
        absent = self.absent(stages, why="safety unknown", level_if_skipped=Level.UNDECIDED)
        if absent is not None:
            return absent
        scan = self.result(stages, ScanResult) or ScanResult("")
        limit = Severity(self.fail_on)
        reasons: list[Reason] = []
        serious = [(i, f) for i, f in enumerate(scan.findings) if f.severity >= limit]
        serious.sort(key=lambda t: t[1].severity, reverse=True)  # stable: file order within a severity
        for i, f in serious[:MAX_FINDING_REASONS]:
            where = f.path or "?"
            if f.location:
                where += f" ({f.location})"
            reasons.append(self.reason(f"{f.severity.value} {f.rule}: {f.message} in {where}", f"scan.findings[{i}]",
                                       Level.FAIL))
        if len(serious) > MAX_FINDING_REASONS:
            reasons.append(self.reason(f"{len(serious) - MAX_FINDING_REASONS} more findings at or above "
                                       f"{self.fail_on}", "scan.findings", Level.FAIL))
        if scan.verdict in ("unverified", "not_verified"):
            unverified = [(i, r) for i, r in enumerate(scan.files) if r.status in ("unverified", "not_verified")]
            for i, r in unverified[:MAX_FINDING_REASONS]:
                why = r.reason or "could not be analysed fully"
                reasons.append(self.reason(f"not verified: {r.path}: {why}; the candidate is not loaded",
                                           f"scan.files[{i}]", Level.FAIL))
            if not unverified:
                reasons.append(self.reason("the scan could not verify every file; the candidate is not loaded",
                                           "scan.verdict", Level.FAIL))
        elif scan.verdict == "unsafe" and not reasons:
            reasons.append(self.reason("the scan found the candidate unsafe; it is not loaded", "scan.verdict",
                                       Level.FAIL))
        elif scan.verdict not in ("safe", "unsafe"):
            reasons.append(self.reason(f"the scan gave no usable verdict ({scan.verdict or 'missing'})",
                                       "scan.verdict", Level.UNDECIDED))
        return reasons


class SignatureValid(Rule):
    """A signature that is present verifies; a required signature is present."""

    rule_id = "signature.valid"
    stage = "signature"

    def __init__(self, required: bool) -> None:
        self.required = required

    def check(self, stages: Stages) -> list[Reason]:
        out = stages.get(self.stage)
        if out is None or out.status is not Status.RAN:
            if self.required and (out is None or out.status is not Status.BLOCKED):
                why = out.reason if out is not None and out.reason else "no signature was checked"
                return [self.reason(f"the policy requires a valid signature: {why}", f"stages.{self.stage}",
                                    Level.FAIL)]
            return self.absent(stages, why="signature not verified") or []
        sig = self.result(stages, SignatureResult)
        if sig is not None and sig.valid:
            return []
        message = sig.message if sig is not None else "the signature does not verify"
        return [self.reason(f"signature check failed: {message}", "signature", Level.FAIL)]
