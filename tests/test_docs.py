"""The README is a front door that stays true: its test command is what CI runs, it stays short, and every page
under docs/ is reachable from the MkDocs site (whose links `mkdocs build --strict` checks in .ci/run)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    setup, test = _bash_blocks(README)[:2]
    assert setup.startswith("python3 -m venv .venv") and setup.endswith(".venv/bin/assay demo")
    install, run = test.rsplit(" && ", 1)
    # .ci/run has the same install line and the same pytest command, verbatim
    assert install in ci.splitlines() and run in ci.splitlines()


def test_readme_is_a_front_door() -> None:
    assert len(README) <= 16_000
    for page in re.findall(r"\]\((docs/[^)#]+)", README):
        assert (ROOT / page).is_file(), page


def test_every_docs_page_is_in_the_site_navigation() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(nav: object) -> list[str]:
        if isinstance(nav, str):
            return [nav]
        if isinstance(nav, list):
            return [p for item in nav for p in pages(item)]
        if isinstance(nav, dict):
            return [p for v in nav.values() for p in pages(v)]
        return []

    in_nav = pages(config["nav"])
    on_disk = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert sorted(in_nav) == on_disk and len(in_nav) == len(set(in_nav))
    assert config["strict"] is True and config["theme"]["name"] == "material"
