"""Settings, parsed once from the environment by each process's composition root.

`Settings.from_env(environ)` validates everything at start-up; nothing reads `os.environ` at
import time. A `.env` file in the working directory may supply values the environment lacks,
except `TEST_CLOCK` and `DEV`: they switch safety off (a clock anyone with an admin token can
move, a generated signing key, short bootstrap tokens), so only the process's real environment
turns them on, never a file lying in the working directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

from activation.client_address import TrustedNetworks, parse_trusted

log = logging.getLogger(__name__)

ENVIRONMENT_ONLY = ("TEST_CLOCK", "DEV")
MIN_BOOTSTRAP_TOKEN_CHARS = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Requests per minute; 0 switches a limit off (SPEC §10)."""

    ip_per_minute: int = 0
    key_per_minute: int = 0
    not_found_per_minute: int = 30


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "lic"
    stream_shards: int = 16
    smtp_url: str | None = None
    mail_from: str = "licensing@localhost"
    fraud_webhook_url: str | None = None
    fraud_webhook_secret: str | None = None
    signing_key_file: str | None = None
    admin_bootstrap_token: str | None = None
    test_clock: bool = False
    grace_days: int = 30
    active_window_days: int = 7
    leak_threshold: int = 5
    rate_limits: RateLimits = RateLimits()
    host: str = "127.0.0.1"
    public_port: int = 8080
    admin_port: int = 8081
    dev: bool = False
    answer_valid_days: int = 7
    negative_cache_seconds: int = 60
    database_timeout_seconds: int = 15
    max_inflight: int = 1000
    # An activation that waited longer than this in the process before its handler started is
    # answered 503 at once (api/app.py); 0 switches the rule off.
    max_queue_delay_ms: int = 50
    request_head_timeout_seconds: float = 10.0
    # Idle keep-alive connections of the public port close after this long. Not an
    # environment variable: above the 60 s idle timeout load balancers use by default, so the
    # balancer, not the server, closes a pooled connection (no request lost in the race).
    keepalive_timeout_seconds: float = 75.0
    # Signing-key rotation (activation/api/keyring.py): more published keys.
    signing_keys_dir: str | None = None
    trusted_proxies: TrustedNetworks = ()
    activation_events_retention_days: int = 400
    # The escalation ladder (R14) as `days:step,...`; None: the default ladder shifted to
    # GRACE_DAYS. Parsed and checked by fraud/escalation.py, which builds the ladder.
    escalation_ladder: str | None = None
    log_format: str = "text"
    log_level: str = "INFO"
    # The fraud worker: its health and metrics port, the ingest's batch and reclaim idle, and
    # how the outbox sends (fraud/notify/sending.py checks the lease covers the timeouts).
    worker_port: int = 8082
    ingest_batch_size: int = 1000
    ingest_min_idle_ms: int = 30_000
    send_concurrency: int = 8
    smtp_timeout_seconds: float = 30.0
    webhook_timeout_seconds: float = 10.0
    outbox_lease_seconds: float = 120.0

    @property
    def grace(self) -> timedelta:
        return timedelta(days=self.grace_days)

    @property
    def active_window(self) -> timedelta:
        return timedelta(days=self.active_window_days)

    @property
    def redis_cluster(self) -> bool:
        return (self.redis_url or "").startswith("redis+cluster://")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, env_file: Path | None = None
    ) -> Settings:
        real = os.environ if environ is None else environ
        from_file = read_env_file(env_file or Path(".env"))
        for name in ENVIRONMENT_ONLY:
            if name in from_file and name not in real:
                log.warning("%s in the .env file is ignored: set it in the environment", name)
            from_file.pop(name, None)
        env = from_file | dict(real)
        reader = _Reader(env)
        dev = reader.flag("DEV")
        bootstrap = reader.text("ADMIN_BOOTSTRAP_TOKEN")
        if bootstrap is not None and len(bootstrap) < MIN_BOOTSTRAP_TOKEN_CHARS and not dev:
            raise SettingsError(
                f"ADMIN_BOOTSTRAP_TOKEN must be at least {MIN_BOOTSTRAP_TOKEN_CHARS} characters"
                f" (it has {len(bootstrap)}); e.g. `openssl rand -hex 24`"
            )
        return cls(
            database_url=reader.text("DATABASE_URL"),
            redis_url=reader.text("REDIS_URL"),
            redis_prefix=reader.text("REDIS_PREFIX") or "lic",
            stream_shards=reader.integer("STREAM_SHARDS", 16, minimum=1),
            smtp_url=reader.text("SMTP_URL"),
            mail_from=reader.text("MAIL_FROM") or "licensing@localhost",
            fraud_webhook_url=reader.text("FRAUD_WEBHOOK_URL"),
            fraud_webhook_secret=reader.text("FRAUD_WEBHOOK_SECRET"),
            signing_key_file=reader.text("SIGNING_KEY_FILE"),
            admin_bootstrap_token=bootstrap,
            test_clock=reader.flag("TEST_CLOCK"),
            grace_days=reader.integer("GRACE_DAYS", 30, minimum=0),
            active_window_days=reader.integer("ACTIVE_WINDOW_DAYS", 7, minimum=1),
            leak_threshold=reader.integer("LEAK_THRESHOLD", 5, minimum=1),
            rate_limits=RateLimits(
                ip_per_minute=reader.integer("RATE_LIMIT_IP_PER_MINUTE", 0, minimum=0),
                key_per_minute=reader.integer("RATE_LIMIT_KEY_PER_MINUTE", 0, minimum=0),
                not_found_per_minute=reader.integer(
                    "RATE_LIMIT_NOT_FOUND_PER_MINUTE", 30, minimum=0
                ),
            ),
            host=reader.text("HOST") or "127.0.0.1",
            public_port=reader.integer("PUBLIC_PORT", 8080, minimum=0),
            admin_port=reader.integer("ADMIN_PORT", 8081, minimum=0),
            dev=dev,
            database_timeout_seconds=reader.integer("DATABASE_TIMEOUT_SECONDS", 15, minimum=1),
            max_inflight=reader.integer("MAX_INFLIGHT", 1000, minimum=1),
            max_queue_delay_ms=reader.integer("MAX_QUEUE_DELAY_MS", 50, minimum=0),
            request_head_timeout_seconds=reader.integer(
                "REQUEST_HEAD_TIMEOUT_SECONDS", 10, minimum=1
            ),
            signing_keys_dir=reader.text("SIGNING_KEYS_DIR"),
            trusted_proxies=reader.networks("TRUSTED_PROXIES"),
            activation_events_retention_days=reader.integer(
                "ACTIVATION_EVENTS_RETENTION_DAYS", 400, minimum=31
            ),
            escalation_ladder=reader.text("ESCALATION_LADDER"),
            log_format=reader.choice("LOG_FORMAT", LOG_FORMATS, "text", upper=False),
            log_level=reader.choice("LOG_LEVEL", LOG_LEVELS, "INFO", upper=True),
            worker_port=reader.integer("WORKER_PORT", 8082, minimum=0),
            ingest_batch_size=reader.integer("INGEST_BATCH_SIZE", 1000, minimum=1),
            ingest_min_idle_ms=reader.integer("INGEST_MIN_IDLE_MS", 30_000, minimum=1),
            send_concurrency=reader.integer("SEND_CONCURRENCY", 8, minimum=1),
            smtp_timeout_seconds=reader.number("SMTP_TIMEOUT_SECONDS", 30.0),
            webhook_timeout_seconds=reader.number("WEBHOOK_TIMEOUT_SECONDS", 10.0),
            outbox_lease_seconds=reader.number("OUTBOX_LEASE_SECONDS", 120.0),
        )

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


def warn_unsafe_modes(settings: Settings) -> None:
    """One warning log line per safety switch that is on, at each process's start."""
    if settings.test_clock:
        log.warning(
            "TEST_CLOCK is on: any admin token can move this deployment's clock (never in"
            " production)"
        )
    if settings.dev:
        log.warning(
            "DEV mode is on: a signing key is generated when missing and short bootstrap"
            " tokens are accepted (never in production)"
        )


def read_env_file(path: Path) -> dict[str, str]:
    """`KEY=value` lines; `#` comments and blank lines skipped; optional surrounding quotes."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip().strip("'\"")
    return values


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def text(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def flag(self, name: str, *, default: bool = False) -> bool:
        value = (self.text(name) or ("1" if default else "0")).lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name} must be 1 or 0, got {value!r}")

    def networks(self, name: str) -> TrustedNetworks:
        try:
            return parse_trusted(self.text(name) or "")
        except ValueError as error:
            raise SettingsError(f"{name}: {error}") from None

    def choice(self, name: str, allowed: tuple[str, ...], default: str, *, upper: bool) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {raw!r}")
        return value

    def number(self, name: str, default: float) -> float:
        """A positive number of seconds."""
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number, got {raw!r}") from None
        if not value > 0 or value == float("inf"):
            raise SettingsError(f"{name} must be a positive number, got {raw!r}")
        return value

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{name} must be at least {minimum}, got {value}")
        return value
