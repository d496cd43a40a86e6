"""The user directory without Redis: import file parsing, UserProfile JSON, and the merge semantics."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from herald.contacts import Contact
from herald.directory import (
    DirectoryImportError,
    MemoryUserDirectory,
    RedisUserDirectory,
    UserDirectory,
    UserProfile,
    merge,
)
from herald.directory_files import load_profiles, load_users
from herald.errors import HeraldError


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def import_error(path: Path) -> DirectoryImportError:
    with pytest.raises(DirectoryImportError) as caught:
        load_profiles(path)
    return caught.value


# --- UserProfile ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "profile",
    [UserProfile("u1", "John", "https://cdn/x/j.png"), UserProfile("u2", "Zoë ✓"), UserProfile("u3", None, "a")],
)
def test_profile_json_round_trip(profile: UserProfile) -> None:
    assert UserProfile.from_json(profile.to_json()) == profile


def test_profile_json_is_camel_case() -> None:
    assert UserProfile("u1", "John", "https://a").to_json() == {"id": "u1", "name": "John", "avatarUrl": "https://a"}


@pytest.mark.parametrize(
    "data", [{"name": "x"}, {"id": ""}, {"id": 7}, {"id": "u", "name": 3}, {"id": "u", "avatarUrl": ["x"]}]
)
def test_profile_from_json_rejects_bad_shapes(data: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        UserProfile.from_json(data)


# --- load_profiles -------------------------------------------------------------------------------------------


def test_jsonl_with_every_avatar_spelling_and_blank_lines(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "users.jsonl",
        '{"id": "1", "name": "Ann", "avatarUrl": "https://a/1"}\n'
        "\n"
        '{"id": "2", "avatar_url": "https://a/2", "email": "ignored@example.com"}\n'
        '{"id": "3", "name": "  Cem  ", "image": "https://a/3"}\n'
        '{"id": "4", "name": null}\n',
    )
    assert load_profiles(path) == [
        UserProfile("1", "Ann", "https://a/1"),
        UserProfile("2", None, "https://a/2"),
        UserProfile("3", "Cem", "https://a/3"),
        UserProfile("4"),
    ]


def test_ndjson_suffix_is_json_lines(tmp_path: Path) -> None:
    assert load_profiles(write(tmp_path, "u.NDJSON", '{"id":"1","name":"A"}\n')) == [UserProfile("1", "A")]


def test_csv_with_header_bom_and_quoted_newline(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    text = 'id,name,image\n1,Ann,https://a/1\n2,,https://a/2\n3,"Multi\nLine",\n4,"Quote ""Q""",\n'
    path.write_text(text, encoding="utf-8-sig")
    assert load_profiles(path) == [
        UserProfile("1", "Ann", "https://a/1"),
        UserProfile("2", None, "https://a/2"),
        UserProfile("3", "Multi\nLine"),
        UserProfile("4", 'Quote "Q"'),
    ]


def test_csv_avatar_url_column(tmp_path: Path) -> None:
    path = write(tmp_path, "u.csv", "id,name,avatarUrl\n1,Ann,https://a/1\n")
    assert load_profiles(path) == [UserProfile("1", "Ann", "https://a/1")]


def test_json_array(tmp_path: Path) -> None:
    path = write(tmp_path, "u.json", '[\n  {"id": "1", "name": "Ann"},\n  {"id": "2", "image": "https://a/2"}\n]\n')
    assert load_profiles(path) == [UserProfile("1", "Ann"), UserProfile("2", None, "https://a/2")]


def test_stdin_is_json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"id": "1", "name": "Ann"}\n'))
    assert load_profiles(Path("-")) == [UserProfile("1", "Ann")]


@pytest.mark.parametrize(
    ("name", "text", "line", "problem"),
    [
        ("u.jsonl", '{"id": "1"}\n\n{"id": ""}\n', 3, "id is empty"),
        ("u.jsonl", '{"id": "1"}\n{"name": "x"}\n', 2, "id is missing"),
        ("u.jsonl", '{"id": 42}\n', 1, "id must be a string, not a number"),
        ("u.jsonl", '{"id": " 1"}\n', 1, "leading or trailing whitespace"),
        ("u.jsonl", '{"id": "1", "name": 5}\n', 1, "name must be a string, not a number"),
        ("u.jsonl", '{"id": "1", "image": {"url": "x"}}\n', 1, "image must be a string, not an object"),
        ("u.jsonl", '{"id": "1"}\n{"id": "2",\n', 2, "not valid JSON"),
        ("u.jsonl", '{"id": "1"}\n["2"]\n', 2, "expected a JSON object, not an array"),
        ("u.json", '[\n  {"id": "1"},\n\n  {"id": "2", "name": false}\n]', 4, "name must be a string, not a boolean"),
        ("u.json", '[\n  {"id": "1"}\n  {"id": "2"}\n]', 3, "not valid JSON"),
        ("u.json", '{"id": "1"}', 1, "expected a JSON array of profiles"),
        ("u.csv", "id,name\n1,Ann\n,Bob\n", 3, "id is empty"),
        ("u.csv", 'id,name\n1,"Two\nlines"\n2,Ann,extra\n', 4, "more fields than the header has"),
        ("u.csv", "name,image\nAnn,x\n", 1, "the header has no id column"),
        ("u.csv", "", 1, "no header row"),
    ],
)
def test_bad_rows_name_file_line_and_problem(tmp_path: Path, name: str, text: str, line: int, problem: str) -> None:
    path = write(tmp_path, name, text)
    error = import_error(path)
    assert isinstance(error, HeraldError)
    assert (error.source, error.line) == (str(path), line)
    assert problem in error.problem
    assert str(error).startswith(f"{path}, line {line}: ")


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    assert "unknown format" in str(import_error(write(tmp_path, "u.txt", "id\n1\n")))
    missing = import_error(tmp_path / "absent.csv")
    assert missing.line is None
    assert "cannot read" in str(missing)


def test_empty_jsonl_is_no_profiles(tmp_path: Path) -> None:
    assert load_profiles(write(tmp_path, "u.jsonl", "\n\n")) == []


# --- merge semantics -----------------------------------------------------------------------------------------


async def test_memory_directory_merges_like_redis() -> None:
    directory = MemoryUserDirectory()
    written = await directory.remember([UserProfile("1", "John", "https://a/j"), UserProfile("2", "Ann")])
    assert written == 2
    # A new name replaces the old one; the avatar the new profile lacks is kept.
    assert await directory.remember([UserProfile("1", "Johnny")]) == 1
    # An avatar-only update keeps the name.
    assert await directory.remember([UserProfile("2", None, "https://a/ann")]) == 1
    assert await directory.lookup(["1", "2", "unknown"]) == {
        "1": UserProfile("1", "Johnny", "https://a/j"),
        "2": UserProfile("2", "Ann", "https://a/ann"),
    }


async def test_memory_directory_skips_profiles_with_nothing_to_say() -> None:
    directory = MemoryUserDirectory()
    assert await directory.remember([UserProfile("1"), UserProfile("2", "", ""), UserProfile("3", "C")]) == 1
    assert list(await directory.lookup(["1", "2", "3"])) == ["3"]


def test_merge_of_nothing_is_the_new_profile() -> None:
    new = UserProfile("1", "A")
    assert merge(None, new) is new


def test_both_directories_satisfy_the_protocol() -> None:
    # Checked by mypy: a type error here means one of them drifted from UserDirectory.
    directories: list[type[UserDirectory]] = [MemoryUserDirectory, RedisUserDirectory]
    assert len(directories) == 2


def test_contact_columns_are_read_beside_the_profile(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "u.csv",
        "id,name,email,phone,timezone,webhookUrl\n1,Ann,ann@example.org,+4915112345678,Europe/Berlin,https://h.example/x\n2,Bo,,,,\n",
    )
    [ann, bo] = load_users(path)
    assert ann.contact == Contact(
        "1",
        email="ann@example.org",
        phone="+4915112345678",
        timezone="Europe/Berlin",
        webhook_url="https://h.example/x",
    )
    assert bo.contact.is_empty()


@pytest.mark.parametrize(
    ("row", "problem"),
    [
        ('{"id":"1","email":"not-an-address"}', "email"),
        ('{"id":"1","phone":"0151 123"}', "E.164"),
        ('{"id":"1","timezone":"Mars/Base"}', "time zone"),
        ('{"id":"1","webhookUrl":"ftp://x"}', "webhookUrl"),
    ],
)
def test_bad_contact_fields_name_the_line(tmp_path: Path, row: str, problem: str) -> None:
    with pytest.raises(DirectoryImportError, match=f"u.jsonl, line 2: .*{problem}"):
        load_users(write(tmp_path, "u.jsonl", '{"id":"0"}\n' + row + "\n"))
