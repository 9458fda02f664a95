"""The HTML report in a real headless browser (Debian's chromium): it loads with no console errors and shows the
verdict. A page with a deliberate script error proves the console check can fail."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from assay.report import get_renderer, write_atomic
from assay.report.html import render_leaderboard

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def load(path: Path) -> tuple[str, list[str]]:
    """(DOM after load, console messages) from headless chromium."""
    assert CHROMIUM, "chromium is needed for the HTML report test: apt-get install -y chromium"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", "--dump-dom", path.resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return proc.stdout, console


def test_console_check_catches_a_broken_page(tmp_path: Path) -> None:
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><p>x</p><script>undefinedFunction()</script></body></html>")
    _, console = load(bad)
    assert any("undefinedFunction" in c for c in console)


@pytest.mark.parametrize("kind", ["regression", "unsafe", "deployed"])
def test_report_loads_clean_and_shows_the_verdict(tmp_path: Path, vet_docs: dict[str, Any], kind: str) -> None:
    doc = vet_docs[kind]
    page = write_atomic(tmp_path / "report.html", get_renderer("html").render(doc))
    dom, console = load(page)
    assert console == []
    banner = re.search(r'<div class="banner verdict" data-verdict="(\w+)"[^>]*>\s*<div class="word">(\w+)</div>', dom)
    assert banner and banner.group(1) == banner.group(2) == doc["verdict"]
    assert "<svg" in dom or kind == "unsafe"


def test_leaderboard_loads_clean(tmp_path: Path, vet_docs: dict[str, Any]) -> None:
    page = write_atomic(tmp_path / "board.html", render_leaderboard(list(vet_docs.values())))
    dom, console = load(page)
    assert console == []
    assert dom.count('class="banner verdict"') == len(vet_docs)
