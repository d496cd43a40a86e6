"""CPU seconds and memory of the processes a benchmark involves, read from /proc (psutil is not installed)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from herald.config import Settings
from scripts.bench_support.common import descendants, proc_name, proc_status_kib

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process so far (its own, not its reaped children's); 0 when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based in proc(5)).
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def stack_pids(settings: Settings) -> dict[str, int]:
    """The pids of the local stack's Redis and Kafka (empty for a service that does not run here)."""
    from herald.stack import status  # noqa: PLC0415 - only needed where the stack is local

    return {s.name: s.pid for s in status(settings) if s.pid is not None and s.name in ("redis", "kafka")}


@dataclass
class CpuSnapshot:
    at_s: float
    by_pid: dict[int, float]


@dataclass
class CpuMeter:
    """CPU seconds spent by named groups of processes between two snapshots.

    `groups` maps a label to a callable-free list of pids known up front; `tree_roots` adds every live
    descendant of a root at each snapshot (a Ray runtime starts workers as it goes), labelled by `roles` when
    the pid is known there (an actor's pid from its health) and `tree_label` otherwise.
    """

    groups: Mapping[str, Iterable[int]] = field(default_factory=dict)
    tree_roots: Mapping[str, int] = field(default_factory=dict)
    roles: dict[int, str] = field(default_factory=dict)

    def pids(self) -> dict[int, str]:
        labelled: dict[int, str] = {}
        for label, root in self.tree_roots.items():
            for pid in descendants(root):
                labelled[pid] = self.roles.get(pid, label)
        for label, pids in self.groups.items():
            for pid in pids:
                labelled[pid] = label
        return labelled

    def snapshot(self) -> CpuSnapshot:
        return CpuSnapshot(time.perf_counter(), {pid: cpu_s(pid) for pid in self.pids()})

    def between(self, start: CpuSnapshot, end: CpuSnapshot) -> dict[str, float]:
        """CPU seconds per label; a process born after `start` counts from zero."""
        labels = self.pids()
        out: dict[str, float] = {}
        for pid, seconds in end.by_pid.items():
            label = labels.get(pid, "gone")
            out[label] = out.get(label, 0.0) + max(0.0, seconds - start.by_pid.get(pid, 0.0))
        return out


def background_cpu_per_s(pids: Mapping[str, int], seconds: float = 2.0) -> dict[str, float]:
    """CPU seconds per second that Redis and Kafka burn while this benchmark does nothing: other users of the
    shared stack (tests of other engineers) and the services' own housekeeping."""
    before = {name: cpu_s(pid) for name, pid in pids.items()}
    time.sleep(seconds)
    return {name: (cpu_s(pid) - before[name]) / seconds for name, pid in pids.items()}


def tree_rss_mib(root: int) -> dict[str, float]:
    """RSS of every process below `root`, summed per command name."""
    by_name: dict[str, float] = {}
    for pid in descendants(root):
        name = proc_name(pid)
        by_name[name] = by_name.get(name, 0.0) + proc_status_kib(pid, "VmRSS") / 1024
    return by_name
