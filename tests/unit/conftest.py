"""The unit tier: no Ray, no network. Starting Ray here is a bug, so it fails loudly (STYLE point 5)."""

from __future__ import annotations

from typing import Any

import pytest


def _ray_init_forbidden(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("ray.init() called in a unit test: move the test to tests/integration (marked `ray`)")


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    # Patch the attribute without importing ray when no test needs it: importing ray costs seconds.
    monkeypatch.setattr("ray.init", _ray_init_forbidden)
