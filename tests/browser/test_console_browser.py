"""The review console in a real browser (Debian's chromium through Playwright) against the real
admin and public apps: log in, find a case by hostname, walk it through hold → release →
extend → log a call → disable → enable and see each step in the timeline; a viewer gets no
action buttons and a forged POST is refused. Saves build/screenshots/{queue,case}.png."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from activation.runtime import Resources
from fraud.escalation import DEFAULT_LADDER
from fraud.worker import Worker
from metrics import WorkerMetrics
from tests.browser.conftest import Live
from tests.conftest import BOOTSTRAP_TOKEN
from tests.integration.helpers import activate, create_customer, create_license

ADMIN = {"Authorization": f"Bearer {BOOTSTRAP_TOKEN}"}
HOST = "mail-7.globex.example"


@pytest.fixture
async def http(live: Live) -> AsyncIterator[tuple[aiohttp.ClientSession, aiohttp.ClientSession]]:
    async with (
        aiohttp.ClientSession(base_url=live.admin) as admin,
        aiohttp.ClientSession(base_url=live.public) as public,
    ):
        yield admin, public


async def _case(admin: Any, public: Any, customer: str, *hosts: str) -> str:
    customer_id = await create_customer(admin, ADMIN, customer)
    created = await create_license(admin, ADMIN, customer_id=customer_id, purchased_on="2026-09-01")
    for n, host in enumerate(hosts):
        await activate(public, created["key"], f"{customer.lower()}-{n}", hostname=host,
                       ip=f"203.0.113.{10 + n}")  # fmt: skip
    key: str = created["key"]
    return key


@pytest.fixture
async def cases(
    http: tuple[aiohttp.ClientSession, aiohttp.ClientSession], resources: Resources
) -> str:
    """Three open cases (one a suspected leak); returns the key of Globex's, on HOST."""
    admin, public = http
    await _case(admin, public, "Initech", "app-1.initech.example", "app-2.initech.example")
    key = await _case(admin, public, "Globex", "mail-1.globex.example", HOST)
    leaked = [f"host-{n}.warez.example" for n in range(7)]
    await _case(admin, public, "Umbrella", *leaked)
    await Worker(resources, DEFAULT_LADDER, {}, WorkerMetrics()).run_once()
    return key


async def _token(admin: aiohttp.ClientSession, role: str) -> str:
    response = await admin.post(
        "/admin/v1/tokens", json={"name": f"{role}-ann", "role": role}, headers=ADMIN
    )
    assert response.status == 201, await response.text()
    secret: str = (await response.json())["token"]
    return secret


async def _login(browser: Browser, live: Live, token: str) -> tuple[Page, list[str]]:
    page = await browser.new_page(viewport={"width": 1440, "height": 900})
    problems: list[str] = []  # CSP violations and script errors would show up here
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    await page.goto(f"{live.admin}/console/login")
    await page.fill("input[name=token]", token)
    await page.click("button:has-text('Log in')")
    await expect(page.locator("h1")).to_have_text("Open cases")
    return page, problems


async def _act(page: Page, action: str, done: str, **fields: str) -> None:
    form = page.locator(f"form.action-{action}")
    for name, value in fields.items():
        if name == "confirm":
            await form.locator("input[name=confirm]").check()
        else:
            await form.locator(f"[name={name}]").fill(value)
    await form.locator("button").click()
    await expect(page.locator(".flash.ok")).to_have_text(done)


async def test_reviewer_walks_a_case_through_every_action(
    browser: Browser,
    live: Live,
    http: tuple[aiohttp.ClientSession, aiohttp.ClientSession],
    cases: str,
    screenshots: Path,
) -> None:
    page, problems = await _login(browser, live, await _token(http[0], "reviewer"))
    rows = page.locator("table.queue tbody tr")
    await expect(rows).to_have_count(3)
    await expect(rows.first).to_contain_text("leak suspected")  # R16 first
    await page.screenshot(path=str(screenshots / "queue.png"), full_page=True)

    await page.fill("input[name=q]", "mail-7.globex")
    await page.click("button:has-text('Filter')")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(cases)
    await rows.first.locator("a").first.click()
    await expect(page.locator("table").first).to_contain_text(HOST)

    await _act(page, "hold", "The case is on hold.", note="customer is migrating")
    await expect(page.locator("h1 .badge.hold")).to_have_text("on hold")
    await _act(page, "release_hold", "The hold is released; the deadlines moved by the time held.")
    await _act(page, "extend", "The deadlines are extended.", days="10")
    await _act(page, "log_call", "The call is logged.", note="CTO will buy a second license")
    await page.screenshot(path=str(screenshots / "case.png"), full_page=True)
    await _act(page, "disable", "The key is disabled.", note="no answer", confirm="yes")
    await expect(page.locator("h1 .badge.stage-disabled")).to_be_visible()
    await _act(page, "enable", "The key is enabled again.", note="paid")

    kinds = await page.locator(".timeline li:not(.ev-notification) .what").all_inner_texts()
    assert kinds == [
        "opened", "hold", "release hold", "extend", "log call", "disable", "enable",
    ], kinds  # fmt: skip
    whos = await page.locator(".timeline li .who").all_inner_texts()
    assert whos.count("reviewer-ann") == 6
    await expect(page.locator(".timeline")).to_contain_text("CTO will buy a second license")
    assert problems == []
    await page.close()


async def test_viewer_gets_no_action_buttons_and_a_forged_post_is_refused(
    browser: Browser,
    live: Live,
    http: tuple[aiohttp.ClientSession, aiohttp.ClientSession],
    cases: str,
    resources: Resources,
) -> None:
    page, problems = await _login(browser, live, await _token(http[0], "viewer"))
    await page.locator("table.queue tr", has_text=cases).locator("a").first.click()
    await expect(page.locator("h1")).to_contain_text("Case #")
    await expect(page.locator("form.action")).to_have_count(0)
    await expect(page.locator("button", has_text="Hold")).to_have_count(0)
    csrf = await page.locator("input[name=csrf]").first.input_value()
    case_url = page.url
    response = await page.request.post(
        f"{case_url}/actions", form={"csrf": csrf, "action": "disable", "confirm": "yes"}
    )
    assert response.status == 403
    assert (
        await resources.pool.fetchval("SELECT count(*) FROM audit_log WHERE actor = 'viewer-ann'")
        == 0
    )
    await page.goto(f"{live.admin}/console/dashboard")
    await expect(page.locator("svg.chart rect.bar")).to_have_count(14)
    assert problems == []
    await page.close()
