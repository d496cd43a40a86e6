"""Memory settings for the processes on the event path (readers and aggregators): the cycle collector's, and
giving glibc's retained free memory back to the OS.

With CPython's defaults a reader spent about a sixth of its CPU in the cycle collector (measured with
gc.callbacks during the bad-input run, docs/reliability.md): Ray, aiokafka and pydantic leave some 120,000
long-lived objects that every full collection walks again, and the batches in flight keep thousands of young
containers alive through collection after collection of a young generation of 700. The event path makes few
reference cycles, so collecting less often loses nothing; freezing what exists once an actor is up takes the
import-time objects out of every later collection.

glibc keeps memory that was freed inside its heaps for reuse, so a reader's RSS crept up by some 20 bytes per event
in the soak while the memory in use (`mallinfo2`) stayed flat (docs/reliability.md, "Soak"). `malloc_trim` hands
the free pages back; every HEAP_TRIM_INTERVAL_S it costs a reader up to 3 ms.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import time
from collections.abc import Callable

# Container allocations between young collections (CPython's default: 700). Bounds the cyclic garbage that
# can wait for a collection to a few megabytes.
YOUNG_COLLECTION_THRESHOLD = 10_000


@functools.cache  # once per process
def tune_gc_for_event_path() -> None:
    """Freeze the objects alive now and collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, middle, oldest)


HEAP_TRIM_INTERVAL_S = 30.0


def _glibc_malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none (musl, macOS): there is nothing to trim then."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


class HeapTrim:
    """Called on every metrics tick; gives glibc's free heap memory back to the OS at most every `interval_s`."""

    def __init__(
        self,
        interval_s: float = HEAP_TRIM_INTERVAL_S,
        *,
        trim: Callable[[int], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._trim = trim if trim is not None else _glibc_malloc_trim()
        self._interval_s = interval_s
        self._clock = clock
        self._due = clock() + interval_s
        self.trims = 0

    def __call__(self) -> None:
        now = self._clock()
        if self._trim is None or now < self._due:
            return
        self._due = now + self._interval_s
        self._trim(0)  # 0: keep no padding at the heap's top
        self.trims += 1
