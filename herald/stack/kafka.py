"""One-node Kafka 4.x (KRaft, broker+controller in one JVM) run by `java` from Maven Central jars."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from herald.errors import StackError
from herald.kafka import MAX_RECORD_BATCH_BYTES
from herald.stack import procs
from herald.stack.service import Service

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[2]
POM = REPO_ROOT / "scripts" / "kafka-pom.xml"

# 1 MiB topic payloads (docs/architecture.md, Kafka topics) plus record-batch overhead.
MESSAGE_MAX_BYTES = MAX_RECORD_BATCH_BYTES


def new_cluster_id() -> str:
    """Like `StorageTool random-uuid`: 16 random bytes, URL-safe base64 without padding, no leading '-'."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


def run_coro(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also when the caller already sits inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    # aiokafka logs every refused connection at ERROR; while we poll a starting broker that is expected noise.
    logger = logging.getLogger(logger_name)
    before = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(before)


async def metadata_answers(bootstrap: str, timeout_s: float = 5.0) -> bool:
    """True when the broker answers a metadata request (list topics) within `timeout_s`."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        await asyncio.wait_for(admin.list_topics(), timeout_s)
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await admin.close()
    return True


def java_binary() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home) / "bin" / "java" if java_home else None
    if candidate is not None and candidate.is_file():
        return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise StackError("java not found: install a JDK 17+ (`sudo apt-get install openjdk-17-jre-headless`)")
    return found


class KafkaBroker(Service):
    """Kafka broker+controller on 127.0.0.1:kafka_port (controller on kafka_controller_port)."""

    name = "kafka"
    marker = "kafka.Kafka"
    port_env = "HERALD_KAFKA_PORT"
    stop_timeout_s = 30.0

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def home(self) -> Path:
        return self.settings.state_dir / "kafka"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def config_path(self) -> Path:
        return self.home / "server.properties"

    @property
    def log4j_path(self) -> Path:
        return self.home / "log4j2.properties"

    @property
    def stdout_path(self) -> Path:
        return self.settings.state_dir / "logs" / "kafka.out"

    @property
    def libs_dir(self) -> Path:
        return self.settings.cache_dir / f"kafka-{self.settings.kafka_version}" / "libs"

    def ready(self) -> bool:
        with _quiet("aiokafka"):
            return run_coro(metadata_answers(self.bootstrap, timeout_s=3.0))

    def check_startable(self) -> None:
        super().check_startable()
        pid = self.pid()
        if (pid is None or not procs.is_our_process(pid, self.marker)) and not procs.port_free(
            self.settings.kafka_controller_port
        ):
            raise StackError(
                f"kafka: controller port {self.settings.kafka_controller_port} on 127.0.0.1 is in use by "
                "another "
                "process; stop it, or pick another port with HERALD_KAFKA_CONTROLLER_PORT=<port>"
            )

    # -- files -----------------------------------------------------------------------------------------------

    def ensure_jars(self) -> None:
        """Fetch the broker jars with Maven when the cache lacks them (`scripts/dev setup` normally did)."""
        if self._kafka_jar_present():
            return
        mvn = shutil.which("mvn")
        if mvn is None or not POM.is_file():
            raise StackError(
                f"Kafka jars missing in {self.libs_dir} and Maven is not available: run `scripts/dev setup` "
                "(or install maven and run `mvn -q -B -f scripts/kafka-pom.xml dependency:copy-dependencies`)"
            )
        argv = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-Dlibs.dir={self.libs_dir}",
            f"-Dkafka.version={self.settings.kafka_version}",
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
        if done.returncode != 0 or not self._kafka_jar_present():
            raise StackError(
                f"fetching Kafka jars failed ({' '.join(argv)}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
            )

    def _kafka_jar_present(self) -> bool:
        return any(self.libs_dir.glob(f"kafka_2.*-{self.settings.kafka_version}.jar"))

    def server_properties(self) -> dict[str, str]:
        s = self.settings
        return {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"127.0.0.1:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.data_dir),
            # One node: every internal topic has one replica and, to start fast, one partition.
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            # Tests join consumer groups constantly; the default 3 s delay would slow every one of them.
            "group.initial.rebalance.delay.ms": "0",
            "num.network.threads": "2",
            "num.io.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            # The pipeline creates topics with their configs (docs/architecture.md); a typo must not create one.
            "auto.create.topics.enable": "false",
            "message.max.bytes": str(MESSAGE_MAX_BYTES),
            "replica.fetch.max.bytes": str(MESSAGE_MAX_BYTES),
            "log.segment.bytes": str(16 * 1024 * 1024),
            "log.retention.check.interval.ms": "300000",
        }

    def log4j_properties(self) -> str:
        return "\n".join(
            [
                "status = warn",
                "name = herald-kafka",
                "appender.file.type = RollingFile",
                "appender.file.name = FILE",
                f"appender.file.fileName = {self.log_path}",
                f"appender.file.filePattern = {self.log_path}.%i",
                "appender.file.layout.type = PatternLayout",
                "appender.file.layout.pattern = [%d] %p %m (%c)%n",
                "appender.file.policies.type = Policies",
                "appender.file.policies.size.type = SizeBasedTriggeringPolicy",
                "appender.file.policies.size.size = 50MB",
                "appender.file.strategy.type = DefaultRolloverStrategy",
                "appender.file.strategy.max = 3",
                "rootLogger.level = INFO",
                "rootLogger.appenderRef.file.ref = FILE",
                # The request logger at DEBUG/TRACE floods; keep it quiet like upstream does.
                "logger.request.name = kafka.request.logger",
                "logger.request.level = WARN",
                "",
            ]
        )

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        props = "".join(f"{k}={v}\n" for k, v in self.server_properties().items())
        self.config_path.write_text("# Written by `herald stack up`; edits are overwritten.\n" + props)
        self.log4j_path.write_text(self.log4j_properties())

    def jvm_options(self) -> list[str]:
        """More JVM flags for both the storage tool and the broker (a test broker trades peak speed for start-up)."""
        return []

    def _java_base(self) -> list[str]:
        return [
            java_binary(),
            *self.jvm_options(),
            f"-Dlog4j2.configurationFile={self.log4j_path}",
            "-cp",
            f"{self.libs_dir}/*",
        ]

    def format_extra_args(self) -> list[str]:
        """More StorageTool arguments: a broker with SASL listeners creates its SCRAM users here (`--add-scram`),
        so they exist before the first client connects (docs/architecture.md, Security)."""
        return []

    def format_storage(self) -> None:
        """Format the log dir once; meta.properties marks a formatted dir, so later ups skip the JVM."""
        if (self.data_dir / "meta.properties").is_file():
            return
        argv = [
            *self._java_base(),
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            new_cluster_id(),
            "-c",
            str(self.config_path),
            "--ignore-formatted",
            *self.format_extra_args(),
        ]
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)  # noqa: S603
        if done.returncode != 0:
            raise StackError(f"formatting Kafka storage in {self.data_dir} failed:\n{done.stdout}{done.stderr}")

    def _launch(self) -> int:
        self.ensure_jars()
        self.write_config()
        self.format_storage()
        heap = f"{self.settings.kafka_heap_mb}m"
        argv = [
            java_binary(),
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-server",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-Djava.awt.headless=true",
            *self.jvm_options(),
            f"-Dlog4j2.configurationFile={self.log4j_path}",
            f"-Dkafka.logs.dir={self.log_path.parent}",
            "-cp",
            f"{self.libs_dir}/*",
            "kafka.Kafka",
            str(self.config_path),
        ]
        return procs.spawn_detached(argv, log_path=self.stdout_path, cwd=self.home)

    def _not_ready_message(self, pid: int) -> str:
        out_tail = procs.tail(self.stdout_path, 15)
        return f"{super()._not_ready_message(pid)}\nLast lines of {self.stdout_path}:\n{out_tail}"
