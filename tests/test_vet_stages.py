"""The stage table of ``assay vet`` and the paired run it shares with ``assay eval``."""

from __future__ import annotations

from pathlib import Path

import pytest

from assay.evaluate.backends.base import Backend
from assay.evaluate.pair import PARTS, compare_models
from assay.policy import default_policy
from assay.verdict import Status


def test_the_table_is_the_stage_order_and_only_text_readers_run_after_an_unsafe_scan() -> None:
    from assay.vet import CANDIDATE_SAFE, STAGE_TABLE, STAGES

    names = [s.name for s in STAGE_TABLE]
    assert tuple(names) == STAGES and len(set(names)) == len(names)
    after_scan = STAGE_TABLE[names.index("scan") + 1:]
    ungated = {s.name for s in after_scan if CANDIDATE_SAFE not in s.requires}
    assert ungated == {"card", "licence"}  # README, config and GGUF metadata read as text; nothing loaded
    assert all(s.requires[:1] == (CANDIDATE_SAFE,) for s in after_scan if s.name not in ungated)
    assert all(s.produces for s in STAGE_TABLE)


def test_without_the_eval_extra_each_model_stage_says_how_to_install_it(tiny_model_dir: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import assay.vet as vet
    import assay.vet.context

    # the requirements read it where they are defined
    monkeypatch.setattr(assay.vet.context, "_eval_extra_missing", lambda: "torch, transformers")
    result = vet.run_vet(str(tiny_model_dir), policy=default_policy(), tasks=["builtin:knowledge"], bench=True)
    stage = {s.name: s for s in result.stages}
    assert [s.name for s in result.stages] == list(vet.STAGES)
    assert stage["scan"].status is Status.RAN
    assert (stage["evaluation"].status, stage["evaluation"].reason) == (
        Status.SKIPPED, "evaluation needs the eval extra (torch, transformers): pip install 'assay[eval]'")
    assert (stage["comparison"].status, stage["comparison"].reason) == (Status.SKIPPED, "no evaluation")
    assert (stage["bench"].status, stage["bench"].reason) == (
        Status.SKIPPED, "the bench needs the eval extra (torch, transformers): pip install 'assay[eval]'")
    assert stage["drift"].status is Status.NOT_APPLICABLE
    assert stage["card"].status is Status.RAN  # a stage that loads nothing still runs


def test_a_base_that_cannot_be_loaded_fails_every_part_and_the_candidate_is_never_opened() -> None:
    opened: list[str] = []

    def open_backend(role: str, model: str) -> Backend:
        opened.append(role)
        if role == "base":
            raise OSError(f"cannot map {model}")
        raise AssertionError("the candidate was opened after the base failed to load")

    run = compare_models("cand", "base", open_backend=open_backend, tasks=[], explain=str)
    assert opened == ["base"]
    assert run.errors == {p: "the base could not be loaded: cannot map base" for p in PARTS}
    assert run.candidate.results is None and run.base is None and run.comparison is None

    opened.clear()
    with pytest.raises(OSError, match="cannot map base"):  # assay eval: the failure propagates, one error line
        compare_models("cand", "base", open_backend=open_backend, tasks=[])
    assert opened == ["base"]
