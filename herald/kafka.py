"""Kafka client plumbing shared by the SDK, the CLI and the pipeline: one place for client options and for
starting a client within a time bound instead of hanging on an absent broker."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.helpers import create_ssl_context

from herald.config import Settings
from herald.errors import BrokerUnavailableError, ConfigError
from herald.events import MAX_EVENT_BYTES
from herald.kafka_security import diagnose

log = logging.getLogger(__name__)

# Room for the record batch framing, the key and the headers around a maximal (1 MiB) event.
MAX_REQUEST_HEADROOM_BYTES = 64 * 1024
# The one size bound of a Kafka request or stored record batch carrying a maximal event: the producers'
# max.request.size, the topics' max.message.bytes and the local broker's message.max.bytes all use it, so a
# record the SDK accepts is never refused further down.
MAX_RECORD_BATCH_BYTES = MAX_EVENT_BYTES + MAX_REQUEST_HEADROOM_BYTES
# Give up on stopping a client after this long: a stop that waits on a dead broker must not hang a shutdown.
CLOSE_TIMEOUT_S = 5.0
_RETRY_BACKOFF_MAX_S = 1.0


class KafkaClient(Protocol):
    """What start_bounded needs: aiokafka producers and consumers `stop()`, the admin client `close()`s."""

    async def start(self) -> None: ...


def request_timeout_ms(settings: Settings) -> int:
    # One knob (connect_timeout_s) bounds both connecting and each request, so "unreachable" is reported
    # in the same time whichever step fails; below one second a produce with acks=all can time out on a
    # healthy broker.
    return max(1000, int(settings.connect_timeout_s * 1000))


def client_security(settings: Settings) -> dict[str, Any]:
    """Bootstrap servers and security options shared by every Kafka client Herald builds (producers, consumers,
    admin clients), so SASL and TLS settings apply everywhere (docs/architecture.md, Security)."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap, "security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": password.get_secret_value() if password is not None else None,
        }
    return options


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.kafka_ssl_cafile, certfile=settings.kafka_ssl_certfile, keyfile=settings.kafka_ssl_keyfile
        )
    except (OSError, ssl.SSLError) as exc:
        # The file names are settings, never secrets; the library's text says what is wrong with the file.
        files = [
            str(f) for f in (settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile) if f
        ]
        raise ConfigError(f"Kafka TLS files {', '.join(files) or '(system CAs)'} cannot be used: {exc}") from exc
    return context


def producer_config(settings: Settings) -> dict[str, Any]:
    """Options of every Herald producer (idempotent, acks=all, compression, short linger; docs/architecture.md)."""
    return {
        **client_security(settings),
        "client_id": "herald-producer",
        "enable_idempotence": True,
        "acks": "all",
        "compression_type": settings.producer_compression,
        "linger_ms": settings.producer_linger_ms,
        "max_request_size": MAX_RECORD_BATCH_BYTES,
        # Batches bigger than aiokafka's 16 KiB default cut per-request overhead at high rates; linger_ms
        # still bounds the latency of a lone event.
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": request_timeout_ms(settings),
    }


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A configured, not yet started producer; call inside a running event loop (aiokafka binds to it)."""
    return AIOKafkaProducer(**{**producer_config(settings), **overrides})


def make_admin(settings: Settings, **overrides: Any) -> AIOKafkaAdminClient:
    """A configured, not yet started admin client."""
    options: dict[str, Any] = {
        **client_security(settings),
        "client_id": "herald-admin",
        "request_timeout_ms": request_timeout_ms(settings),
    }
    return AIOKafkaAdminClient(**{**options, **overrides})


def make_consumer(settings: Settings, *topics: str, **overrides: Any) -> AIOKafkaConsumer:
    """A configured, not yet started consumer (no group and no auto commit unless `overrides` say so)."""
    options: dict[str, Any] = {**client_security(settings), "enable_auto_commit": False}
    return AIOKafkaConsumer(*topics, **{**options, **overrides})


def unreachable(settings: Settings, what: str, timeout_s: float, cause: BaseException | str) -> str:
    return (
        f"Kafka at {settings.kafka_bootstrap} unreachable after {timeout_s:g}s ({what}): {cause}; "
        "is the stack up? try `herald doctor`"
    )


async def start_bounded(
    client: KafkaClient, settings: Settings, what: str, *, timeout_s: float | None = None, retry: bool = True
) -> None:
    """Start an aiokafka client, retrying until `timeout_s` (default settings.connect_timeout_s).

    Retrying inside the bound lets a caller start while the broker is still booting (`retry=False` answers
    at the first refusal, for diagnostics); on failure the client is closed (so no "Unclosed AIOKafka..."
    warning escapes) and BrokerUnavailableError names the broker.
    """
    bound_s = settings.connect_timeout_s if timeout_s is None else timeout_s
    started = time.monotonic()
    deadline = started + bound_s
    backoff_s = 0.1
    diagnosed = False
    last_error: BaseException | str = "timed out"
    while True:
        remaining_s = deadline - time.monotonic()
        if remaining_s <= 0:
            break
        try:
            await asyncio.wait_for(client.start(), timeout=remaining_s)
            return
        except KafkaConnectionError:
            # aiokafka's message lists every resolved address tuple; what matters is that none answered.
            last_error = "no broker answered (connection refused or host unreachable)"
            if not diagnosed:
                # aiokafka only logs a refused login or certificate; one direct connection tells us which.
                diagnosed = True
                refusal = await diagnose(settings, client_security(settings))
                if refusal is not None:
                    await close_client(client)
                    raise refusal from None
        except (KafkaError, OSError) as exc:
            last_error = exc
        except TimeoutError:
            last_error = "timed out"
            break
        if not retry:
            break
        await asyncio.sleep(min(backoff_s, max(0.0, deadline - time.monotonic())))
        backoff_s = min(backoff_s * 2, _RETRY_BACKOFF_MAX_S)
    await close_client(client)
    elapsed_s = round(time.monotonic() - started, 1)
    raise BrokerUnavailableError(unreachable(settings, what, elapsed_s, last_error))


async def close_client(client: object, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Stop a producer/consumer or close an admin client, bounded in time.

    A failure to close is logged, not raised: the caller is usually already handling a more important error.
    """
    closer = getattr(client, "stop", None) or getattr(client, "close", None)
    if closer is None:
        raise TypeError(f"{type(client).__name__} has neither stop() nor close()")
    try:
        await asyncio.wait_for(closer(), timeout=timeout_s)
    except TimeoutError:
        log.warning("closing %s took more than %.1fs; abandoned", type(client).__name__, timeout_s)
    except (KafkaError, OSError) as exc:
        log.warning("closing %s failed: %s", type(client).__name__, exc)
