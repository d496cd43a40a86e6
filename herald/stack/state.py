"""The stack's on-disk state: pid files under <state_dir>/run and the stack file <state_dir>/stack.json."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

from herald.config import Settings
from herald.errors import StackError


class ServiceRecord(TypedDict):
    pid: int | None
    port: int
    log: str


def run_dir(settings: Settings) -> Path:
    return settings.state_dir / "run"


def pid_file(settings: Settings, name: str) -> Path:
    return run_dir(settings) / f"{name}.pid"


def read_pid(settings: Settings, name: str) -> int | None:
    """The pid recorded for `name`, or None when there is no usable pid file."""
    try:
        text = pid_file(settings, name).read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def write_pid(settings: Settings, name: str, pid: int) -> None:
    path = pid_file(settings, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{pid}\n")


def remove_pid(settings: Settings, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        pid_file(settings, name).unlink()


@contextlib.contextmanager
def locked(settings: Settings) -> Iterator[None]:
    """Serialize `up`/`down` on one state dir: two concurrent `up`s would both launch a broker."""
    path = run_dir(settings) / "stack.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load_stack_file(settings: Settings) -> dict[str, Any]:
    """The stack file as a dict with `settings` and `services` objects (empty when absent)."""
    try:
        data = json.loads(settings.stack_file.read_text())
    except FileNotFoundError:
        data = {}
    except json.JSONDecodeError as exc:
        raise StackError(
            f"{settings.stack_file} is not valid JSON ({exc}); delete it and run `herald stack up`"
        ) from exc
    if not isinstance(data, dict):
        data = {}
    data.setdefault("settings", {})
    data.setdefault("services", {})
    return data


def save_stack_file(settings: Settings, data: dict[str, Any]) -> None:
    """Write atomically with mode 0600: the file holds the dev JWT secret."""
    path = settings.stack_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply when the tmp file already existed
    os.replace(tmp, path)


def dev_jwt_secret(data: dict[str, Any]) -> str:
    """Keep the secret of an earlier `up` so issued dev tokens stay valid; make one on the first `up`."""
    existing = data["settings"].get("jwt_secret")
    if isinstance(existing, str) and existing:
        return existing
    return secrets.token_urlsafe(32)
