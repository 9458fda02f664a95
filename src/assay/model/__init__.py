"""Finding and reading checkpoints.

- :mod:`.ref` resolves a model reference (folder, single file, ``org/name[@rev]`` in the local HF cache).
- :mod:`.formats` names a file's format by its content, never by its extension.
- :mod:`.inventory` builds the :class:`~assay.model.inventory.Inventory` of a model from headers alone.
- :mod:`.tensors` streams tensors (name, dtype, shape, lazy data) out of safetensors, torch archives and GGUF.
"""
