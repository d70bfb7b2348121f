"""The web playground in a real browser: Debian's headless Chromium, driven by Selenium, against the session's
Serve app (API keys required). One test walks what a person does, in order, and takes a screenshot: into
docs/ui.png when the session serves a real model (`make ui-screenshot`: SmolLM2-135M), else beside the test's
temporary files (the tiny Llama's answers are noise, not something to show).

Chromium needs the background-networking flags on a closed network: without them it waits on its own
update, sync and component downloads and the page never loads. A fresh --user-data-dir per run keeps
state from leaking between runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ragserve.config import TINY_LLAMA
from tests.integration.serving import API_KEY, BASE, GENERATOR, OFF_TOPIC, QUESTION

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DOCS_SCREENSHOT = Path(__file__).parents[2] / "docs" / "ui.png"
ANSWER_TIMEOUT_S = 120
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1360,1000",
)
# Records the body of every request the page sends (WebDriver's script runs outside the page's CSP).
RECORD_REQUESTS = """
window.__sent = [];
const original = window.fetch;
window.fetch = (url, options) => {
  window.__sent.push(JSON.parse(options.body));
  return original(url, options);
};
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        missing = "Chromium missing: run scripts/install-chromium.sh (Debian's chromium, chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(missing)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def ask(driver: Any, question: str) -> Any:
    """Type the question and press Enter (the keyboard path), then wait for the turn to end; its article."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    before = len(driver.find_elements(By.CSS_SELECTOR, ".turn"))
    box = driver.find_element(By.ID, "question")
    box.send_keys(question)
    box.send_keys(Keys.ENTER)

    def settled(d: Any) -> Any:
        error = d.find_element(By.ID, "error")
        if error.is_displayed():
            return error
        turns = d.find_elements(By.CSS_SELECTOR, ".turn")
        return turns[-1] if len(turns) > before and turns[-1].get_attribute("data-state") == "done" else None

    return WebDriverWait(driver, ANSWER_TIMEOUT_S, poll_frequency=0.2).until(settled)


def use_key(driver: Any, key: str) -> None:
    from selenium.webdriver.common.by import By

    field = driver.find_element(By.ID, "api-key")
    field.clear()
    field.send_keys(key)


def sources(driver: Any) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#sources .source-path")]


def test_playground_in_a_browser(served, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    driver = browser
    driver.get(BASE + "/ui")  # redirected to /ui/; loads without a key
    assert driver.current_url == BASE + "/ui/" and driver.title == "ragserve playground"
    driver.execute_script(RECORD_REQUESTS)
    # Rerank off: the session's reranker is random, and the first question's gold page must be listed.
    driver.find_element(By.CSS_SELECTOR, ".options summary").click()
    Select(driver.find_element(By.ID, "rerank")).select_by_value("false")

    # 1. A wrong key: the API's own message, and the question is back in the box to send again.
    use_key(driver, "not-the-key")
    error = ask(driver, QUESTION)
    assert error.get_attribute("id") == "error"
    assert "401" in error.text and "a valid API key" in error.text  # the guard's own message
    assert driver.find_element(By.ID, "question").get_attribute("value") == QUESTION
    assert driver.find_elements(By.CSS_SELECTOR, ".turn") == []
    driver.find_element(By.ID, "question").clear()

    # 2. The right key: the streamed answer, its sources (with the chunk text), its timings.
    use_key(driver, API_KEY)
    first = ask(driver, QUESTION)
    assert first.get_attribute("data-state") == "done", first.text
    assert first.find_element(By.CSS_SELECTOR, ".answer").text.strip()
    assert not first.find_elements(By.CSS_SELECTOR, ".not-covered")
    assert any(s.startswith("reference/index.md") for s in sources(driver)), sources(driver)
    assert driver.find_elements(By.CSS_SELECTOR, "#sources .chunk")[0].text.strip()
    timings = first.find_element(By.CSS_SELECTOR, ".timings").text
    assert "embed" in timings and "search" in timings and "total" in timings, timings

    # 3. A follow-up: the whole conversation is sent; the retrieval query is shown when the API gives one.
    second = ask(driver, "And which of them matters most for recall?")
    assert second.get_attribute("data-state") == "done", second.text
    sent = driver.execute_script("return window.__sent")
    assert [m["role"] for m in sent[-1]["messages"]] == ["user", "assistant", "user"]
    assert sent[-1]["stream"] is True and sent[-1]["rerank"] is False
    assert sources(driver), "the follow-up's sources"
    retrieval = second.find_elements(By.CSS_SELECTOR, ".retrieval")
    assert not retrieval or "Retrieval query" in retrieval[0].text
    # The page with both answers, their sources and timings.
    driver.save_screenshot(str(tmp_path / "ui.png" if GENERATOR == TINY_LLAMA else DOCS_SCREENSHOT))

    # 4. A question the documents cannot cover, in a new conversation: marked "not covered".
    driver.find_element(By.ID, "new-chat").click()
    assert driver.find_elements(By.CSS_SELECTOR, ".turn") == []
    third = ask(driver, OFF_TOPIC)
    assert third.get_attribute("data-state") == "done", third.text
    assert third.find_element(By.CSS_SELECTOR, ".not-covered").text == "not covered by the documents"
    assert len(driver.execute_script("return window.__sent")[-1]["messages"]) == 1

    # Nothing kept outside the page's memory.
    assert driver.execute_script("return localStorage.length + sessionStorage.length") == 0
    assert driver.get_cookies() == []
    logs = json.dumps(driver.get_log("browser"))
    assert "Content Security Policy" not in logs, logs  # the page never tripped its own policy
