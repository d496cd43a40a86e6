"""Import files for the user directory (`herald users import`): JSON Lines, a JSON array or CSV -> profiles,
every row checked, a bad one named by file and line."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from herald.contacts import Contact, contact_from_record
from herald.directory import DirectoryImportError, UserProfile

# Accepted spellings of the avatar in import files, most specific first (`image` is what Auth.js stores).
AVATAR_KEYS = ("avatarUrl", "avatar_url", "image")


def _optional_text(record: Mapping[str, Any], field: str) -> str | None:
    value = record.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string, not {_json_type(value)}")
    return value.strip() or None


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", bool: "a boolean", int: "a number", float: "a number"}
    return names.get(type(value), type(value).__name__)


def profile_from_record(record: Mapping[str, Any]) -> UserProfile:
    """One import row (any accepted spelling) -> a profile; ValueError names what is wrong with the row."""
    user_id = record.get("id")
    if user_id is None:
        raise ValueError("id is missing")
    if not isinstance(user_id, str):
        raise ValueError(f"id must be a string, not {_json_type(user_id)}")
    if not user_id.strip():
        raise ValueError("id is empty")
    if user_id != user_id.strip():
        # Most likely a CSV written as "id, name": the stored id would never match an event's actor id.
        raise ValueError(f"id {user_id!r} has leading or trailing whitespace")
    name = _optional_text(record, "name")
    avatar = None
    for field in AVATAR_KEYS:
        avatar = avatar or _optional_text(record, field)  # every spelling is checked, the first one wins
    return UserProfile(user_id, name, avatar)


@dataclass(frozen=True)
class ImportedUser:
    """One import row: the name and avatar for the directory, the contact fields for the delivery channels."""

    profile: UserProfile
    contact: Contact


def _profile_at(source: str, line: int, record: Any) -> ImportedUser:
    if not isinstance(record, dict):
        raise DirectoryImportError(source, line, f"expected a JSON object, not {_json_type(record)}")
    try:
        profile = profile_from_record(record)
        return ImportedUser(profile, contact_from_record(profile.id, record))
    except ValueError as exc:
        raise DirectoryImportError(source, line, str(exc)) from None


# The json module raises RecursionError, not JSONDecodeError, for nesting deeper than the interpreter's stack.
_TOO_DEEP = "not valid JSON: nested too deeply"


def _parse_jsonl(source: str, text: str) -> list[ImportedUser]:
    profiles = []
    # split("\n"), not splitlines(): that also splits at U+2028 and friends, which JSON strings may hold raw.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DirectoryImportError(source, number, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
        except RecursionError:
            raise DirectoryImportError(source, number, _TOO_DEEP) from None
        profiles.append(_profile_at(source, number, record))
    return profiles


def _array_items(text: str, count: int) -> Iterator[tuple[int, Any]]:
    """(line, item) of an already validated JSON array: json reports no positions, so walk it with raw_decode."""
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0) + 1  # past '['
    line, counted_to = 1, 0
    for _ in range(count):
        pos = _skip_space(text, pos)
        line += text.count("\n", counted_to, pos)
        counted_to = pos
        item, end = decoder.raw_decode(text, pos)
        yield line, item
        pos = _skip_space(text, end) + 1  # past ',' or ']'


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _parse_json_array(source: str, text: str) -> list[ImportedUser]:
    try:
        items = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DirectoryImportError(source, exc.lineno, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except RecursionError:
        raise DirectoryImportError(source, None, _TOO_DEEP) from None
    if not isinstance(items, list):
        raise DirectoryImportError(source, 1, f"expected a JSON array of profiles, not {_json_type(items)}")
    return [_profile_at(source, line, item) for line, item in _array_items(text, len(items))]


def _parse_csv(source: str, text: str) -> list[ImportedUser]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames
        if not header:
            raise DirectoryImportError(source, 1, "no header row (expected e.g. id,name,avatarUrl)")
        reader.fieldnames = [column.strip() for column in header]
        if "id" not in reader.fieldnames:
            raise DirectoryImportError(source, 1, f"the header has no id column: {','.join(reader.fieldnames)}")
        profiles = []
        for row in reader:
            # line_num is the record's last physical line; a quoted cell may span several.
            line = reader.line_num - sum(v.count("\n") for v in row.values() if isinstance(v, str))
            if None in row:  # DictReader files surplus cells under the key None
                raise DirectoryImportError(source, line, "more fields than the header has")
            # An empty cell is an absent value, as a JSON null would be; an empty id stays "" to be named as such.
            record = {k: v if k == "id" else v or None for k, v in row.items()}
            profiles.append(_profile_at(source, line, record))
    except csv.Error as exc:
        raise DirectoryImportError(source, reader.line_num, f"not valid CSV: {exc}") from None
    return profiles


_PARSERS: dict[str, Callable[[str, str], list[ImportedUser]]] = {
    ".jsonl": _parse_jsonl,
    ".ndjson": _parse_jsonl,
    ".json": _parse_json_array,
    ".csv": _parse_csv,
}


def load_profiles(path: Path) -> list[UserProfile]:
    """The directory part of load_users()."""
    return [user.profile for user in load_users(path)]


def load_users(path: Path) -> list[ImportedUser]:
    """Read an import file, format by suffix (.jsonl/.ndjson, .json array, .csv with a header; `-` is stdin as
    JSON Lines). Every row is checked before any is returned; the first bad one raises DirectoryImportError."""
    if str(path) == "-":
        return _parse_jsonl("<stdin>", sys.stdin.read())
    parse = _PARSERS.get(path.suffix.lower())
    if parse is None:
        raise DirectoryImportError(str(path), None, "unknown format: use .jsonl, .ndjson, .json (an array) or .csv")
    try:
        # utf-8-sig: spreadsheet exports often start with a byte order mark, which would rename the first column.
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DirectoryImportError(str(path), None, f"cannot read: {exc}") from None
    return parse(str(path), text)
