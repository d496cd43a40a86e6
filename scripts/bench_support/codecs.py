"""Kafka compression codecs on Herald's own payloads, as aiokafka calls them (`scripts/bench.py codecs`).

Why `producer_compression` defaults to zstd: aiokafka compresses lz4 at level 9 (LZ4-HC), which costs a
producer several times the CPU of zstd at its default level 3 for a worse ratio. The payloads are a producer
batch's worth of event JSON and of the bad-input run's malformed records; CPU time of this process only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import codec

from herald.malformed import malformed_records
from herald.workload import social_stream

BATCH_BYTES = 256 * 1024  # producer_config's max_batch_size: what one compression call sees

CODECS: dict[str, Callable[[bytes], bytes]] = {
    "lz4 (aiokafka: level 9, LZ4-HC)": codec.lz4_encode,
    "zstd (level 3)": codec.zstd_encode,
    "snappy": codec.snappy_encode,
    "gzip": codec.gzip_encode,
}


def payloads(events: int) -> dict[str, bytes]:
    base = datetime.now(UTC)
    valid = social_stream("codecs", events=events, users=1000, base=base, spread=timedelta(minutes=5))
    return {
        "event JSON": b"".join(orjson.dumps(e) for e in valid),
        "malformed records": b"".join(m.value or b"" for m in malformed_records("codecs", events)),
    }


def run_codecs(events: int = 20_000) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, data in payloads(events).items():
        batches = [data[i : i + BATCH_BYTES] for i in range(0, len(data), BATCH_BYTES)]
        rows = {}
        for codec_name, encode in CODECS.items():
            started = time.process_time()
            compressed = sum(len(encode(batch)) for batch in batches)
            cpu_s = time.process_time() - started
            rows[codec_name] = {
                "cpu_ms": round(cpu_s * 1000, 1),
                "mb_per_s": round(len(data) / 1e6 / cpu_s, 1),
                "ratio": round(len(data) / compressed, 1),
            }
        results[name] = {"mb": round(len(data) / 1e6, 1), "batches": len(batches), "codecs": rows}
    return results


def report(results: dict[str, Any]) -> str:
    lines = []
    for name, r in results.items():
        lines.append(f"{name}: {r['mb']} MB in {r['batches']} batches of {BATCH_BYTES // 1024} KiB")
        for codec_name, row in r["codecs"].items():
            speed = f"{row['cpu_ms']:>8,.0f} ms CPU {row['mb_per_s']:>8,.0f} MB/s"
            lines.append(f"  {codec_name:<32} {speed}  ratio {row['ratio']:>6.1f}")
    return "\n".join(lines)
