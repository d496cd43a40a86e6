"""How the reader classifies a failed aggregator call: Ray's actor errors are retried forever, the aggregator's own
exceptions are application errors unless they say retrying helps."""

from __future__ import annotations

import pytest
from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError
from redis.exceptions import ConnectionError as RedisConnectionError

from actors.reader import classify_apply_error
from herald.errors import InvalidEventError, StoreError


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
