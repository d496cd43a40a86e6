"""A second Kafka broker for the security tests: the local stack's launcher (herald/stack/kafka.py) with a
SASL_SSL listener (SCRAM-SHA-512 over TLS), started once per test module on ports of its own."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from herald.config import Settings, load_settings
from herald.kafka import close_client, make_admin, start_bounded
from herald.stack import procs
from herald.stack.kafka import KafkaBroker, run_coro
from tests.support.tls import TlsFiles, make_tls_files

log = logging.getLogger(__name__)

# From launch to the first SASL_SSL metadata answer (storage format included), timing `secured_broker(...).start()`
# three times on the 2-core dev machine (2026-11-29): 5.5-7 s when quiet, 12-16 s while a soak benchmark kept both
# cores busy (load 5-8). Six times the busy figure allows for a machine shared with other test sessions; past it
# the broker is not coming, and start() raises StackError with the broker's log instead of the test hanging. The
# storage format before it has a bound of its own (herald/stack/kafka.py).
USUAL_START_S = "6-16 s"
START_BOUND_S = 90.0
SLOW_START_S = 45.0  # still within the bound, but worth a line in the log: the machine is busy

SASL_USER = "herald-app"
# Alphanumeric only: StorageTool's --add-scram parser splits on '=' and ',' inside its brackets.
SASL_PASSWORD = "ScramPassw0rdNeverLogged4711"


@dataclass(frozen=True)
class SecuredPorts:
    sasl_ssl: int
    internal: int  # PLAINTEXT, inter-broker only: a single combined node still needs a broker listener of its own
    controller: int


class SecuredKafkaBroker(KafkaBroker):
    """Clients reach it only on SASL_SSL; the broker's own traffic stays on a loopback PLAINTEXT listener."""

    name = "kafka-secured"

    def __init__(self, settings: Settings, ports: SecuredPorts, tls: TlsFiles) -> None:
        super().__init__(settings)
        self.ports = ports
        self.tls = tls

    def client_settings(self, **overrides: object) -> Settings:
        """Settings of a Herald client of this broker: SASL_SSL with the SCRAM user and the test CA."""
        values: dict[str, object] = {
            "kafka_bootstrap": self.bootstrap,
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": SASL_USER,
            "kafka_sasl_password": SecretStr(SASL_PASSWORD),
            "kafka_ssl_cafile": self.tls.ca_cert,
            "connect_timeout_s": 10.0,
        }
        return load_settings(**{**values, **overrides})

    def server_properties(self) -> dict[str, str]:
        props = super().server_properties()
        p = self.ports
        listeners = (
            f"SASL_SSL://127.0.0.1:{p.sasl_ssl},INTERNAL://127.0.0.1:{p.internal},CONTROLLER://127.0.0.1:{p.controller}"
        )
        props |= {
            "listeners": listeners,
            "advertised.listeners": listeners,
            "inter.broker.listener.name": "INTERNAL",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            # Server side of SCRAM: credentials come from the cluster metadata (--add-scram), not from JAAS.
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.tls.server_bundle),
            "ssl.client.auth": "none",
            "num.network.threads": "1",
        }
        return props

    def format_extra_args(self) -> list[str]:
        return ["--add-scram", f"SCRAM-SHA-512=[name={SASL_USER},password={SASL_PASSWORD}]"]

    def jvm_options(self) -> list[str]:
        # The C1 compiler alone starts the JVM noticeably faster on two busy cores; a test broker carries little.
        return ["-XX:TieredStopAtLevel=1"]

    def ready_timeout_s(self) -> float:
        return START_BOUND_S

    def _not_ready_message(self, pid: int) -> str:
        # Past the bound the broker is broken (a port taken, a bad config, no memory), not slow: say what is
        # usual so nobody raises the bound instead of reading the log below.
        usual = f"the secured test broker is usually ready in {USUAL_START_S}; it was given {START_BOUND_S:g} s"
        return f"{usual}. {super()._not_ready_message(pid)}"

    def ready(self) -> bool:
        return run_coro(_answers(self.client_settings(connect_timeout_s=3.0)))


async def _answers(settings: Settings) -> bool:
    admin = make_admin(settings)
    try:
        await start_bounded(admin, settings, "secured broker readiness", retry=False)
    except Exception:  # noqa: BLE001 - not ready yet, whatever the reason; the caller polls with a deadline
        return False
    try:
        await asyncio.wait_for(admin.list_topics(), 3.0)
    except (TimeoutError, OSError):
        return False
    finally:
        await close_client(admin)
    return True


@contextmanager
def running_secured_broker(root: Path) -> Iterator[SecuredKafkaBroker]:
    """A started broker with its own CA and data under `root`, stopped on exit (the modules' fixtures)."""
    broker = secured_broker(root / "state", make_tls_files(root / "tls"))
    began = time.monotonic()
    try:
        broker.start()
        startup_s = time.monotonic() - began
        level = logging.WARNING if startup_s > SLOW_START_S else logging.INFO
        log.log(level, "secured broker ready on %s after %.1fs", broker.bootstrap, startup_s)
        yield broker
    finally:
        broker.stop()


def secured_broker(state_dir: Path, tls: TlsFiles) -> SecuredKafkaBroker:
    """A broker on free ports with its data under `state_dir`; call start() and stop()."""
    ports = SecuredPorts(procs.free_port(), procs.free_port(), procs.free_port())
    settings = load_settings(
        state_dir=state_dir, kafka_port=ports.sasl_ssl, kafka_controller_port=ports.controller, kafka_heap_mb=256
    )
    return SecuredKafkaBroker(settings, ports, tls)
