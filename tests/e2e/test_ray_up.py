"""`ray up` with cluster-onprem.yaml against an sshd on this machine, the pipeline started on that cluster with
`ray exec ... herald run`, one event published with the SDK and received over Socket.IO, then `ray down`: no
raylet or GCS of that cluster is left.

The node is an unprivileged account of the test's own (tests/support/ray_up.py). Its venv is a thin venv over
this .venv (HERALD_NODE_VENV, scripts/node-setup) instead of a fresh install of requirements.lock, which takes
minutes here; everything else is the real definition, rendered for the test's host (herald/cluster.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from herald.auth import mint_token
from herald.cluster import ONPREM_YAML, OnPremHosts, render_onprem
from herald.config import Settings, load_settings
from herald.kafka import close_client, make_admin, start_bounded
from herald.producer import NotificationProducer
from tests.integration.gateway_harness import Recorder, wait_until
from tests.support import ray_up
from tests.support.events import event_dict

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
RAY = ROOT / ".venv" / "bin" / "ray"
UP_TIMEOUT_S = 150.0
STEP_TIMEOUT_S = 90.0
CLUSTER_PROCESSES = ("raylet", "gcs_server")
# README "On a Ray cluster": how the pipeline is launched and drained on the head.
LAUNCH = "nohup herald run >> ~/herald-run.log 2>&1 & echo $! > ~/herald-run.pid"
STOP = "kill -TERM $(cat ~/herald-run.pid)"


@dataclass(frozen=True)
class Cluster:
    yaml_path: Path
    env: dict[str, str]
    account: ray_up.NodeAccount
    settings: Settings
    logs: Path

    def ray(self, *args: str, timeout_s: float = STEP_TIMEOUT_S, log: str) -> subprocess.CompletedProcess[str]:
        """A `ray` CLI command as the operator; its output goes to logs/<log>.log and into a failure's message."""
        path = self.logs / f"{log}.log"
        with path.open("w") as out:
            done = subprocess.run(
                [str(RAY), *args],
                check=False,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout_s,
            )
        assert done.returncode == 0, f"ray {' '.join(args)} exited {done.returncode}:\n{tail(path)}"
        return done


def tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else f"({path} missing)"


def free_port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def node_settings(settings: Settings, run_id: str) -> Settings:
    """What the cluster's herald.toml says: the shared stack, a topic and reader group of this run only."""
    return load_settings(
        kafka_bootstrap=settings.kafka_bootstrap,
        redis_url=settings.redis_url,
        jwt_secret=settings.require_jwt_secret(),
        events_topic=f"rayup-{run_id}",
        reader_group=f"herald-rayup-{run_id}",
        gateway_host="127.0.0.1",
        gateway_port=free_port(),
        readers=1,
        aggregators=1,
    )


def herald_toml(settings: Settings) -> str:
    values = {
        "kafka_bootstrap": settings.kafka_bootstrap,
        "redis_url": settings.redis_url,
        "jwt_secret": settings.require_jwt_secret(),
        "events_topic": settings.events_topic,
        "reader_group": settings.reader_group,
        "gateway_host": settings.gateway_host,
        "gateway_port": settings.gateway_port,
        "readers": settings.readers,
        "aggregators": settings.aggregators,
    }
    lines = [f"{k} = {v}" if isinstance(v, int) else f'{k} = "{v}"' for k, v in values.items()]
    return "[herald]\n" + "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, settings: Settings) -> Iterator[Cluster]:
    missing = ray_up.missing_prerequisites()
    if missing:
        pytest.fail(f"the `ray up` test needs: {'; '.join(missing)}", pytrace=False)
    run_id = uuid.uuid4().hex[:8]
    work = tmp_path_factory.mktemp("rayup")
    logs = work / "logs"
    logs.mkdir()
    # The account's home is short (/tmp/hrXXXXXXXX): Ray's Unix sockets go under it, and their paths are limited.
    with (
        ray_up.node_account(Path("/tmp"), keep_logs=logs / "node") as account,
        ray_up.venv_visible_to(account, Path(os.path.realpath(ROOT / ".venv"))) as base_venv,
        ray_up.sshd(work / "sshd", account, {"HERALD_NODE_VENV": str(base_venv)}) as server,
    ):
        operator_home = work / "operator"
        operator_home.mkdir()
        env = ray_up.operator_env(operator_home)
        # The operator's token; file_mounts copies it to the node, where `ray start` turns token auth on with it.
        subprocess.run([str(RAY), "get-auth-token", "--generate"], env=env, check=True, capture_output=True)
        cluster_settings = node_settings(settings, run_id)
        toml = work / "herald.toml"
        toml.write_text(herald_toml(cluster_settings))
        rendered = render_onprem(
            (ROOT / ONPREM_YAML).read_text(),
            OnPremHosts(server.address, (), account.name, server.client_key),
            cluster_name=f"herald-rayup-{run_id}",
            project_dir=ROOT,
            sources={"~/herald.toml": toml},
        )
        yaml_path = work / "cluster.yaml"
        yaml_path.write_text(rendered)
        try:
            yield Cluster(yaml_path, env, account, cluster_settings, logs)
        finally:
            # Also on failure: stop the cluster the way an operator does; node_account then kills what is left.
            with (logs / "down-teardown.log").open("w") as out:
                subprocess.run(
                    [str(RAY), "down", "-y", str(yaml_path)],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=STEP_TIMEOUT_S,
                    check=False,
                )


@pytest.fixture
async def topic_cleanup(cluster: Cluster) -> AsyncIterator[None]:
    yield
    admin: AIOKafkaAdminClient = make_admin(cluster.settings)
    await start_bounded(admin, cluster.settings, "ray up test cleanup")
    try:
        await admin.delete_topics([cluster.settings.events_topic])
    finally:
        await close_client(admin)


def gateway_serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def running(pid_file: Path) -> bool:
    try:
        return Path(f"/proc/{int(pid_file.read_text())}").exists()
    except (FileNotFoundError, ValueError):
        return True  # not written yet


async def wait_serving(port: int, pid_file: Path, log: Path) -> None:
    """Until the gateway answers /healthz; fails at once with the log if `herald run` ended first."""
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not await asyncio.to_thread(gateway_serving, port):
        if not running(pid_file):
            raise AssertionError(f"herald run ended before serving:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gateway not serving within {STEP_TIMEOUT_S:g}s:\n{tail(log)}")
        await asyncio.sleep(0.2)


async def wait_exit(pid: int, log: Path) -> None:
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while await asyncio.to_thread(Path(f"/proc/{pid}").exists):
        if time.monotonic() > deadline:
            raise AssertionError(f"herald run still running {STEP_TIMEOUT_S:g}s after SIGTERM:\n{tail(log)}")
        await asyncio.sleep(0.2)


async def wait_gone(uid: int, timeout_s: float) -> None:
    """Until the account runs no raylet or gcs_server."""
    deadline = time.monotonic() + timeout_s
    while ray_up.named_processes(uid, CLUSTER_PROCESSES):
        if time.monotonic() > deadline:
            raise AssertionError(f"still running after ray down: {ray_up.named_processes(uid, CLUSTER_PROCESSES)}")
        await asyncio.sleep(0.2)


def gcs_environment(uid: int) -> dict[str, str]:
    for pid, name in ray_up.account_processes(uid).items():
        if name == "gcs_server":
            raw = Path(f"/proc/{pid}/environ").read_bytes()
            return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item)
    raise AssertionError("no gcs_server of the cluster")


@pytest.mark.timeout(420)
async def test_ray_up_runs_the_pipeline_and_ray_down_leaves_nothing(cluster: Cluster, topic_cleanup: None) -> None:
    timings: dict[str, float] = {}
    started = time.monotonic()
    up = await asyncio.to_thread(
        cluster.ray, "up", "-y", "--no-config-cache", str(cluster.yaml_path), timeout_s=UP_TIMEOUT_S, log="up"
    )
    assert up.returncode == 0
    timings["ray up"] = time.monotonic() - started
    uid = cluster.account.uid
    assert sorted(n.split("[")[0] for n in ray_up.named_processes(uid, CLUSTER_PROCESSES)) == sorted(
        CLUSTER_PROCESSES
    ), ray_up.account_processes(uid)
    # Ray 2.60 token authentication is on for this cluster, with the token the operator generated.
    gcs_env = gcs_environment(uid)
    assert gcs_env.get("RAY_AUTH_MODE") == "token"
    token = (cluster.account.home / ".ray" / "auth_token").read_text().strip()
    assert token == (Path(cluster.env["HOME"]) / ".ray" / "auth_token").read_text().strip()

    # The pipeline, started and drained with the README's commands (background, pid file, log on the node).
    run_log, run_pid = cluster.account.home / "herald-run.log", cluster.account.home / "herald-run.pid"
    await asyncio.to_thread(cluster.ray, "exec", "--no-config-cache", str(cluster.yaml_path), LAUNCH, log="launch")
    try:
        port = cluster.settings.gateway_port
        phase = time.monotonic()
        await wait_serving(port, run_pid, run_log)
        timings["pipeline start"] = time.monotonic() - phase
        # The driver joined the `ray up` cluster: the account still runs exactly one GCS and one raylet (a
        # private runtime, ray.init(address="local"), would have started a second pair).
        assert sorted(n.split("[")[0] for n in ray_up.named_processes(uid, CLUSTER_PROCESSES)) == sorted(
            CLUSTER_PROCESSES
        )
        assert "Started a local Ray instance" not in tail(run_log, 100_000)

        user = f"rayup-{uuid.uuid4().hex[:8]}"
        client = Recorder()
        await client.connect(f"http://127.0.0.1:{port}", mint_token(cluster.settings, user))
        try:
            await wait_until(lambda: bool(client.unread), timeout_s=30, what="the initial unread_count")
            phase = time.monotonic()
            async with NotificationProducer(cluster.settings) as producer:
                await producer.publish(event_dict(user, actor="u42", actor_name="John"))
            await wait_until(lambda: bool(client.notifications), timeout_s=STEP_TIMEOUT_S, what="the notification")
            timings["publish -> Socket.IO"] = time.monotonic() - phase
        finally:
            await client.close()
        note = client.notifications[0]
        assert note["text"] == "John liked your post"
        assert (note["version"], note["count"]) == (1, 1)

        # Drain: SIGTERM to `herald run` on the head; it logs "drained" once readers committed, then exits.
        pid = int(run_pid.read_text())
        await asyncio.to_thread(cluster.ray, "exec", "--no-config-cache", str(cluster.yaml_path), STOP, log="stop")
        await wait_exit(pid, run_log)
        assert "drained" in tail(run_log)
    finally:
        with suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(run_pid.read_text()), signal.SIGKILL)

    phase = time.monotonic()
    await asyncio.to_thread(cluster.ray, "down", "-y", str(cluster.yaml_path), log="down")
    await wait_gone(uid, 30.0)
    timings["ray down"] = time.monotonic() - phase
    timings["total"] = time.monotonic() - started
    print("ray up test timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    assert not ray_up.named_processes(uid, CLUSTER_PROCESSES)
