"""Socket.IO client processes for the latency and idle-connection benchmarks.

Each process runs many python-socketio AsyncClients (websocket transport, one token per client for its own
user) and obeys commands from the driver over a pipe: ("connect", n) connects n more clients and answers
("connected", ok, failed); ("stop",) disconnects everything and answers ("result", receipts, duplicates), where a
receipt is (notification id, latency in ms from the `sentNs` stamp in the body's data to receipt).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from multiprocessing.connection import Connection
from typing import Any

import socketio

CONNECT_CONCURRENCY = 25


def client_main(url: str, tokens: list[str], conn: Connection) -> None:
    asyncio.run(_serve(url, tokens, conn))


async def _serve(url: str, tokens: list[str], conn: Connection) -> None:
    clients: list[socketio.AsyncClient] = []
    receipts: list[tuple[str, float]] = []
    seen: set[str] = set()
    duplicates = 0
    loop = asyncio.get_running_loop()

    async def on_notification(data: dict[str, Any]) -> None:
        nonlocal duplicates
        now_ns = time.time_ns()
        sent = (data.get("data") or {}).get("sentNs")
        key = f"{data.get('id')}:{data.get('version')}"
        if key in seen:
            duplicates += 1
            return
        seen.add(key)
        if isinstance(sent, int):
            receipts.append((str(data.get("id")), (now_ns - sent) / 1e6))

    async def connect_one(token: str, gate: asyncio.Semaphore) -> bool:
        async with gate:
            client = socketio.AsyncClient(reconnection=False)
            client.on("notification", on_notification)
            try:
                await client.connect(url, auth={"token": token}, transports=["websocket"], wait_timeout=30)
            except (TimeoutError, socketio.exceptions.ConnectionError, OSError):
                return False
            clients.append(client)
            return True

    next_token = 0
    while True:
        command = await loop.run_in_executor(None, conn.recv)
        if command[0] == "connect":
            count = min(int(command[1]), len(tokens) - next_token)
            batch, next_token = tokens[next_token : next_token + count], next_token + count
            gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
            results = await asyncio.gather(*(connect_one(t, gate) for t in batch))
            ok = sum(1 for r in results if r)
            conn.send(("connected", ok, len(results) - ok))
        elif command[0] == "stop":
            await asyncio.gather(*(c.disconnect() for c in clients if c.connected), return_exceptions=True)
            conn.send(("result", receipts, duplicates))
            return


class ClientFleet:
    """`processes` client processes (spawned, so they inherit nothing from Ray) sharing out `tokens`."""

    def __init__(self, url: str, tokens: list[str], processes: int) -> None:
        ctx = mp.get_context("spawn")
        self.size = [len(tokens[i::processes]) for i in range(processes)]
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        for i in range(processes):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=client_main, args=(url, tokens[i::processes], child), daemon=True)
            proc.start()
            self._conns.append(parent)
            self._procs.append(proc)

    def connect(self, total: int) -> tuple[int, int]:
        """Connect `total` more clients, spread over the processes; returns (connected, failed)."""
        n_procs = len(self._conns)
        share = [total // n_procs + (1 if i < total % n_procs else 0) for i in range(n_procs)]
        for conn, n in zip(self._conns, share, strict=True):
            conn.send(("connect", n))
        ok = failed = 0
        for conn in self._conns:
            _, a, b = conn.recv()
            ok, failed = ok + a, failed + b
        return ok, failed

    def stop(self) -> tuple[list[tuple[str, float]], int]:
        receipts: list[tuple[str, float]] = []
        duplicates = 0
        for conn in self._conns:
            conn.send(("stop",))
        for conn in self._conns:
            _, got, dups = conn.recv()
            receipts.extend(got)
            duplicates += dups
        for proc in self._procs:
            proc.join(timeout=30)
        return receipts, duplicates

    def pids(self) -> list[int]:
        return [int(p.pid) for p in self._procs]
