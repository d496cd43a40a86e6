"""Redis with AUTH (requirepass) and TLS, on a second redis-server started for this module: Herald's store,
directory and CLI work with the password in redis_url (and over rediss:// with the test CA); a wrong password
is a typed error that shows the URL redacted and never the password."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from herald.config import load_settings
from herald.directory import RedisUserDirectory, UserProfile
from herald.store_redis import RedisStore
from tests.support.secure_redis import REDIS_PASSWORD, SecuredRedis, redis_has_tls, start_secured_redis
from tests.support.tls import make_tls_files

pytestmark = pytest.mark.integration

WRONG_PASSWORD = "NotTheRedisPassw0rd"


@pytest.fixture(scope="module")
def secured_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredRedis]:
    root = tmp_path_factory.mktemp("secured-redis")
    server = start_secured_redis(root / "data", make_tls_files(root / "tls"), with_tls=redis_has_tls())
    yield server
    server.stop()


def _cli(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "herald"), *args],
        env={**os.environ, "HERALD_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _assert_no_password(*texts: str) -> None:
    for text in texts:
        assert REDIS_PASSWORD not in text
        assert WRONG_PASSWORD not in text


async def test_the_store_and_directory_work_with_a_password(secured_redis: SecuredRedis) -> None:
    directory = RedisUserDirectory.from_url(secured_redis.url())
    try:
        await directory.remember([UserProfile("auth-user", "Ada")])
        assert (await directory.lookup(["auth-user"]))["auth-user"].name == "Ada"
    finally:
        await directory.close()
    store = RedisStore.from_url(secured_redis.url())
    try:
        assert await store.unread_count("auth-user") == 0
    finally:
        await store.close()


async def test_the_store_works_over_tls(secured_redis: SecuredRedis) -> None:
    if secured_redis.tls_port is None:
        pytest.skip("this redis-server build has no TLS (Debian's has)")
    directory = RedisUserDirectory.from_url(secured_redis.tls_url())
    try:
        await directory.remember([UserProfile("tls-user", "Grace")])
        assert (await directory.lookup(["tls-user"]))["tls-user"].name == "Grace"
    finally:
        await directory.close()
    # The TLS port speaks only TLS: a plaintext client there is refused, never answered in the clear.
    plaintext_to_tls = secured_redis.url().replace(f":{secured_redis.port}/", f":{secured_redis.tls_port}/")
    store = RedisStore.from_url(plaintext_to_tls + "?socket_timeout=3&socket_connect_timeout=3")
    try:
        with pytest.raises(RedisError):
            await store.unread_count("tls-user")
    finally:
        await store.close()


def test_the_cli_works_with_a_password_and_over_tls(secured_redis: SecuredRedis) -> None:
    urls = [secured_redis.url()] + ([secured_redis.tls_url()] if secured_redis.tls_port else [])
    for url in urls:
        listed = _cli(url, "inbox", "--user", "nobody-yet", "--json")
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout)["unread"] == 0
        _assert_no_password(listed.stdout, listed.stderr)


def test_a_wrong_password_is_a_typed_error_without_the_password(secured_redis: SecuredRedis) -> None:
    url = secured_redis.url(WRONG_PASSWORD)
    inbox = _cli(url, "inbox", "--user", "u1")
    assert inbox.returncode == 2
    assert "error:" in inbox.stderr
    assert "Traceback" not in inbox.stderr
    assert f"redis://:***@127.0.0.1:{secured_redis.port}/0" in inbox.stderr
    assert "invalid username-password pair" in inbox.stderr.replace("\n", " ")

    users = _cli(url, "users", "get", "u1")
    assert users.returncode == 1
    assert "Traceback" not in users.stderr

    doctor = _cli(url, "doctor", "--json")
    assert doctor.returncode == 1
    [redis_check] = [c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "redis"]
    assert redis_check["ok"] is False
    assert ":***@" in redis_check["detail"]
    _assert_no_password(inbox.stdout, inbox.stderr, users.stdout, users.stderr, doctor.stdout, doctor.stderr)


def test_settings_never_show_the_redis_password(secured_redis: SecuredRedis) -> None:
    settings = load_settings(redis_url=secured_redis.url())
    for shown in (repr(settings), str(settings)):
        assert REDIS_PASSWORD not in shown
        assert f"redis://:***@127.0.0.1:{secured_redis.port}/0" in shown
    assert settings.redis_url == secured_redis.url()  # the clients still get the real URL
