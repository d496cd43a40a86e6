"""`herald demo`: the whole system on this machine, with a live terminal view of what Socket.IO clients see."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import socketio
from rich.columns import Columns
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from herald.auth import mint_token
from herald.cli.demo_sinks import DemoSinks
from herald.config import Settings
from herald.contacts import Contact, ContactBook
from herald.producer import NotificationProducer
from herald.push_subscriptions import PushSubscriptionStore
from herald.redis_pool import redis_client
from herald.workload import SocialTraffic

console = Console()
SHOWN_PER_CLIENT = 6
STATUS_INTERVAL_S = 2.0


@dataclass
class WatchedInbox:
    """What one connected client has received: the newest version of each notification."""

    user: str
    latest: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: int = 0

    def on_notification(self, body: dict[str, Any]) -> None:
        self.received += 1
        known = self.latest.get(body["id"])
        if known is None or body["version"] > known["version"]:
            self.latest[body["id"]] = body

    def panel(self) -> Panel:
        newest = sorted(self.latest.values(), key=lambda n: n["cursor"], reverse=True)[:SHOWN_PER_CLIENT]
        lines = [
            Text.assemble(("● " if not n.get("read") else "  ", "cyan"), (f"v{n['version']:<4} ", "dim"), n["text"])
            for n in newest
        ] or [Text("waiting for notifications…", style="dim")]
        unread = sum(1 for n in self.latest.values() if not n.get("read"))
        title = f"{self.user}  [bold]{unread}[/bold] unread, {self.received} events"
        return Panel(Group(*lines), title=title, width=60)


@dataclass
class DemoCounters:
    published: int = 0
    status: dict[str, Any] = field(default_factory=dict)

    def footer(self, elapsed_s: float) -> Table:
        readers = self.status.get("readers", [])
        gateways = self.status.get("gateways", [])
        table = Table.grid(padding=(0, 3))
        table.add_row(
            f"[bold]{elapsed_s:5.0f}s[/bold]",
            f"published [bold]{self.published}[/bold]",
            f"read {sum(r.get('events', 0) for r in readers)}",
            f"lag {sum(sum(r.get('lag', {}).values()) for r in readers)}",
            f"dead-lettered {sum(r.get('dead_lettered', 0) for r in readers)}",
            f"pushed live {sum(int(g.get('counters', {}).get('live_notifications', 0)) for g in gateways)}",
            "[dim]Ctrl-C stops[/dim]",
        )
        return table


def run_demo(settings: Settings, *, seconds: float | None, users: int, rate: float, watch: int) -> None:
    # Ctrl-C: asyncio.run cancels the demo, which drains the pipeline on its way out, then re-raises the
    # interrupt (or the cancellation itself); either way the demo is over and nothing is left running.
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(_demo(settings, seconds=seconds, users=users, rate=rate, watch=watch))


async def _demo(settings: Settings, *, seconds: float | None, users: int, rate: float, watch: int) -> None:
    import pipeline  # noqa: PLC0415 - Ray is imported only when the demo runs

    # The stand-ins run before the pipeline: deliveries left from an earlier run may go out at once, and a
    # provider that finds no server opens its circuit breaker for half a minute.
    async with DemoSinks() as sinks:
        settings = sinks.settings(settings)
        console.print("[bold]starting Herald[/bold]: Ray, topics, readers, aggregators, gateway, delivery actors…")
        running = await asyncio.to_thread(pipeline.Pipeline(settings, name="demo").start)
        supervisor = running.supervise_in_background()
        try:
            await _demo_with_sinks(running, settings, sinks, seconds=seconds, users=users, rate=rate, watch=watch)
        except asyncio.CancelledError:
            console.print("[yellow]stopping…[/yellow]")
            raise
        finally:
            supervisor.stop()
            await asyncio.to_thread(running.drain)
            console.print("[green]drained and stopped[/green]")


async def _demo_with_sinks(
    running: Any,
    settings: Settings,
    sinks: DemoSinks,
    *,
    seconds: float | None,
    users: int,
    rate: float,
    watch: int,
) -> None:
    traffic = SocialTraffic(f"demo-{uuid.uuid4().hex[:4]}", users=users, popular=watch, popular_share=0.15)
    url = f"http://{settings.gateway_host}:{settings.gateway_port}"
    inboxes = [WatchedInbox(traffic.user_name(i)) for i in range(watch)]
    console.print(
        f"gateway at {url}; open the browser inbox of {inboxes[0].user} at "
        f"{url}/?token={mint_token(settings, inboxes[0].user)}, and the live dashboard at {url}/dashboard"
    )
    clients = [await _connect(url, settings, inbox) for inbox in inboxes]
    watched = {inbox.user for inbox in inboxes}
    await _register_contacts(settings, [sinks.contact(user, i) for i, user in enumerate(sorted(watched))])
    await _register_browsers(settings, {user: sinks.browser_subscription(user) for user in watched})
    counters = DemoCounters()
    tasks = [
        asyncio.create_task(_produce(settings, traffic, rate, counters, watched)),
        asyncio.create_task(_poll_status(running, counters)),
    ]
    started = time.monotonic()
    try:
        with Live(console=console, refresh_per_second=4, screen=False) as live:
            while seconds is None or time.monotonic() - started < seconds:
                live.update(
                    Group(
                        Columns([i.panel() for i in inboxes]),
                        _channels_panel(sinks),
                        counters.footer(time.monotonic() - started),
                    )
                )
                await asyncio.sleep(0.25)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for client in clients:
            await client.disconnect()


async def _connect(url: str, settings: Settings, inbox: WatchedInbox) -> Any:
    client = socketio.AsyncClient()

    async def on_notification(body: dict[str, Any]) -> None:
        inbox.on_notification(body)

    client.on("notification", on_notification)
    await client.connect(url, auth={"token": mint_token(settings, inbox.user)}, transports=["websocket"])
    return client


def _channels_panel(sinks: DemoSinks) -> Panel:
    counts = "  ".join(f"{channel} {n}" for channel, n in sinks.log.counts.items())
    lines = [Text(line) for line in sinks.log.lines] or [Text("waiting for push, email, SMS, webhooks…", style="dim")]
    return Panel(Group(*lines), title=f"other channels (local stand-ins): {counts}", width=124)


async def _register_contacts(settings: Settings, contacts: list[Contact]) -> None:
    client = redis_client(settings.redis_url)
    try:
        await ContactBook(client).save(contacts)
    finally:
        await client.aclose()


async def _register_browsers(settings: Settings, subscriptions: dict[str, dict[str, Any]]) -> None:
    client = redis_client(settings.redis_url)
    try:
        store = PushSubscriptionStore(client)
        for user, subscription in subscriptions.items():
            await store.add(user, subscription)
    finally:
        await client.aclose()


def _with_external_channels(event: dict[str, Any], watched: set[str], sequence: int) -> dict[str, Any]:
    """Every fifth event of a watched user is HIGH and asks for every channel, so each one shows up in the demo."""
    if event["userId"] in watched and sequence % 5 == 0:
        return {**event, "priority": "HIGH", "channels": ["IN_APP", "PUSH", "EMAIL", "SMS", "WEBHOOK"]}
    return event


async def _produce(
    settings: Settings, traffic: SocialTraffic, rate: float, counters: DemoCounters, watched: set[str]
) -> None:
    tick_s = 0.1
    async with NotificationProducer(settings) as producer:
        while True:
            now = datetime.now(UTC)
            batch = [
                _with_external_channels(traffic.next(now), watched, counters.published + i)
                for i in range(max(1, round(rate * tick_s)))
            ]
            await producer.publish_many(batch)
            counters.published += len(batch)
            await asyncio.sleep(tick_s)


async def _poll_status(running: Any, counters: DemoCounters) -> None:
    while True:
        counters.status = await asyncio.to_thread(running.status)
        await asyncio.sleep(STATUS_INTERVAL_S)
