"""The user directory against the stack's Redis: merge in Lua, chunked writes, the SDK facade and the CLI.

The directory is one global hash, so every test uses fresh uuid user ids and deletes exactly those fields.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from herald import directory as directory_module
from herald import keys
from herald.config import Settings
from herald.directory import RedisUserDirectory, SyncUserDirectory, UserProfile
from herald.errors import StoreError

pytestmark = pytest.mark.integration

HERALD = str(Path(sys.executable).parent / "herald")
NewId = Callable[[], str]


@pytest.fixture
async def directory(settings: Settings) -> AsyncIterator[RedisUserDirectory]:
    redis_directory = RedisUserDirectory.from_url(settings.redis_url)
    yield redis_directory
    await redis_directory.close()


@pytest.fixture
async def new_id(settings: Settings) -> AsyncIterator[NewId]:
    """Unique user ids for one test; their directory fields are deleted afterwards."""
    issued: list[str] = []
    prefix = f"it-dir-{uuid.uuid4().hex[:8]}"

    def factory() -> str:
        issued.append(f"{prefix}-{len(issued)}")
        return issued[-1]

    yield factory
    if issued:
        cleaner = RedisUserDirectory.from_url(settings.redis_url)
        try:
            await cleaner._redis.hdel(keys.directory_key(), *issued)
        finally:
            await cleaner.close()


def herald(*args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "COLUMNS": "250", **env}
    return subprocess.run(
        [HERALD, *args], input=stdin, capture_output=True, text=True, env=full_env, timeout=60, check=False
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_remember_then_lookup(directory: RedisUserDirectory, new_id: NewId) -> None:
    john, ann, nobody, unknown = new_id(), new_id(), new_id(), new_id()
    profiles = [UserProfile(john, "John", "https://cdn.example/j.png"), UserProfile(ann, "Ann ✓"), UserProfile(nobody)]
    assert await directory.remember(profiles) == 2
    assert await directory.lookup([john, ann, nobody, unknown]) == {
        john: UserProfile(john, "John", "https://cdn.example/j.png"),
        ann: UserProfile(ann, "Ann ✓"),
    }
    raw = await directory._redis.hget(keys.directory_key(), john)
    assert raw == '{"name":"John","avatarUrl":"https://cdn.example/j.png"}'


async def test_merge_keeps_what_the_new_profile_lacks(directory: RedisUserDirectory, new_id: NewId) -> None:
    user = new_id()
    await directory.remember([UserProfile(user, "John", "https://cdn.example/a/j.png")])
    await directory.remember([UserProfile(user, "Johnny")])
    assert await directory.lookup([user]) == {user: UserProfile(user, "Johnny", "https://cdn.example/a/j.png")}
    await directory.remember([UserProfile(user, None, "https://cdn.example/b/j.png")])
    assert await directory.lookup([user]) == {user: UserProfile(user, "Johnny", "https://cdn.example/b/j.png")}
    # A kept value is re-encoded by Lua's cjson; it must come back byte-for-byte as Python writes it.
    raw = await directory._redis.hget(keys.directory_key(), user)
    assert raw == '{"name":"Johnny","avatarUrl":"https://cdn.example/b/j.png"}'


async def test_kept_values_survive_escaping(directory: RedisUserDirectory, new_id: NewId) -> None:
    user = new_id()
    tricky = 'Zoë "Z" \\/ \u2028 😀'
    await directory.remember([UserProfile(user, tricky, "https://a/b")])
    await directory.remember([UserProfile(user, None, "https://c/d")])
    assert await directory.lookup([user]) == {user: UserProfile(user, tricky, "https://c/d")}


async def test_unparsable_values_are_skipped_and_counted(directory: RedisUserDirectory, new_id: NewId) -> None:
    good, garbage, wrong_shape = new_id(), new_id(), new_id()
    await directory.remember([UserProfile(good, "Good")])
    await directory._redis.hset(keys.directory_key(), mapping={garbage: "{not json", wrong_shape: '{"name": 5}'})
    before = directory.unparsable
    assert await directory.lookup([good, garbage, wrong_shape]) == {good: UserProfile(good, "Good")}
    assert directory.unparsable == before + 2


async def test_many_profiles_across_calls_and_pipelines(
    directory: RedisUserDirectory, new_id: NewId, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(directory_module, "PIPELINE_CALLS", 2)  # 2 500 profiles: 3 script calls, 2 pipelines
    profiles = [UserProfile(new_id(), f"User {i}") for i in range(2500)]
    assert await directory.remember(profiles) == 2500
    found = await directory.lookup([p.id for p in profiles])
    assert [found[p.id] for p in profiles] == profiles


async def test_unreachable_redis_is_a_store_error() -> None:
    directory = RedisUserDirectory.from_url(f"redis://127.0.0.1:{closed_port()}/0", timeout_s=2)
    try:
        with pytest.raises(StoreError, match=r"unreachable while writing the user directory \(0 of 1"):
            await directory.remember([UserProfile("x", "X")])
    finally:
        await directory.close()


def test_sync_facade_registers(settings: Settings, new_id: NewId) -> None:
    user = new_id()
    with SyncUserDirectory(settings.redis_url) as sdk:
        assert sdk.register(iter([UserProfile(user, "Sync", "https://a/s.png")])) == 1
        assert sdk.register([UserProfile(user, "Synced")]) == 1
        assert sdk.lookup([user]) == {user: UserProfile(user, "Synced", "https://a/s.png")}
    with pytest.raises(RuntimeError, match="closed"):
        sdk._runner.call(sdk._create())  # the loop thread itself refuses once stopped


def test_cli_import_then_get(tmp_path: Path, new_id: NewId) -> None:
    ann, bob, empty, unknown = new_id(), new_id(), new_id(), new_id()
    path = tmp_path / "users.csv"
    path.write_text(f"id,name,image\n{ann},Ann,https://a/ann.png\n{bob},Bob,\n{empty},,\n", encoding="utf-8")
    imported = herald("users", "import", str(path), "--json")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout) == {"read": 3, "written": 2, "skipped": 1, "contacts": 0}

    got = herald("users", "get", ann, bob, unknown, "--json")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == {
        ann: {"id": ann, "name": "Ann", "avatarUrl": "https://a/ann.png"},
        bob: {"id": bob, "name": "Bob", "avatarUrl": None},
        unknown: None,
    }
    # Not a TTY: whole values, tab-separated, one user per line.
    plain = herald("users", "get", ann, unknown)
    assert plain.stdout.splitlines() == [f"{ann}\tAnn\thttps://a/ann.png", f"{unknown}\t\t"]


def test_cli_import_from_stdin_merges(new_id: NewId) -> None:
    user = new_id()
    first = herald("users", "import", "-", stdin=json.dumps({"id": user, "name": "A", "avatarUrl": "https://a"}))
    assert first.returncode == 0, first.stderr
    second = herald("users", "import", "-", stdin=json.dumps({"id": user, "name": "B"}) + "\n")
    assert second.returncode == 0, second.stderr
    assert "wrote 1 profile(s)" in second.stdout
    got = herald("users", "get", user, "--json")
    assert json.loads(got.stdout) == {user: {"id": user, "name": "B", "avatarUrl": "https://a"}}


def test_cli_bad_file_exits_2_naming_the_line(tmp_path: Path, new_id: NewId) -> None:
    good = new_id()
    path = tmp_path / "users.jsonl"
    path.write_text(f'{{"id": "{good}", "name": "Good"}}\n{{"id": "{new_id()}", "name": 7}}\n', encoding="utf-8")
    result = herald("users", "import", str(path))
    assert result.returncode == 2
    assert "users.jsonl, line 2: name must be a string" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing is written when any row is bad.
    assert json.loads(herald("users", "get", good, "--json").stdout) == {good: None}


def test_cli_unreachable_redis_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "users.jsonl"
    path.write_text('{"id": "x", "name": "X"}\n', encoding="utf-8")
    port = closed_port()
    for args in (["import", str(path)], ["get", "x"]):
        result = herald("users", *args, HERALD_REDIS_URL=f"redis://127.0.0.1:{port}/0")
        assert result.returncode == 1, result.stderr
        assert f"Redis at 127.0.0.1:{port}/0 unreachable" in result.stderr
        assert "herald doctor" in result.stderr
        assert "Traceback" not in result.stderr
