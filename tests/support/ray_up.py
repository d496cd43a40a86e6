"""A throwaway Ray node on this machine for tests/e2e/test_ray_up.py: an unprivileged account with its own home,
reached by an sshd of the test's own on a loopback address, and the `ray` CLI run as the operator.

The account is what keeps the `ray up` cluster apart from every other Ray runtime here: `ray stop` (run by the
start commands and by `ray down`) signals every Ray process its user may signal, so as root it would stop them
all. Teardown kills what is left of the account's processes by pid and removes the account.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

SSHD = Path("/usr/sbin/sshd")
STARTUP_S = 20.0


APT_PACKAGES = {str(SSHD): "openssh-server", "rsync": "rsync", "ssh": "openssh-client"}


def missing_prerequisites() -> list[str]:
    """What the test cannot run without. Missing packages are installed first when this is root on Debian
    (./scripts/dev setup installs them too); what is still missing is named with how to get it."""
    if os.geteuid() != 0:
        return ["root (to create the node account, bind-mount the venv and run sshd)"]
    absent = [package for tool, package in APT_PACKAGES.items() if shutil.which(tool) is None]
    if not Path("/usr/bin/python3.11").is_file():
        absent.append("python3-venv")
    if absent and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "--no-install-recommends", *absent],
            env=env,
            check=False,
            capture_output=True,
        )
    missing = [
        f"{package} (apt-get install {package})" for tool, package in APT_PACKAGES.items() if not shutil.which(tool)
    ]
    for tool in ("useradd", "runuser", "mount"):
        if shutil.which(tool) is None:
            missing.append(tool)
    return missing


@dataclass(frozen=True)
class NodeAccount:
    name: str
    uid: int
    home: Path


def account_processes(uid: int) -> dict[int, str]:
    """pid -> name (comm) of every process whose real uid is `uid`, read from /proc."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError):
            status = (entry / "status").read_text()
            real_uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
            zombie = any(line.startswith("State:") and "Z" in line.split()[1] for line in status.splitlines())
            if int(real_uid) == uid and not zombie:
                found[int(entry.name)] = (entry / "comm").read_text().strip()
    return found


def named_processes(uid: int, names: tuple[str, ...]) -> list[str]:
    """The account's processes named one of `names` (raylet, gcs_server), as name[pid]."""
    return [f"{name}[{pid}]" for pid, name in account_processes(uid).items() if name in names]


def kill_account_processes(uid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `timeout_s`, to every process of the test's own account, by pid."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = account_processes(uid)
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + timeout_s
        while account_processes(uid) and time.monotonic() < deadline:
            time.sleep(0.1)


@contextmanager
def node_account(root: Path, keep_logs: Path | None = None) -> Iterator[NodeAccount]:
    """A fresh account with its home under `root`; at exit its processes are killed, Ray's session logs of the
    node copied to `keep_logs` (for a failure's post-mortem), and the account and home removed."""
    # Short names and paths: Ray's Unix sockets live under the home (RAY_TMPDIR) and socket paths are limited.
    name = f"hr{uuid.uuid4().hex[:8]}"
    home = root / name
    subprocess.run(
        ["useradd", "--create-home", "--home-dir", str(home), "--shell", "/bin/bash", "--password", "*", name],
        check=True,
        capture_output=True,
    )
    uid = pwd.getpwnam(name).pw_uid
    try:
        yield NodeAccount(name, uid, home)
    finally:
        kill_account_processes(uid)
        session_logs = home / ".herald-ray" / "ray" / "session_latest" / "logs"
        if keep_logs is not None and session_logs.is_dir():
            shutil.copytree(session_logs, keep_logs, dirs_exist_ok=True, ignore_dangling_symlinks=True)
        subprocess.run(["userdel", "--force", name], check=False, capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


@contextmanager
def venv_visible_to(account: NodeAccount, venv: Path) -> Iterator[Path]:
    """`venv` at a path the account can read. A checkout under a private directory (/root/...) is bind-mounted
    read-only at /tmp/<account>-venv for the test's duration; the venv's own files are world-readable."""
    readable = (
        subprocess.run(
            ["runuser", "-u", account.name, "--", "test", "-r", str(venv / "pyvenv.cfg")], check=False
        ).returncode
        == 0
    )
    if readable:
        yield venv
        return
    mount_point = Path(f"/tmp/{account.name}-venv")
    mount_point.mkdir()
    subprocess.run(["mount", "--bind", "-o", "ro", str(venv), str(mount_point)], check=True, capture_output=True)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False, capture_output=True)
        mount_point.rmdir()


def free_loopback_address() -> str:
    """A 127.x.y.z whose port 22 is free: `ray up` has no SSH port setting, so the node needs its own address."""
    for _ in range(20):
        address = f"127.{uuid.uuid4().int % 200 + 20}.{uuid.uuid4().int % 250 + 1}.{uuid.uuid4().int % 250 + 1}"
        with socket.socket() as probe:
            try:
                probe.bind((address, 22))
            except OSError:
                continue
            return address
    raise AssertionError("no loopback address with a free port 22 (is an sshd listening on 0.0.0.0:22?)")


@dataclass(frozen=True)
class Sshd:
    address: str
    client_key: Path
    process: subprocess.Popen[bytes]


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


@contextmanager
def sshd(workdir: Path, account: NodeAccount, env: dict[str, str]) -> Iterator[Sshd]:
    """sshd on a free loopback address, letting only `account` in with a key generated here; `env` is set in
    every session (SetEnv), which is how the test hands the node its settings (HERALD_NODE_VENV)."""
    workdir.mkdir(parents=True, exist_ok=True)
    host_key, client_key = workdir / "host_ed25519", workdir / "client_ed25519"
    keygen(host_key)
    keygen(client_key)
    # sshd reads authorized_keys as the account, so the file lives in the account's home and belongs to it.
    ssh_dir = account.home / ".ssh"
    ssh_dir.mkdir(mode=0o700, exist_ok=True)
    authorized = ssh_dir / "authorized_keys"
    authorized.write_text(Path(f"{client_key}.pub").read_text())
    for path in (ssh_dir, authorized):
        os.chown(path, account.uid, -1)
    address = free_loopback_address()
    config = workdir / "sshd_config"
    set_env = " ".join(f"{k}={v}" for k, v in env.items())
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {address}:22",
                f"HostKey {host_key}",
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                f"AllowUsers {account.name}",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "PrintMotd no",
                f"SetEnv {set_env}" if set_env else "",
                "",
            ]
        )
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    log = (workdir / "sshd.log").open("wb")
    process = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + STARTUP_S
        while not _answers(address, 22):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"sshd did not start: {(workdir / 'sshd.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield Sshd(address, client_key, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _answers(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


def operator_env(home: Path) -> dict[str, str]:
    """The environment of the `ray` CLI run as the operator: its own HOME (~/.ray/auth_token) and Ray temp dir
    (the on-prem provider's state), this venv's tools first on PATH, nothing that would point Ray elsewhere."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "RAY_"))}
    env.update(
        HOME=str(home),
        RAY_TMPDIR=str(home / "raytmp"),
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '/usr/bin:/bin')}",
        RAY_USAGE_STATS_ENABLED="0",
    )
    return env
