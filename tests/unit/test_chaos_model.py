"""The chaos run's pure half: fault plans, webhook expectations and the figures it compares with."""

from __future__ import annotations

import random

import pytest

from tests.support.chaos_model import (
    FAULT_KINDS,
    ask_webhook,
    compare_clients,
    compare_deliveries,
    compare_inboxes,
    expected_deliveries,
    plan_faults,
    webhook_users,
)


def test_plan_is_seeded_ordered_and_inside_the_stream() -> None:
    per_kind = dict.fromkeys(FAULT_KINDS, 2)
    plan = plan_faults(random.Random(5), duration_s=100, per_kind=per_kind)
    assert plan == plan_faults(random.Random(5), duration_s=100, per_kind=per_kind)
    assert plan != plan_faults(random.Random(6), duration_s=100, per_kind=per_kind)
    assert [f.at_s for f in plan] == sorted(f.at_s for f in plan)
    assert all(5 <= f.at_s <= 95 for f in plan)
    assert sorted(f.kind for f in plan) == sorted(FAULT_KINDS * 2)


def test_plan_refuses_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        plan_faults(random.Random(1), duration_s=10, per_kind={"unplug_the_box": 1})


def test_webhook_is_asked_by_whole_users_and_expected_at_the_final_version() -> None:
    users = webhook_users([f"u{i}" for i in range(200)], random.Random(3), 0.25)
    assert 20 < len(users) < 80
    wire = [{"userId": "u1", "channels": ["IN_APP"]}, {"userId": "u2", "channels": ["IN_APP"]}]
    ask_webhook(wire, {"u2"})
    assert [e["channels"] for e in wire] == [["IN_APP"], ["IN_APP", "WEBHOOK"]]
    expected = {"u1": {("n1", "t", 1, 1)}, "u2": {("n2", "t", 3, 3), ("n3", "t", 1, 1)}}
    assert expected_deliveries(expected, {"u2"}) == {"n2": 3, "n3": 1}


def test_inbox_comparison_names_each_kind_of_difference() -> None:
    expected = {"u": {("a", "x", 2, 2), ("b", "y", 1, 1), ("c", "z", 3, 3), ("d", "w", 1, 1)}}
    stored = {"u": {("a", "x", 2, 2), ("c", "z", 4, 4), ("d", "other", 1, 1), ("e", "new", 1, 1)}}
    figures = compare_inboxes(expected, stored)
    assert figures.notifications_missing == 1  # b
    assert figures.versions_extra == 1  # c at v4
    assert figures.notifications_different == 1  # d
    assert figures.notifications_extra == 1  # e
    assert figures.versions_missing == 0
    assert compare_inboxes(expected, expected).examples == []


def test_deliveries_missing_duplicated_and_unexpected() -> None:
    finals = {"n1": 3, "n2": 1}
    received = ["n1:2:WEBHOOK", "n1:3:WEBHOOK", "n1:3:WEBHOOK", "n1:4:WEBHOOK", "zz:1:WEBHOOK"]
    figures = compare_deliveries(finals, received)
    assert (figures.expected, figures.received) == (2, 5)
    assert figures.missing == 1  # n2:1 never came; n1:2 is an intermediate version, which is fine
    assert figures.duplicated == 1
    assert figures.unexpected == 2  # past n1's final version, and a notification nobody expects


def test_clients_shown_twice_and_behind() -> None:
    stored = {"u1": {("a", "t", 2, 2)}, "u2": {("b", "t", 1, 1)}}
    received = {"u1": [("a", 1, 1), ("a", 2, 2), ("a", 2, 2)], "u2": []}
    figures = compare_clients(received, {"u1": 2, "u2": 1}, stored)
    assert figures.shown_twice == 1
    assert figures.behind == 1  # u2 never saw b
    assert figures.connections == 3
