"""Provenance: are these the files someone vouched for, and do these weights descend from the claimed base?

The package has three parts, each a plain function returning a frozen dataclass plus a JSON document:

- :mod:`.manifest` hashes every file (BLAKE3 by default, SHA-256 on request) and computes the *weights root*, a
  digest over the tensors that survives re-sharding and re-saving: ``hash_model`` -> ``Manifest``,
  ``manifest_document`` (``assay.manifest/1``). Command: ``assay hash``.
- :mod:`.signing` signs and verifies in the OpenSSF model signing format v1.0 (a Sigstore bundle with a DSSE
  envelope around an in-toto statement), offline, with ECDSA P-256 keys (interoperable with ``model-signing``) or
  Ed25519 (assay only): ``generate_keypair``, ``sign_model``, ``verify_model`` -> ``VerifyResult``,
  ``verify_document`` (``assay.verify/1``). Commands: ``assay keygen | sign | verify``.
- :mod:`.lineage` streams tensor pairs of a candidate and its base and names the relation (identical, recast,
  quantized, finetune, lora, partial, unrelated, incompatible) with per-tensor and per-layer evidence and a check
  of the model card's claim: ``compare_lineage`` -> ``LineageReport``, ``lineage_document``
  (``assay.lineage/1``). Command: ``assay lineage``.

Nothing here imports torch; tensors come from :mod:`assay.model.tensors` (torch archives only with
``allow_pickle=True``, after a safe scan).
"""
