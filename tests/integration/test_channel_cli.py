"""The command lines of the channels, run as a user runs them: push subscriptions, preferences, contacts on
import, and the dead-letter list when piped."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from herald import keys
from herald.config import Settings
from herald.contacts import CONTACTS_KEY, ContactBook
from tests.integration.test_directory import herald

pytestmark = pytest.mark.integration


async def test_push_register_list_remove(settings: Settings) -> None:
    user = f"cli-{uuid.uuid4().hex[:8]}"
    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        done = herald("push", "register", user, '{"fcmToken": "tok-1"}')
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == {"userId": user, "registered": "fcm:tok-1"}
        bad = herald("push", "register", user, '{"endpoint": "http://push.example/x", "keys": {}}')
        assert bad.returncode == 2
        assert "endpoint" in bad.stderr
        assert json.loads(herald("push", "list", user).stdout) == [{"key": "fcm:tok-1", "fcmToken": "tok-1"}]
        assert json.loads(herald("push", "remove", user, "fcm:tok-1").stdout)["removed"] is True
        assert herald("push", "remove", user, "fcm:tok-1").returncode == 2
    finally:
        await client.delete(keys.user_key(user, "push"))
        await client.aclose()


async def test_prefs_set_refuses_bad_input_and_get_shows_defaults(settings: Settings) -> None:
    user = f"cli-{uuid.uuid4().hex[:8]}"
    bad = herald("prefs", "set", user, '{"quietHours": {"start": "22:00"}}')
    assert bad.returncode == 2
    assert "quietHours.end" in bad.stderr
    shown = json.loads(herald("prefs", "get", user).stdout)
    assert shown == {"userId": user, "stored": False, "preferences": {}}
    published = herald("prefs", "set", user, '{"digest": "daily"}')
    assert published.returncode == 0, published.stderr
    assert json.loads(published.stdout)["preferences"] == {"digest": "daily"}


async def test_users_import_stores_contacts(settings: Settings, tmp_path: Path) -> None:
    user = f"cli-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "users.jsonl"
    path.write_text(json.dumps({"id": user, "name": "Ann", "email": "ann@example.org", "phone": "+4915112345678"}))
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        done = herald("users", "import", str(path), "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["contacts"] == 1
        [contact] = (await ContactBook(client).lookup([user])).values()
        assert (contact.email, contact.phone) == ("ann@example.org", "+4915112345678")
    finally:
        await client.hdel(CONTACTS_KEY, user)
        await client.hdel(keys.directory_key(), user)
        await client.aclose()


def test_dlq_list_prints_full_lines_when_piped_and_json_on_request() -> None:
    piped = herald("dlq", "list", "--limit", "5")
    assert piped.returncode == 0, piped.stderr
    for line in piped.stdout.splitlines():
        assert len(line.split("\t")) == 5, f"not a full tab-separated line: {line!r}"
    as_json = herald("dlq", "list", "--limit", "5", "--json")
    assert isinstance(json.loads(as_json.stdout), list)
