"""The farm through the status server (FARM_SERVER_URL): the server keeps every test, its
history and results, and queues the jobs; workers fetch the cloud config from it."""

from __future__ import annotations

from typing import Any

from farm_client.api import FarmAPI, Refused
from farm_client.config import ClientConfig
from farm_client.exceptions import Duplicate, FarmClientError, NoSuchTest, NotRegistered
from farm_client.farm import (
    CancelOutcome,
    Farm,
    Run,
    Snapshot,
    StatusReport,
    Submitted,
    snapshot_of,
)
from farm_client.gearman_client import Gearman, served_versions
from farm_worker.protocol import run_function


def cancel_message(test_id: str, state: str, worker: str | None) -> str:
    """What happens to this test now, in the state it is in."""
    on = f" on {worker}" if worker else ""
    if state == "queued":
        return (f"cancel queued: {test_id} is still queued (gearmand could not withdraw it); "
                "it stops before Tempest starts, the moment a worker takes it")
    if state == "installing":
        return (f"cancel sent: {test_id} is installing Tempest{on}; it stops before the "
                "tests start and ends cancelled")
    return (f"cancel sent: {test_id} is running{on}; its worker kills Tempest, uploads "
            "what ran and ends it cancelled")


class ViaServer(Farm):
    via = "server"
    keeps_payload_fields = True

    def __init__(self, config: ClientConfig, api: FarmAPI | None = None,
                 gearman: Gearman | None = None) -> None:
        super().__init__(config, gearman)
        assert config.server_url or api is not None
        self.api = api or FarmAPI(config.server_url or "", config.token)

    def registered_versions(self) -> set[str]:
        return set(served_versions((f["name"], f["workers"])
                                   for server in self.queue() for f in server["functions"]))

    def submit(self, doc: dict[str, Any], queue_anyway: bool = False) -> Submitted:
        doc = self.read_payload(doc)
        version = doc["tempest"]["version"]
        try:
            view = self.api.create_test(doc, queue_anyway)
        except Refused as exc:
            if exc.status == 422:
                raise NotRegistered(version, exc.body.get("registered", [])) from None
            if exc.status == 409:
                raise Duplicate(str(exc)) from None
            raise
        return Submitted(view["id"], run_function(version), self.via, server=None)

    def start(self, doc: dict[str, Any], queue_anyway: bool = False) -> Run:
        submitted = self.submit(doc, queue_anyway)
        return Run(submitted, self.watch(submitted.test_id))

    def _test(self, test_id: str) -> dict[str, Any]:
        try:
            return self.api.test(test_id)
        except Refused as exc:
            if exc.status == 404:
                raise NoSuchTest(test_id) from None
            raise

    def status(self, test_id: str) -> Snapshot:
        return snapshot_of(self._test(test_id)["test"])

    def report(self, test_id: str) -> StatusReport:
        doc = self._test(test_id)
        return StatusReport(snapshot_of(doc["test"]), doc)

    def wait(self, test_id: str, timeout_s: float, run: Run | None = None,
             poll_s: float = 0.3) -> Snapshot | None:
        return self._poll(test_id, timeout_s, poll_s, lambda snap: snap.final)

    def final_results(self, snap: Snapshot) -> dict[str, Any]:
        try:
            return self.results(snap.test_id)
        except FarmClientError:  # no results uploaded (error, cancelled, dry run)
            try:
                return {"test": self._test(snap.test_id)["test"]}
            except FarmClientError:
                return {}

    def results(self, test_id: str) -> dict[str, Any]:
        return self.api.results(test_id)

    def results_raw(self, test_id: str, fmt: str) -> bytes:
        return self.api.results_raw(test_id, fmt)

    def refstack_document(self, test_id: str, cpid: str | None = None) -> dict[str, Any]:
        return self.api.refstack_document(test_id, cpid)

    def compare(self, a: str, b: str | None, ratio: float, min_delta_s: float
                ) -> dict[str, Any]:
        return self.api.compare(a, b, ratio, min_delta_s)

    def record_upload(self, test_id: str, record: dict[str, Any]) -> dict[str, Any]:
        return self.api.record_upload(test_id, record)

    def history(self, test_id: str) -> dict[str, Any]:
        return self._test(test_id)

    def test(self, test_id: str) -> dict[str, Any]:
        view: dict[str, Any] = self._test(test_id)["test"]
        return view

    def tests(self, states: list[str] | None = None, version: str | None = None,
              limit: int = 50, offset: int = 0, *, guideline: str | None = None,
              target: str | None = None) -> dict[str, Any]:
        return self.api.tests(states, version, limit, offset, guideline=guideline,
                              target=target)

    def cancel(self, test_id: str) -> CancelOutcome:
        try:
            doc = self.api.cancel(test_id)
        except Refused as exc:
            if exc.status in (404, 409):
                return CancelOutcome(test_id, "nothing", str(exc).split(": ", 1)[-1],
                                     (exc.body.get("test") or {}).get("state"))
            raise
        removed = doc.get("cancel") == "removed from the queue"
        state = doc["test"]["state"]
        return CancelOutcome(test_id, "removed" if removed else "requested",
                             "removed from the queue: it will never start" if removed
                             else cancel_message(test_id, state, doc["test"].get("worker")),
                             state)

    def queue(self) -> list[dict[str, Any]]:
        return list(self.api.queue()["servers"])
