"""Garbage into the command line (docs/reliability.md, Bad input): `herald publish --file`, `herald users import`
and `herald prefs set` answer any input with a one-line error and a non-zero exit (2 for input that is the user's
to fix), never a traceback. Kafka and Redis point at a closed port, so nothing is ever sent anywhere: input that
happens to be valid fails to connect instead (exit 1 or 2, still without a traceback)."""

from __future__ import annotations

import itertools
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from herald.cli import app

FUZZ = settings(max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
NOWHERE = {
    "HERALD_KAFKA_BOOTSTRAP": "127.0.0.1:9",
    "HERALD_REDIS_URL": "redis://127.0.0.1:9/0",
    "HERALD_CONNECT_TIMEOUT_S": "0.5",
}
_names = itertools.count()
GARBAGE = st.one_of(
    st.binary(max_size=2000),
    st.text(max_size=2000).map(str.encode),
    st.sampled_from(
        [
            b"",
            b"\xff\xfe\x00",
            b"[" * 5000,
            b'{"type": "NOTIFICATION_CREATED"}',
            b'[{"userId": 1}]',
            b'{"userId": "' + b"u" * 300 + b'"}\n',
            b"id,name\n,\n",
            b"id,name,email\nu1,John,not-an-email\n",
            b'{"id": "u1", "name": NaN}\n',
            b'{"type":"NOTIFICATION_CREATED","userId":"u1","notification":{"type":"X","data":{"n":1e400}}}',
        ]
    ),
)


def run(args: list[str]) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, args, env=NOWHERE)
    # CliRunner keeps an exception that escaped the command; SystemExit is the command's own exit code.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout, result.stderr


def written(tmp_path: Path, suffix: str, content: bytes) -> str:
    path = tmp_path / f"input-{next(_names)}{suffix}"
    path.write_bytes(content)
    return str(path)


@FUZZ
@given(content=GARBAGE)
@example(content=b'{"type":"NOTIFICATION_CREATED","userId":"u1","timestamp":"0001-01-01T00:00:00+23:59"}')
def test_publish_file_with_garbage(tmp_path: Path, content: bytes) -> None:
    code, _out, err = run(["publish", "--file", written(tmp_path, ".jsonl", content)])
    assert code in (1, 2)
    assert "error" in err


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv"])
@FUZZ
@given(content=GARBAGE)
def test_users_import_with_garbage(tmp_path: Path, suffix: str, content: bytes) -> None:
    code, out, err = run(["users", "import", written(tmp_path, suffix, content)])
    if code == 0:  # a file without a single row (empty, blank lines, a header alone) imports nothing
        assert "wrote 0 profile(s)" in out
        return
    assert code in (1, 2)
    assert "error" in err


@FUZZ
@given(
    user=st.text(max_size=300),
    preferences=st.one_of(st.text(max_size=500), st.binary(max_size=200).map(lambda b: b.decode(errors="replace"))),
)
@example(user="u1", preferences="[" * 5000)
@example(user="u1", preferences='{"digest": "weekly"}')
@example(user="u1", preferences='{"quietHours": {"start": "25:99"}}')
@example(user="u1", preferences="-0")  # taken for an option: the usage error's box is titled "Error"
def test_prefs_set_with_garbage(user: str, preferences: str) -> None:
    code, _out, err = run(["prefs", "set", user or "u1", preferences])
    assert code in (1, 2)
    assert "error" in err.lower()


def test_a_bad_line_is_named_with_exit_2(tmp_path: Path) -> None:
    good = orjson.dumps({"type": "NOTIFICATION_CREATED", "userId": "u1", "notification": {"type": "X"}})
    content = good + b"\n" + good.replace(b'"u1"', b"1") + b"\n"
    code, _out, err = run(["publish", "--file", written(tmp_path, ".jsonl", content)])
    assert code == 2
    assert "line 2" in err
    assert "userId" in err
