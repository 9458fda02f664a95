"""The one reader of a model card's YAML front matter, shared by the inventory, the card review and the manifest.

The block is found as the Hugging Face Hub finds it (``huggingface_hub.repocard.REGEX_YAML_BLOCK``) and parsed
with ``yaml.safe_load`` (never a loader that builds objects), so every part of assay sees the metadata the Hub
shows, and no two parts of assay can read different metadata from one card.

    fm = read_front_matter(Path("README.md").read_text())
    fm.meta.get("base_model"), fm.problem
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FrontMatter:
    """What a card's front matter says, or why it says nothing."""

    meta: dict[str, Any] = field(default_factory=dict)
    """The metadata mapping ({} when there is no front matter, or it is unusable)."""
    body: str = ""
    """The markdown after the front matter (the whole text when there is none)."""
    present: bool = False
    """A front-matter block was found."""
    problem: str | None = None
    """Why a block that was found is ignored (not valid YAML, not a mapping)."""
    line: int | None = None
    """The card's line (1-based) the YAML error points at, when known."""


def read_front_matter(text: str) -> FrontMatter:
    """The front matter of the card ``text`` (see :class:`FrontMatter`); never raises for a malformed card."""
    import yaml
    from huggingface_hub.repocard import REGEX_YAML_BLOCK

    text = text.lstrip("\ufeff")
    match = REGEX_YAML_BLOCK.search(text)
    if not match:
        if text.lstrip().startswith("---"):  # the Hub shows no metadata for this block: say why
            closed = "\n---" in text.lstrip()[3:]
            problem = ("front matter is not read by the Hub: its opening --- line must stand alone" if closed
                       else "front matter is not closed by ---")
            return FrontMatter(body=text, present=True, problem=problem)
        return FrontMatter(body=text)
    body = text[match.end():]
    try:
        meta = yaml.safe_load(match.group(2))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        first = str(getattr(exc, "problem", None) or exc).splitlines()[0]
        line = mark.line + 1 + match.group(1).count("\n") if mark is not None else None
        return FrontMatter(body=body, present=True, problem=f"front matter is not valid YAML ({first})", line=line)
    if meta is None:
        return FrontMatter(body=body, present=True)
    if not isinstance(meta, dict):
        return FrontMatter(body=body, present=True, problem="front matter is not a YAML mapping")
    return FrontMatter(meta=meta, body=body, present=True)
