"""Lineage across the hub: stored fingerprints find a model's measured parent even when its vet or card named
another base, and the family tree hangs each model under it."""

from __future__ import annotations

from typing import Any

import numpy as np

from assay.hub.client import attest_vet
from assay.hub.lineage import compare_fingerprints, fingerprint
from tests.hub.builders import ModelSet, save_folder, vet_doc


def test_fingerprints_tell_derived_identical_and_unrelated(models: ModelSet) -> None:
    from assay.model.ref import resolve

    fp = {k: fingerprint(resolve(str(getattr(models, k)))) for k in ("base", "finetune", "broken", "reupload",
                                                                   "impostor")}
    assert compare_fingerprints(fp["reupload"], fp["base"])["relation"] == "identical"
    fine = compare_fingerprints(fp["finetune"], fp["base"])
    broken = compare_fingerprints(fp["broken"], fp["base"])
    assert fine["relation"] == broken["relation"] == "derived"
    assert fine["rel_change"] < broken["rel_change"]  # 0.002 vs 0.05 noise on weights of scale 0.1
    assert compare_fingerprints(fp["impostor"], fp["base"])["relation"] == "unrelated"


def test_different_architectures_share_nothing(models: ModelSet, tmp_path: Any) -> None:
    from assay.model.ref import resolve

    other = save_folder(tmp_path / "wide", {"model.layers.0.mlp.up_proj.weight": np.ones((8, 16), np.float32)})
    assert compare_fingerprints(fingerprint(resolve(str(other))), fingerprint(resolve(str(models.base)))) is None


def test_measured_parent_and_family_tree(hub: Any, client: Any, models: ModelSet,
                                         keys: dict[str, tuple[bytes, bytes]]) -> None:
    def pub(doc: dict[str, Any]) -> str:
        return hub.publish(attest_vet(doc, private_key_pem=keys["ci"][0]), token=hub.test_token).model_id

    base = pub(vet_doc(models.base, base=False))
    impostor = pub(vet_doc(models.impostor, base=False))
    # the fine-tune was vetted against the impostor (its card claims it): the weights say otherwise
    fine = pub(vet_doc(models.finetune, base=models.impostor, relation="unrelated", delta=-0.1))
    broken = pub(vet_doc(models.broken, delta=-0.2))
    m = hub.model(fine)
    assert m["base"]["name"] == "impostor" and m["measured_parent"] == base
    assert m["parent_evidence"]["relation"] == "derived" and m["parent_evidence"]["cosine"] > 0.99
    assert hub.model(broken)["measured_parent"] == base
    assert hub.model(base)["measured_parent"] is None and hub.model(impostor)["measured_parent"] is None
    tree = client.get(f"/family/{base}")
    assert tree.status_code == 200
    text = tree.text
    assert "honest-finetune" in text and "broken-finetune" in text and "2 descendants" in text
    assert "derived (measured)" in text
    assert "honest-finetune" not in client.get(f"/family/{impostor}").text
    page = client.get(f"/models/{fine}").text
    assert "measured parent" in page and f"/models/{base}" in page


def test_malformed_fingerprints_are_ignored_not_fatal(models: ModelSet) -> None:
    from assay.model.ref import resolve

    good = fingerprint(resolve(str(models.base)))
    for bad in ({"tensors": "x"}, {"tensors": {"a": 1}}, {"tensors": {"a": {"shape": [2], "sample": "!!"}}}, []):
        assert compare_fingerprints(bad, good) is None  # type: ignore[arg-type]
    name = next(iter(good["tensors"]))
    odd = {"tensors": {name: {**good["tensors"][name], "digest": "0", "sample": "AAAA"}}}
    assert compare_fingerprints(odd, good) is None  # a sample of the wrong length compares nothing
