"""Evaluation: the candidate and its base on the same items, compared with paired statistics.

- :mod:`.backends` run a model: ``hf`` (transformers + torch in process) and ``openai`` (any OpenAI-compatible
  server). Both implement :class:`~assay.evaluate.backends.base.Backend`.
- :mod:`.tasks` defines task kinds (multiple choice by log-likelihood, generation with exact match, perplexity,
  KL drift) and the suite registry; :mod:`.taskfile` (assay's own) and :mod:`.lmeval` (lm-evaluation-harness's,
  for local files) read task YAMLs with the helpers of :mod:`.taskdata`; :mod:`.loading` resolves a ``--task``
  spec (:func:`~assay.evaluate.loading.load_tasks`) to a task file or a registered suite.
- :mod:`.runner` runs tasks on a backend; :mod:`.filters` holds the answer filters of generation tasks.
- :mod:`.suites` holds the built-in suites and loaders for standard benchmarks from local files.
- :mod:`.stats` paired bootstrap, exact McNemar, Holm; :mod:`.compare` builds the comparison;
  :mod:`.cache` is the SQLite result cache.
- :mod:`.pair` runs a candidate and its base on the same tasks, each loaded once (``compare_models``: what
  ``assay eval --base`` and ``assay vet`` both run); :mod:`.policy_tasks` turns a policy's probes and
  ``drift.kl`` into tasks and builds the probes document.
"""
