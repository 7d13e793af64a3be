"""The review page in a real headless browser: Debian's chromium driven by Playwright (its
Python package only: no browser download). Upload through the page, see the verdict and the
panel appear, and see a bad file's reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import copy_store
from requires import unavailable
from serving import calibrated_store, live_server
from zsad.serve.inline_requests import ServeRequest

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run"]


def chromium(p):
    """Debian's chromium under Playwright, or the test is unavailable."""
    exe = shutil.which("chromium")
    if exe is None:
        unavailable("Debian's chromium is not installed (apt-get install chromium)")
    return p.chromium.launch(executable_path=exe, headless=True, args=FLAGS)


@pytest.mark.browser
@pytest.mark.slow
def test_upload_through_the_page_shows_the_verdict_and_a_bad_files_reason(precomputed_store, synthetic_root,
                                                                           tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install playwright; no browser download needed)")
    store = calibrated_store(copy_store(precomputed_store, tmp_path / "s.zarr"), synthetic_root)
    good = sorted((Path(synthetic_root) / "pill" / "test" / "good").glob("*.png"))[0]
    bad = tmp_path / "bad.png"
    bad.write_text("a text file, not an image")
    r = ServeRequest(store=store, out=str(tmp_path / "serve"), classes=("pill",))
    with live_server(r) as (url, _), sync_playwright() as p:
        browser = chromium(p)
        page = browser.new_page()
        page.goto(url + "/")
        assert page.input_value("#class") == "pill"
        page.set_input_files("#files", [str(good), str(bad)])
        page.click("#send")
        page.wait_for_selector("#results .result.failed", timeout=120_000)
        scored = page.locator("#results .result[data-file='000.png']")
        assert scored.locator("b.decision").inner_text() in ("NORMAL", "ANOMALOUS")
        assert "score 0." in scored.inner_text() and scored.locator("img").count() == 1
        assert page.locator("#results .result[data-file='000.png'] img").evaluate("i => i.naturalWidth") > 0
        assert "not an image" in page.locator("#results .result.failed").inner_text()
        page.wait_for_selector("#recent .result img", timeout=10_000)  # the live list, with the panel
        assert page.locator("#recent .result").count() == 2
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
