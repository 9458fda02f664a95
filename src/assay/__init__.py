"""assay vets an open-weight LLM checkpoint before anyone deploys it.

The pipeline is a chain of plain functions over plain (frozen dataclass) data; each stage is also a command:

- :mod:`assay.model` finds and reads checkpoints. ``model.ref.resolve`` turns a folder, a single file or a
  cached ``org/name`` into files; ``model.formats.detect`` names each file's format by its content;
  ``model.inventory.open_model`` builds the :class:`~assay.model.inventory.Inventory` (files, roles, architecture,
  parameters from headers alone, card, adapter); ``model.tensors`` streams tensors from safetensors, torch
  archives (``weights_only`` only, after a safe scan) and GGUF.  Command: ``assay inspect``.
- :mod:`assay.scan` decides whether anything in the folder can run code when loaded: a symbolic pickle machine
  with a default-deny allowlist, container and header checks, chat-template and remote-code analysis.
  Command: ``assay scan``.
- :mod:`assay.provenance` hashes (manifest and weights root), signs and verifies (OpenSSF model signing format)
  and compares weights with the claimed base (lineage). Commands: ``assay hash | keygen | sign | verify | lineage``.
- :mod:`assay.evaluate` runs candidate and base on the same items and compares them with paired statistics.
  Command: ``assay eval``.
- :mod:`assay.deploy` measures speed and memory, turns them into cost, and reads the card and licence.
  Commands: ``assay bench | cost | card | advise``.
- :mod:`assay.policy` and :mod:`assay.verdict` turn the stage results into PASS / WARN / FAIL;
  :mod:`assay.report` renders them (terminal, JSON, Markdown, HTML, SARIF, CycloneDX). Commands: ``assay vet |
  report | policy``.
- :mod:`assay.demo` builds a small zoo of hub-like checkpoints from a real bundled model and vets them.

Errors the user should see derive from :class:`assay.errors.AssayError`.
"""

__version__ = "0.1.0"
