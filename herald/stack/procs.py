"""Process and port helpers for the local stack: detached spawns, liveness, graceful stops, log tails."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from herald.errors import StackError

# Popen objects of children this process started; kept so a later stop can reap them (no zombies, and no
# "subprocess still running" ResourceWarning when the object is collected while the daemon runs on).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def spawn_detached(argv: Sequence[str], *, log_path: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start a daemon in its own session so it survives the CLI; stdout and stderr go to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with log_path.open("ab") as log:
            proc = subprocess.Popen(  # noqa: S603 - argv is built by us, never by a shell
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
    except OSError as exc:
        raise StackError(f"could not start {argv[0]}: {exc}") from exc
    _CHILDREN[proc.pid] = proc
    return proc.pid


def _reap(pid: int, wait_s: float = 0.0) -> None:
    child = _CHILDREN.get(pid)
    if child is None:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=wait_s)
    if child.returncode is not None:
        del _CHILDREN[pid]


def pid_alive(pid: int) -> bool:
    """True when `pid` runs and is not a zombie."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        # Field 3 is the state; a zombie has exited and only waits for its parent.
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def process_cmdline(pid: int) -> str | None:
    """The command line of `pid`, or None when it cannot be read (gone, or no /proc and no ps)."""
    proc = Path(f"/proc/{pid}/cmdline")
    if proc.parent.exists():
        try:
            return proc.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            return None
    if sys.platform == "linux":
        return None
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv, used on macOS where /proc does not exist
            ["/bin/ps", "-o", "command=", "-p", str(pid)],
            capture_output=True,
            text=True,
            check=False,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def is_our_process(pid: int, marker: str) -> bool:
    """Alive and its command line contains `marker`: guards against a recycled pid."""
    if not pid_alive(pid):
        return False
    cmdline = process_cmdline(pid)
    return cmdline is None or marker in cmdline


def port_answers(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    """Something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nobody listens on host:port and it can be bound (SO_REUSEADDR, like the daemons themselves)."""
    if port_answers(port, host, timeout_s=0.2):
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(check: Callable[[], bool], *, timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll `check` until it is true or `timeout_s` passes; returns the last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def terminate(pid: int, *, timeout_s: float) -> bool:
    """SIGTERM, wait up to `timeout_s`, then SIGKILL. Returns False when SIGKILL was needed."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    graceful = wait_for(lambda: not pid_alive(pid), timeout_s=timeout_s, interval_s=0.1)
    if not graceful:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), timeout_s=5.0)
    # pid_alive may have seen a zombie before reaping it; reap our own child now, or its Popen object warns
    # "subprocess still running" when collected. A JVM's main thread shows as a zombie while its other threads
    # still exit, and only then can it be reaped: hence a short wait, not a single poll.
    _reap(pid, wait_s=5.0)
    return graceful


def tail(path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log file, or a note when there is none."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
