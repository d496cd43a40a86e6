"""How `herald doctor` judges Redis persistence: only an AOF fsynced before each reply keeps an acknowledged commit
through a Redis crash; anything later passes with the risk and the trade-off spelled out, AOF off fails."""

from __future__ import annotations

import pytest

from herald.doctor import FsyncUnknown, judge_redis_persistence

WHERE = "Redis 7.0.15 at redis://127.0.0.1:16379/0"


def test_always_passes_and_says_so() -> None:
    result = judge_redis_persistence(WHERE, aof_on=True, appendfsync="always")
    assert result.ok
    assert result.detail == f"{WHERE}, AOF on, appendfsync always (on disk before each reply)"
    assert result.fix == ""


@pytest.mark.parametrize(("policy", "window"), [("everysec", "up to about 2 s"), ("no", "about 30 s")])
def test_a_later_fsync_passes_with_the_loss_and_the_trade_off_spelled_out(policy: str, window: str) -> None:
    result = judge_redis_persistence(WHERE, aof_on=True, appendfsync=policy)
    assert result.ok, "a managed Redis may offer nothing better: a warning, not a failure"
    assert f"appendfsync {policy}" in result.detail
    assert window in result.detail
    assert "acknowledged" in result.detail
    assert "Kafka offsets" in result.detail
    assert "CONFIG SET appendfsync always" in result.fix
    assert "costs throughput" in result.fix
    assert "herald replay --since" in result.fix


def test_an_unknown_policy_passes_and_asks_to_make_sure() -> None:
    why = "CONFIG GET refused: NOPERM this user has no permissions to run the 'config|get' command"
    result = judge_redis_persistence(WHERE, aof_on=True, appendfsync=FsyncUnknown(why))
    assert result.ok
    assert "fsync policy is unknown" in result.detail
    assert why in result.detail
    assert "`appendfsync always`" in result.fix


@pytest.mark.parametrize("policy", ["always", "everysec", FsyncUnknown("refused")])
def test_aof_off_fails_whatever_the_fsync_policy(policy: str | FsyncUnknown) -> None:
    result = judge_redis_persistence(WHERE, aof_on=False, appendfsync=policy)
    assert not result.ok
    assert result.detail == f"{WHERE}: AOF is off"
    assert result.fix == "enable `appendonly yes` with `appendfsync always`"
