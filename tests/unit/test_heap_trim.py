"""actors/gc_tuning.py HeapTrim: glibc's free heap memory goes back to the OS at most once per interval, however
often the metrics tick calls it, and nowhere it cannot."""

from __future__ import annotations

from actors.gc_tuning import HeapTrim, _glibc_malloc_trim


class Recorder:
    """Stands in for malloc_trim: records each padding asked for."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, pad: int) -> int:
        self.calls.append(pad)
        return 1


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_trims_at_most_once_per_interval() -> None:
    clock, trim = FakeClock(), Recorder()
    heap = HeapTrim(30.0, trim=trim, clock=clock)
    calls = trim.calls
    heap()
    assert calls == []  # not before a first interval has passed
    clock.now += 29.9
    heap()
    assert calls == []
    clock.now += 0.1
    heap()
    heap()  # the same tick again: not due
    assert calls == [0]
    clock.now += 45.0
    heap()
    assert calls == [0, 0]
    assert heap.trims == 2


def test_the_next_trim_counts_from_the_last_one() -> None:
    clock, trim = FakeClock(), Recorder()
    heap = HeapTrim(30.0, trim=trim, clock=clock)
    calls = trim.calls
    clock.now += 100.0  # ticks stalled: one trim, not one per missed interval
    heap()
    heap()
    assert len(calls) == 1
    clock.now += 29.0
    heap()
    assert len(calls) == 1


def test_glibc_trim_is_found_and_callable_here() -> None:
    # Herald's machines run glibc (Debian); elsewhere HeapTrim does nothing.
    trim = _glibc_malloc_trim()
    assert trim is not None
    assert trim(0) in (0, 1)
