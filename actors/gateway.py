"""The gateway actor: a thin shell over herald.gateway.Gateway, one per node; Ray options are applied in the
actor factory, not here."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from actors.loops import OwnedLoop, node_id
from actors.metrics_export import MetricsExport, source_name
from herald.config import Settings, load_settings
from herald.gateway import Gateway
from herald.store_redis import RedisStore


class GatewayActor:
    """Holds one Gateway; construction does no I/O, `start()` binds the port inside the actor's event loop."""

    def __init__(self, settings: Settings | None = None, *, port: int | None = None) -> None:
        self._settings = settings or load_settings()
        self._port = port
        self._store: RedisStore | None = None
        self._gateway: Gateway | None = None
        self._bound_port: int | None = None
        self._stopped: asyncio.Event | None = None
        self._owner = OwnedLoop()
        self._export: MetricsExport | None = None

    async def run(self) -> None:
        """Serve until drain(): the supervisor runs this in the loop group and re-runs it after a restart."""
        self._owner.claim()
        self._stopped = asyncio.Event()
        await self.start()
        await self._stopped.wait()

    async def drain(self) -> None:
        await self._owner.run(self._stop_serving())

    async def _stop_serving(self) -> None:
        await self.stop()
        if self._stopped is not None:
            self._stopped.set()

    async def start(self) -> int:
        """Serve on the configured port (or the one given at construction); returns the bound port."""
        if self._gateway is not None and self._bound_port is not None:
            return self._bound_port
        self._store = RedisStore.from_url(self._settings.redis_url, inbox_capacity=self._settings.inbox_capacity)
        self._gateway = Gateway(self._settings, self._store)
        self._gateway.metrics.source = source_name("gateway")
        self._bound_port = await self._gateway.serve(port=self._port)
        self._export = MetricsExport(self._gateway.metrics, self._settings.redis_url)
        self._export.start()
        return self._bound_port

    async def stop(self) -> None:
        gateway, self._gateway = self._gateway, None
        store, self._store = self._store, None
        export, self._export = self._export, None
        self._bound_port = None
        if export is not None:
            await export.close()
        if gateway is not None:
            await gateway.shutdown()
        if store is not None:
            await store.close()

    async def health(self) -> dict[str, Any]:
        if self._gateway is None:
            return {"ok": False, "serving": False, "port": None, "node": node_id()}
        return {**self._gateway.health(), "port": self._bound_port, "pid": os.getpid(), "node": node_id()}
