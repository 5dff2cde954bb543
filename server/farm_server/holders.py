"""Whether the worker holding a test still has it: asked before a second worker takes it.

gearmand hands a job out again after it restarts (its persistent queue reloads a running
job) or when it loses the worker's connection. The first worker may still be running the
test, or have finished it while this server was away (its final state and results wait in
its outbox): a second copy would then run the test against the cloud again. The holder is
asked through gearmand (`farm:ping:<worker id>`, answered by its control connection at
once, even mid-job): it keeps the test while it runs it (`busy`) or owes reports of it
(`owes`). A holder no gearmand lists, or one that does not answer in time, is gone: the
new claim wins.
"""

from __future__ import annotations

import json
import logging

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
    keeps = answer.get("busy") == test_id or test_id in (answer.get("owes") or [])
    log.info("test %s: its holder %s %s", test_id, holder,
             "still has it: a second copy is told to stop" if keeps
             else "has moved on; a new claim takes it")
    return bool(keeps)
