"""The hub's pages in a real headless Chromium (Selenium with Debian's chromium-driver), on SQLite and PostgreSQL:
open the leaderboard, filter it, open a model page, compare two models, and read what a person would see."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import pytest

from assay.hub.client import attest_vet
from tests.hub.builders import ModelSet, vet_doc

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    assert chromium and driver_path, "the browser test needs Debian's chromium and chromium-driver (apt-get install " \
                                     "chromium chromium-driver)"
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.add_argument("--js-flags=--noexpose_wasm")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(driver_path), options=opts)
    drv.set_page_load_timeout(60)
    yield drv
    drv.quit()


@pytest.fixture
def filled_hub(hub: Any, models: ModelSet, keys: dict[str, tuple[bytes, bytes]]) -> Any:
    for folder, delta, lic in ((models.finetune, 0.04, "apache-2.0"), (models.broken, -0.2, "llama3.1"),
                               (models.impostor, 0.01, "mit")):
        doc = vet_doc(folder, delta=delta, half_width=0.01, licence=lic,
                      relation="unrelated" if folder == models.impostor else "finetune")
        hub.publish(attest_vet(doc, private_key_pem=keys["ci"][0]), token=hub.test_token)
    return hub


def go(browser: Any, element: Any) -> None:
    """Click ``element`` (or call it) to load a new page, and wait until the new page has replaced the old one."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old = browser.find_element(By.TAG_NAME, "html")
    element() if callable(element) else element.click()

    def replaced(_: Any) -> bool:
        # selenium's staleness_of catches only StaleElementReferenceException; while the page is being replaced,
        # chromedriver may instead answer "Node with given id does not belong to the document", which means the
        # same thing: the old page's element is gone
        try:
            old.is_enabled()
        except WebDriverException:
            return True
        return False

    WebDriverWait(browser, 30).until(replaced)
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")


def _rows(browser: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [r.find_elements(By.TAG_NAME, "td")[1].text.splitlines()[0]
            for r in browser.find_elements(By.CSS_SELECTOR, "#leaderboard tbody tr[data-model]")]


def test_leaderboard_filter_model_page_and_compare(browser: Any, filled_hub: Any, live_hub: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.get(live_hub + "/")
    assert "Leaderboard: builtin:knowledge · acc" in browser.find_element(By.TAG_NAME, "h1").text
    assert _rows(browser) == ["honest-finetune", "impostor", "broken-finetune"]
    first = browser.find_element(By.CSS_SELECTOR, "#leaderboard tbody tr[data-model]").text
    assert "PASS" in first and "+0.040" in first and "[+0.030, +0.050]" in first

    # filter: only the failures
    Select(browser.find_element(By.NAME, "verdict")).select_by_visible_text("FAIL")
    go(browser, browser.find_element(By.ID, "apply"))
    assert _rows(browser) == ["impostor", "broken-finetune"]
    assert "verdict=FAIL" in browser.current_url
    # sort by the interval's lower end, ascending (a column header link)
    go(browser, browser.find_element(By.LINK_TEXT, "95% interval"))
    go(browser, browser.find_element(By.LINK_TEXT, "95% interval"))
    assert _rows(browser) == ["broken-finetune", "impostor"]

    # a model page
    go(browser, browser.find_element(By.LINK_TEXT, "broken-finetune"))
    assert browser.find_element(By.ID, "model-name").text.startswith("broken-finetune")
    page = browser.find_element(By.TAG_NAME, "main").text
    assert "FAIL" in page and "signed by ci" in page and "llama3.1" in page
    assert "-0.200" in browser.find_element(By.ID, "scores").text
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart")  # the report's delta chart

    # compare two models from the leaderboard
    browser.get(live_hub + "/")
    for box in browser.find_elements(By.CSS_SELECTOR, "#leaderboard input[type=checkbox]")[:2]:
        box.click()
    go(browser, browser.find_element(By.ID, "compare"))
    table = browser.find_element(By.ID, "compare-table").text
    assert "honest-finetune" in table and "impostor" in table and "broken-finetune" not in table
    assert "apache-2.0" in table and "mit" in table and "Δ +0.040" in table

    # the family tree of the base and a search by alias
    browser.get(live_hub + "/family/base")
    tree = browser.find_element(By.TAG_NAME, "main").text
    assert "Family of base" in tree and "honest-finetune" in tree and "2 descendants" in tree
    assert "impostor" in browser.find_element(By.ID, "claimants").text  # claims the base, weights unrelated
    go(browser, lambda: browser.find_element(By.NAME, "q").send_keys("impost\n"))
    assert browser.find_element(By.ID, "models").text.count("impostor") >= 1

    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
