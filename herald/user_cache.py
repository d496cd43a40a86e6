"""What an aggregator remembers of its users between batches, so a batch of users it has seen needs no load.

An aggregator is the only writer of its shards' users (docs/architecture.md, "Single writer per shard"). After
a commit it knows exactly what Redis holds for the user: the sequence number it wrote and the group states it
wrote, with their expiry. The next batch of that user folds on this memory instead of a load round trip.

It stays correct when the memory is wrong, because the commit checks, atomically:
- the user's sequence number is still the one the fold started from, so anything another writer did (a second
  pipeline, a replay tool, this actor before a restart) refuses the commit;
- none of the batch's event ids is applied already, so dedup never depends on what was loaded.
A refused user is forgotten here, loaded and folded again (InboxApplier.apply_prepared).

What is deliberately not remembered, and so always loaded:
- a group the store holds but this aggregator did not write (its expiry is unknown here);
- a group whose remembered expiry is near (Redis may expire it on its own clock first);
- a user whose batch reads or deletes by id (application ids are resolved by the store).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from herald.grouping import GroupState
from herald.store import UserChange, UserSnapshot

# A group is taken from memory only if it lives at least this much longer: the store's clock decides expiry.
EXPIRY_MARGIN_MS = 2_000
# Groups remembered per user (the newest win); a user active on more targets than this loads some of them.
GROUPS_PER_USER = 256
_NEVER = 2**62


@dataclass
class _Remembered:
    seq: int
    # group key -> (state, or None when the store is known to have none; when to stop trusting it, epoch ms)
    groups: OrderedDict[str, tuple[GroupState | None, int]] = field(default_factory=OrderedDict)


class UserCache:
    """A bounded LRU of users' committed state. `capacity` 0 remembers nothing (every batch loads)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._users: OrderedDict[str, _Remembered] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._users)

    def snapshot(self, user_id: str, group_keys: Sequence[str], now_ms: int) -> UserSnapshot | None:
        """The user's state for a fold touching `group_keys`, or None when it must be loaded.

        `seen` is empty: the commit itself refuses an event id applied before (see the module docstring)."""
        remembered = self._users.get(user_id)
        if remembered is None:
            self.misses += 1
            return None
        groups: dict[str, GroupState] = {}
        for key in group_keys:
            known = remembered.groups.get(key)
            if known is None or known[1] - EXPIRY_MARGIN_MS <= now_ms:
                self.misses += 1
                return None
            if known[0] is not None:
                groups[key] = known[0]
        self._users.move_to_end(user_id)
        self.hits += 1
        return UserSnapshot(user_id, remembered.seq, frozenset(), groups)

    def committed(
        self, snapshot: UserSnapshot, group_keys: Sequence[str], change: UserChange, *, from_memory: bool, now_ms: int
    ) -> None:
        """Remember what the store holds after `change` committed on `snapshot` (a fold over `group_keys`)."""
        if self._capacity <= 0:
            return
        remembered = self._users.get(snapshot.user_id) if from_memory else None
        if remembered is None:
            remembered = _Remembered(seq=change.new_seq)
            self._users[snapshot.user_id] = remembered
        remembered.seq = change.new_seq
        for key in group_keys:
            if key in change.groups:
                state, ttl_ms = change.groups[key]
                remembered.groups[key] = (state, now_ms + ttl_ms)
            elif key not in snapshot.groups:
                remembered.groups[key] = (None, _NEVER)  # absent, and only this writer could create it
            elif not from_memory:
                remembered.groups.pop(key, None)  # loaded, unchanged: its expiry is the store's secret
                continue
            remembered.groups.move_to_end(key)
        while len(remembered.groups) > GROUPS_PER_USER:
            remembered.groups.popitem(last=False)
        self._users.move_to_end(snapshot.user_id)
        while len(self._users) > self._capacity:
            self._users.popitem(last=False)

    def forget(self, user_ids: Sequence[str]) -> None:
        for user_id in user_ids:
            self._users.pop(user_id, None)
