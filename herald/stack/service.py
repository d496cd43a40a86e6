"""What every local-stack daemon shares: pid file, liveness, port checks, detached start, bounded stop."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from herald.config import Settings
from herald.errors import StackError
from herald.stack import procs, state

State = Literal["running", "stopped", "stale", "unhealthy"]


@dataclass(frozen=True)
class ServiceStatus:
    """One row of `herald stack status`."""

    name: str
    pid: int | None
    port: int
    state: State
    log: Path
    note: str = ""


@dataclass(frozen=True)
class StartResult:
    """What `start` did: started fresh, reused a running daemon, and whether it cleaned a stale pid file."""

    name: str
    pid: int
    reused: bool
    cleaned_stale_pid: int | None = None


class Service(ABC):
    """A daemon we start detached and find again through its pid file and port."""

    name: str
    #: A string in the daemon's command line, so a recycled pid is not taken for ours.
    marker: str
    #: HERALD_* variable that moves this service to another port, named in port-conflict errors.
    port_env: str
    stop_timeout_s: float = 10.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @property
    @abstractmethod
    def port(self) -> int: ...

    @property
    def log_path(self) -> Path:
        return self.settings.state_dir / "logs" / f"{self.name}.log"

    @abstractmethod
    def ready(self) -> bool:
        """One bounded readiness probe (a real protocol request, not only a TCP connect)."""

    @abstractmethod
    def _launch(self) -> int:
        """Prepare files and spawn the daemon detached; return its pid."""

    def ready_timeout_s(self) -> float:
        return 60.0

    def pid(self) -> int | None:
        return state.read_pid(self.settings, self.name)

    def is_running(self) -> bool:
        """Our process is alive and something answers on its port."""
        pid = self.pid()
        return pid is not None and procs.is_our_process(pid, self.marker) and procs.port_answers(self.port)

    def status(self) -> ServiceStatus:
        pid = self.pid()
        if pid is None:
            st: State = "stopped"
        elif not procs.is_our_process(pid, self.marker):
            st = "stale"
        else:
            st = "running" if procs.port_answers(self.port) else "unhealthy"
        return ServiceStatus(self.name, pid, self.port, st, self.log_path)

    def check_startable(self) -> None:
        """Raise StackError when we would start the daemon but its port belongs to someone else."""
        pid = self.pid()
        if pid is not None and procs.is_our_process(pid, self.marker):
            return
        if not procs.port_free(self.port):
            raise StackError(
                f"{self.name}: port {self.port} on 127.0.0.1 is in use by a process that is not this stack's "
                f"{self.name}; stop it, or pick another port with {self.port_env}=<port> "
                f"(state dir {self.settings.state_dir})"
            )

    def start(self) -> StartResult:
        """Reuse the running daemon, or clean a stale pid file and start a new one; wait until ready."""
        pid = self.pid()
        stale: int | None = None
        if pid is not None and procs.is_our_process(pid, self.marker):
            self._check_same_port(pid)
            if not self._wait_ready(pid):
                raise StackError(
                    f"{self.name} (pid {pid}) runs but does not answer on port {self.port}; "
                    f"run `herald stack down` and `herald stack up`. Log {self.log_path}:\n"
                    f"{procs.tail(self.log_path)}"
                )
            return StartResult(self.name, pid, reused=True)
        if pid is not None:
            state.remove_pid(self.settings, self.name)
            stale = pid
        self.check_startable()
        pid = self._launch()
        state.write_pid(self.settings, self.name, pid)
        if not self._wait_ready(pid):
            procs.terminate(pid, timeout_s=5.0)
            state.remove_pid(self.settings, self.name)
            raise StackError(self._not_ready_message(pid))
        return StartResult(self.name, pid, reused=False, cleaned_stale_pid=stale)

    def _check_same_port(self, pid: int) -> None:
        # A changed HERALD_*_PORT with the old daemon still up would otherwise look like a hung daemon.
        recorded = state.load_stack_file(self.settings)["services"].get(self.name, {}).get("port")
        if isinstance(recorded, int) and recorded != self.port:
            raise StackError(
                f"{self.name} (pid {pid}) runs on port {recorded} but the settings ask for {self.port}; "
                f"run `herald stack down` first to move it"
            )

    def _not_ready_message(self, pid: int) -> str:
        why = "exited" if not procs.pid_alive(pid) else f"did not answer within {self.ready_timeout_s():.0f} s"
        return f"{self.name} (pid {pid}) {why}. Last lines of {self.log_path}:\n{procs.tail(self.log_path)}"

    def _wait_ready(self, pid: int) -> bool:
        # Stop waiting as soon as the process dies: its log says why, no need to sit out the deadline.
        def done() -> bool:
            return not procs.pid_alive(pid) or (procs.port_answers(self.port) and self.ready())

        procs.wait_for(done, timeout_s=self.ready_timeout_s(), interval_s=0.2)
        return procs.pid_alive(pid) and procs.port_answers(self.port) and self.ready()

    def stop(self) -> bool | None:
        """SIGTERM, then SIGKILL after `stop_timeout_s`. Returns None when nothing ran, False when killed."""
        pid = self.pid()
        graceful: bool | None = None
        if pid is not None and procs.is_our_process(pid, self.marker):
            graceful = procs.terminate(pid, timeout_s=self.stop_timeout_s)
        state.remove_pid(self.settings, self.name)
        return graceful
