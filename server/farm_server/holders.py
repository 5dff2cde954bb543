"""Whether the worker holding a test still has it: asked before a second worker takes it.

gearmand hands a job out again after it restarts (its persistent queue reloads a running
job) or when it loses the worker's connection. The first worker may still be running the
test, or have finished it while this server was away (its final state and results wait in
its outbox): a second copy would then run the test against the cloud again. The holder is
asked through gearmand (`farm:ping:<worker id>`, answered by its control connection at
once, even mid-job): it keeps the test while it runs it (`busy`) or owes reports of it
(`owes`). A holder no gearmand lists, or one that does not answer in time, is gone: the
new claim wins. A queued test whose job gearmand no longer has is asked about of every
worker (`keepers`, once a pass) before the monitor queues it again.
"""

from __future__ import annotations

import json
import logging
import time

from farm_client.gearman_client import Gearman, GearmanError
from farm_worker.protocol import ping_function

log = logging.getLogger(__name__)

ASK_TIMEOUT_S = 5.0  # a live worker answers a ping in milliseconds, even mid-job


def holder_keeps(gearman: Gearman, holder: str, test_id: str,
                 timeout_s: float = ASK_TIMEOUT_S) -> bool:
    """True when worker `holder` still runs `test_id` or owes the server reports of it."""
    try:
        if holder not in gearman.worker_ids():
            log.info("test %s: its holder %s is not connected to any gearmand; a new claim "
                     "takes it", test_id, holder)
            return False
        answer = json.loads(gearman.call(ping_function(holder), timeout_s=timeout_s))
    except (GearmanError, ValueError) as exc:
        log.info("test %s: its holder %s did not answer (%s); a new claim takes it",
                 test_id, holder, exc)
        return False
    keeps = _keeps(answer, test_id)
    log.info("test %s: its holder %s %s", test_id, holder,
             "still has it: a second copy is told to stop" if keeps
             else "has moved on; a new claim takes it")
    return keeps


def _keeps(answer: object, test_id: str) -> bool:
    return isinstance(answer, dict) and (
        answer.get("busy") == test_id or test_id in (answer.get("owes") or []))


def keepers(gearman: Gearman, timeout_s: float = ASK_TIMEOUT_S) -> dict[str, str]:
    """Test id -> the worker that runs it or owes the server reports of it, asking every
    worker a gearmand lists once, all at once (a worker that does not answer in time
    counts for none). For the tests whose job gearmand no longer has and of which no
    worker has reported: a worker may have run one while this server was away, its reports
    waiting in its outbox."""
    try:
        asked = [(worker, gearman.start(ping_function(worker), b""))
                 for worker in sorted(gearman.worker_ids())]
    except GearmanError as exc:
        log.info("the workers could not be asked (%s)", exc)
        return {}
    held: dict[str, str] = {}
    end = time.monotonic() + timeout_s
    for worker, job in asked:
        final = job.wait(max(0.0, end - time.monotonic()))
        if final is None or final.kind != "complete":
            continue
        try:
            answer = json.loads(final.data)
        except ValueError:
            continue
        if not isinstance(answer, dict):
            continue
        for test_id in [answer.get("busy"), *(answer.get("owes") or [])]:
            if isinstance(test_id, str):
                held.setdefault(test_id, worker)
    return held
