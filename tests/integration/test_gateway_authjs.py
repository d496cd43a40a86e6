"""Auth.js (NextAuth v5) session tokens at the gateway: as `auth.token` or as the session cookie, in both
protocols; tampered, foreign-secret and expired tokens are refused with a reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from herald.authjs import mint_authjs_token
from herald.config import Settings, load_settings
from herald.gateway import Gateway
from tests.integration.gateway_harness import TEST_SECRET, WAIT_S, Recorder, new_user, wait_until

pytestmark = pytest.mark.integration
APP_SECRET = "the-applications-AUTH_SECRET-0123456789"


@pytest.fixture(scope="module")
def settings() -> Settings:
    return load_settings(jwt_secret=TEST_SECRET, authjs_secret=APP_SECRET)


def tampered(token: str) -> str:
    header, key, iv, ciphertext, tag = token.split(".")
    flipped = ("A" if ciphertext[0] != "A" else "B") + ciphertext[1:]
    return ".".join((header, key, iv, flipped, tag))


async def refusal_of(url: str, **connect: object) -> object:
    recorder = Recorder()
    with pytest.raises(Exception):  # noqa: B017, PT011 - python-socketio raises ConnectionError with the reason
        await recorder.client.connect(url, transports=["websocket"], wait_timeout=WAIT_S, **connect)
    await recorder.close()
    return recorder.refusal


async def test_session_token_as_auth_token(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    user = new_user("authjs")
    token = mint_authjs_token(APP_SECRET, {"sub": user, "email": f"{user}@example.com", "name": "A User"})
    recorder = Recorder()
    await recorder.connect(url, token)
    try:
        await wait_until(lambda: bool(recorder.unread), what="unread_count after an Auth.js login")
    finally:
        await recorder.close()


async def test_session_cookie_without_token_in_compat(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    user = new_user("authjs")
    token = mint_authjs_token(APP_SECRET, {"id": user})  # NextAuth callbacks often put the id in `id` only
    recorder = Recorder()
    counts: list[object] = []
    recorder.client.on("notification:count_updated", counts.append)
    await recorder.client.connect(
        url,
        auth={"protocol": "compat"},
        headers={"Cookie": f"theme=dark; authjs.session-token={token}"},
        transports=["websocket"],
        wait_timeout=WAIT_S,
    )
    try:
        await wait_until(lambda: bool(counts), what="notification:count_updated after a cookie login")
        assert counts[0] == {"unreadCount": 0}
    finally:
        await recorder.close()


async def test_tampered_foreign_and_expired_tokens_are_refused(gateway: tuple[Gateway, str]) -> None:
    _, url = gateway
    user = new_user("authjs")
    good = mint_authjs_token(APP_SECRET, {"sub": user})
    foreign = mint_authjs_token("some-other-application-secret-000000", {"sub": user})
    expired = mint_authjs_token(APP_SECRET, {"sub": user}, now=datetime.now(UTC) - timedelta(days=31))
    for token in (tampered(good), foreign, expired):
        refusal = await refusal_of(url, auth={"token": token})
        assert refusal is not None, token[:20]
        assert APP_SECRET not in str(refusal)
        assert token not in str(refusal)
    cookie_refusal = await refusal_of(url, auth={}, headers={"Cookie": f"authjs.session-token={tampered(good)}"})
    assert cookie_refusal is not None
