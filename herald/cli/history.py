"""What `herald replay`, `herald lag` and `herald audit` share: running a coroutine with their exit codes (2 for
bad input, 1 when Kafka or Redis cannot be reached or refuse) and reading TIME arguments."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import typer
from aiokafka.errors import KafkaError
from redis.exceptions import RedisError
from rich.console import Console

from herald.cli.ops import fail
from herald.config import Settings, load_settings
from herald.errors import ConfigError, HeraldError
from herald.timespec import TimeSpecError, parse_time

T = TypeVar("T")
err_console = Console(stderr=True, soft_wrap=True)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        raise fail(exc) from exc


def time_or_exit(text: str | None, *, now_ms: int) -> int | None:
    if text is None:
        return None
    try:
        return parse_time(text, now_ms=now_ms)
    except TimeSpecError as exc:
        raise fail(exc) from exc


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_or_exit(coroutine: Coroutine[Any, Any, T], what: str) -> T:
    """The coroutine's result; Kafka, Redis and Herald's own failures end the command with exit code 1."""
    try:
        return asyncio.run(coroutine)
    except (HeraldError, KafkaError, RedisError, OSError) as exc:
        err_console.print(f"[red]error:[/red] {what}: {exc}", highlight=False)
        raise typer.Exit(code=1) from exc
