"""Client-side commands: `herald publish` (one event from options, or many from a file) and `herald token`."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from herald.auth import mint_token
from herald.cli.ops import fail, quiet_client_logs
from herald.cli.output import progress
from herald.config import load_settings
from herald.errors import HeraldError, InvalidEventError
from herald.events import Channel, EventType, NotificationEvent, Priority
from herald.producer import NotificationProducer, PublishResult, RecordBuilder

console = Console(stderr=True)
# Stop listing validation problems after this many: the first screenful is what anyone reads.
MAX_REPORTED_PROBLEMS = 20


@dataclass(frozen=True, slots=True)
class SourcedEvent:
    """An event as read from input, with where it came from for error messages ("line 7", "item 3")."""

    where: str
    data: Any


def read_events(text: str) -> list[SourcedEvent]:
    """A JSON object, a JSON array of objects, or JSON Lines (one object per line, blank lines ignored)."""
    try:
        whole = orjson.loads(text)
    except orjson.JSONDecodeError:
        return _read_json_lines(text)
    if isinstance(whole, list):
        return [SourcedEvent(f"item {i}", item) for i, item in enumerate(whole, start=1)]
    return [SourcedEvent("line 1", whole)]


def _read_json_lines(text: str) -> list[SourcedEvent]:
    events = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            events.append(SourcedEvent(f"line {number}", orjson.loads(line)))
        except orjson.JSONDecodeError as exc:
            raise InvalidEventError(f"line {number}: not valid JSON ({exc})") from None
    if not events:
        raise InvalidEventError("no events in input")
    return events


def validate_all(events: list[SourcedEvent], builder: RecordBuilder) -> list[NotificationEvent]:
    """Validate every event before publishing any, and report all problems at once."""
    valid: list[NotificationEvent] = []
    problems: list[str] = []
    for sourced in events:
        if not isinstance(sourced.data, Mapping):
            problems.append(f"{sourced.where}: event must be a JSON object")
            continue
        try:
            valid.append(builder.validate(sourced.data))
        except InvalidEventError as exc:
            problems.append(f"{sourced.where}: {exc}")
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        summary = f"{len(problems)} of {len(events)} events invalid, nothing published:\n  " + "\n  ".join(shown)
        raise InvalidEventError(summary + (f"\n  ... and {more} more" if more else ""))
    return valid


def _single_event(
    user: str, event_type: EventType, notification_type: str | None, options: dict[str, Any]
) -> dict[str, Any]:
    event: dict[str, Any] = {"type": event_type.value, "userId": user, "priority": options["priority"]}
    if options["channels"]:
        event["channels"] = options["channels"]
    if notification_type is not None:
        body: dict[str, Any] = {"type": notification_type}
        if options["actor"]:
            body["actor"] = {"id": options["actor"], "name": options["actor_name"]}
        if options["target_id"]:
            body["target"] = {"type": options["target_type"], "id": options["target_id"]}
            body["target"]["title"] = options["target_title"]
        body["title"], body["message"] = options["title"], options["message"]
        event["notification"] = _without_none(body)
    return event


def _without_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _without_none(v) if isinstance(v, dict) else v for k, v in data.items() if v is not None}


# Chunks keep the progress bar moving; one chunk is acknowledged before the next is sent, so per-user order holds.
_PUBLISH_CHUNK = 2000


async def _publish(events: list[NotificationEvent], topic: str) -> list[PublishResult]:
    results: list[PublishResult] = []
    async with NotificationProducer(load_settings(), topic=topic) as producer:
        with progress(len(events), "publishing") as advance:
            for start in range(0, len(events), _PUBLISH_CHUNK):
                chunk = events[start : start + _PUBLISH_CHUNK]
                results.extend(await producer.publish_many(chunk))
                advance(len(chunk))
    return results


def _print_summary(results: list[PublishResult], topic: str) -> None:
    by_partition = Counter(r.partition for r in results)
    spread = ", ".join(f"p{p}: {n}" for p, n in sorted(by_partition.items()))
    console.print(f"[green]published {len(results)} event(s)[/] to {topic} ({spread})", highlight=False)
    for result in results[:10]:
        console.print(f"  {result.event_id}  partition {result.partition} offset {result.offset}", highlight=False)
    if len(results) > 10:
        console.print(f"  ... and {len(results) - 10} more", highlight=False)


def publish(
    *,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Recipient userId (single-event mode).")] = None,
    notification_type: Annotated[
        str | None, typer.Option("--type", "-t", help="Notification type, e.g. POST_LIKED.")
    ] = None,
    actor: Annotated[str | None, typer.Option(help="Actor id.")] = None,
    actor_name: Annotated[str | None, typer.Option(help="Actor display name.")] = None,
    target_type: Annotated[str, typer.Option(help="Target type.")] = "post",
    target_id: Annotated[str | None, typer.Option(help="Target id.")] = None,
    target_title: Annotated[str | None, typer.Option(help="Target title.")] = None,
    title: Annotated[str | None, typer.Option(help="Notification title.")] = None,
    message: Annotated[str | None, typer.Option(help="Notification message.")] = None,
    channel: Annotated[list[Channel] | None, typer.Option("--channel", "-c", help="Repeatable.")] = None,
    priority: Annotated[Priority, typer.Option(help="Event priority.")] = Priority.NORMAL,
    event_type: Annotated[EventType, typer.Option(help="Event type.")] = EventType.NOTIFICATION_CREATED,
    file: Annotated[
        str | None,
        typer.Option("--file", "-f", help="JSON object, JSON array or JSON Lines file; `-` reads stdin."),
    ] = None,
    topic: Annotated[
        str | None, typer.Option(help="Kafka topic; default: the events topic (HERALD_EVENTS_TOPIC).")
    ] = None,
) -> None:
    """Publish notification events: one from options (--user ...), or many from --file (validated first)."""
    try:
        if file is not None and user is not None:
            raise InvalidEventError("give either --user (one event from options) or --file, not both")
        if file is not None:
            text = sys.stdin.read() if file == "-" else _read_file(file)
            sourced = read_events(text)
        elif user is not None:
            if event_type is EventType.NOTIFICATION_CREATED and notification_type is None:
                raise InvalidEventError("--type is required for NOTIFICATION_CREATED", field="notification.type")
            options = {
                "actor": actor,
                "actor_name": actor_name,
                "target_type": target_type,
                "target_id": target_id,
                "target_title": target_title,
                "title": title,
                "message": message,
                "channels": [c.value for c in channel or []],
                "priority": priority.value,
            }
            sourced = [SourcedEvent("options", _single_event(user, event_type, notification_type, options))]
        else:
            raise InvalidEventError("give either --user (one event from options) or --file (many events)")
        events = validate_all(sourced, RecordBuilder())
        topic = topic or load_settings().events_topic
        results = asyncio.run(_publish(events, topic))
    except HeraldError as exc:
        raise fail(exc) from exc
    _print_summary(results, topic)


def _read_file(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidEventError(f"cannot read {path}: {exc}") from None


def token(
    user: Annotated[str, typer.Option("--user", "-u", help="The user id (JWT `sub`).")],
    ttl: Annotated[int, typer.Option("--ttl", min=1, help="Lifetime in seconds.")] = 3600,
) -> None:
    """Print a signed JWT for a Socket.IO client (HS256 with the stack's secret, or RS256 if configured)."""
    try:
        jwt = mint_token(load_settings(), user, ttl_s=ttl)
    except HeraldError as exc:
        raise fail(exc) from exc
    # Plain print: the token is meant for $(herald token ...) and pipes.
    print(jwt)


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the top-level app."""
    quiet_client_logs()
    app.command("publish")(publish)
    app.command("token")(token)
