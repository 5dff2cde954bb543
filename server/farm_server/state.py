"""What the server's request handlers share: config, store, gearman."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flask import current_app

from farm_client.gearman_client import Gearman
from farm_server.config import ServerConfig
from farm_server.store import Store

SERVED_FOR_S = 2.0  # how long a "some worker serves it" answer is reused


@dataclass
class FarmState:
    config: ServerConfig
    store: Store
    gearman: Gearman
    _served: tuple[float, dict[str, int]] = (0.0, {})
    _served_lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.monotonic

    def registered_versions(self, version: str) -> dict[str, int]:
        """The Tempest versions workers serve (gearmand's `status` on every server), to
        check a submit's version. An answer that has `version` is reused for
        SERVED_FOR_S, so a campaign's submits do not each ask every gearmand; one without
        it is asked again at once (a worker that just started is seen). A worker may leave
        between the check and the job either way."""
        with self._served_lock:
            at, versions = self._served
        if version in versions and self.clock() - at < SERVED_FOR_S:
            return versions
        versions = self.gearman.registered_versions()
        with self._served_lock:
            self._served = (self.clock(), versions)
        return versions


def farm() -> FarmState:
    state: FarmState = current_app.extensions["farm"]
    return state
