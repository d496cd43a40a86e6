"""Optional local Ray head (`herald stack up --with-ray`); without it the pipeline runs Ray in-process."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from herald.errors import StackError
from herald.stack import procs, state
from herald.stack.service import Service


def ray_binary() -> str:
    beside = Path(sys.executable).parent / "ray"
    if beside.is_file():
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise StackError("`ray` not found: run `scripts/dev setup` (it installs requirements.lock into .venv)")
    return found


class RayHead(Service):
    """`ray start --head --block`, detached.

    `--block` keeps one supervising process whose SIGTERM shuts down exactly this head's processes; `ray stop`
    would kill every Ray process of the machine, including other people's in-process `ray.init()` runtimes.
    Its own `--temp-dir` keeps in-process `ray.init()` calls from discovering and joining this head.
    """

    name = "ray"
    marker = "--head"
    port_env = "HERALD_RAY_ADDRESS (unset to use in-process Ray)"
    stop_timeout_s = 30.0

    @property
    def _port_file(self) -> Path:
        return state.run_dir(self.settings) / "ray.port"

    @property
    def port(self) -> int:
        try:
            return int(self._port_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ready_timeout_s(self) -> float:
        return 90.0

    def ready(self) -> bool:
        # The GCS port answering is what `ray.init(address=...)` needs.
        return self.port > 0 and procs.port_answers(self.port)

    def check_startable(self) -> None:
        # The port is picked free at launch, so there is nothing to collide with beforehand.
        return

    def _launch(self) -> int:
        port = procs.free_port()
        self._port_file.parent.mkdir(parents=True, exist_ok=True)
        self._port_file.write_text(f"{port}\n")
        temp_dir = self.settings.state_dir / "ray"
        temp_dir.mkdir(parents=True, exist_ok=True)
        num_cpus = self.settings.ray_num_cpus or os.cpu_count() or 1
        argv = [
            ray_binary(),
            "start",
            "--head",
            "--block",
            f"--port={port}",
            f"--num-cpus={num_cpus}",
            "--include-dashboard=false",
            "--disable-usage-stats",
            f"--temp-dir={temp_dir}",
        ]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        env.pop("RAY_ADDRESS", None)
        return procs.spawn_detached(argv, log_path=self.log_path, cwd=self.settings.state_dir, env=env)

    def stop(self) -> bool | None:
        graceful = super().stop()
        if self._port_file.exists():
            self._port_file.unlink()
        return graceful
