"""Garbage-collector settings for the processes on the event path (readers and aggregators).

With CPython's defaults a reader spent about a sixth of its CPU in the cycle collector (measured with
gc.callbacks during the bad-input run, docs/reliability.md): Ray, aiokafka and pydantic leave some 120,000
long-lived objects that every full collection walks again, and the batches in flight keep thousands of young
containers alive through collection after collection of a young generation of 700. The event path makes few
reference cycles, so collecting less often loses nothing; freezing what exists once an actor is up takes the
import-time objects out of every later collection.
"""

from __future__ import annotations

import functools
import gc

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
