"""Peer of Herald's drain: a Quix Streams app doing the same per-(user, type, target) windowed aggregation.

Runs in the peers' own venv (scripts/bench/peers/requirements.lock; quixstreams pins pydantic<2.14, which Herald
cannot share). The harness starts it, it drains `--expected` records of the topic and prints JSON lines:
{"event": "ready"}, {"event": "first", "t_ns"}, {"event": "done", ...} (see README.md here).

    python scripts/bench/peers/quix_app.py --bootstrap 127.0.0.1:19092 --topic T --group G --expected N
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta
from importlib.metadata import version
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows.aggregations import Reduce

# Herald's DEFAULT_RULES (herald/grouping.py): window length per notification type.
WINDOWS = {
    "POST_LIKED": timedelta(minutes=5),
    "POST_COMMENTED": timedelta(minutes=10),
    "USER_FOLLOWED": timedelta(hours=1),
}


def say(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t_ns": time.time_ns(), **fields}), flush=True)


def event_time_ms(value: Any, headers: Any, timestamp: float, timestamp_type: Any) -> int:
    """Event time from the wire event's ISO `timestamp`, as Quix documents for a custom timestamp extractor."""
    try:
        return int(datetime.fromisoformat(value["timestamp"]).timestamp() * 1000)
    except (KeyError, TypeError, ValueError):
        return int(timestamp)


def group_of(event: dict[str, Any]) -> tuple[str, str]:
    n = event["notification"]
    target = n.get("target") or {}
    return f"{target.get('type', '')}/{target.get('id', '')}", (n.get("actor") or {}).get("id", "")


def initializer(event: dict[str, Any]) -> dict[str, Any]:
    return reducer({}, event)


def reducer(state: dict[str, Any], event: dict[str, Any]) -> dict[str, Any]:
    """One window of one user: per target, the distinct actors and their count (Herald's `count`)."""
    target, actor = group_of(event)
    group = state.setdefault(target, {"actors": [], "count": 0})
    if actor not in group["actors"]:
        group["actors"].append(actor)
        group["count"] = len(group["actors"])
    return state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--expected", type=int, required=True)
    parser.add_argument("--grace-s", type=float, default=600.0, help="lateness accepted (the data's spread)")
    parser.add_argument("--commit-interval-s", type=float, default=5.0, help="Quix's default")
    args = parser.parse_args()

    state_dir = tempfile.mkdtemp(prefix="herald-bench-quix-")
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        commit_interval=args.commit_interval_s,
        state_dir=state_dir,
        loglevel="WARNING",
    )
    topic = app.topic(args.topic, value_deserializer="json", timestamp_extractor=event_time_ms)
    sdf = app.dataframe(topic)
    counters = {"records": 0, "updates": 0, "passthrough": 0}
    first_ns = 0

    def seen(_value: Any) -> None:
        nonlocal first_ns
        counters["records"] += 1
        if counters["records"] == 1:
            first_ns = time.time_ns()
            say("first")
        if counters["records"] >= args.expected:
            say("last", records=counters["records"])
            app.stop()  # the loop ends after this record; the final checkpoint still flushes and commits

    def updated(_value: Any) -> None:
        counters["updates"] += 1

    sdf = sdf.update(seen)
    for kind, window in WINDOWS.items():
        branch = sdf.filter(lambda v, k=kind: v["notification"]["type"] == k)
        (
            branch.tumbling_window(window, grace_ms=timedelta(seconds=args.grace_s), name=f"groups-{kind.lower()}")
            .agg(groups=Reduce(reducer=reducer, initializer=initializer))
            .current()
            .update(updated)
        )
    # Types without a rule (MENTIONED) are single notifications in Herald: nothing to aggregate.
    sdf.filter(lambda v: v["notification"]["type"] not in WINDOWS).update(
        lambda _v: counters.__setitem__("passthrough", counters["passthrough"] + 1)
    )

    say("ready", pid=os.getpid(), version=version("quixstreams"), state_dir=state_dir)
    started_ns = time.time_ns()
    app.run()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    say(
        "done",
        started_ns=started_ns,
        first_ns=first_ns,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mib=usage.ru_maxrss / 1024,
        **counters,
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
