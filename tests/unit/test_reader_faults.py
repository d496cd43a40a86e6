"""How the reader classifies a failed aggregator call: Ray's actor errors are retried forever, the aggregator's own
exceptions are application errors unless they say retrying helps; and what BatchCheckpoint does with each, with the
real error types (a Redis script error wrapped by the store, Ray's actor errors) and no broker or Ray."""

from __future__ import annotations

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import (
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import TimeoutError as RedisTimeoutError

from actors.reader import classify_apply_error
from herald.errors import InvalidEventError, StoreError
from herald.store_redis import store_error
from tests.unit.test_checkpoint import TOPIC, harness, make_batch, settled

SCRIPT_ERROR = ResponseError("ERR user_script:42: Script attempted to access nonexistent global variable 'x'")
WRONG_TYPE = ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")


def raised_by_aggregator(cause: Exception) -> Exception:
    # What awaiting a Ray call raises when the remote method raised `cause`.
    error = RayTaskError("AggregatorActor.apply", "Traceback (most recent call last): ...", cause)  # type: ignore[no-untyped-call]
    dual: Exception = error.as_instanceof_cause()  # type: ignore[no-untyped-call]
    return dual


@pytest.mark.parametrize(
    "error",
    [
        RayActorError(),
        ActorDiedError(),
        ActorUnavailableError("the actor is restarting", None),
        GetTimeoutError("timed out"),
        raised_by_aggregator(StoreError("committing to Redis failed: connection refused")),
        raised_by_aggregator(RedisConnectionError("connection refused")),
    ],
)
def test_infrastructure_failures_are_transient(error: Exception) -> None:
    assert classify_apply_error(error).transient


@pytest.mark.parametrize(
    "cause",
    [ValueError("needs a `notification`"), KeyError("count"), InvalidEventError("bad", field="type")],
)
def test_exceptions_of_the_aggregator_are_application_errors_named_in_the_reason(cause: Exception) -> None:
    fault = classify_apply_error(raised_by_aggregator(cause))
    assert not fault.transient
    assert fault.reason.startswith(f"{type(cause).__name__}: ")
    assert "Traceback" not in fault.reason


def test_a_failure_outside_ray_is_an_application_error() -> None:
    fault = classify_apply_error(KeyError("duplicates"))
    assert (fault.transient, fault.reason) == (False, "KeyError: 'duplicates'")


@pytest.mark.parametrize("error", [SCRIPT_ERROR, WRONG_TYPE])
def test_redis_refusing_the_request_is_a_store_error_not_worth_retrying(error: RedisError) -> None:
    wrapped = store_error("committing to Redis", error)
    assert isinstance(wrapped, StoreError)
    assert not wrapped.retriable
    assert str(error) in str(wrapped)


@pytest.mark.parametrize(
    "error",
    [
        RedisConnectionError("connection refused"),
        RedisTimeoutError("timed out"),
        NoScriptError("NOSCRIPT No matching script"),
        ReadOnlyError("READONLY You can't write against a read only replica"),
        OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'"),
    ],
)
def test_redis_unreachable_or_failing_over_stays_retriable(error: RedisError) -> None:
    assert store_error("committing to Redis", error).retriable


def test_a_non_retriable_store_error_survives_the_trip_through_ray() -> None:
    # Ray pickles the aggregator's exception into the reader's process: the flag must come along.
    fault = classify_apply_error(raised_by_aggregator(store_error("committing to Redis", SCRIPT_ERROR)))
    assert not fault.transient
    assert fault.reason.startswith("StoreError: committing to Redis failed: ERR user_script:42")


async def test_a_script_error_is_dead_lettered_after_bounded_retries_and_the_aggregator_moves_on() -> None:
    h = harness(classify_with=classify_apply_error, application_retries=2)
    h.aggregators.failures[0] = [raised_by_aggregator(store_error("committing to Redis", SCRIPT_ERROR))] * 3
    await h.checkpoint.admit(make_batch({0: [0, 1], 1: [2]}))
    await h.checkpoint.admit(make_batch({0: [3]}))
    await settled(h.checkpoint.finish_inflight())

    assert h.aggregators.calls_to(0) == [[0, 1]] * 3 + [[3]], "the failing part was not given up after 3 calls"
    assert h.aggregators.applied_to(0) == [[3]], "the next batch did not reach the aggregator"
    assert h.aggregators.applied_to(1) == [[2]]
    assert [(stage, offset) for stage, offset, _ in h.dlq.sent] == [("apply", 0), ("apply", 1)]
    assert all("aggregator-0 failed 3 times: StoreError:" in reason for _, _, reason in h.dlq.sent)
    assert all("ERR user_script:42" in reason for _, _, reason in h.dlq.sent)
    assert h.kafka.commits == [{(TOPIC, 0): 4}]


@pytest.mark.parametrize(
    "error",
    [ActorDiedError(), ActorUnavailableError("the actor is restarting", None)],
)
async def test_an_aggregator_that_is_down_is_waited_for_past_any_retry_budget(error: Exception) -> None:
    h = harness(classify_with=classify_apply_error, application_retries=1)
    h.aggregators.failures[0] = [error] * 25
    await h.checkpoint.admit(make_batch({0: [0]}))
    await settled(h.checkpoint.finish_inflight())

    assert h.aggregators.applied_to(0) == [[0]]
    assert h.dlq.sent == [], "events were dead-lettered because their aggregator was restarting"
    assert (h.checkpoint.counters.apply_retries, h.checkpoint.counters.application_errors) == (25, 0)
    assert h.kafka.commits == [{(TOPIC, 0): 1}]
