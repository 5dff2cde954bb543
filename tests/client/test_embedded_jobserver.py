"""The demo's job server when gearmand is not installed: gear's pure-Python server, in
process, with TCP_NODELAY and the requests farm_client needs. A real worker and the real
`farm` CLI run a real dry run through it."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from farm_client.gearman_client import Gearman
from farm_lab.jobserver import EmbeddedJobServer
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from harness.farmcli import farm

pytestmark = [pytest.mark.tempest]


@pytest.fixture
def embedded() -> Iterator[EmbeddedJobServer]:
    server = EmbeddedJobServer()
    try:
        yield server
    finally:
        server.stop()


def test_a_dry_run_through_the_embedded_server(tmp_path: Path, embedded: EmbeddedJobServer,
                                               workers: WorkerFactory,
                                               tempest47: PrepareResult) -> None:
    workers.start("emb", gearman=[str(embedded.server)])
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps({"identity": {"uri_v3": "http://127.0.0.1:9/v3"}}))
    g = ("--gearman", str(embedded.server))
    r = farm(tmp_path, "submit", *g, "--tempest", "47.0.0", "--conf", str(conf), "--regex",
             "tempest.api.identity", "--dry-run", "--wait", "--test-id", "emb-1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "emb-1 passed on emb: dry run: 138 tests selected" in r.stdout
    r = farm(tmp_path, "queue", *g, "--json")
    functions = json.loads(r.stdout)["servers"][0]["functions"]
    assert {"name": "tempest:run:47.0.0", "queued": 0, "running": 0, "workers": 1,
            "withdrawn": 0} in functions
    r = farm(tmp_path, "cancel", "emb-1", *g)
    assert r.returncode == 1 and "nothing to cancel" in r.stdout
    r = farm(tmp_path, "ping", *g)
    assert r.returncode == 0 and r.stdout.startswith("emb "), r.stdout


def test_nodelay_and_unique_status(embedded: EmbeddedJobServer) -> None:
    gm = Gearman([embedded.server])
    try:
        gm.submit("some:function", b"x", unique="u-1")
        st = gm.unique_status(embedded.server, "u-1", timeout_s=2)
        assert st.known and not st.running
        assert not gm.unique_status(embedded.server, "u-2", timeout_s=2).known
        assert gm.unique_jobs(embedded.server) == {"u-1"}
        with socket.create_connection((embedded.server.host, embedded.server.port)) as s:
            s.sendall(b"status\n")
            s.recv(1000)
        conns = list(embedded._server.active_connections)
        assert conns and all(c.conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                             for c in conns)
    finally:
        gm.close()
