"""Deployment readiness: what a model costs to run here, and whether its card and licence let you run it.

- :mod:`.bench` measures load time, time to first token, prefill and decode throughput, latency percentiles,
  throughput by batch size and peak memory on this machine (``run_bench``, ``bench_document``: ``assay bench``).
- :mod:`.hardware` estimates memory at 16/8/4 bits plus the key/value cache and which common devices fit it
  (device table in ``data/gpus.yaml``).
- :mod:`.cost` turns throughput and prices into cost per task, monthly cost and break-even volume
  (``compute_cost``, ``cost_document``: ``assay cost``).
- :mod:`.card` reads the model card offline: transparency score, loss curve, licence laundering, claims against
  measurements (``read_card``, ``check_claims``, ``card_document``: ``assay card``); :mod:`.claims` pairs a
  card's ``model-index`` claims with the tasks a vet measured (``match_claims``, ``card_with_claims``);
  :mod:`.training_log` reads the loss curve from ``trainer_state.json``.
- :mod:`.licences` is the licence table (``data/licences.yaml``) and the licence policy checks
  (``lookup``, ``check_licence``).
- :mod:`.advise` recommends API, few-shot open model or fine-tune from the numbers (``advise``: ``assay advise``).

None of these import torch at module level; only :mod:`.bench` needs it, when it runs.
"""
