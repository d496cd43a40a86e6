"""Gateway fixtures shared by the gateway, JavaScript-client and browser tests (a pytest plugin).

Each module using them defines its own `settings` fixture (the gateway's test secret); these pick it up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from herald.config import Settings
from herald.gateway import Gateway
from tests.integration.gateway_harness import Emitter, Seeder, running_gateway


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[tuple[Gateway, str]]:
    """An in-process gateway on a free port, and its URL."""
    async with running_gateway(settings) as running:
        yield running


@pytest.fixture
async def emitter(settings: Settings) -> AsyncIterator[Emitter]:
    """Emits like the pipeline's IN_APP delivery does."""
    sender = Emitter(settings)
    yield sender
    await sender.close()


@pytest.fixture
async def seeder(settings: Settings) -> AsyncIterator[Seeder]:
    """Applies events through the real InboxApplier on Redis, as the aggregator actors do."""
    applying = Seeder(settings)
    yield applying
    await applying.close()
