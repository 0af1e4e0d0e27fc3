"""Fixtures shared by the integration tests (the services themselves are in tests/conftest.py)."""

from tests.integration.receivers import receiver, smtp

__all__ = ["receiver", "smtp"]
