"""gear's registerFunction from one thread while another waits in getJob() could lose the
wake-up (a cancel job then waits forever). The worker's gear wrapper closes that race;
this hammers it against the real gearmand."""

from __future__ import annotations

import queue
import threading
import time

import gear
import pytest

from farm_client.gearman_client import Gearman, Server
from farm_lab.gearmand import Gearmand
from farm_worker.gearman_worker import _GearWorker
from harness.gearclient import TestClient

pytestmark = [
    pytest.mark.gearman,
    # gear's shutdown drops a connection still waiting for a GRAB answer without closing
    # its socket: gear's, and it does not lose a job
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def test_a_job_for_a_function_registered_while_waiting_is_delivered(gearmand: Gearmand,
                                                                    client: TestClient) -> None:
    worker = _GearWorker(client_id="race")
    worker.addServer("127.0.0.1", gearmand.port)
    worker.registerFunction("race:base")
    worker.waitForServer(10)
    got: queue.Queue[str] = queue.Queue()
    server = Server("127.0.0.1", gearmand.port)
    gm = Gearman([server])

    def serve() -> None:
        while True:
            try:
                job = worker.getJob()
            except gear.InterruptedError:
                return
            got.put(job.name)
            job.sendWorkComplete(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    lost = []
    try:
        for i in range(150):
            name = f"race:cancel:{i}"
            worker.registerFunction(name)
            # as in production, the job comes after gearmand has the registration
            while not any(name in line for line in gm.admin(server, "workers")):
                time.sleep(0.001)
            time.sleep(0.002 * (i % 5))  # vary where the other thread is
            client.submit(name, b"", background=True)
            try:
                assert got.get(timeout=3) == name
            except queue.Empty:
                lost.append((name, [c.state for c in worker.active_connections],
                             worker.waiting_for_jobs, gm.admin(server, "show jobs")))
                break
            worker.unRegisterFunction(name)
    finally:
        worker.shutdown()
        thread.join(10)
    assert lost == []
