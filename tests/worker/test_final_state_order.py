"""A final state is announced only after the job's cleanup: whoever sees `passed`, `error`
or `cancelled` (the gearman client, the status server) may rely on the worker holding
nothing of that test any more: no process, no mount, no workspace with its tempest.conf."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from farm_worker.config import load_config
from farm_worker.environments import EnvironmentCache, PrepareResult
from farm_worker.execution import CancelEvent, JobHooks, JobRunner
from farm_worker.isolation import resolve_mode
from harness.checks import leftovers
from harness.payloads import valid

pytestmark = pytest.mark.tempest
FINAL = {"passed", "failed", "error", "cancelled", "timed_out", "rejected"}


def run_watching(tmp_path: Path, worker_cache: Path, payload: dict[str, Any]) \
        -> tuple[str, list[tuple[str, list[str]]]]:
    """Run `payload` in-process; for each state event, what the work dir held at that
    moment (the hook runs synchronously in the job's thread)."""
    config = load_config(None, environ={}, overrides={
        "cache_dir": str(worker_cache), "work_dir": str(tmp_path / "work"),
        "results_dir": str(tmp_path / "results"), "worker_id": "order"})
    runner = JobRunner(config, EnvironmentCache(config.cache_dir),
                       resolve_mode(config.env_isolation, config.work_dir))
    seen: list[tuple[str, list[str]]] = []

    def emit(event: dict[str, Any]) -> None:
        if event["event"] == "state":
            seen.append((event["state"], leftovers(config.work_dir)))

    summary = runner.execute(valid(**payload), CancelEvent(), JobHooks(emit=emit))
    return summary.state.value, seen


@pytest.mark.parametrize(("payload", "state"), [
    ({"test_id": "order-dry"}, "passed"),  # ends inside the mounted environment
    ({"test_id": "order-none", "tests": {"regex": "^nothing-matches-this$"}}, "error"),
])
def test_the_final_state_comes_after_the_cleanup(tmp_path: Path, worker_cache: Path,
                                                 tempest47: PrepareResult,
                                                 payload: dict[str, Any], state: str) -> None:
    end, seen = run_watching(tmp_path, worker_cache, payload)
    assert end == state
    states = [s for s, _ in seen]
    assert states[0] == "installing" and states[-1] == state
    assert seen[0][1] != []  # the check sees a live job's workspace
    assert [s for s in states if s in FINAL] == [state]  # announced once
    assert seen[-1][1] == []  # and by then nothing of the job is left
