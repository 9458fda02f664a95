"""Weight lineage: does a candidate really descend from the base it claims, and how?

Tensors are streamed in pairs (one base tensor and its candidate counterpart in memory at a time), matched by
Hugging Face name (GGUF names are mapped by the tensor reader), and compared: exact equality, relative change
``||dW|| / ||W||``, cosine, a dtype-recast test, a quantisation-error test (GGUF block types, or values on an
integer grid), a rounding-aware rank estimate of ``dW`` (LoRA), and a row-matching probe that recognises
permuted neurons. The per-tensor findings add up per layer and to one :class:`Relation`.

    >>> r = compare_lineage(resolve("./my-finetune"), resolve("./base"))
    >>> r.relation, r.claim["consistent"], r.layers[0].rel_change
    (<Relation.FINETUNE: 'finetune'>, True, 0.0123)
    >>> lineage_document(r)["schema"]
    'assay.lineage/1'

A PEFT adapter folder as candidate is applied to the base on the fly (``W + scale * B @ A``), one matrix at a
time. Torch archives are read only with ``allow_pickle=True`` (after the files scanned safe).

The package is split the way a comparison runs; each module imports only those listed before it:

- :mod:`.report`: the results (:class:`Relation`, :class:`TensorKind`, :class:`TensorEvidence`,
  :class:`LayerEvidence`, :class:`LineageReport`) and the ``assay.lineage/1`` document (:func:`lineage_document`).
- :mod:`.names`: which layer a tensor name belongs to, which dtypes are floats or quantised.
- :mod:`.stats`: the numbers measured on a tensor pair (sums for relative change and cosine, rounding noise, rank
  above the noise, row matching, quantisation grid and error).
- :mod:`.classify`: those numbers become one tensor's :class:`TensorKind` (``classify_pair``).
- :mod:`.pairing`: reading both models' tensors by name, a LoRA adapter applied on the fly, byte-identical copies.
- :mod:`.decide`: the decision table (``RULES``): the first rule whose condition holds on the summed-up evidence
  names the relation; and each layer's status.
- :mod:`.claims`: the model card's ``base_model``/``base_model_relation`` and an adapter's config checked against
  the relation.
- :mod:`.compare`: :func:`compare_lineage`, which runs the steps above.
"""

from __future__ import annotations

from assay.provenance.lineage.compare import compare_lineage
from assay.provenance.lineage.report import (SCHEMA, LayerEvidence, LineageReport, Relation, TensorEvidence,
                                             TensorKind, lineage_document)

__all__ = ["SCHEMA", "LayerEvidence", "LineageReport", "Relation", "TensorEvidence", "TensorKind",
           "compare_lineage", "lineage_document"]
