"""Settings from the environment (SPEC §10) and the JSON log lines."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from activation.config import RateLimits, Settings, SettingsError
from activation.logs import JsonFormatter


def test_defaults_follow_spec_section_10(tmp_path: Path) -> None:
    settings = Settings.from_env({}, env_file=tmp_path / "absent.env")
    assert (settings.grace_days, settings.active_window_days) == (30, 7)
    assert settings.rate_limits == RateLimits(0, 0, 30)
    assert settings.test_clock is False
    assert (settings.public_port, settings.admin_port) == (8080, 8081)
    assert settings.database_timeout_seconds == 15
    assert settings.activation_events_retention_days == 400
    assert (
        Settings.from_env(
            {"DATABASE_TIMEOUT_SECONDS": "3"}, env_file=tmp_path / "absent.env"
        ).database_timeout_seconds
        == 3
    )


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
        ("REDIS_HOT_CLIENT", "fast", "REDIS_HOT_CLIENT must be one of"),
        ("DATABASE_TIMEOUT_SECONDS", "0", "DATABASE_TIMEOUT_SECONDS must be at least 1"),
        (
            "ACTIVATION_EVENTS_RETENTION_DAYS",
            "7",
            "ACTIVATION_EVENTS_RETENTION_DAYS must be at least 31",
        ),
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
