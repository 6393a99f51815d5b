"""The HTML report, opened in a real browser (headless Chromium driven by Selenium).

Skips with the reason when Chromium, chromedriver or Selenium are missing (Debian packages
`chromium` and `chromium-driver`; .ci/run installs them).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover - depends on the machine
    webdriver = None

if webdriver is None or not CHROMIUM or not CHROMEDRIVER:
    pytest.skip(
        "no headless browser: needs selenium (dev extra) and Debian's chromium + chromium-driver",
        allow_module_level=True,
    )

FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run "
    "--disable-background-networking --disable-component-update --disable-sync"
)


@pytest.fixture(scope="module")
def browser(tiny_run: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    for flag in FLAGS.split():
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(1400, 1000)
    yield driver
    driver.quit()


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out waiting for the report")


def open_category(driver, report: Path, category: str) -> None:
    driver.get(report.as_uri())
    menu = wait_for(lambda: driver.find_elements(By.XPATH, f"//*[normalize-space(text())='{category}']"))
    driver.execute_script("arguments[0].click()", menu[-1])  # no waiting for CSS transitions


def show(driver, item: str) -> None:
    row = wait_for(lambda: driver.find_elements(By.XPATH, f"//td[normalize-space(text())='{item}']/.."))
    eye = row[0].find_element(By.XPATH, ".//*[@iconname='eye']")
    driver.execute_script("arguments[0].click()", eye)


def test_landing_page_says_what_was_run(browser, tiny_run: Path) -> None:
    report = tiny_run / "results" / "report.html"
    open_category(browser, report, "Run")
    show(browser, "results/run_info.html")
    frame = wait_for(lambda: browser.find_elements(By.TAG_NAME, "iframe"))
    browser.switch_to.frame(frame[0])
    text = wait_for(lambda: browser.find_element(By.TAG_NAME, "body").text)
    browser.switch_to.default_content()
    assert "cross-validation folds" in text and "torch" in text and "patients" in text


@pytest.mark.parametrize(
    ("table", "needle"),
    [
        ("table2_diagnostic", "ResNet18 model"),
        ("table1_features", "intravertebral_mass"),
        ("mcnemar", "malignant"),
        ("model_auc", "delong"),
        ("feature_model", "accuracy"),
    ],
)
def test_tables_render_as_tables(browser, tiny_run: Path, table: str, needle: str) -> None:
    open_category(browser, tiny_run / "results" / "report.html", "Tables")
    show(browser, table)
    frame = wait_for(lambda: browser.find_elements(By.TAG_NAME, "iframe"))
    browser.switch_to.frame(frame[0])
    rows = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "table tbody tr"))
    text = browser.find_element(By.TAG_NAME, "table").text
    browser.switch_to.default_content()
    assert len(rows) >= 2
    assert needle in text


@pytest.mark.parametrize("figure", ["roc", "confusion", "training_curves", "saliency"])
def test_figures_are_shown(browser, tiny_run: Path, figure: str) -> None:
    open_category(browser, tiny_run / "results" / "report.html", "Figures")
    show(browser, figure)
    image = wait_for(
        lambda: [
            img
            for img in browser.find_elements(By.TAG_NAME, "img")
            if browser.execute_script("return arguments[0].naturalWidth", img) > 200
        ]
    )
    assert image, f"{figure} is not displayed"
