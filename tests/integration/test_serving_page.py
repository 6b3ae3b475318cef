"""The service's page in a real browser (Debian's chromium driven by Playwright): fill, predict, explain."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ml_assets.serving.resource import InferenceResource
from tests.integration.serving_helpers import as_json, ensure_champion, listings, running_service

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

NO_CHROMIUM = "needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=NO_CHROMIUM),
]


@pytest.fixture(scope="module")
def service(stack, tmp_path_factory) -> Iterator[InferenceResource]:
    ensure_champion(stack)
    with running_service(stack, tmp_path_factory.mktemp("page")) as resource:
        yield resource


def test_the_page_shows_the_apis_price_and_the_contributions(service, tmp_path) -> None:
    from playwright.sync_api import sync_playwright  # only where a browser is wanted

    listing = as_json(listings(start=2100, count=1))[0]
    expected = httpx.post(f"{service.url}/predict", json=listing, timeout=30).json()["price"]
    requested: list[str] = []
    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda request: requested.append(request.url))
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.goto(f"{service.url}/")
            for name, value in listing.items():
                if name == "status":
                    page.select_option(f"#{name}", value)
                else:
                    page.fill(f"#{name}", "" if value is None else str(value))
            page.click("#predict")
            price = page.locator("#price[data-price]")
            price.wait_for(timeout=15_000)
            assert price.text_content() == f"${expected:,.0f}"
            assert float(price.get_attribute("data-price")) == pytest.approx(expected, rel=1e-12)
            contributions = page.locator("#contributions tbody tr")
            assert contributions.count() > 0
            assert "%" in contributions.first.text_content()
            page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        finally:
            browser.close()
    assert (tmp_path / "page.png").stat().st_size > 0
    assert errors == []
    assert requested and all(url.startswith(service.url) for url in requested), requested  # no external assets
