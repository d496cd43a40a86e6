"""cancel_and_wait (herald/cancelling.py): a shutdown ends even when a task swallows its cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from herald.cancelling import cancel_and_wait


async def test_a_task_that_swallows_one_cancellation_is_cancelled_again() -> None:
    async def swallows_once() -> None:
        # As a library that reports a cancelled read as an error its caller handles and retries.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        await asyncio.sleep(3600)

    task = asyncio.create_task(swallows_once())
    await asyncio.sleep(0)
    assert await cancel_and_wait([task], what="test", timeout_s=0.05) == []
    assert task.cancelled()


async def test_a_task_that_never_lets_go_is_left_behind_with_a_warning_not_awaited_forever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def never_lets_go() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(never_lets_go(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="herald.cancelling"):
        assert await cancel_and_wait([task], what="gateway", timeout_s=0.02) == ["stubborn"]
    assert "gateway: 1 task(s) ignored cancellation" in caplog.text
    release.set()
    task.cancel()
    await asyncio.wait([task], timeout=1)


async def test_finished_and_ordinary_tasks_end_at_once() -> None:
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    sleeping = asyncio.create_task(asyncio.sleep(3600))
    assert await cancel_and_wait([done, sleeping], what="test", timeout_s=5) == []
    assert sleeping.cancelled()
