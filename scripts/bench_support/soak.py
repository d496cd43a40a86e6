"""Soak: steady load with clients connected for a long time, sampled at an interval. What it answers is "does
anything grow without bound?": the pipeline's RSS, Redis memory (overall and the run's keys by kind), consumer lag
and produce -> client latency over time, into JSON, a chart and a verdict.

The load has two parts, both at a steady rate: mentions to the connected users (one notification each, so the
clients see every event and their latency is measured) and likes from ever new fans on a few posts of other,
offline users (groups that fold and expire). Over a long run every connected user's inbox reaches its cap and
the dedup sets reach their horizon; `--dedup-horizon-s` shortens the horizon so a run of minutes reaches that
plateau too (docs/architecture.md, "Guarantees": the horizon only needs to cover what can be redelivered, and a
soak's private topic is never replayed).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import redis.asyncio as aioredis

from herald.config import Settings
from herald.contracts import ActorHealth
from pipeline import Pipeline
from scripts.bench_support import ray_reader
from scripts.bench_support.common import create_topic, delete_run, percentile, proc_status_kib, run_id, stop_pipeline
from scripts.bench_support.machine import describe
from scripts.bench_support.node_fleet import NodeFleet
from scripts.bench_support.producing import like, mention, offer

# Fraction of each window's events that are likes to offline owners (the rest are mentions to connected users).
LIKE_SHARE = 0.25
OFFLINE_OWNERS = 50
POSTS_PER_OWNER = 4
# Growth verdict: the last quarter of the run against the second quarter (the first is warm-up).
GROWTH_LIMIT = 0.10


@dataclass(frozen=True)
class SoakPlan:
    minutes: float
    clients: int
    rate: float
    sample_s: float
    dedup_horizon_s: int | None


def _pipeline_rss_mib(status: dict[str, list[ActorHealth]]) -> float:
    pids = {int(h["pid"]) for group in status.values() for h in group if h.get("pid")}
    return sum(proc_status_kib(pid, "VmRSS") for pid in pids) / 1024


def _rss_by_kind_mib(status: dict[str, list[ActorHealth]]) -> dict[str, float]:
    """RSS per kind of actor (readers, aggregators, gateways...): a sum hides which one grows."""
    return {
        kind: round(sum(proc_status_kib(int(h["pid"]), "VmRSS") for h in group if h.get("pid")) / 1024, 1)
        for kind, group in status.items()
        if any(h.get("pid") for h in group)
    }


def _remembered_versions(status: dict[str, list[ActorHealth]]) -> int:
    return sum(int(h.get("remembered_versions") or 0) for h in status.get("gateways", []))


def _lag(status: dict[str, list[ActorHealth]]) -> int:
    return sum(sum(int(v) for v in (r.get("lag") or {}).values()) for r in status.get("readers", []))


def _restarts(status: dict[str, list[ActorHealth]]) -> dict[str, int]:
    """pid per actor: a changed pid between samples is a restart."""
    return {str(h.get("actor")): int(h["pid"]) for group in status.values() for h in group if h.get("pid")}


def key_kind(key: str) -> str:
    """`herald:{u:<user>}:inbox` -> inbox; group state keys carry the group after the kind."""
    tail = key.split("}:", 1)[-1]
    return tail.split(":", 1)[0]


async def redis_census(settings: Settings, run: str) -> dict[str, Any]:
    """Redis's used memory, and the run's keys by kind: count, bytes, and how many have no expiry."""
    client = aioredis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        used = int((await client.info("memory"))["used_memory"])
        keys = [k async for k in client.scan_iter(match=f"herald:{{u:{run}-*", count=5000)]
        kinds: dict[str, dict[str, int]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            async with client.pipeline(transaction=False) as pipe:
                for key in chunk:
                    pipe.memory_usage(key)
                    pipe.pttl(key)
                replies = await pipe.execute()
            for key, size, ttl in zip(chunk, replies[0::2], replies[1::2], strict=True):
                entry = kinds.setdefault(key_kind(key), {"keys": 0, "bytes": 0, "no_expiry": 0})
                entry["keys"] += 1
                entry["bytes"] += int(size or 0)
                entry["no_expiry"] += 1 if ttl == -1 else 0
        return {"used_mib": used / 2**20, "kinds": kinds}
    finally:
        await client.aclose()


async def longest_inbox(settings: Settings, users: Sequence[str]) -> int:
    from herald.keys import inbox_key  # noqa: PLC0415

    client = aioredis.Redis.from_url(settings.redis_url)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for user in users:
                pipe.zcard(inbox_key(user))
            return max((int(n) for n in await pipe.execute()), default=0)
    finally:
        await client.aclose()


def growth(samples: list[dict[str, Any]], field: str) -> float | None:
    """Relative change of `field` from the second quarter of the run to the last (None: too few samples)."""
    values = [float(s[field]) for s in samples if s.get(field) is not None]
    if len(values) < 6:
        return None
    quarter = len(values) // 4
    second = sum(values[quarter : 2 * quarter]) / quarter
    last = sum(values[-quarter:]) / quarter
    return (last - second) / second if second else None


def slope_per_min(samples: list[dict[str, Any]], value: Callable[[dict[str, Any]], float | None]) -> float | None:
    """Least-squares slope (per minute) of `value` after the first quarter of the run (warm-up); None: too few
    samples. A bounded structure filling up shows as a slope that falls towards 0; a leak keeps its slope."""
    points = [(float(s["t_s"]) / 60, v) for s in samples[len(samples) // 4 :] if (v := value(s)) is not None]
    if len(points) < 4:
        return None
    mean_t = sum(t for t, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    spread = sum((t - mean_t) ** 2 for t, _ in points)
    return sum((t - mean_t) * (v - mean_v) for t, v in points) / spread if spread else None


def _kind_rss(kind: str) -> Callable[[dict[str, Any]], float | None]:
    def value(sample: dict[str, Any]) -> float | None:
        rss = sample.get("rss_mib_by_kind", {}).get(kind)
        return None if rss is None else float(rss)

    return value


def _event_maker(run: str, users: Sequence[str], offset: int) -> Callable[[int], dict[str, Any]]:
    likes_every = round(1 / LIKE_SHARE)

    def make(seq: int) -> dict[str, Any]:
        n = offset + seq
        if n % likes_every == 0:
            owner = f"{run}-owner{n % OFFLINE_OWNERS}"
            return like(run, owner, f"{run}-post{(n // OFFLINE_OWNERS) % POSTS_PER_OWNER}", n)
        return mention(run, users[n % len(users)], n)

    return make


async def take_sample(
    settings: Settings, run: str, status: dict[str, list[ActorHealth]], got: dict[str, Any]
) -> dict[str, Any]:
    """One point of the time series: latency of what the clients got in the window, lag, memory."""
    latencies = sorted(got["latencies_ms"])
    census = await redis_census(settings, run)
    return {
        "p50_ms": percentile(latencies, 50) if latencies else None,
        "p99_ms": percentile(latencies, 99) if latencies else None,
        "lag": _lag(status),
        "pipeline_rss_mib": round(_pipeline_rss_mib(status), 1),
        "rss_mib_by_kind": _rss_by_kind_mib(status),
        "gateway_remembered_versions": _remembered_versions(status),
        "redis_used_mib": round(census["used_mib"], 2),
        "run_keys_mib": round(sum(k["bytes"] for k in census["kinds"].values()) / 2**20, 2),
        "kinds": census["kinds"],
        "dropped_clients": got["dropped"],
    }


def _load_and_sample(
    settings: Settings,
    plan: SoakPlan,
    *,
    run: str,
    topic: str,
    users: Sequence[str],
    pipe: Pipeline,
    fleet: NodeFleet,
    samples: list[dict[str, Any]],
) -> dict[str, int]:
    """Offer the load without pause for the whole run while a second task samples every `sample_s`; then wait
    for the clients to catch up."""
    made = [0]
    make = _event_maker(run, users, 0)

    def counted(seq: int) -> dict[str, Any]:
        made[0] = seq + 1
        return make(seq)

    async def soak() -> tuple[int, int, int]:
        load = asyncio.create_task(offer(settings, topic, counted, rate=plan.rate, seconds=plan.minutes * 60))
        started, received, duplicates = time.monotonic(), 0, 0
        while not load.done():
            await asyncio.wait({load}, timeout=plan.sample_s)
            got = await asyncio.to_thread(fleet.collect)
            received += sum(c["distinct"] for c in got["clients"])
            duplicates += int(got["duplicates"])
            status = await asyncio.to_thread(pipe.status)
            sample = {"t_s": round(time.monotonic() - started, 1)} | await take_sample(settings, run, status, got)
            sample |= {"published": made[0], "mentions_received": received, "client_duplicates": duplicates}
            samples.append(sample)
            print(_sample_line(sample), flush=True)
        return (await load).published, received, duplicates

    published, received, duplicates = asyncio.run(soak())
    fleet.wait_quiet(quiet_s=5.0, max_s=60.0)
    tail = fleet.collect()
    received += sum(c["distinct"] for c in tail["clients"])
    duplicates += int(tail["duplicates"])
    return {
        "published": published,
        "mentions": published - -(-published // round(1 / LIKE_SHARE)),  # seq 0, 4, 8, ... were likes
        "mentions_received": received,
        "client_duplicates": duplicates,
    }


def run_soak(settings: Settings, plan: SoakPlan) -> dict[str, Any]:
    run = run_id("soak")
    topic, group = f"{run}-events", f"{run}-readers"
    overrides = {} if plan.dedup_horizon_s is None else {"dedup_horizon_s": plan.dedup_horizon_s}
    pipeline_settings = ray_reader.bench_settings(settings.model_copy(update=overrides), topic=topic, group=group)
    users = [f"{run}-u{i}" for i in range(plan.clients)]
    result: dict[str, Any] = {"benchmark": "soak", "run": run, "machine": describe(settings), "params": vars(plan)}
    samples: list[dict[str, Any]] = []
    asyncio.run(create_topic(settings, topic, settings.events_partitions))
    try:
        pipe = Pipeline(pipeline_settings, name=f"soak-{run}").start()
        fleet: NodeFleet | None = None
        try:
            fleet = NodeFleet(settings, f"http://127.0.0.1:{settings.gateway_port}", users)
            result["connect"] = fleet.connect()
            first_pids = _restarts(pipe.status())
            result["totals"] = _load_and_sample(
                settings, plan, run=run, topic=topic, users=users, pipe=pipe, fleet=fleet, samples=samples
            )
            last_pids = _restarts(pipe.status())
            result["restarted_actors"] = sorted(
                a for a, pid in first_pids.items() if last_pids.get(a) not in (None, pid)
            )
            result["longest_inbox"] = asyncio.run(longest_inbox(settings, users))
            result["inbox_capacity"] = settings.inbox_capacity
        finally:
            stop_pipeline(pipe, fleet)
    finally:
        asyncio.run(delete_run(settings, topic, run))
    result["samples"] = samples
    result["verdict"] = verdict(result)
    return result


# A user's lasting record: capped (inbox_capacity), not expired. Everything else a user has must expire.
LASTING_KINDS = frozenset({"seq", "inbox", "n", "unread", "aid", "prefs"})


def steady_from_s(result: dict[str, Any]) -> float:
    """When the run's Redis keys can stop growing: every connected user's inbox is full and ids older than the
    dedup horizon are being forgotten. Before that, growth is the design filling up, not a leak."""
    params = result["params"]
    mention_rate = params["rate"] * (1 - LIKE_SHARE) / max(1, params["clients"])
    inbox_full_s = result.get("inbox_capacity", 0) / mention_rate if mention_rate else float("inf")
    horizon = params["dedup_horizon_s"] or 8 * 24 * 3600
    return max(inbox_full_s, float(horizon))


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    """What a reader of the soak wants to know first: bounded or not, and whether anything was lost or doubled."""
    samples = result["samples"]
    no_expiry = Counter[str]()
    for kind, entry in (samples[-1]["kinds"] if samples else {}).items():
        if kind not in LASTING_KINDS and entry["no_expiry"]:
            no_expiry[kind] = entry["no_expiry"]
    steady = [s for s in samples if s["t_s"] >= steady_from_s(result)]
    grew = {
        "pipeline_rss_mib": growth(samples, "pipeline_rss_mib"),
        # Judged only once the keys can have stopped growing (None: the run ended before that).
        "run_keys_mib": growth(steady, "run_keys_mib"),
    }
    kinds = sorted({kind for s in samples for kind in s.get("rss_mib_by_kind", {})})
    slopes = {kind: slope_per_min(samples, _kind_rss(kind)) for kind in kinds}
    totals = result.get("totals", {})
    last_lag = samples[-1]["lag"] if samples else 0
    return {
        "growth": grew,
        # Informational, not judged: where the growth is, per kind of actor (MiB per minute after warm-up).
        "rss_slope_mib_per_min": {k: None if v is None else round(v, 3) for k, v in slopes.items()},
        "keys_steady_from_s": steady_from_s(result),
        "bounded": all(g is None or g <= GROWTH_LIMIT for g in grew.values())
        and last_lag <= max(1000, result["params"]["rate"] * 5),
        "last_lag": last_lag,
        "keys_without_expiry": dict(no_expiry),
        "inbox_within_capacity": result.get("longest_inbox", 0) <= result.get("inbox_capacity", 0),
        "mentions_missing": totals.get("mentions", 0) - totals.get("mentions_received", 0),
        "client_duplicates": totals.get("client_duplicates", 0),
        "restarted_actors": result.get("restarted_actors", []),
    }


def _sample_line(s: dict[str, Any]) -> str:
    p50 = "-" if s["p50_ms"] is None else f"{s['p50_ms']:.0f}"
    p99 = "-" if s["p99_ms"] is None else f"{s['p99_ms']:.0f}"
    return (
        f"  t={s['t_s']:>7.0f}s published={s['published']:>8} p50={p50:>5} ms p99={p99:>6} ms lag={s['lag']:>6}"
        f" pipeline={s['pipeline_rss_mib']:>7.1f} MiB redis={s['redis_used_mib']:>7.1f} MiB"
        f" run keys={s['run_keys_mib']:>6.2f} MiB"
    )


def summary(result: dict[str, Any]) -> str:
    v = result["verdict"]
    grew = ", ".join(f"{f} {'not judged' if g is None else f'{g:+.1%}'}" for f, g in v["growth"].items())
    return "\n".join(
        [
            f"soak {result['run']}: {result['params']['minutes']:g} min at {result['params']['rate']:g} events/s,"
            f" {result['params']['clients']} clients, pid {os.getpid()}",
            f"  growth (second quarter -> last quarter; Redis keys once steady, from"
            f" {v['keys_steady_from_s'] / 60:.0f} min): {grew}",
            "  RSS slope after warm-up (MiB/min): "
            + ", ".join(
                f"{k} {'-' if m is None else f'{m:+.2f}'}" for k, m in v.get("rss_slope_mib_per_min", {}).items()
            ),
            f"  bounded: {v['bounded']}; keys without expiry: {v['keys_without_expiry'] or 'none'};"
            f" longest inbox {result.get('longest_inbox')} of capacity {result.get('inbox_capacity')}",
            f"  mentions missing {v['mentions_missing']}, client duplicates {v['client_duplicates']},"
            f" restarted actors {v['restarted_actors'] or 'none'}",
        ]
    )


PANELS = (
    ("pipeline RSS (MiB)", (("pipeline_rss_mib", "actors"),)),
    ("Redis used_memory (MiB)", (("redis_used_mib", "all keys"),)),
    ("the run's Redis keys (MiB)", (("run_keys_mib", "inboxes, bodies, dedup sets, groups"),)),
    ("events published", (("published", "total"),)),
    ("consumer lag (events)", (("lag", "readers"),)),
    ("produce -> client (ms)", (("p50_ms", "p50"), ("p99_ms", "p99"))),
)
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b")
BY_KIND = "rss_mib_by_kind"


def _panels(samples: list[dict[str, Any]]) -> list[tuple[str, tuple[tuple[str, str], ...]]]:
    """The fixed panels, then one line per kind of actor (a field `rss_mib_by_kind:<kind>`)."""
    kinds = sorted({kind for s in samples for kind in s.get(BY_KIND, {})})
    by_kind = tuple((f"{BY_KIND}:{kind}", kind) for kind in kinds)
    return [*PANELS, ("RSS by kind of actor (MiB)", by_kind)] if by_kind else list(PANELS)


def _value(sample: dict[str, Any], field: str) -> Any:
    if field.startswith(f"{BY_KIND}:"):
        return sample.get(BY_KIND, {}).get(field.split(":", 1)[1])
    return sample.get(field)


def render_chart(result: dict[str, Any]) -> str:
    """The samples as an SVG of six panels over time (hand-drawn: a soak must not need the plotting extras)."""
    samples = result["samples"]
    width, height, pad = 440, 220, 36
    panels = _panels(samples)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{2 * width}" height="{-(-len(panels) // 2) * height + 30}"',
        ' font-family="sans-serif" font-size="11">',
        f'<text x="8" y="18" font-size="13">soak {escape(result["run"])}: {result["params"]["rate"]:g} events/s,'
        f" {result['params']['clients']} clients, {result['params']['minutes']:g} min</text>",
    ]
    t_max = max((s["t_s"] for s in samples), default=1.0) or 1.0
    for index, (title, series) in enumerate(panels):
        left, top = (index % 2) * width, 30 + (index // 2) * height
        values = [float(v) for s in samples for f, _ in series if (v := _value(s, f)) is not None]
        top_value = max(values, default=1.0) * 1.1 or 1.0
        parts.append(f'<g transform="translate({left},{top})">')
        parts.append(f'<text x="{pad}" y="14">{escape(title)}</text>')
        parts.append(
            f'<rect x="{pad}" y="20" width="{width - pad - 10}" height="{height - 50}" fill="none" stroke="#999"/>'
        )
        parts.append(f'<text x="2" y="28">{top_value:.0f}</text><text x="2" y="{height - 30}">0</text>')
        parts.append(f'<text x="{width - 60}" y="{height - 16}">{t_max / 60:.1f} min</text>')
        for (field, label), colour in zip(series, COLOURS, strict=False):
            points = " ".join(
                f"{pad + (s['t_s'] / t_max) * (width - pad - 10):.1f},"
                f"{20 + (height - 50) * (1 - float(_value(s, field)) / top_value):.1f}"
                for s in samples
                if _value(s, field) is not None
            )
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>')
            legend_y = 34 + 12 * series.index((field, label))
            parts.append(f'<text x="{pad + 6}" y="{legend_y}" fill="{colour}">{escape(label)}</text>')
        parts.append("</g>")
    parts.append("</svg>")
    return "".join(parts)
