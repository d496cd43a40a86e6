"""Why a Kafka client could not start when the broker is there but refuses us: wrong SASL credentials or
mechanism, a certificate we do not trust, or a plaintext client on a TLS listener (docs/architecture.md,
Security). aiokafka only logs these and reports "unable to bootstrap", so one direct connection finds the cause."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest

from herald.config import Settings
from herald.errors import KafkaSecurityError
from herald.redaction import redact_text

_AUTH_ERRORS = (
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
)
_PROBE_TIMEOUT_S = 5.0


def first_broker(bootstrap: str) -> tuple[str, int]:
    """'host:port,host2:port2' -> ('host', port) of the first; a bare host gets Kafka's default port."""
    first = bootstrap.split(",", maxsplit=1)[0].strip()
    host, sep, port = first.rpartition(":")
    if not sep or not port.isdigit():
        return first.strip("[]"), 9092
    return host.strip("[]"), int(port)


async def diagnose(settings: Settings, security: dict[str, Any]) -> KafkaSecurityError | None:
    """Connect once with `security` (client_security's options) and send one metadata request; a refusal
    that retrying cannot cure comes back as a KafkaSecurityError, anything else (nobody listening, a timeout)
    as None, for the caller's usual "unreachable" report."""
    host, port = first_broker(settings.kafka_bootstrap)
    options = {k: v for k, v in security.items() if k != "bootstrap_servers"}
    where = f"Kafka at {host}:{port}"
    try:
        conn = await asyncio.wait_for(
            create_conn(host, port, request_timeout_ms=int(_PROBE_TIMEOUT_S * 1000), **options), _PROBE_TIMEOUT_S
        )
        try:
            await asyncio.wait_for(conn.send(MetadataRequest([])), _PROBE_TIMEOUT_S)
        finally:
            conn.close()
    except _AUTH_ERRORS as exc:
        fix = "check kafka_sasl_username, kafka_sasl_password and kafka_sasl_mechanism against the broker's users"
        return _error(settings, f"{where} refused {_who(settings)}: {exc}", fix)
    except (ConnectionResetError, ssl.SSLEOFError):
        if settings.kafka_security_protocol in ("SSL", "SASL_SSL") and await _listens(host, port):
            # A plaintext listener reads our TLS hello as a malformed request and resets the connection.
            fix = (
                f"kafka_security_protocol is {settings.kafka_security_protocol}: is this listener plaintext "
                "(PLAINTEXT or SASL_PLAINTEXT)?"
            )
            return _error(settings, f"{where} reset the connection during the TLS handshake", fix)
        return None
    except ssl.SSLCertVerificationError as exc:
        fix = "set kafka_ssl_cafile to the CA that signed the broker's certificate"
        return _error(settings, f"{where}: its TLS certificate does not verify: {exc.verify_message}", fix)
    except ssl.SSLError as exc:
        fix = "check that this listener speaks TLS (kafka_security_protocol SSL or SASL_SSL)"
        return _error(settings, f"{where}: TLS handshake failed: {exc}", fix)
    except KafkaConnectionError:
        if settings.kafka_security_protocol in ("PLAINTEXT", "SASL_PLAINTEXT") and await _listens(host, port):
            # A TLS listener reads our plaintext request as a broken handshake and hangs up.
            fix = (
                f"kafka_security_protocol is {settings.kafka_security_protocol}: does this listener expect TLS "
                "(SSL or SASL_SSL)?"
            )
            return _error(settings, f"{where} accepts connections but closes them at the first request", fix)
        return None
    except (KafkaError, OSError, TimeoutError):
        return None
    return None


async def _listens(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), _PROBE_TIMEOUT_S)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def _who(settings: Settings) -> str:
    return f"the SASL credentials of user {settings.kafka_sasl_username!r} ({settings.kafka_sasl_mechanism})"


def _error(settings: Settings, message: str, fix: str) -> KafkaSecurityError:
    # Broker and library texts do not quote the password today; redacting keeps it that way if one ever does.
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    return KafkaSecurityError(redact_text(f"{message}; {fix}", [password]))
