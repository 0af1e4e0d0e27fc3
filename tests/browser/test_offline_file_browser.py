"""The console's license page issues an offline license file in a real browser (chromium via
Playwright), and the file it shows verifies with the pinned public key alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest
from playwright.async_api import Browser, expect

from activation_client.client import verify_file
from activation_client.licensefile import parse
from activation_client.verify import PinnedKeys
from tests.browser.conftest import Live
from tests.browser.test_console_browser import ADMIN, _login, _token
from tests.integration.helpers import activate, create_license


@pytest.fixture
async def admin_http(
    live: Live,
) -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientSession]]:
    async with (
        aiohttp.ClientSession(base_url=live.admin) as admin,
        aiohttp.ClientSession(base_url=live.public) as public,
    ):
        yield admin, public


async def test_a_reviewer_issues_an_offline_file_from_the_license_page(
    browser: Browser,
    live: Live,
    admin_http: tuple[aiohttp.ClientSession, aiohttp.ClientSession],
    screenshots: Path,
) -> None:
    admin, public = admin_http
    key = (await create_license(admin, ADMIN, failover=True, max_servers=2))["key"]  # type: ignore[arg-type]
    await activate(public, key, "mail-1")  # type: ignore[arg-type]
    public_key = (await (await public.get("/v1/signing-key")).json())["public_key"]
    page, problems = await _login(browser, live, await _token(admin, "reviewer"))

    await page.goto(f"{live.admin}/console/licenses/{key}")
    form = page.locator("form.action-offline-file")
    await form.locator("input[name=fingerprint]").fill("vault-7")
    await form.locator("input[name=hostname]").fill("vault.bank.example")
    await form.locator("input[name=version]").fill("16.3.6989")
    await form.locator("input[name=days]").fill("120")
    await form.locator("button:has-text('Issue offline file')").click()

    await expect(page.locator("h1")).to_contain_text("Offline license file #")
    text = await page.locator("pre.license-file").inner_text()
    await page.screenshot(path=str(screenshots / "offline-file.png"), full_page=True)
    answer = orjson.loads(parse(text).body)
    now = datetime.fromisoformat(answer["issued_at"])
    valid_until = datetime.fromisoformat(answer["valid_until"])
    assert valid_until - now == timedelta(days=120)
    keys = PinnedKeys.from_base64([public_key])
    assert verify_file(text, keys, "vault-7", now + timedelta(days=119)).exit_code == 0
    assert verify_file(text, keys, "vault-7", now + timedelta(days=121)).exit_code == 1

    await page.goto(f"{live.admin}/console/licenses/{key}")
    offline = page.locator("section.offline-files")
    await expect(offline).to_contain_text("vault.bank.example")
    until = f"text=offline file until {valid_until:%Y-%m-%d %H:%M}"
    await expect(page.locator(until)).to_be_visible()
    assert problems == []
