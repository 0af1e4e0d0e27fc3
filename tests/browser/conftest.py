"""Browser fixtures: Debian's chromium (installed here when missing), Playwright's async API,
and the admin and public apps served on real ports of 127.0.0.1 in the test's own loop."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, async_playwright

from activation.runtime import Resources, public_api
from fraud.admin_app import create_admin_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args], capture_output=True, text=True, env=env, timeout=900, check=False
    )


@pytest.fixture(scope="session")
def chromium() -> Path:
    """/usr/bin/chromium, installed with apt-get when missing (a fresh machine's `make test`)."""
    if CHROMIUM.exists():
        return CHROMIUM
    if shutil.which("apt-get") is None:
        pytest.fail(
            "the browser tests need /usr/bin/chromium and there is no apt-get to install it"
        )
    result = _apt("install", "-y", "chromium")
    if result.returncode != 0:  # a fresh machine may have no package lists yet
        _apt("update")
        result = _apt("install", "-y", "chromium")
    if result.returncode != 0 or not CHROMIUM.exists():
        pytest.fail(
            "could not install chromium for the browser tests (`apt-get install -y chromium` "
            f"failed; run it as root):\n{result.stderr[-2000:]}"
        )
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass(frozen=True)
class Live:
    admin: str
    public: str


async def _serve(runner: web.BaseRunner) -> tuple[web.BaseRunner, str]:
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def live(resources: Resources) -> AsyncIterator[Live]:
    """The real admin (with the console) and public apps, on ports of 127.0.0.1."""
    admin_runner, admin = await _serve(web.AppRunner(create_admin_app(resources), access_log=None))
    public_runner, public = await _serve(web.ServerRunner(public_api(resources).server()))
    try:
        yield Live(admin, public)
    finally:
        await public_runner.cleanup()
        await admin_runner.cleanup()


@pytest.fixture(scope="session")
def screenshots() -> Iterator[Path]:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield SCREENSHOTS
