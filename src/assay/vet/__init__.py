"""``assay vet``: every stage in order, one verdict under a policy, and the evidence behind it.

``vet`` is a table of stages (:data:`STAGE_TABLE`), run in order by a loop. Each :class:`Stage` has a name, what it
requires (:class:`Requirement`: "candidate scanned safe", "a base that scanned safe", "evaluation ran"...) and a
``run(context) -> StageOutcome``. A stage whose requirement is not met is recorded as blocked, skipped or not
applicable with the requirement's reason, and the vet goes on; a stage that fails records an ``error`` and the vet
goes on. A stage that ran leaves its typed result (:mod:`assay.verdict.results`: ``ScanResult``,
``LineageResult``, ``ComparisonResult`` ...); the verdict reads those, and each stage's JSON document is written
from its result only in :func:`vet_document`. Adding a stage is one entry in the table (and its typed result and
rule in :mod:`assay.verdict`).

    inventory -> hardware -> scan -> base_scan -> signature -> lineage -> evaluation -> comparison -> probes
    -> drift -> card -> licence -> bench -> cost

An ``unsafe`` or ``not verified`` candidate is never loaded: every stage after ``scan`` that could load it requires
"candidate scanned safe" and is *blocked* with that reason (the card and licence, read as text, are still shown).
The base (``--base``, else the card's ``base_model`` in the local Hugging Face cache) is scanned before it is ever
loaded. Evaluation, probes and KL drift load each model once (:func:`assay.evaluate.pair.compare_models`: the base
first, its results possibly from the cache, then the candidate). docs/DESIGN.md draws the table with what each
stage requires and produces.

    >>> from assay.policy import default_policy
    >>> result = run_vet("./my-finetune", base="./base-model", policy=default_policy(), out_dir=Path("vet-out"))
    >>> result.verdict.outcome, [r.message for r in result.verdict.reasons]
    >>> vet_document(result)["schema"]
    'assay.vet/1'

Bad input (a base that does not exist, a candidate that is not a model, an unwritable ``out_dir``) raises an
:class:`~assay.errors.AssayError` before any long work starts. Reports are written atomically
(:mod:`assay.report.io`), so an interrupted vet never leaves a half-written report under its final name.

The package, bottom up (each module imports only those above it in this list):

- :mod:`.context` what a stage reads (:class:`VetContext`, :class:`VetSettings`, :class:`VetState`) and what it
  requires (:class:`Requirement` and the requirement constants: ``CANDIDATE_SAFE``, ``SAFE_BASE`` ...);
- :mod:`.inputs` the bad input refused before the first stage (:data:`VET_FORMATS`: what a candidate may be);
- :mod:`.stages` the stage functions, :class:`Stage` and the one ordered :data:`STAGE_TABLE` (:data:`STAGES`);
- :mod:`.document` :class:`VetResult` and its ``assay.vet/1`` document (:func:`vet_document`);
- :mod:`.run` :func:`run_vet`, the loop over the table.
"""

from __future__ import annotations

from assay.deploy.claims import match_claims
from assay.environment import environment
from assay.vet.context import (A_BASE, BENCH_ASKED, BENCH_EXTRA, CANDIDATE_SAFE, CARD_READ, DRIFT_ASKED, EVAL_EXTRA,
                               EVALUATION_RAN, PROBES_ASKED, SAFE_BASE, TASKS, Requirement, VetContext, VetSettings,
                               VetState)
from assay.vet.document import SCHEMA, VetResult, vet_document
from assay.vet.inputs import VET_FORMATS
from assay.vet.run import run_vet
from assay.vet.stages import STAGE_TABLE, STAGES, Stage

__all__ = ["A_BASE", "BENCH_ASKED", "BENCH_EXTRA", "CANDIDATE_SAFE", "CARD_READ", "DRIFT_ASKED", "EVALUATION_RAN",
           "EVAL_EXTRA", "PROBES_ASKED", "SAFE_BASE", "SCHEMA", "STAGES", "STAGE_TABLE", "TASKS", "VET_FORMATS",
           "Requirement", "Stage", "VetContext", "VetResult", "VetSettings", "VetState", "environment",
           "match_claims", "run_vet", "vet_document"]
