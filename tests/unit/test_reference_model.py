"""The independent reference model (tests/support/reference_model.py) agrees with herald's fold on generated
workloads: two implementations of the documented rules, so the failure tests can trust the model."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from herald.workload import social_stream
from tests.support.reference_model import expected_inboxes
from tests.support.workload import reference_inboxes

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seed", "events", "users", "spread_min"), [(7, 3_000, 300, 20), (11, 2_000, 50, 90), (3, 500, 5, 5)]
)
async def test_the_model_and_herald_agree(seed: int, events: int, users: int, spread_min: int) -> None:
    wire = social_stream(
        f"rm{seed}", events=events, users=users, base=NOW, spread=timedelta(minutes=spread_min), seed=seed
    )
    herald = await reference_inboxes(
        wire, now_ms=int(NOW.timestamp() * 1000), late_allowance_ms=60_000, inbox_capacity=500
    )
    model = expected_inboxes(wire, late_allowance_ms=60_000, inbox_capacity=500)
    assert model.keys() == herald.keys()
    differing = [user for user in model if model[user] != herald[user]]
    assert not differing, (differing[:3], [sorted(model[u] ^ herald[u])[:4] for u in differing[:1]])
    # Not trivially equal: the workload has grown groups (a count above 1 means folding happened).
    assert any(count > 1 for notes in model.values() for _id, _text, count, _version in notes)


def test_the_model_counts_an_actor_once_and_opens_a_new_group_after_the_window() -> None:
    def like(actor: str, minute: float, event_id: str) -> dict[str, object]:
        at = (NOW + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
        return {
            "userId": "u",
            "eventId": event_id,
            "timestamp": at,
            "notification": {
                "type": "POST_LIKED",
                "actor": {"id": actor, "name": actor},
                "target": {"type": "post", "id": "p"},
            },
        }

    model = expected_inboxes(
        [like("ann", 0, "e1"), like("bob", 1, "e2"), like("ann", 2, "e3"), like("cid", 5, "e4")],
        late_allowance_ms=60_000,
        inbox_capacity=10,
    )
    assert {(text, count, version) for _id, text, count, version in model["u"]} == {
        ("ann and bob liked your post", 2, 2),
        ("cid liked your post", 1, 1),
    }
