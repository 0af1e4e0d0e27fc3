"""Settings from the environment (SPEC §10) and the JSON log lines."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from activation.config import RateLimits, Settings, SettingsError, warn_unsafe_modes
from activation.logs import JsonFormatter


def test_defaults_follow_spec_section_10(tmp_path: Path) -> None:
    settings = Settings.from_env({}, env_file=tmp_path / "absent.env")
    assert (settings.grace_days, settings.active_window_days) == (30, 7)
    assert settings.rate_limits == RateLimits(0, 0, 30)
    assert settings.test_clock is False
    assert (settings.public_port, settings.admin_port) == (8080, 8081)
    assert settings.database_timeout_seconds == 15
    assert settings.max_inflight == 1000
    assert settings.max_queue_delay_ms == 50
    assert settings.request_head_timeout_seconds == 10
    assert settings.keepalive_timeout_seconds == 75
    tuned = Settings.from_env(
        {"MAX_INFLIGHT": "50", "REQUEST_HEAD_TIMEOUT_SECONDS": "3"}, env_file=tmp_path / "absent"
    )
    assert (tuned.max_inflight, tuned.request_head_timeout_seconds) == (50, 3)
    assert settings.activation_events_retention_days == 400
    assert (
        Settings.from_env(
            {"DATABASE_TIMEOUT_SECONDS": "3"}, env_file=tmp_path / "absent.env"
        ).database_timeout_seconds
        == 3
    )


def test_worker_logging_and_ladder_settings_default_and_parse(tmp_path: Path) -> None:
    settings = Settings.from_env({}, env_file=tmp_path / "absent.env")
    assert (settings.escalation_ladder, settings.log_format, settings.log_level) == (
        None,
        "text",
        "INFO",
    )
    assert (settings.worker_port, settings.ingest_batch_size, settings.ingest_min_idle_ms) == (
        8082,
        1000,
        30_000,
    )
    assert (
        settings.send_concurrency,
        settings.smtp_timeout_seconds,
        settings.webhook_timeout_seconds,
        settings.outbox_lease_seconds,
    ) == (8, 30.0, 10.0, 120.0)
    tuned = Settings.from_env(
        {
            "ESCALATION_LADDER": "30:grace_over,37:reminder,44:disable",
            "LOG_FORMAT": "JSON",
            "LOG_LEVEL": "debug",
            "WORKER_PORT": "0",
            "INGEST_BATCH_SIZE": "5",
            "INGEST_MIN_IDLE_MS": "500",
            "SEND_CONCURRENCY": "2",
            "SMTP_TIMEOUT_SECONDS": "2.5",
            "WEBHOOK_TIMEOUT_SECONDS": "1",
            "OUTBOX_LEASE_SECONDS": "8",
        },
        env_file=tmp_path / "absent.env",
    )
    assert tuned.escalation_ladder == "30:grace_over,37:reminder,44:disable"
    assert (tuned.log_format, tuned.log_level, tuned.worker_port) == ("json", "DEBUG", 0)
    assert (tuned.ingest_batch_size, tuned.ingest_min_idle_ms, tuned.send_concurrency) == (
        5,
        500,
        2,
    )
    assert (tuned.smtp_timeout_seconds, tuned.webhook_timeout_seconds) == (2.5, 1.0)
    assert tuned.outbox_lease_seconds == 8.0


def test_environment_overrides_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nGRACE_DAYS=10\nREDIS_URL='redis://file:6379/0'\n")
    settings = Settings.from_env({"REDIS_URL": "redis+cluster://env:7000"}, env_file=env_file)
    assert settings.grace_days == 10
    assert settings.redis_url == "redis+cluster://env:7000"
    assert settings.redis_cluster is True


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GRACE_DAYS", "thirty", "GRACE_DAYS must be a whole number"),
        ("ACTIVE_WINDOW_DAYS", "0", "ACTIVE_WINDOW_DAYS must be at least 1"),
        ("RATE_LIMIT_IP_PER_MINUTE", "-1", "RATE_LIMIT_IP_PER_MINUTE must be at least 0"),
        ("TEST_CLOCK", "maybe", "TEST_CLOCK must be 1 or 0"),
        ("DATABASE_TIMEOUT_SECONDS", "0", "DATABASE_TIMEOUT_SECONDS must be at least 1"),
        ("MAX_INFLIGHT", "0", "MAX_INFLIGHT must be at least 1"),
        ("REQUEST_HEAD_TIMEOUT_SECONDS", "ten", "REQUEST_HEAD_TIMEOUT_SECONDS must be a whole"),
        (
            "ACTIVATION_EVENTS_RETENTION_DAYS",
            "7",
            "ACTIVATION_EVENTS_RETENTION_DAYS must be at least 31",
        ),
        ("LOG_FORMAT", "xml", "LOG_FORMAT must be one of text, json"),
        ("LOG_LEVEL", "chatty", "LOG_LEVEL must be one of DEBUG"),
        ("WORKER_PORT", "-1", "WORKER_PORT must be at least 0"),
        ("INGEST_BATCH_SIZE", "0", "INGEST_BATCH_SIZE must be at least 1"),
        ("INGEST_MIN_IDLE_MS", "soon", "INGEST_MIN_IDLE_MS must be a whole number"),
        ("SEND_CONCURRENCY", "2.5", "SEND_CONCURRENCY must be a whole number"),
        ("SEND_CONCURRENCY", "0", "SEND_CONCURRENCY must be at least 1"),
        ("SMTP_TIMEOUT_SECONDS", "0", "SMTP_TIMEOUT_SECONDS must be a positive number"),
        ("WEBHOOK_TIMEOUT_SECONDS", "nan", "WEBHOOK_TIMEOUT_SECONDS must be a positive number"),
        ("OUTBOX_LEASE_SECONDS", "two", "OUTBOX_LEASE_SECONDS must be a number"),
    ],
)
def test_bad_values_name_the_variable(tmp_path: Path, name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value}, env_file=tmp_path / "absent.env")


def test_json_log_lines_carry_level_logger_and_message() -> None:
    record = logging.LogRecord(
        "fraud", logging.WARNING, __file__, 1, "pass %s failed", ("7",), None
    )
    entry = orjson.loads(JsonFormatter().format(record))
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "WARNING",
        "fraud",
        "pass 7 failed",
    )
    assert entry["ts"].endswith("+00:00")


def test_trusted_proxies_are_cidrs_default_none(tmp_path: Path) -> None:
    """SPEC §10: TRUSTED_PROXIES, comma-separated CIDRs, default none."""
    absent = tmp_path / "absent.env"
    assert Settings.from_env({}, env_file=absent).trusted_proxies == ()
    settings = Settings.from_env({"TRUSTED_PROXIES": "10.0.0.0/8, fd00::/8"}, env_file=absent)
    assert [str(network) for network in settings.trusted_proxies] == ["10.0.0.0/8", "fd00::/8"]
    with pytest.raises(SettingsError, match=r"TRUSTED_PROXIES: '10\.0\.0\.1/8' is not a CIDR"):
        Settings.from_env({"TRUSTED_PROXIES": "10.0.0.0/8,10.0.0.1/8"}, env_file=absent)


def test_bootstrap_token_needs_32_characters_outside_dev(tmp_path: Path) -> None:
    absent = tmp_path / "absent.env"
    with pytest.raises(SettingsError, match="ADMIN_BOOTSTRAP_TOKEN must be at least 32"):
        Settings.from_env({"ADMIN_BOOTSTRAP_TOKEN": "x" * 31}, env_file=absent)
    long_enough = Settings.from_env({"ADMIN_BOOTSTRAP_TOKEN": "x" * 32}, env_file=absent)
    assert long_enough.admin_bootstrap_token == "x" * 32
    dev = Settings.from_env({"ADMIN_BOOTSTRAP_TOKEN": "short", "DEV": "1"}, env_file=absent)
    assert dev.admin_bootstrap_token == "short"


def test_test_clock_and_dev_come_from_the_environment_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A .env file cannot switch the test clock or dev mode on (nor dev's short tokens)."""
    env_file = tmp_path / ".env"
    env_file.write_text("TEST_CLOCK=1\nDEV=1\nGRACE_DAYS=10\n")
    with caplog.at_level(logging.WARNING, logger="activation.config"):
        settings = Settings.from_env({}, env_file=env_file)
    assert (settings.test_clock, settings.dev, settings.grace_days) == (False, False, 10)
    assert [record.getMessage() for record in caplog.records] == [
        "TEST_CLOCK in the .env file is ignored: set it in the environment",
        "DEV in the .env file is ignored: set it in the environment",
    ]
    env_file.write_text("DEV=1\nADMIN_BOOTSTRAP_TOKEN=short\n")
    with pytest.raises(SettingsError, match="ADMIN_BOOTSTRAP_TOKEN"):
        Settings.from_env({}, env_file=env_file)
    from_environment = Settings.from_env({"TEST_CLOCK": "1", "DEV": "1"}, env_file=env_file)
    assert (from_environment.test_clock, from_environment.dev) == (True, True)


def test_test_clock_and_dev_each_warn_at_start(caplog: pytest.LogCaptureFixture) -> None:
    for settings, expected in [
        (Settings(), []),
        (Settings(test_clock=True), ["TEST_CLOCK is on"]),
        (Settings(dev=True), ["DEV mode is on"]),
        (Settings(test_clock=True, dev=True), ["TEST_CLOCK is on", "DEV mode is on"]),
    ]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="activation.config"):
            warn_unsafe_modes(settings)
        lines = [record.getMessage() for record in caplog.records]
        assert [line.split(":")[0] for line in lines] == expected
        assert all(record.levelno == logging.WARNING for record in caplog.records)


def test_max_queue_delay_is_read_and_0_switches_it_off(tmp_path: Path) -> None:
    read = Settings.from_env({"MAX_QUEUE_DELAY_MS": "20"}, env_file=tmp_path / "absent")
    assert read.max_queue_delay_ms == 20
    off = Settings.from_env({"MAX_QUEUE_DELAY_MS": "0"}, env_file=tmp_path / "absent")
    assert off.max_queue_delay_ms == 0
