"""The fault suite: each fault is caused for real (kill -9, a hanging endpoint, a server
that goes away, thousands of bad inputs) against real gearmand, workers and `farm-server serve`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from farm_lab.loopback import Silent
from farm_lab.server import FarmServer


def submit(server: FarmServer, test_id: str, conf: Mapping[str, Any], regex: str,
           **fields: Any) -> None:
    r = server.api("POST", "/v1/tests", json={
        "test_id": test_id, "tempest": {"version": "47.0.0"}, "conf": conf,
        "tests": {"regex": regex}, **fields})
    assert r.status_code == 201, r.text


@pytest.fixture
def hanging_clouds() -> Iterator[Callable[[], Silent]]:
    """Makes cloud endpoints that accept connections and never answer; stops them all."""
    made: list[Silent] = []

    def make() -> Silent:
        made.append(Silent())
        return made[-1]

    try:
        yield make
    finally:
        for s in made:
            s.stop()


@pytest.fixture
def hanging_cloud(hanging_clouds: Callable[[], Silent]) -> Silent:
    """A cloud endpoint that accepts connections and never answers."""
    return hanging_clouds()
