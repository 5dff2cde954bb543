"""The gearman job of a stored test: what the API queues and what the monitor queues again
when gearmand has lost it. The conf and the accounts never ride the queue: the worker
fetches them from the callback (this server)."""

from __future__ import annotations

import json

from farm_server.models import TestRow
from farm_worker.protocol import Callback, Payload, Selection


def job_of(test: TestRow, callback_url: str) -> Payload:
    """The job of `test` as it was stored: its selection, timeout, dry run, guideline,
    accounts (fetched by the worker) and discovery options."""
    return Payload(test.id, test.tempest_version, conf=None,
                   tests=Selection.from_dict(json.loads(test.tests_json or "{}")),
                   callback=Callback(callback_url), timeout_s=test.timeout_s,
                   dry_run=bool(test.dry_run),
                   guideline=json.loads(test.guideline_json) if test.guideline_json else None,
                   accounts="callback" if test.accounts_json else None,
                   discover=None if test.discover_json is None
                   else json.loads(test.discover_json))
