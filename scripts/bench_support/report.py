"""docs/benchmarks.md and its charts, from the raw JSON the benchmarks wrote (one file per benchmark)."""

from __future__ import annotations

import json
import os
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_LABELS = ("reader", "aggregator", "delivery", "gateway", "ray (other)")
HARNESS_PREFIX = "harness"
FILES = ("drain", "latency", "burst")


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _med(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _span(values: Sequence[float | None], digits: int = 0) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    if len(present) == 1:
        return _fmt(present[0], digits)
    return f"{_fmt(statistics.median(present), digits)} ({_fmt(min(present), digits)}-{_fmt(max(present), digits)})"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return out


# -- drain ---------------------------------------------------------------------------------------------------


def side_rate(side: dict[str, Any]) -> float | None:
    if side.get("error") or not side.get("drain_s"):
        return None
    return float(side["events"] / side["drain_s"])


def side_cpu(side: dict[str, Any]) -> dict[str, float]:
    """CPU seconds per 1,000 events: the system under test, Redis, Kafka (less what they burn idle), harness."""
    cpu = side.get("cpu_s") or {}
    events = side["events"] / 1000
    background = side.get("background_cpu_per_s") or {}
    seconds = side.get("drain_s") or 0.0
    stack = {k: max(0.0, cpu.get(k, 0.0) - background.get(k, 0.0) * seconds) for k in ("redis", "kafka")}
    system = sum(v for k, v in cpu.items() if k in PIPELINE_LABELS or k in ("peer", "harness (consumer)"))
    harness = sum(v for k, v in cpu.items() if k.startswith(HARNESS_PREFIX) and k != "harness (consumer)")
    return {
        "system": system / events,
        "redis": stack["redis"] / events,
        "kafka": stack["kafka"] / events,
        "total": (system + stack["redis"] + stack["kafka"]) / events,
        "harness": harness / events,
    }


def _peak_rss(side: dict[str, Any]) -> float | None:
    if side.get("peak_pipeline_rss_mib"):
        return float(side["peak_pipeline_rss_mib"])
    peak = side.get("peak_rss_mib") or {}
    return float(peak["peer"]) if "peer" in peak else None


def _notifications_per_s(side: dict[str, Any]) -> float | None:
    counters = side.get("counters") or {}
    if "notifications_changed" not in counters or not side.get("drain_s"):
        return None
    return float(counters["notifications_changed"] / side["drain_s"])


def drain_section(data: dict[str, Any]) -> list[str]:
    rounds: list[dict[str, Any]] = data["rounds"]
    names = list(rounds[0])
    params = data["params"]
    out = [
        "## Drain: a pre-produced backlog, Herald beside its peers",
        "",
        f"{params['events']:,} events (`herald.workload.social_stream`: likes, comments, follows, mentions; event"
        f" times spread over the last 10 minutes) over {params['users']:,} users, ~{data['mean_event_bytes']:.0f} B"
        f" each, pre-produced to a private topic of {data['machine']['settings']['events_partitions']} partitions"
        f" ({_fmt(data['preload']['events_per_s'])} events/s through the SDK). Every side reads the same records"
        f" from the same broker in the same run; {len(rounds)} round(s), the order rotated each round. Figures:"
        " median (min-max) over the rounds.",
        "",
        "Herald's drain runs from `go` (readers start their consumers) until the last event is committed **and**"
        " the last notification a gateway pushed live to a connected client (IN_APP has no outbox: a commit"
        " publishes to the gateways holding its users; with no client connected there is nothing to push, and the"
        " clients' side checks they ended on every final version). The peers' drain runs"
        " from their first record to their final commit (their start-up and group join are reported apart).",
        "CPU is user+system seconds per 1,000 events, read from /proc: the system under test (every Ray process,"
        " or the peer process), Redis and Kafka less what they burned while idle just before (the stack is shared)."
        " Peak RSS: the pipeline's Ray processes summed (the peer's own process for the peers).",
        "",
    ]
    rows = []
    for name in names:
        sides = [r[name] for r in rounds]
        cpus = [side_cpu(s) for s in sides if not s.get("error")]
        error = next((s["error"] for s in sides if s.get("error")), None)
        if error and not cpus:
            rows.append([name, "failed: see below", "-", "-", "-", "-", "-", "-"])
            continue
        rows.append(
            [
                name,
                _span([side_rate(s) for s in sides]),
                _span([_notifications_per_s(s) for s in sides]),
                _fmt(_med(c["system"] for c in cpus), 2),
                _fmt(_med(c["redis"] for c in cpus), 2),
                _fmt(_med(c["kafka"] for c in cpus), 2),
                _fmt(_med(c["total"] for c in cpus), 2),
                _fmt(_med(_peak_rss(s) for s in sides)),
            ]
        )
    header = ["side", "events/s", "notifications/s", "CPU s/1k: system", "Redis", "Kafka", "total", "peak RSS MiB"]
    out += _table(header, rows)
    out += ["", "Ratios to the plain consumer, each round on its own (same records, same minutes):", ""]
    ratio_rows = []
    for name in names:
        cells = []
        for r in rounds:
            base, rate = (
                side_rate(r[names[0]] if "plain consumer" not in r else r["plain consumer"]),
                side_rate(r[name]),
            )
            cells.append(f"{rate / base:.3f}" if base and rate else "-")
        ratio_rows.append([name, *cells])
    out += _table(["side", *[f"round {i + 1}" for i in range(len(rounds))]], ratio_rows)
    out += ["", *herald_details(rounds, names), *peer_details(rounds, names)]
    return out


def herald_details(rounds: list[dict[str, Any]], names: list[str]) -> list[str]:
    out = ["### Herald's runs in detail", ""]
    for name in [n for n in names if n.startswith("Herald,")]:
        sides = [r[name] for r in rounds if not r[name].get("error")]
        if not sides:
            continue
        last = sides[-1]
        counters = last["counters"]
        redis = last["redis"]
        stored = redis["notifications"] or 1
        rows = [
            ["actors (readers/aggregators/delivery/gateways)", "/".join(str(v) for v in last["topology"].values())],
            ["pipeline start (Ray + actors), s", _span([s["pipeline_start_s"] for s in sides], 1)],
            ["consumer group formed after go, s", _span([s.get("join_s") for s in sides], 2)],
            ["all committed after go, s", _span([s["committed_s"] for s in sides], 2)],
            ["last live push to a client after go, s", _span([s["drain_s"] for s in sides], 2)],
            [
                "events/s from the group formed to the end",
                _span([s["events"] / (s["drain_s"] - s["join_s"]) if s.get("join_s") else None for s in sides]),
            ],
            [
                "applied / duplicates / self-skipped",
                f"{counters['applied']:,} / {counters['duplicates']:,} / {counters['self_skipped']:,}",
            ],
            [
                "notifications changed / pushed live to connected users",
                f"{counters['notifications_changed']:,} / {counters.get('live_sent', 0):,}",
            ],
            ["notifications stored", f"{redis['notifications']:,.0f}"],
            ["reader batches / aggregator calls", f"{counters['reader_batches']:,} / {counters['aggregator_calls']:,}"],
            ["Redis bytes per stored notification (INFO used_memory delta)", _fmt(redis["used_memory_delta"] / stored)],
            [
                "Redis bytes per stored notification (MEMORY USAGE of the run's keys)",
                _fmt(sum(redis["keys_by_kind"].values()) / stored),
            ],
        ]
        cpu = last["cpu_s"]
        events = last["events"] / 1000
        rows.append(
            [
                "CPU s per 1k events by process (last round)",
                ", ".join(f"{k} {v / events:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1])),
            ]
        )
        rows.append(["peak RSS by process (MiB)", ", ".join(f"{k} {v:.0f}" for k, v in last["peak_rss_mib"].items())])
        clients = last.get("clients")
        if clients:
            rows += [
                [
                    "clients connected",
                    f"{clients['connected']:,} (connect: {last['clients_connect']['ms'] / 1000:.1f} s)",
                ],
                ["notification versions received by the clients", f"{clients['distinct_versions']:,}"],
                [
                    "clients that got the final version of their notifications",
                    f"{clients['final_version_seen']:,} of {clients['notifications_stored_for_them']:,}",
                ],
                ["duplicates / dropped connections", f"{clients['duplicates']} / {clients['dropped']}"],
            ]
        out += [f"**{name}**", "", *_table(["what", "measured"], rows), ""]
    return out


def peer_details(rounds: list[dict[str, Any]], names: list[str]) -> list[str]:
    out = ["### Peers in detail", ""]
    rows = []
    for name in names:
        sides = [r[name] for r in rounds]
        if "version" not in sides[0]:
            continue
        ok = [s for s in sides if not s.get("error")]
        rows.append(
            [
                name,
                str(sides[0].get("version")),
                _span([s.get("startup_s") for s in ok], 1),
                str((ok[-1].get("counters") or {}).get("updates")) if ok else "-",
                "; ".join(" ".join(s["error"].split())[-500:] for s in sides if s.get("error")) or "none",
            ]
        )
    out += _table(["peer", "version", "start-up to first record, s", "window updates", "errors"], rows)
    return [*out, ""]


# -- latency and burst ---------------------------------------------------------------------------------------


def latency_section(runs: list[dict[str, Any]]) -> list[str]:
    params = runs[0]["params"]
    out = [
        "## Latency: produce -> Socket.IO client under a fixed offered load",
        "",
        f"{params['clients']:,} clients (official socket.io-client {runs[0].get('client_version')}, websocket only,"
        f" one Node process), {params['seconds']:g} s per offered load, {len(runs)} run(s). Each event is a"
        " MENTIONED notification for one connected user, stamped with its send time; latency = receive time at the"
        " client minus that stamp (same machine, same clock). The peer: a plain Kafka consumer of the same topic,"
        " same run. Harness CPU: cores used on average by the Node clients and by the driver (producer + taps).",
        "",
    ]
    rows = []
    for run in runs:
        for p in run["phases"]:
            c, k, e = p["client_ms"], p["kafka_ms"], p["emit_ms"]
            duration = p.get("cpu_window_s") or p["offered"]["publish_s"] + p["settle_s"]
            cpu = p["cpu_s"]
            node = sum(v for key, v in cpu.items() if "node" in key) / duration
            driver = sum(v for key, v in cpu.items() if "driver" in key) / duration
            pipeline = sum(v for key, v in cpu.items() if key in PIPELINE_LABELS) / duration
            rows.append(
                [
                    f"{p['rate']:,.0f}",
                    f"{p['offered']['published']:,}",
                    " / ".join(_fmt(c.get(q), 1) for q in ("p50", "p90", "p99", "max")),
                    f"{p['received_fraction'] * 100:.2f}%",
                    str(p["duplicates"]),
                    str(p["dropped_clients"]),
                    f"{_fmt(k.get('p50'), 1)} / {_fmt(k.get('p99'), 1)}",
                    f"{_fmt(e.get('p50'), 1)} / {_fmt(e.get('p99'), 1)}",
                    f"{pipeline:.2f}",
                    f"{node:.2f} / {driver:.2f}",
                ]
            )
    header = [
        "offered events/s",
        "sent",
        "client p50 / p90 / p99 / max ms",
        "received",
        "dup",
        "dropped clients",
        "peer: Kafka consumer p50 / p99 ms",
        "published by the commit p50 / p99 ms",
        "pipeline cores",
        "harness cores: Node / driver",
    ]
    return [*out, *_table(header, rows), ""]


def burst_section(runs: list[dict[str, Any]]) -> list[str]:
    params = runs[0]["params"]
    out = [
        "## Burst: a viral post",
        "",
        f"{params['likes']:,} likes of one post, each by a different person, offered over {params['seconds']:g} s;"
        f" the owner has {params['devices']} devices connected (official socket.io-client, one Node process)."
        " Expected: one notification updated in place, far fewer versions on each device than likes (coalescing),"
        " and every device ending on the final count.",
        "",
    ]
    rows = []
    for run in runs:
        stored = run.get("stored") or [{}]
        offered = run["offered"]
        rows.append(
            [
                f"{offered['published']:,} in {offered['publish_s']:.1f} s",
                str(len(run.get("stored") or [])),
                f"{stored[0].get('count')} / {stored[0].get('version')}",
                _fmt(run.get("versions_received_median")),
                str(run.get("final_count_seen")),
                _fmt(run.get("stored_final_after_last_send_s"), 1),
                _fmt(run.get("time_to_final_s_max"), 1),
                f"{run['duplicates']} / {run['dropped_clients']}",
                f"{sum(v for k, v in run['cpu_s'].items() if k in PIPELINE_LABELS):.1f}",
            ]
        )
    header = [
        "likes sent",
        "notifications stored",
        "stored count / version",
        "versions per device (median)",
        "final count on every device",
        "stored final, s after last like",
        "devices final, s after last like",
        "dup / dropped",
        "pipeline CPU s",
    ]
    return [*out, *_table(header, rows), ""]


# -- machine and the whole page ------------------------------------------------------------------------------


def machine_section(results: dict[str, Any]) -> list[str]:
    first = next(iter(results.values()))
    machine = first["machine"] if "machine" in first else first["runs"][0]["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in machine["versions"].items())
    out = [
        "## Machine",
        "",
        f"{machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM, Linux {machine['kernel']}.",
        f"Versions: {versions}.",
        "Kafka, Redis, Ray, the benchmark harness and its clients all share these cores.",
        "",
    ]
    rows = []
    for name, data in results.items():
        for run in data.get("runs", [data]):
            m = run["machine"]
            rows.append(
                [
                    name,
                    m["date"],
                    str(m.get("git", "-")),
                    " ".join(map(str, m["load_before"])),
                    " ".join(map(str, m.get("load_after", []))),
                ]
            )
    out += _table(["benchmark", "started (UTC)", "code", "load average before (1/5/15 min)", "after"], rows)
    busy = [r for r in rows if float(r[3].split()[0]) >= 0.5]
    out += [""]
    if busy:
        out += [
            "The machine was shared when these ran: a 1-minute load average of 0.5 or more before a benchmark"
            " means other work (other engineers' test runs) was using the cores.",
            "",
        ]
    return out


def load_results(out_dir: Path) -> dict[str, Any]:
    results = {}
    for name in FILES:
        path = out_dir / f"{name}.json"
        if path.exists():
            results[name] = json.loads(path.read_text())
    return results


def render_markdown(
    results: dict[str, Any], *, command: str, charts: Sequence[str], notes: str | None, raw: str, link: str
) -> str:
    out = [
        "# Benchmarks",
        "",
        f"Generated by `{command}` from the raw results in `{raw}/*.json` (charts beside them)."
        " Every figure is measured on this machine next to a peer measured in the same run; nothing is copied from"
        " elsewhere. Re-run: `./scripts/dev bench [drain|latency|burst|all] [--repeat N] [--quick]`.",
        "",
        *machine_section(results),
    ]
    if "drain" in results:
        out += drain_section(results["drain"])
    if "latency" in results:
        out += latency_section(results["latency"]["runs"])
    if "burst" in results:
        out += burst_section(results["burst"]["runs"])
    if charts:
        out += ["## Charts", ""] + [f"![{c}]({link}/{c})" for c in charts] + [""]
    if notes:
        out += ["## What limited each run", "", notes.strip(), ""]
    return "\n".join(out)


# -- charts (matplotlib: the `bench` optional group) -----------------------------------------------------------


def render_charts(results: dict[str, Any], out_dir: Path) -> list[str]:
    try:
        import matplotlib  # noqa: PLC0415 - optional: the bench group

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        print("matplotlib is not installed (./scripts/dev bench installs requirements-bench.lock): no charts")
        return []
    made = []
    if "drain" in results:
        made += _drain_charts(plt, results["drain"], out_dir)
    if "latency" in results:
        made += _latency_chart(plt, results["latency"], out_dir)
    return made


def _drain_charts(plt: Any, drain: dict[str, Any], out_dir: Path) -> list[str]:
    made = []
    rounds = drain["rounds"]
    names = list(rounds[0])
    rates = [[side_rate(r[n]) or 0.0 for r in rounds] for n in names]
    fig, ax = plt.subplots(figsize=(9, 4.5))
    medians = [statistics.median(v) for v in rates]
    ax.barh(
        names,
        medians,
        xerr=[
            [m - min(v) for m, v in zip(medians, rates, strict=True)],
            [max(v) - m for m, v in zip(medians, rates, strict=True)],
        ],
        color="#4a7ab5",
    )
    ax.set_xscale("log")
    ax.set_xlabel("events/s (log scale; median, min-max over rounds)")
    ax.set_title(f"Drain of {drain['params']['events']:,} events, same broker, same records")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out_dir / "drain_rates.png", dpi=110)
    plt.close(fig)
    made.append("drain_rates.png")
    fig, ax = plt.subplots(figsize=(9, 4.5))
    cpus = [[side_cpu(r[n]) for r in rounds if not r[n].get("error")] for n in names]
    left = [0.0] * len(names)
    for part, color in (("system", "#4a7ab5"), ("redis", "#c0504d"), ("kafka", "#9bbb59")):
        widths = [statistics.median(c[part] for c in cs) if cs else 0.0 for cs in cpus]
        ax.barh(names, widths, left=left, label=part if part != "system" else "system under test", color=color)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlabel("CPU seconds per 1,000 events (median over rounds)")
    ax.legend()
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out_dir / "drain_cpu.png", dpi=110)
    plt.close(fig)
    made.append("drain_cpu.png")
    return made


def _latency_chart(plt: Any, latency: dict[str, Any], out_dir: Path) -> list[str]:
    made = []
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for run_no, run in enumerate(latency["runs"]):
        for p in run["phases"]:
            sample = p.get("latencies_sample_ms") or []
            if sample:
                ys = [(i + 1) / len(sample) for i in range(len(sample))]
                ax.plot(sample, ys, label=f"{p['rate']:,.0f} events/s (run {run_no + 1})")
    ax.set_xscale("log")
    ax.set_xlabel("produce -> client latency, ms (log scale)")
    ax.set_ylabel("fraction of notifications")
    ax.set_title("Latency distribution at the clients")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "latency_cdf.png", dpi=110)
    plt.close(fig)
    made.append("latency_cdf.png")
    return made


def write_doc(out_dir: Path, doc: Path) -> Path:
    results = load_results(out_dir)
    commands = sorted({str(r.get("command", "./scripts/dev bench")) for r in results.values()})
    command = "`, `".join(commands)
    charts = render_charts(results, out_dir)
    notes_path = out_dir / "notes.md"
    notes = notes_path.read_text() if notes_path.exists() else None
    raw = os.path.relpath(out_dir, ROOT)
    link = os.path.relpath(out_dir, doc.parent)
    doc.write_text(render_markdown(results, command=command, charts=charts, notes=notes, raw=raw, link=link))
    return doc
