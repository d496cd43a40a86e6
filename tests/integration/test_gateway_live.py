"""The gateway's side of the live path (herald/live.py) on real Redis: presence, gaps read back from the
inbox, and users a gateway does not hold."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta

import pytest
import redis.asyncio as aioredis

from herald import keys
from herald.auth import mint_token
from herald.config import Settings
from herald.events import NotificationEvent
from herald.gateway import Gateway, GatewayLimits
from tests.integration.gateway_harness import (
    Seeder,
    connected,
    gateway_settings,
    new_user,
    running_gateway,
    wait_until,
)
from tests.support.events import make_event
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def settings() -> Settings:
    return gateway_settings()


@pytest.fixture
async def redis_client(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    yield client
    await client.aclose()


def like(user: str, actor: str, target: str, seconds: int = 0) -> NotificationEvent:
    return make_event(user=user, actor=actor, actor_name=actor.title(), target=target, at=timedelta(seconds=seconds))


async def test_presence_follows_the_users_connections(
    settings: Settings, gateway: tuple[Gateway, str], redis_client: aioredis.Redis
) -> None:
    gw, url = gateway
    user = new_user("presence")
    token = mint_token(settings, user)
    async with connected(url, token):
        assert gw.gateway_id in await redis_client.hkeys(keys.presence_key(user))
        async with connected(url, token):
            assert gw.health()["users"] == 1
        # One of two devices left: the user is still held.
        assert gw.gateway_id in await redis_client.hkeys(keys.presence_key(user))
    await wait_until(lambda: gw.health()["users"] == 0, what="the user released")
    await eventually(
        lambda: redis_client.hkeys(keys.presence_key(user)),
        lambda holders: gw.gateway_id not in holders,
        timeout_s=10,
        interval_s=0.02,
        what="the claim removed with the user's last connection",
    )


async def test_a_commit_missed_by_the_feed_is_read_back_at_the_next_one(
    settings: Settings, gateway: tuple[Gateway, str], seeder: Seeder, redis_client: aioredis.Redis
) -> None:
    gw, url = gateway
    user = new_user("gap")
    async with connected(url, mint_token(settings, user)) as client:
        # The claim vanishes (as if it had lapsed): the next commit is not published to this gateway.
        await redis_client.hdel(keys.presence_key(user), gw.gateway_id)
        await seeder.apply(like(user, "ann", "p1"))
        await redis_client.hset(keys.presence_key(user), gw.gateway_id, str(10**14))
        # The commit after it is; its `from` is past what the gateway heard: the gap is read from the inbox.
        await seeder.apply(like(user, "bob", "p2", seconds=1))
        try:
            await wait_until(lambda: len(client.notifications) == 2, what="both notifications")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {client.events} {gw.health()}") from None
        assert sorted(n["text"] for n in client.notifications) == ["Ann liked your post", "Bob liked your post"]
        assert gw.counters.gaps_filled == 1
        await wait_until(lambda: client.unread[-1] == 2, what="the count after the gap")
        assert len({(n["id"], n["version"]) for n in client.notifications}) == 2, "nothing twice"


async def test_a_lapsed_claim_is_noticed_by_the_refresh_and_filled(
    settings: Settings, seeder: Seeder, redis_client: aioredis.Redis
) -> None:
    limits = replace(GatewayLimits.from_settings(settings), presence_ttl_ms=900)
    async with running_gateway(settings, limits) as (gw, url):
        user = new_user("lapse")
        async with connected(url, mint_token(settings, user)) as client:
            await redis_client.hdel(keys.presence_key(user), gw.gateway_id)
            await seeder.apply(like(user, "cid", "p3"))
            # No later commit: the refresh (every 0.3 s here) finds its claim gone and reads the gap.
            await wait_until(lambda: len(client.notifications) == 1, what="the missed notification")
            assert client.notifications[0]["text"] == "Cid liked your post"
            assert gw.counters.gaps_filled >= 1
            assert gw.gateway_id in await redis_client.hkeys(keys.presence_key(user))
