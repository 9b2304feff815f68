"""Fixtures for the tests of Legato's test helpers."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
