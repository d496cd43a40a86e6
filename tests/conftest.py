"""Fixtures shared by every test tier."""

from __future__ import annotations

import pytest

from herald.config import Settings, load_settings

pytest_plugins = ["tests.support.gateway_fixtures"]


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The settings a developer's shell would get: env vars, config file, then the local stack file."""
    return load_settings()
