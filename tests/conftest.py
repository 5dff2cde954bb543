"""Session fixtures: one gearmand, one Keystone, one set of prepared Tempest environments.

Caches (Tempest wheelhouses and templates, the Keystone venv) live in $FARM_TEST_CACHE (else
$FARM_CACHE), outside the clone, and are reused across runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from farm_lab.gearmand import Gearmand
from farm_lab.gearmand import running as running_gearmand
from farm_lab.keystone import Keystone
from farm_lab.keystone import up as keystone_up
from farm_lab.server import FarmServer
from farm_lab.venvs import cache_root
from farm_lab.workers import TEMPEST, WorkerFactory
from farm_worker.environments import EnvironmentCache, PrepareResult
from harness.checks import processes_under
from harness.gearclient import TestClient
from harness.postgres import Postgres
from harness.recorder import Recorder


@pytest.fixture(scope="session")
def farm_cache() -> Path:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def worker_cache(farm_cache: Path) -> Path:
    """The environment cache shared by every test that runs Tempest."""
    return farm_cache / "worker-cache"


@pytest.fixture(scope="session")
def tempest47(worker_cache: Path) -> PrepareResult:
    return EnvironmentCache(worker_cache).prepare(TEMPEST)


@pytest.fixture(scope="session")
def tempest40(worker_cache: Path) -> PrepareResult:
    return EnvironmentCache(worker_cache).prepare("40.0.0")


@pytest.fixture(scope="session")
def tempest33(worker_cache: Path) -> PrepareResult:
    return EnvironmentCache(worker_cache).prepare("33.0.0")


@pytest.fixture(scope="session")
def gearmand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gearmand]:
    with running_gearmand(tmp_path_factory.mktemp("gearmand")) as server:
        yield server


@pytest.fixture(scope="session")
def keystone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keystone]:
    ks = keystone_up(tmp_path_factory.mktemp("keystone"))
    try:
        yield ks
    finally:
        ks.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One real PostgreSQL server for the session; each test takes a new database."""
    server = Postgres()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(gearmand: Gearmand) -> Iterator[TestClient]:
    """A gear client of the session's gearmand."""
    c = TestClient(gearmand.address)
    try:
        yield c
    finally:
        c.shutdown()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder().start()
    try:
        yield rec
    finally:
        rec.stop()


@pytest.fixture
def workers(tmp_path: Path, gearmand: Gearmand, worker_cache: Path) -> Iterator[WorkerFactory]:
    factory = WorkerFactory(tmp_path, gearmand, worker_cache)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def server(tmp_path: Path, gearmand: Gearmand) -> Iterator[FarmServer]:
    """A real `farm-server serve` on the session's gearmand; its monitor finds lost jobs fast."""
    s = FarmServer(tmp_path / "server", [gearmand.address],
                   extra={"stale_after_s": 3, "monitor_interval_s": 1})
    s.start()
    try:
        yield s
    finally:
        s.stop()
        assert processes_under(s.base) == []  # the monitor went with the server
