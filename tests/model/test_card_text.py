"""One reader of a card's front matter: the Hub's reading (huggingface_hub's ModelCard), shared by the inventory,
the card review and the manifest, so no two parts of assay read different metadata from one card."""

from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub import ModelCard

from assay.deploy.card import read_card
from assay.model.card_text import read_front_matter
from assay.model.inventory import open_model
from assay.model.ref import resolve
from assay.provenance.manifest import card_metadata

CARDS = {
    "plain": "---\nbase_model: org/base\nlicense: mit\n---\n# Model\n",
    "crlf": "---\r\nbase_model: org/base\r\nlicense: mit\r\n---\r\n# Model\r\n",
    "closing-trailing-spaces": "---\nbase_model: org/base\nlicense: mit\n---  \n# Model\n",
    "leading-blank-lines": "\n\n---\nbase_model: org/base\nlicense: mit\n---\n# Model\n",
    "bom": "\ufeff---\nbase_model: org/base\nlicense: mit\n---\nbody\n",
}


@pytest.mark.parametrize("name", sorted(CARDS))
def test_reads_what_the_hub_reads(name: str) -> None:
    text = CARDS[name]
    ours = read_front_matter(text)
    hub = ModelCard(text.lstrip("\ufeff"), ignore_metadata_errors=True).data.to_dict()
    assert ours.meta == hub and ours.meta["base_model"] == "org/base" and ours.problem is None


@pytest.mark.parametrize("name", sorted(CARDS))
def test_inventory_card_and_manifest_agree(name: str, tmp_path: Path) -> None:
    from tests.factory.models import build_model, save_safetensors_folder, tiny_tokenizer

    folder = save_safetensors_folder(build_model(seed=0), tiny_tokenizer(), tmp_path / "m", card=None)
    (folder / "README.md").write_bytes(CARDS[name].encode("utf-8"))
    ref = resolve(str(folder))
    inv = open_model(ref)
    assert inv.card.get("base_model") == "org/base"
    assert read_card(ref).base_model == ("org/base",)
    assert (card_metadata(ref) or {}).get("base_model") == "org/base"


def test_what_is_wrong_is_said() -> None:
    unclosed = read_front_matter("---\nlicense: mit\n")
    assert unclosed.meta == {} and unclosed.problem == "front matter is not closed by ---"
    bad = read_front_matter("---\nlicense: mit\nbase_model: [a, b\n---\nbody\n")
    assert bad.meta == {} and bad.problem is not None and "not valid YAML" in bad.problem and bad.line is not None
    listed = read_front_matter("---\n- a\n- b\n---\nbody\n")
    assert listed.problem == "front matter is not a YAML mapping"
    assert read_front_matter("# no front matter\n").present is False
    # An opening line with trailing spaces is no front matter to the Hub: none here either, and it says why.
    text = "---   \nbase_model: org/base\n---\n# Model\n"
    odd = read_front_matter(text)
    assert odd.meta == ModelCard(text, ignore_metadata_errors=True).data.to_dict() == {}
    assert odd.problem is not None and "must stand alone" in odd.problem
