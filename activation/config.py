"""Settings, parsed once from the environment by each process's composition root.

`Settings.from_env(environ)` validates everything at start-up; nothing reads `os.environ` at
import time. A `.env` file in the working directory may supply values the environment lacks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path


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
    hot_redis_client: str = "lean"
    signing_nonce_helper: bool = True
    database_timeout_seconds: int = 15
    activation_events_retention_days: int = 400

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
        env = dict(read_env_file(env_file or Path(".env")))
        env.update(os.environ if environ is None else environ)
        reader = _Reader(env)
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
            admin_bootstrap_token=reader.text("ADMIN_BOOTSTRAP_TOKEN"),
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
            dev=reader.flag("DEV"),
            hot_redis_client=reader.choice("REDIS_HOT_CLIENT", ("lean", "redis-py"), "lean"),
            signing_nonce_helper=reader.flag("SIGNING_NONCE_HELPER", default=True),
            database_timeout_seconds=reader.integer("DATABASE_TIMEOUT_SECONDS", 15, minimum=1),
            activation_events_retention_days=reader.integer(
                "ACTIVATION_EVENTS_RETENTION_DAYS", 400, minimum=31
            ),
        )

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


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

    def choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        value = self.text(name) or default
        if value not in allowed:
            raise SettingsError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
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
