"""The queue as gearmand has it, read by the v1 API (`GET /v1/queue`) and the monitor (the
metrics): gearmand keeps counting a job withdrawn with `cancel job` (it marks it ignored
and drops it when a worker takes it), so those are taken off their function's `queued`
and counted as `withdrawn`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from farm_client.gearman_client import Gearman, Server
from farm_server.store import Store
from farm_worker.protocol import run_function


@dataclass
class Functions:
    """One gearmand's functions (name, queued, running, workers, withdrawn)."""

    functions: list[dict[str, Any]]
    withdrawn: int = 0  # jobs withdrawn with `cancel job`, still in gearmand's count
    withdrawn_unknown: int = 0  # of those, queued straight to gearmand (not in the store)
    by_name: dict[str, dict[str, Any]] = field(default_factory=dict)


def functions(gearman: Gearman, store: Store, server: Server) -> Functions:
    """GearmanError when the server does not answer."""
    found = Functions([dict(f.__dict__, withdrawn=0) for f in gearman.status(server)])
    ignored = gearman.withdrawn(server)
    versions = store.versions_of_handles(str(server), ignored)
    found.by_name = {f["name"]: f for f in found.functions}
    for version in versions.values():
        f = found.by_name.get(run_function(version))
        if f is not None and f["queued"] > f["running"]:
            f["queued"] -= 1
            f["withdrawn"] += 1
    found.withdrawn, found.withdrawn_unknown = len(ignored), len(ignored) - len(versions)
    return found
