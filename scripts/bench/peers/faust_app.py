"""Peer of Herald's drain: a Faust (faust-streaming) app doing the same per-(user, type, target) windowed
aggregation with event-time tumbling windowed tables.

Runs in the peers' own venv (scripts/bench/peers/requirements.lock; faust-streaming pins click<8.4, which Herald
cannot share). The harness starts it, it drains `--expected` records of the topic and prints JSON lines:
{"event": "ready"}, {"event": "first", "t_ns"}, {"event": "done", ...} (see README.md here).

    python scripts/bench/peers/faust_app.py --bootstrap 127.0.0.1:19092 --topic T --group G --expected N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import tempfile
import time
from datetime import datetime, timedelta
from importlib.metadata import version
from typing import Any

import faust
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

# Herald's DEFAULT_RULES (herald/grouping.py): window length per notification type.
WINDOWS = {
    "POST_LIKED": timedelta(minutes=5),
    "POST_COMMENTED": timedelta(minutes=10),
    "USER_FOLLOWED": timedelta(hours=1),
}


class Event(faust.Record, serializer="json", isodates=True):  # type: ignore[misc,call-arg]
    """The wire event's fields this app reads; Faust models ignore the others."""

    userId: str  # the wire format's name
    notification: dict[str, Any]
    timestamp: datetime
    type: str = "NOTIFICATION_CREATED"


def say(event: str, **fields: Any) -> None:
    # Straight to file descriptor 1: the Faust worker redirects sys.stdout into its logger (stderr).
    os.write(1, (json.dumps({"event": event, "t_ns": time.time_ns(), **fields}) + "\n").encode())


def fold(groups: dict[str, Any], notification: dict[str, Any]) -> dict[str, Any]:
    """One window of one user: per target, the distinct actors and their count (Herald's `count`)."""
    target = notification.get("target") or {}
    key = f"{target.get('type', '')}/{target.get('id', '')}"
    actor = (notification.get("actor") or {}).get("id", "")
    group = groups.setdefault(key, {"actors": [], "count": 0})
    if actor not in group["actors"]:
        group["actors"].append(actor)
        group["count"] = len(group["actors"])
    return groups


async def declare_changelogs(bootstrap: str, names: list[str], partitions: int) -> None:
    """Create the tables' changelog topics before the worker starts, as Faust itself would (compacted, as many
    partitions as the source), and wait until the broker lists every partition. Left to Faust, a changelog
    created during start-up could still be listed with 0 partitions when the first table update checks it, and
    the agent crashed with PartitionsMismatch (seen on this box with Kafka 4.1)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        topics = [NewTopic(n, partitions, 1, topic_configs={"cleanup.policy": "compact"}) for n in names]
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(topics)
        for _ in range(100):
            described = await admin.describe_topics(names)
            if all(len(t.get("partitions", [])) == partitions for t in described):
                return
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--grace-s", type=float, default=600.0, help="lateness accepted (the data's spread)")
    parser.add_argument("--store", default="rocksdb://", help="Faust's production store (rocksdict backend)")
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="herald-bench-faust-")
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store=args.store,
        datadir=data_dir,
        topic_partitions=args.partitions,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    topic = app.topic(args.topic, value_type=Event, partitions=args.partitions)
    tables = {
        kind: app.Table(f"groups-{kind.lower()}", default=dict, partitions=args.partitions)
        .tumbling(window, expires=window + timedelta(seconds=args.grace_s))
        .relative_to_field(Event.timestamp)
        for kind, window in WINDOWS.items()
    }
    counters = {"records": 0, "updates": 0, "passthrough": 0}
    times = {"started_ns": 0, "first_ns": 0}
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)

    @app.agent(topic)  # type: ignore[untyped-decorator]
    async def aggregate(stream: Any) -> None:
        try:
            await fold_stream(stream)
        except Exception as exc:
            # A crashed agent leaves the worker running with nothing to do: report it and stop.
            say("error", error=repr(exc))
            asyncio.ensure_future(worker.stop())  # noqa: RUF006 - the worker waits for it
            raise

    async def fold_stream(stream: Any) -> None:
        async for event in stream:
            counters["records"] += 1
            if counters["records"] == 1:
                times["first_ns"] = time.time_ns()
                say("first")
            table = tables.get(event.notification.get("type", ""))
            if table is None:
                # Types without a rule (MENTIONED) are single notifications in Herald: nothing to aggregate.
                counters["passthrough"] += 1
            else:
                # A windowed table is updated by assignment; each update also goes to its changelog topic.
                table[event.userId] = fold(dict(table[event.userId].value()), event.notification)
                counters["updates"] += 1
            if counters["records"] >= args.expected:
                say("last", records=counters["records"])
                asyncio.ensure_future(worker.stop())  # noqa: RUF006 - the worker waits for it

    # One loop for the declaration and the worker (Faust runs on the thread's current loop).
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    changelogs = [f"{args.group}-{t.name}-changelog" for t in tables.values()]
    loop.run_until_complete(declare_changelogs(args.bootstrap, changelogs, args.partitions))
    say("ready", pid=os.getpid(), version=version("faust-streaming"), data_dir=data_dir)
    times["started_ns"] = time.time_ns()
    try:
        worker.execute_from_commandline()
    finally:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        say("done", cpu_s=usage.ru_utime + usage.ru_stime, peak_rss_mib=usage.ru_maxrss / 1024, **times, **counters)


if __name__ == "__main__":
    main()
