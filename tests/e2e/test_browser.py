"""The browser inbox page in headless Debian chromium (playwright-core, no browser download): loads with a
token, shows a notification emitted the way the pipeline emits it, the badge counts it, a click marks it read.
An actor name carrying markup is shown as text, never run or parsed as HTML (docs/architecture.md, Security)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from herald.auth import mint_token
from herald.config import Settings
from herald.gateway import Gateway
from herald.gateway.http import STATIC_DIR, VENDOR_CLIENT
from tests.integration.gateway_harness import Emitter, Seeder, gateway_settings, new_user
from tests.support.events import make_event
from tests.support.headless import JS_DIR, node_for_playwright

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
STEP_TIMEOUT_S = 60.0
# User-controlled text (an actor's name) that would run script if the page ever built HTML from it.
HOSTILE_NAME = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>Sarah'
EXPECTED_TEXT = f"John and {HOSTILE_NAME} liked your post"


@pytest.fixture(scope="module")
def node() -> str:
    return node_for_playwright("browser", ("scripts/build_static.sh", (STATIC_DIR / VENDOR_CLIENT).is_file()))


@pytest.fixture(scope="module")
def settings() -> Settings:
    return gateway_settings()


async def _next_step(proc: asyncio.subprocess.Process, name: str) -> dict[str, Any]:
    assert proc.stdout is not None
    raw = await asyncio.wait_for(proc.stdout.readline(), timeout=STEP_TIMEOUT_S)
    if not raw:
        raise AssertionError(f"browser script ended before step {name!r} (exit {await proc.wait()})")
    step: dict[str, Any] = json.loads(raw)
    assert step["step"] == name, step
    return step


async def test_inbox_page_renders_live_notification_and_badge(
    node: str, settings: Settings, gateway: tuple[Gateway, str]
) -> None:
    _gw, url = gateway
    user = new_user("web")
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "browser-inbox.png"
    screenshot.unlink(missing_ok=True)
    seeder, emitter = Seeder(settings), Emitter(settings)
    proc = await asyncio.create_subprocess_exec(
        node,
        str(JS_DIR / "browser.mjs"),
        f"{url}/?token={mint_token(settings, user)}",
        EXPECTED_TEXT,
        str(screenshot),
        cwd=JS_DIR,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        ready = await _next_step(proc, "ready")
        assert ready["badge"] == 0
        # What the pipeline does: the aggregator commits, the IN_APP delivery emits the stored body.
        await seeder.apply(
            make_event(user=user, actor="u1", actor_name="John"),
            make_event(user=user, actor="u2", actor_name=HOSTILE_NAME),
        )
        [stored] = await seeder.store.notifications_after(user, 0, 10)
        await emitter.notification(user, stored)
        assert proc.stdin is not None
        proc.stdin.write(b"emitted\n")
        await proc.stdin.drain()
        rendered = await _next_step(proc, "rendered")
        assert rendered["text"] == EXPECTED_TEXT
        assert rendered["elementsInText"] == 0  # the markup stayed text: no <img>, no <script> was created
        assert rendered["xss"] is None
        assert rendered["className"] == "unread"
        assert rendered["badge"] == 1
        clicked = await _next_step(proc, "clicked")
        assert clicked["badge"] == 0
        assert clicked["className"] == "read"
        assert await seeder.store.unread_count(user) == 0
        shot = await _next_step(proc, "screenshot")
        assert shot["consoleErrors"] == []
        assert screenshot.stat().st_size > 1000
        assert await asyncio.wait_for(proc.wait(), timeout=STEP_TIMEOUT_S) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await seeder.close()
        await emitter.close()
