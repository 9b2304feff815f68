"""Fixtures for the backend adapter tests."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
