"""farm_client.gearman_client.Gearman against two real gearmand."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gear
import pytest

from farm_client.gearman_client import Gearman, Server
from farm_lab.gearmand import Gearmand

pytestmark = pytest.mark.gearman


@pytest.fixture
def two_gearmand(tmp_path: Path) -> Iterator[list[Gearmand]]:
    started = []
    try:
        for n in (1, 2):
            g = Gearmand(tmp_path / f"g{n}", queue="builtin")
            g.start()
            started.append(g)
        yield started
    finally:
        for g in started:
            g.stop()


def test_concurrent_submits_each_get_their_own_job_handle(two_gearmand: list[Gearmand]) -> None:
    """The status server's request threads share one client. gear matches a JOB_CREATED to
    the oldest submit waiting on that connection; unserialized, 8 threads got another
    job's handle for ~15% of 2,000 submits (and a cancel by handle would withdraw another
    test's job). Every job is then taken by a real worker, which sees its handle and
    arguments."""
    gearman = Gearman([Server("127.0.0.1", g.port) for g in two_gearmand])
    runs = 1000

    def submit(n: int) -> tuple[str, str, str]:
        server, handle = gearman.submit("echo", f"u{n}".encode(), unique=f"u{n}")
        return str(server), handle, f"u{n}"

    try:
        with ThreadPoolExecutor(8) as threads:
            given = list(threads.map(submit, range(runs)))
    finally:
        gearman.close()
    worker = gear.Worker("taker")
    for g in two_gearmand:
        worker.addServer("127.0.0.1", g.port)
    worker.registerFunction("echo")
    worker.waitForServer(timeout=30)
    try:
        taken: dict[tuple[str, str], str] = {}
        for _ in range(runs):
            job = worker.getJob()
            taken[(f"127.0.0.1:{job.connection.port}", job.handle.decode())] = \
                job.arguments.decode()
            job.sendWorkComplete()
    finally:
        worker.shutdown()
    wrong = [(server, handle, unique, taken.get((server, handle)))
             for server, handle, unique in given if taken.get((server, handle)) != unique]
    assert wrong == [], f"{len(wrong)} submits were given another job's handle: {wrong[:3]}"
